"""Deterministic DPS (samplers.dps) and the inverse-problems study (inverse_problems)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.analysis import reproducibility as rpr
from repro_jax.diffusion import denoiser
from repro_jax.samplers import dps
from repro_jax.studies import inverse_problems as ip
from repro_jax.studies import runner


def test_centre_square_fractions_match_brute_force():
  for (h, w, f), side in {(8, 8, 0.25): 4, (8, 8, 0.61): 6, (32, 32, 0.25): 16,
                          (32, 32, 0.61): 25}.items():
    mask, k = dps.centre_square(h, w, f)
    # Brute force: the square side whose area fraction is nearest f.
    want = min(range(1, h + 1), key=lambda s: (abs(s * s / (h * w) - f), s))
    assert k == want == side
    hidden = np.argwhere(mask[..., 0] == 0)
    assert len(hidden) == k * k and mask.shape == (h, w, 1)
    assert hidden.min(0).tolist() == [(h - k) // 2] * 2
    assert hidden.max(0).tolist() == [(h - k) // 2 + k - 1] * 2
  assert dps.inpainting(8, 8, 0.61).hidden_fraction == pytest.approx(36 / 64)
  assert dps.inpainting(32, 32, 0.61).hidden_fraction == pytest.approx(625 / 1024)
  with pytest.raises(ValueError, match="fraction"):
    dps.centre_square(8, 8, 1.0)


def _gaussian(rng, dim, rank=3):
  a = rng.normal(size=(dim, rank))
  cov = a @ a.T + 0.05 * np.eye(dim)
  return rng.normal(size=dim) * 0.3, cov


@pytest.mark.parametrize("loss", dps.LOSSES)
@pytest.mark.parametrize("scale", dps.STEP_SCALES)
def test_one_step_against_numpy_oracle(x64, loss, scale):
  """One Euler step then the guidance step, against the closed form of a Gaussian
  prior: x̂0 = μ + W (x − μ), W = C (C + σ² I)⁻¹."""
  rng = np.random.default_rng(0)
  shape, dim = (4, 4, 1), 16
  mu, cov = _gaussian(rng, dim)
  den = denoiser.gaussian(jnp.asarray(mu), jnp.asarray(cov))
  op = dps.inpainting(4, 4, 0.25)
  m = np.asarray(op.mask, np.float64).reshape(-1)
  noise = rng.normal(size=(3,) + shape)
  z = (rng.normal(size=(3, dim)) * m).reshape((3,) + shape)
  s0, s1, xi = 2.0, 0.7, 0.3
  got = dps.dps(den, noise, z, op, np.array([s0, s1]), sampler="euler", xi=xi, loss=loss,
                step_scale=scale)
  w = cov @ np.linalg.inv(cov + s0 ** 2 * np.eye(dim))
  x = noise.reshape(3, dim) * s0
  x0 = mu + (x - mu) @ w.T
  step = x + (s1 - s0) * (x - x0) / s0
  r = m * x0 - z.reshape(3, dim)                               # A x̂0 − z
  grad = 2 * (m * r) @ w if loss == "squared" else (m * r) @ w / np.linalg.norm(r, axis=1,
                                                                                keepdims=True)
  size = xi * np.sqrt((1 + s0 ** 2) * (1 + s1 ** 2)) if scale == "vp" else xi
  want = step - size * grad
  np.testing.assert_allclose(np.asarray(got.samples).reshape(3, dim), want, rtol=1e-10,
                             atol=1e-10)
  np.testing.assert_allclose(np.asarray(got.residual),
                             np.linalg.norm(m * want - z.reshape(3, dim), axis=1), rtol=1e-10)


def test_guidance_gradient_against_finite_differences(x64):
  """The step through the empirical denoiser equals the sampler step minus ξ times
  a central finite-difference gradient of ‖z − A D(x)‖² (ξ on VE states)."""
  rng = np.random.default_rng(1)
  data = rng.uniform(-1, 1, size=(5, 3, 3, 1))
  den = denoiser.empirical(jnp.asarray(data))
  op = dps.Inpainting(jnp.asarray(dps.centre_square(3, 3, 0.15)[0]))
  x = rng.normal(size=(1, 3, 3, 1))
  z = np.asarray(op(jnp.asarray(data[:1])))
  s0, s1, xi = 0.8, 0.5, 0.2
  sig = np.array([s0, s1])
  with_g = dps.dps(den, x, z, op, sig, sampler="heun", xi=xi, step_scale="ve").samples
  without = dps.dps(den, x, z, op, sig, sampler="heun", xi=0.0).samples

  def loss(v):
    x0 = np.asarray(den(jnp.asarray(v * s0), jnp.full((1,), s0)))
    return float(np.sum((z - np.asarray(op(jnp.asarray(x0)))) ** 2))

  fd = np.zeros(x.size)
  h = 1e-6
  for i in range(x.size):
    e = np.zeros(x.size)
    e[i] = h
    fd[i] = (loss(x + e.reshape(x.shape)) - loss(x - e.reshape(x.shape))) / (2 * h)
  fd /= s0                                  # d/dx at x = σ0 · noise
  np.testing.assert_allclose(np.asarray(without - with_g).reshape(-1), xi * fd, rtol=1e-5,
                             atol=1e-8)


def test_empirical_dps_returns_the_most_consistent_training_image():
  """Closed form at tiny size: the restoration is a training image, consistent with
  the observation, and it is the brute-force argmin_i ‖z − A x_i‖ (NumPy float64)."""
  from repro_jax import data as data_lib
  x = np.asarray(data_lib.load_dataset(dict(name="digits", path="")).x)
  rng = np.random.default_rng(2)
  train = x[rng.choice(len(x), 8, replace=False)]
  op = dps.inpainting(8, 8, 0.25)
  u = train[np.arange(16) % 8]
  z = np.asarray(op(jnp.asarray(u)))
  noise = rng.standard_normal(u.shape).astype(np.float32)
  r = dps.dps(denoiser.empirical(train), noise, z, op, rpr.sigma_grid(20, 0.002, 80.0),
              sampler="dpm_solver_pp_2m")
  out = np.asarray(r.samples, np.float64)
  nearest = ip.nearest_index(out, train)
  np.testing.assert_allclose(out, train[nearest], atol=1e-3)        # a training image
  best = ip.consistent_index(z, train, op)
  np.testing.assert_array_equal(best, np.arange(16) % 8)
  assert np.mean(nearest == best) >= 0.9
  m = np.asarray(op.mask, np.float64)
  resid = np.sqrt(np.sum(((out - u) * m) ** 2, axis=(1, 2, 3)) / m.sum())
  assert np.median(resid) < 1e-3
  np.testing.assert_allclose(np.asarray(r.residual), np.sqrt(np.sum(
      ((out - u) * m) ** 2, axis=(1, 2, 3))), atol=1e-4)
  # Without guidance the same noises do not find the observed images.
  free = dps.dps(denoiser.empirical(train), noise, z, op, rpr.sigma_grid(20, 0.002, 80.0),
                 sampler="dpm_solver_pp_2m", xi=0.0)
  assert np.mean(ip.nearest_index(free.samples, train) == best) < 0.6


def test_bad_input_is_rejected_before_any_work():
  calls = []

  def den(x, s):
    calls.append(1)
    return x

  op = dps.inpainting(8, 8, 0.25)
  noise = np.zeros((2, 8, 8, 1), np.float32)
  sig = rpr.sigma_grid(4, 0.002, 80.0)
  bad = [
      (dict(operator=dps.inpainting(4, 4, 0.25)), "does not fit"),
      (dict(xi=-1.0), "xi"),
      (dict(observation=np.zeros((3, 8, 8, 1), np.float32)), "observation"),
      (dict(sampler="ddpm"), "deterministic"),
      (dict(loss="l1"), "loss"),
      (dict(step_scale="vq"), "step_scale"),
      (dict(sigmas=sig[::-1]), "decreasing"),
      (dict(noise=np.full((2, 8, 8, 1), np.nan, np.float32)), "noise"),
  ]
  for change, match in bad:
    args = dict(operator=op, observation=noise, noise=noise, sigmas=sig)
    args.update(change)
    with pytest.raises(ValueError, match=match):
      dps.dps(den, args.pop("noise"), args.pop("observation"), args.pop("operator"),
              args.pop("sigmas"), **args)
  with pytest.raises(ValueError, match="batch_size"):
    dps.dps_batched(den, noise, noise, op, sig, batch_size=0)
  assert not calls
  with pytest.raises(ValueError, match="hidden fraction"):
    settings_lib.override(ip.settings("smoke"), {"masks": (("easy", 1.5),)})


def test_batched_matches_one_call_and_stacks():
  rng = np.random.default_rng(3)
  data = rng.uniform(-1, 1, size=(6, 4, 4, 1)).astype(np.float32)
  op = dps.inpainting(4, 4, 0.25)
  noise = rng.standard_normal((5, 4, 4, 1)).astype(np.float32)
  z = np.asarray(op(jnp.asarray(data[:5])))
  sig = rpr.sigma_grid(6, 0.002, 80.0)
  den = denoiser.empirical(data)
  one = dps.dps(den, noise, z, op, sig)
  many = dps.dps_batched(den, noise, z, op, sig, batch_size=2)
  np.testing.assert_allclose(many.samples, one.samples, atol=1e-5)
  # A stack of two models: every model on every pair, model-major [M, B, ...].
  def make(a):
    return lambda x, s: a * x / (1.0 + jnp.square(s)[:, None, None, None])
  two = denoiser.stack(make, jnp.asarray([0.5, 0.9]))
  st = dps.dps_batched(two, noise, z, op, sig, batch_size=2)
  assert st.samples.shape == (2, 5, 4, 4, 1) and st.residual.shape == (2, 5)
  for i, a in enumerate((0.5, 0.9)):
    single = dps.dps(make(a), noise, z, op, sig)
    np.testing.assert_allclose(st.samples[i], single.samples, rtol=1e-5, atol=1e-5)
  assert not np.allclose(st.samples[0], st.samples[1])


def test_shifted_and_observations():
  x = np.arange(2 * 4 * 4).reshape(2, 4, 4, 1).astype(np.float32)
  y = ip.shifted(x, 1)
  np.testing.assert_array_equal(y[:, 1:, 1:], x[:, :-1, :-1])
  assert np.all(y[:, 0] == x.min(axis=(1, 2, 3))[:, None, None])


def test_smoke_run(tmp_path):
  s = settings_lib.override(ip.settings("smoke"), {"zoo": {"dir": str(tmp_path / "zoo")}})
  m = runner.run_study("inverse_problems", s, tmp_path / "out")
  for f in ("examples.png", "matrix.png", "families.png", "examples.npz", "metrics.json",
            "report.md"):
    assert (tmp_path / "out" / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 3
  assert json.loads((tmp_path / "out" / "metrics.json").read_text())["verdicts"] == m["verdicts"]
  assert m["masks"]["hard"]["side"] == 6 and m["masks"]["easy"]["hidden_fraction"] == 0.25
  assert set(m["cases"]) == {ip._case_key(c) for c in ip.cases(s)}
  for c in m["cases"].values():
    fam = c["families"]
    for i in range(2):
      for j in range(2):
        if np.isfinite(fam["rp"][i][j]):
          assert fam["lo"][i][j] - 1e-9 <= fam["rp"][i][j] <= fam["hi"][i][j] + 1e-9
  assert set(m["probes"]) == {"MLP VP-eps"}
  st = m["step"]
  assert st["grid"] == [0.3, 1.0] and st["factor"] in st["grid"] and st["disjoint"]
  assert st["xi"] == pytest.approx(st["factor"] * s.xi)
  assert st["grid"][ip.choose_xi(st["grid"], st["residual"], s.xi_tol)] == st["factor"]
  assert (tmp_path / "out" / "step.png").stat().st_size > 0


def test_choose_xi_rule_on_known_curves():
  """The declared rule: the smallest factor whose worst family residual is within
  (1 + tol) of the grid's minimum of it; divergence (NaN / inf) never wins."""
  grid = [0.03, 0.1, 0.3, 1.0, 3.0]
  # Two families; worst-family curve [0.8, 0.3, 0.05, 0.07, 0.4]: minimum at 0.3.
  res = np.array([[0.8, 0.7], [0.2, 0.3], [0.05, 0.04], [0.07, 0.06], [0.4, 0.3]])
  assert ip.choose_xi(grid, res, 0.0) == 2
  # With 50 % tolerance 0.07 ≤ 1.5 · 0.05 also qualifies, but 0.3 is still smaller.
  assert ip.choose_xi(grid, res, 0.5) == 2
  # A flat bottom: the smaller factor of two equal minima; a tolerance admits 0.1.
  flat = np.array([[0.9, 0.9], [0.052, 0.01], [0.05, 0.05], [0.05, 0.05], [0.5, 0.5]])
  assert ip.choose_xi(grid, flat, 0.0) == 2
  assert ip.choose_xi(grid, flat, 0.05) == 1
  # The worst family decides, not the mean: family 2 diverges at 0.3 and 1.
  bad = np.array([[0.8, 0.8], [0.1, 0.12], [0.01, np.nan], [0.01, np.inf], [0.5, 0.5]])
  assert ip.choose_xi(grid, bad, 0.0) == 1
  # Any order of the grid: the index of the smallest qualifying factor.
  perm = [4, 0, 3, 1, 2]
  assert ip.choose_xi([grid[i] for i in perm], flat[perm], 0.05) == perm.index(1)
  with pytest.raises(ValueError, match="residual"):
    ip.choose_xi(grid, res[:3], 0.1)
  with pytest.raises(ValueError, match="diverged"):
    ip.choose_xi(grid[:1], np.array([[np.nan, 0.1]]), 0.1)
  with pytest.raises(ValueError, match="xi_grid"):
    settings_lib.override(ip.settings("smoke"), {"xi_grid": (0.3, 0.3)})
