"""The σ-CFDM smoothed denoiser and the low-rank + diagonal Gaussian against NumPy oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax.closed_form import denoisers
from repro_jax.closed_form import gaussian_lowrank as gl
from repro_jax.closed_form import smoothed
from repro_jax.closed_form import streaming
from repro_jax.diffusion import denoiser


def np_empirical(x, data, sigma):
  """Float64 brute force `Σ_i softmax_i(−‖x − y_i‖² / (2σ²)) y_i`, `sigma` scalar or [B]."""
  d2 = ((x[:, None, :] - data[None]) ** 2).sum(-1)
  logits = -d2 / (2 * np.reshape(sigma, (-1, 1)) ** 2)
  w = np.exp(logits - logits.max(1, keepdims=True))
  return (w / w.sum(1, keepdims=True)) @ data


def np_paper_score(x_t, data, t, tau, z):
  """The paper's smoothed score in its own coordinates (`x_t = t y + (1 − t) ε`):
  `(mean_m Σ_i softmax_i(−‖x_t + τ z_m − t y_i‖² / (2 (1 − t)²)) t y_i − x_t) / (1 − t)²`."""
  pulls = []
  for zm in z:
    d2 = ((x_t[:, None, :] + tau * zm[:, None, :] - t * data[None]) ** 2).sum(-1)
    logits = -d2 / (2 * (1 - t) ** 2)
    w = np.exp(logits - logits.max(1, keepdims=True))
    pulls.append((w / w.sum(1, keepdims=True)) @ (t * data))
  return (np.mean(pulls, 0) - x_t) / (1 - t) ** 2


@pytest.fixture
def problem():
  rng = np.random.default_rng(0)
  return rng.normal(size=(23, 5)), rng.normal(size=(4, 5)) * 1.2


KEY = jax.random.key(7)


# The smoothed denoiser ---------------------------------------------------------------

def test_smoothed_replays_numpy(problem, x64):
  """Independent draws here; the antithetic default is replayed in the next test."""
  data, x = problem
  sigma, scale = np.array([0.1, 0.5, 1.0, 3.0]), np.array([1.0, 0.5, 0.8, 0.3])
  tau = np.array([0.0, 0.2, 0.5, 1.0])
  got = smoothed.smoothed_denoiser(x, data, sigma, tau, key=KEY, num_draws=5, scale=scale,
                                   antithetic=False)
  z = np.asarray(smoothed.smoothing_draws(KEY, 5, 4, 5, antithetic=False))
  # The radius τ acts in the coordinates of x: τ / s in VE coordinates x / s.
  xv, rad = x / scale[:, None], (tau / scale)[:, None]
  want = np.mean([np_empirical(xv + rad * zm, data, sigma) for zm in z], 0)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  pairs = np.asarray(smoothed.smoothing_draws(KEY, 4, 4, 5))
  np.testing.assert_array_equal(pairs[1::2], -pairs[0::2])
  assert not np.allclose(z[1], -z[0])


def test_paper_coordinates_and_canonical_form(problem, x64):
  """Our (s, σ) = (t, (1 − t)/t) reproduces the paper's score; the canonical VE
  denoiser with "interpolant" coordinates is its x0 head at x_t / t."""
  data, x = problem
  t, tau, m = 0.6, 0.3, 4
  x_t = t * x
  z = np.asarray(smoothed.smoothing_draws(jax.random.key(3), m, 4, 5))
  score = smoothed.smoothed_denoiser(x_t, data, (1 - t) / t, tau, key=jax.random.key(3),
                                     num_draws=m, scale=t, head="score")
  want = np_paper_score(x_t, data, t, tau, z)
  np.testing.assert_allclose(score, want, rtol=1e-11, atol=1e-11)
  d = denoiser.make("smoothed", data=data, smoothing=tau, num_draws=m, seed=3)
  x0 = d(x_t / t, np.full(4, (1 - t) / t))
  # Tweedie in the paper's coordinates: D = (x_t + (1 − t)² score) / t.
  np.testing.assert_allclose(x0, (x_t + (1 - t) ** 2 * want) / t, rtol=1e-11, atol=1e-11)
  ve = denoiser.make("smoothed", data=data, smoothing=tau, num_draws=m, seed=3,
                     coordinates="ve")
  np.testing.assert_allclose(
      ve(x, np.full(4, 0.7)), np.mean([np_empirical(x + tau * zm, data, 0.7) for zm in z], 0),
      rtol=1e-12, atol=1e-12)


def test_monte_carlo_converges_to_the_expectation(x64):
  """D = 1: the exact E_z D̂(x + τ z) by Gauss-Hermite quadrature."""
  data = np.array([[-1.0], [0.3], [2.0]])
  x, sigma, tau = np.array([[0.4], [-0.8]]), 0.5, 0.6
  nodes, weights = np.polynomial.hermite_e.hermegauss(120)
  weights = weights / weights.sum()
  exact = np.array([weights @ np_empirical(xb + tau * nodes[:, None], data, sigma)[:, 0]
                    for xb in x])
  m = 2000
  got = np.asarray(smoothed.smoothed_denoiser(x, data, sigma, tau, key=KEY, num_draws=m))[:, 0]
  z = np.asarray(smoothed.smoothing_draws(KEY, m, 2, 1))[:, :, 0]          # [M, B]
  per_draw = np.stack([np_empirical(x[b] + tau * z[:, b:b + 1], data, sigma)[:, 0]
                       for b in range(2)], 1)                                # [M, B]
  np.testing.assert_allclose(got, per_draw.mean(0), rtol=1e-12)
  se = per_draw.std(0) / np.sqrt(m)      # antithetic pairs only lower the true error
  assert np.all(np.abs(got - exact) < 4 * se + 1e-12), (got, exact, se)
  assert np.all(np.abs(got - exact) < 0.02)


def test_limits(problem, x64):
  data, x = problem
  # τ → 0: the empirical denoiser (exactly at 0, continuously nearby).
  for sigma in (0.05, 0.7):
    emp = denoisers.empirical_denoiser(x, data, sigma)
    np.testing.assert_allclose(smoothed.smoothed_denoiser(x, data, sigma, 0.0, key=KEY),
                               emp, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(smoothed.smoothed_denoiser(x, data, sigma, 1e-9, key=KEY),
                               emp, atol=1e-6)
  # σ → ∞: the data mean, for either reading of τ (the interpolant radius grows as σ).
  mean = np.tile(data.mean(0), (4, 1))
  for coordinates in smoothed.SMOOTHING_COORDINATES:
    d = denoiser.smoothed(data, smoothing=0.5, num_draws=4, coordinates=coordinates)
    np.testing.assert_allclose(d(x, np.full(4, 1e7)), mean, atol=1e-6)
  # A large radius at small σ averages nearest points over the ball: finite, in the hull.
  far = smoothed.smoothed_denoiser(x, data, 1e-3, 5.0, key=KEY)
  assert np.all(np.isfinite(far))
  assert np.all((far >= data.min(0) - 1e-12) & (far <= data.max(0) + 1e-12))


def test_float32_stays_finite(problem):
  data, x = (jnp.asarray(a, jnp.float32) for a in problem)
  for sigma in (1e-4, 1.0, 1e4):
    for q in (x, 1e4 * x):
      out = smoothed.smoothed_denoiser(q, data, sigma, 0.3, key=KEY, num_draws=3, head="eps")
      assert out.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(out)))


def test_chunked_and_sharded_equal_unchunked(problem, mesh8, x64):
  data, x = problem
  kw = dict(key=KEY, num_draws=3)
  full = smoothed.smoothed_denoiser(x, data, 0.6, 0.4, chunk_size=None, **kw)
  for chunk in (1, 4):   # a divisor of N = 23, and a ragged tail
    np.testing.assert_allclose(smoothed.smoothed_denoiser(x, data, 0.6, 0.4, chunk_size=chunk,
                                                          **kw), full, rtol=1e-13, atol=1e-14)
  np.testing.assert_allclose(smoothed.smoothed_denoiser(x, data, 0.6, 0.4, chunk_size=3,
                                                        mesh=mesh8, **kw),
                             full, rtol=1e-13, atol=1e-14)


def test_smoothed_bad_inputs_raise_before_work(problem, monkeypatch):
  data, x = problem

  def no_work(*args, **kwargs):
    raise AssertionError("reached the computation")

  monkeypatch.setattr(streaming, "lse_stats", no_work)
  cases = [
      (dict(smoothing=-0.1), "`smoothing` must be >= 0"),
      (dict(smoothing=np.ones(3)), "`smoothing` must be a scalar or have shape"),
      (dict(smoothing=np.nan), "`smoothing` must be finite"),
      (dict(sigma=0.0), "`sigma` must be > 0"),
      (dict(num_draws=0), "`num_draws` must be >= 1"),
      (dict(num_draws=2.0), "`num_draws` must be an integer"),
      (dict(key=3), "`key` must be a PRNG key"),
      (dict(key=jax.random.split(KEY, 2)), "single PRNG key"),
      (dict(head="logits"), "Unknown head"),
      (dict(x=x[:, :3]), "last dimension"),
      (dict(x=x[0]), "`x` must have shape"),
      (dict(data=data[:0]), "`data` is empty"),
      (dict(antithetic=1), "`antithetic` must be True or False"),
      (dict(chunk_size=0), "`chunk_size` must be >= 1"),
  ]
  for change, match in cases:
    args = dict(x=x, data=data, sigma=0.5, smoothing=0.2, key=KEY) | change
    with pytest.raises(ValueError, match=match):
      smoothed.smoothed_denoiser(args.pop("x"), args.pop("data"), args.pop("sigma"),
                                 args.pop("smoothing"), **args)
  with pytest.raises(ValueError, match="Unknown smoothing coordinates"):
    smoothed.ve_radius(0.1, 1.0, "pixel")


# The low-rank + diagonal Gaussian ------------------------------------------------------

def np_wiener(x, mu, cov, sigma, scale=1.0):
  """`μ + Σ (Σ + σ² I)⁻¹ (x/s − μ)` by dense float64 solves, per row."""
  sigma = np.broadcast_to(sigma, (len(x),))
  scale = np.broadcast_to(scale, (len(x),))
  eye = np.eye(len(mu))
  return np.stack([mu + cov @ np.linalg.solve(cov + s**2 * eye, xb / sc - mu)
                   for xb, s, sc in zip(x, sigma, scale)])


@pytest.fixture
def lowrank():
  rng = np.random.default_rng(1)
  d, r = 7, 3
  return (rng.normal(size=d), rng.normal(size=(d, r)), rng.uniform(0.2, 3.0, r),
          rng.uniform(0.0, 0.5, d), rng.normal(size=(6, d)) * 2)


@pytest.mark.parametrize("isotropic", [True, False])
def test_lowrank_matches_dense_formula(lowrank, isotropic, x64):
  mu, u, lam, d, x = lowrank
  diag = np.float64(0.3) if isotropic else d
  g = gl.LowRankGaussian(mu, u, lam, diag)
  cov = u @ np.diag(lam) @ u.T + np.diag(np.broadcast_to(diag, mu.shape))
  np.testing.assert_allclose(g.covariance(), cov, rtol=1e-13)
  sigma = np.array([1e-4, 0.01, 0.3, 1.0, 10.0, 1e4])
  scale = np.array([1.0, 0.5, 0.9, 1.0, 0.2, 1.0])
  got = gl.lowrank_gaussian_denoiser(x, g, sigma, scale=scale)
  np.testing.assert_allclose(got, np_wiener(x, mu, cov, sigma, scale), rtol=1e-9, atol=1e-10)
  np.testing.assert_allclose(
      gl.lowrank_gaussian_denoiser(x, g, 0.7, scale=0.8, head="score"),
      denoisers.gaussian_denoiser(x, mu, cov, 0.7, scale=0.8, head="score"), rtol=1e-9, atol=1e-10)


def test_pure_low_rank_projects_at_small_sigma(lowrank, x64):
  mu, u, lam, _, x = lowrank
  q, _ = np.linalg.qr(u)
  g = gl.LowRankGaussian(mu, q, lam, np.float64(0.0))
  np.testing.assert_allclose(gl.lowrank_gaussian_denoiser(x, g, 1e-6),
                             mu + (x - mu) @ q @ q.T, atol=1e-9)
  np.testing.assert_allclose(gl.lowrank_gaussian_denoiser(x, g, 1e6), np.tile(mu, (6, 1)),
                             atol=1e-9)


def test_float32_woodbury_is_accurate(lowrank):
  mu, u, lam, d, x = lowrank
  g = gl.LowRankGaussian(*(np.asarray(a, np.float32) for a in (mu, u, lam, d)))
  cov = u @ np.diag(lam) @ u.T + np.diag(d)
  for sigma in (1e-3, 1.0, 1e3):
    got = gl.lowrank_gaussian_denoiser(np.asarray(x, np.float32), g, sigma)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, np_wiener(x, mu, cov, sigma), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("n", [40, 4])     # eigh of S (N >= D) and the thin SVD (N < D)
def test_fit_full_rank_and_truncations(n, x64):
  rng = np.random.default_rng(2)
  data = rng.normal(size=(n, 6)) @ rng.normal(size=(6, 6))
  mu, s = data.mean(0), np.cov(data.T, bias=True)
  evals, evecs = np.linalg.eigh(s)
  evals, evecs = evals[::-1], evecs[:, ::-1]
  if n >= 6:   # R = D: every residual gives back S, and the dense Gaussian denoiser
    for residual in gl.RESIDUALS:
      g = gl.fit_lowrank_gaussian(data, 6, residual=residual)
      np.testing.assert_allclose(g.covariance(), s, rtol=1e-10, atol=1e-10)
    x = rng.normal(size=(3, 6))
    np.testing.assert_allclose(gl.lowrank_gaussian_denoiser(x, g, 0.5),
                               np_wiener(x, mu, s, 0.5), rtol=1e-9)
  r = 2 if n >= 6 else 3
  iso = gl.fit_lowrank_gaussian(data, r)
  np.testing.assert_allclose(iso.mean, mu, rtol=1e-12)
  delta = evals[r:].mean()
  np.testing.assert_allclose(iso.diag, delta, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(np.linalg.eigvalsh(iso.covariance())[::-1],
                             np.concatenate([evals[:r], np.full(6 - r, delta)]),
                             rtol=1e-9, atol=1e-10)
  proj = np.asarray(iso.basis) @ np.asarray(iso.basis).T
  np.testing.assert_allclose(proj, evecs[:, :r] @ evecs[:, :r].T, atol=1e-9)
  diag = gl.fit_lowrank_gaussian(data, r, residual="diagonal")
  np.testing.assert_allclose(np.diag(diag.covariance()), np.diag(s), rtol=1e-10)
  np.testing.assert_allclose(diag.eigvals, evals[:r], rtol=1e-10)
  none = gl.fit_lowrank_gaussian(data, r, residual="none")
  np.testing.assert_allclose(none.covariance(), evecs[:, :r] @ np.diag(evals[:r]) @ evecs[:, :r].T,
                             atol=1e-9)
  np.testing.assert_allclose(gl.fit_lowrank_gaussian(data, r, ddof=1).diag,
                             delta * n / (n - 1), rtol=1e-9, atol=1e-12)


def test_fit_recovers_a_known_covariance():
  rng = np.random.default_rng(3)
  d, r, n, delta = 8, 2, 200_000, 0.1
  u, _ = np.linalg.qr(rng.normal(size=(d, r)))
  lam = np.array([4.0, 1.5])
  cov = u @ np.diag(lam) @ u.T + delta * np.eye(d)
  mu = rng.normal(size=d)
  data = mu + rng.normal(size=(n, d)) @ np.linalg.cholesky(cov).T
  g = gl.fit_lowrank_gaussian(data.astype(np.float32), r)
  # Sampling error of a covariance entry ~ sqrt(2/n) · scale ≈ 0.013 here.
  np.testing.assert_allclose(g.covariance(), cov, atol=0.05)
  np.testing.assert_allclose(g.diag, delta, rtol=0.05)
  np.testing.assert_allclose(np.sort(np.asarray(g.eigvals))[::-1], lam, rtol=0.03)
  np.testing.assert_allclose(g.mean, mu, atol=0.02)


def test_lowrank_bad_inputs(lowrank):
  mu, u, lam, d, x = lowrank
  g = gl.LowRankGaussian(mu, u, lam, d)
  with pytest.raises(ValueError, match="eigvals` must be >= 0"):
    gl.lowrank_gaussian_denoiser(x, g._replace(eigvals=-lam), 0.5)
  with pytest.raises(ValueError, match="diag` must be a scalar or have shape"):
    gl.lowrank_gaussian_denoiser(x, g._replace(diag=d[:3]), 0.5)
  with pytest.raises(ValueError, match="eigvals` must have shape"):
    gl.lowrank_gaussian_denoiser(x, g._replace(eigvals=lam[:2]), 0.5)
  with pytest.raises(ValueError, match="last dimension"):
    gl.lowrank_gaussian_denoiser(x[:, :4], g, 0.5)
  with pytest.raises(ValueError, match="`sigma` must be > 0"):
    gl.lowrank_gaussian_denoiser(x, g, -1.0)
  with pytest.raises(ValueError, match="must be a LowRankGaussian"):
    gl.lowrank_gaussian_denoiser(x, (mu, u, lam, d), 0.5)
  with pytest.raises(ValueError, match="exceeds the dimension"):
    gl.fit_lowrank_gaussian(x, 8)
  with pytest.raises(ValueError, match="`rank` must be >= 1"):
    gl.fit_lowrank_gaussian(x, 0)
  with pytest.raises(ValueError, match="Unknown residual"):
    gl.fit_lowrank_gaussian(x, 2, residual="full")
  with pytest.raises(ValueError, match="do not give a covariance"):
    gl.fit_lowrank_gaussian(x[:1], 1, ddof=1)


# Registry ------------------------------------------------------------------------------

def test_registry_builds_by_name(x64):
  rng = np.random.default_rng(4)
  images = rng.normal(size=(12, 3, 2, 2))
  x = rng.normal(size=(5, 3, 2, 2))
  sigma = np.full(5, 0.8)
  d = denoiser.make("smoothed", data=images, smoothing=0.2, num_draws=4, chunk_size=5)
  assert d.name == "smoothed" and d.data_shape == (3, 2, 2) and d.info["num_draws"] == 4
  flat = images.reshape(12, -1)
  want = smoothed.smoothed_denoiser(x.reshape(5, -1), flat, sigma,
                                    smoothed.ve_radius(0.2, sigma), key=jax.random.key(0),
                                    num_draws=4)
  np.testing.assert_allclose(d(x, sigma), np.reshape(want, x.shape), rtol=1e-12)
  np.testing.assert_allclose(jax.jit(d)(x, sigma), d(x, sigma), rtol=1e-12)
  g = denoiser.make("gaussian_lowrank", data=images, rank=3, residual="diagonal")
  assert g.name == "gaussian_lowrank" and g.data_shape == (3, 2, 2)
  fit = gl.fit_lowrank_gaussian(flat, 3, residual="diagonal")
  np.testing.assert_allclose(g(x, sigma), np.reshape(
      gl.lowrank_gaussian_denoiser(x.reshape(5, -1), fit, sigma), x.shape), rtol=1e-12)
  given = denoiser.make("gaussian_lowrank", gaussian=fit)
  np.testing.assert_allclose(given(x, sigma), g(x, sigma), rtol=1e-12)
  bad = [
      (dict(name="smoothed", data=images, smoothing=-1.0), "smoothing"),
      (dict(name="smoothed", data=images, smoothing=0.1, coordinates="pixel"), "coordinates"),
      (dict(name="smoothed", data=images, smoothing=0.1, draws=3), "unknown field"),
      (dict(name="smoothed", data=images), "smoothing"),
      (dict(name="smoothed", data=images[0, 0, 0], smoothing=0.1), "feature axis"),
      (dict(name="gaussian_lowrank", data=images), "needs `rank`"),
      (dict(name="gaussian_lowrank"), "exactly one of"),
      (dict(name="gaussian_lowrank", data=images, gaussian=fit, rank=2), "exactly one of"),
      (dict(name="gaussian_lowrank", gaussian=fit, rank=2), "option of the fit"),
      (dict(name="gaussian_lowrank", data=images, rank=2, residual="full"), "Unknown residual"),
  ]
  for options, match in bad:
    with pytest.raises(ValueError, match=match):
      denoiser.make(options.pop("name"), **options)
