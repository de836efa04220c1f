"""Low-rank denoisers and their training against independent oracles.

Oracles: `denoisers.molrg_denoiser` (the closed-form MoLRG posterior mean),
Monte Carlo averages, float64 NumPy SVD (PCA), the SVD polar factor.
Sizes are tiny: every `train_*` call is one compilation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax import validation
from repro_jax.closed_form import denoisers
from repro_jax.lowrank import model as lowrank
from repro_jax.lowrank import molrg_grid
from repro_jax.lowrank import stiefel


def _pca64(y, r):
  return np.linalg.svd(np.asarray(y, np.float64).T, full_matrices=True)[0][:, :r]


def _dist(u, v):
  u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
  return float(np.linalg.norm(u @ u.T - v @ v.T))


def test_polar_retraction_is_the_svd_polar_factor_and_keeps_zero_columns():
  rng = np.random.default_rng(0)
  q = np.linalg.qr(rng.normal(size=(10, 4)))[0]
  x = q + 0.2 * rng.normal(size=q.shape)
  x = np.concatenate([x, np.zeros((10, 2))], 1).astype(np.float32)       # 2 padded columns
  out = np.asarray(stiefel.polar_retraction(jnp.asarray(x), iters=6))
  u, _, vt = np.linalg.svd(x[:, :4].astype(np.float64), full_matrices=False)
  np.testing.assert_allclose(out[:, :4], u @ vt, atol=2e-6)
  assert np.all(out[:, 4:] == 0)
  # A large step (singular values beyond √3) is scaled first, not flipped.
  big = np.asarray(stiefel.polar_retraction(jnp.asarray(3.0 * q, jnp.float32), iters=8))
  np.testing.assert_allclose(big, q, atol=1e-5)


def test_tangent_projection_is_tangent(x64):
  rng = np.random.default_rng(1)
  u = np.linalg.qr(rng.normal(size=(8, 3)))[0]
  g = rng.normal(size=(8, 3))
  t = np.asarray(stiefel.tangent_projection(u, g))
  np.testing.assert_allclose(u.T @ t + t.T @ u, 0, atol=1e-12)
  # Idempotent.
  np.testing.assert_allclose(stiefel.tangent_projection(u, t), t, atol=1e-12)


def test_mixture_denoiser_is_the_molrg_posterior_mean(x64):
  key = jax.random.PRNGKey(0)
  bases = denoisers.random_molrg_bases(key, 9, 3, [2, 3, 1], dtype=jnp.float64)
  x = jax.random.normal(jax.random.fold_in(key, 1), (5, 9), jnp.float64)
  alpha, beta = 0.8, jnp.linspace(0.1, 2.0, 5)
  ref = denoisers.molrg_denoiser(x, bases, alpha, beta)
  mix = jax.jit(lowrank.mixture_denoiser)
  np.testing.assert_allclose(mix(x, bases, alpha, beta), ref, atol=1e-12)
  one = denoisers.molrg_denoiser(x, bases[:1], alpha, beta)
  np.testing.assert_allclose(mix(x, bases[:1], alpha, beta), one, atol=1e-12)


def test_model_space_errors_equal_ambient_errors(x64):
  """With ξ = [U_1…U_K]ᵀ ε the coordinate loss is the ambient one, exactly."""
  rng = np.random.default_rng(2)
  k, d, r = 3, 11, 3
  rank_mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0]], np.float64)
  bases = np.linalg.qr(rng.normal(size=(d, k * r)))[0].reshape(d, k, r).transpose(1, 0, 2)
  bases = bases * rank_mask[:, None, :]
  data = rng.normal(size=(4, d))
  eps = rng.normal(size=(2, 4, d))
  alpha = np.full((2, 4), 0.9)
  beta = np.array([[0.05, 0.3, 1.0, 3.0], [0.2, 0.5, 0.7, 1.5]])

  @jax.jit
  def both(bases, data, alpha, beta, eps, rank_mask):
    xi = jnp.einsum("mnd,kdr->mnkr", eps, bases)
    return (lowrank.ambient_errors(bases, data, alpha, beta, eps, rank_mask),
            lowrank.model_space_errors(bases, data, alpha, beta, xi, rank_mask))
  amb, mod = both(bases, data, alpha, beta, eps, rank_mask)
  np.testing.assert_allclose(mod, amb, rtol=1e-10)


def test_expected_loss_is_the_noise_average_and_a_pca_objective(x64):
  rng = np.random.default_rng(3)
  d, r, n = 7, 2, 5
  data = rng.normal(size=(n, d))
  mask = np.ones((n,))
  cfg = lowrank.TrainConfig(objective="expected", single_t=0.2)
  mc_cfg = lowrank.TrainConfig(single_t=0.2, noise_space="ambient", noise_per_point=2000,
                               antithetic=False)

  @jax.jit
  def losses(u, key):
    return (lowrank.expected_denoising_loss(u, data, mask, cfg),
            lowrank.mc_denoising_loss(u[None], key, data, mask, jnp.ones((1, r)), mc_cfg),
            lowrank.pca_objective(u, data, mask))
  us = [np.linalg.qr(rng.normal(size=(d, r)))[0] for _ in range(3)]
  out = [losses(u, jax.random.PRNGKey(i)) for i, u in enumerate(us)]
  exact, mc = float(out[0][0]), float(out[0][1])
  assert abs(mc - exact) < 3e-3 * exact
  # On the manifold the loss is affine in the PCA objective with a negative slope.
  loss = np.array([float(o[0]) for o in out])
  pca = np.array([float(o[2]) for o in out])
  slope = (loss[1] - loss[0]) / (pca[1] - pca[0])
  assert slope < 0
  np.testing.assert_allclose(loss[2], loss[0] + slope * (pca[2] - pca[0]), rtol=1e-10)


def test_grid_training_k1_is_pca_and_shows_the_transition():
  """One vmapped program over (N, r) cells: U⋆ = PCA if N ≥ r, else ≥ sqrt(r − N) away."""
  d = 10
  grid = molrg_grid.molrg_grid(jax.random.PRNGKey(4), [0], [1, 2, 3, 5], [2, 3], dim=d)
  cfg = lowrank.TrainConfig(objective="expected", steps=200, t_max=0.5)
  keys = jax.random.split(jax.random.PRNGKey(5), grid.n.shape[0])
  res = lowrank.train_grid(keys, grid.data, grid.mask, grid.rank_mask, cfg)
  for i in range(grid.n.shape[0]):
    n, r = int(grid.n[i]), int(grid.r[i])
    u = np.asarray(res.bases[i, 0])
    assert np.all(u[:, r:] == 0)                                 # padded columns
    np.testing.assert_allclose(u[:, :r].T @ u[:, :r], np.eye(r), atol=1e-5)
    y = np.asarray(grid.data[i, :n])
    truth = np.asarray(grid.truth[i, 0, :, :r])
    if n >= r:
      assert _dist(u[:, :r], _pca64(y, r)) < 1e-3
      assert _dist(u[:, :r], truth) < 1e-3
    else:
      assert _dist(u[:, :r], truth) >= np.sqrt(r - n) - 1e-3
      # U⋆ contains the data: the PCA objective is at its maximum ‖Y‖².
      np.testing.assert_allclose(np.sum((y @ u) ** 2), np.sum(y ** 2), rtol=1e-4)
  assert np.all(np.diff(np.asarray(res.losses), axis=-1)[:, -50:] <= 1e-6)


def test_grid_noise_angles_and_sizes_against_numpy():
  """Principal angles θ between U_0 and U_1, noise of variance ν², unequal sizes."""
  d, r = 24, 3
  grid = molrg_grid.molrg_grid(jax.random.PRNGKey(8), [0], [40], [r], dim=d, num_components=2,
                               noises=(0.0, 0.5), angles=(90.0, 30.0), sizes=(3, 1))
  assert np.asarray(grid.noise).tolist() == [0.0, 0.0, 0.5, 0.5]
  assert np.asarray(grid.angle).tolist() == [90.0, 30.0, 90.0, 30.0]
  m = 3 * 40
  for i in range(4):
    truth = np.asarray(grid.truth[i], np.float64)
    cosines = np.linalg.svd(truth[0].T @ truth[1], compute_uv=False)
    np.testing.assert_allclose(np.degrees(np.arccos(np.clip(cosines, -1, 1))),
                               float(grid.angle[i]), atol=1e-2)
    for k in range(2):
      np.testing.assert_allclose(truth[k].T @ truth[k], np.eye(r), atol=1e-5)
    mask = np.asarray(grid.mask[i])
    assert mask[:m].sum() == 120 and mask[m:].sum() == 40        # sizes (3, 1) × n = 40
    x = np.asarray(grid.data[i], np.float64)[mask > 0]
    lab = np.asarray(grid.labels[i])[mask > 0]
    # Residual off the true subspace: ν e projected out of U_k, d − r dims per point.
    resid = np.concatenate([x[lab == k] - x[lab == k] @ truth[k] @ truth[k].T for k in range(2)])
    nu = float(grid.noise[i])
    if nu == 0:
      assert np.abs(resid).max() < 1e-5
    else:
      var = np.sum(resid ** 2) / (len(x) * (d - r))
      assert abs(var / nu ** 2 - 1) < 0.1                        # 160 · 21 χ² draws
  # Noise and angle change nothing else: the coefficients are shared.
  np.testing.assert_array_equal(np.asarray(grid.truth[0, 0]), np.asarray(grid.truth[3, 0]))
  with pytest.raises(ValueError, match="angles"):
    molrg_grid.molrg_grid(jax.random.PRNGKey(0), [0], [2], [1], dim=4, angles=(0.0,))


def test_padded_rows_and_model_space_mc_training():
  """Garbage in masked rows changes nothing; sampled (t, ε) training reaches PCA."""
  d, r, n = 8, 2, 4
  rng = np.random.default_rng(6)
  y = rng.normal(size=(n, r)) @ np.linalg.qr(rng.normal(size=(d, r)))[0].T
  data = jnp.asarray(np.concatenate([y, np.zeros((2, d))]), jnp.float32)
  mask = jnp.asarray([1.0] * n + [0.0] * 2)
  rank_mask = jnp.asarray([1.0, 1.0, 0.0])                      # rank 2 of R = 3
  cfg = lowrank.TrainConfig(steps=150, t_max=0.5)     # objective "mc", model-space ε
  key = jax.random.PRNGKey(7)
  garbage = data.at[n:].set(100.0)
  res = lowrank.train_one(key, data, mask, rank_mask, cfg)
  res2 = lowrank.train_one(key, garbage, mask, rank_mask, cfg)
  np.testing.assert_array_equal(res.bases, res2.bases)
  assert np.all(np.asarray(res.bases)[0, :, r:] == 0)
  u = np.asarray(res.bases[0, :, :r])
  assert _dist(u, _pca64(y, r)) < 1e-3


@pytest.mark.parametrize("kwargs", [
    dict(objective="expected", num_components=2),
    dict(num_components=2, joint_orthogonal=False),            # model-space noise needs joint
    dict(objective="nope"), dict(t_min=0.5, t_max=0.1), dict(steps=0),
    dict(learning_rate=float("nan")), dict(learning_rate=float("inf")),
    dict(learning_rate=0.0), dict(max_grad_norm=float("nan")),
])
def test_train_config_rejects_bad_settings(kwargs):
  with pytest.raises(ValueError):
    lowrank.TrainConfig(**kwargs)


def test_expected_loss_matches_monte_carlo_over_several_times(x64):
  """The closed-form `E_ε` loss, averaged over a quadrature of t where
  γ = α²/(α² + β²) ranges from ≈ 1 to ≈ 0 (so mean(γ²) ≠ mean(γ)²), against a
  Monte Carlo average of ‖c U Uᵀ(α y + β ε) − y‖² (any U, padded rows masked)."""
  from repro_jax.diffusion import schedules
  rng = np.random.default_rng(0)
  d, r, n = 5, 2, 4
  u = 0.7 * rng.normal(size=(d, r))                   # not orthonormal: the Gram terms count
  data = np.concatenate([rng.normal(size=(n, d)), rng.normal(size=(1, d))])
  mask = np.array([1.0] * n + [0.0])
  cfg = lowrank.TrainConfig(objective="expected", t_min=0.05, t_max=1.0, num_t=5)
  got = float(lowrank.expected_denoising_loss(jnp.asarray(u), jnp.asarray(data),
                                              jnp.asarray(mask), cfg))
  ts = np.linspace(0.05, 1.0, 5)
  alpha, beta = (np.asarray(v) for v in schedules.get_schedule("vp").alpha_beta(ts))
  gamma = alpha**2 / (alpha**2 + beta**2)
  assert gamma.max() > 0.9 and gamma.min() < 0.05
  m = 40_000
  eps = rng.normal(size=(len(ts), m, n, d))
  y = data[:n]
  xt = alpha[:, None, None, None] * y + beta[:, None, None, None] * eps
  c = alpha / (alpha**2 + beta**2)
  pred = c[:, None, None, None] * (xt @ u @ u.T)
  per_draw = np.sum((pred - y) ** 2, axis=(-1, -2)).mean(0)       # [m]: sum over points, mean over t
  lam = np.linalg.eigvalsh(y.T @ y)[-1]
  mc, se = per_draw.mean() / lam, per_draw.std() / np.sqrt(m) / lam
  assert abs(got - mc) < 5 * se, (got, mc, se)
  # And single times: each t alone also agrees.
  for i, t in enumerate(ts[[0, 2, 4]]):
    one = float(lowrank.expected_denoising_loss(
        jnp.asarray(u), jnp.asarray(data), jnp.asarray(mask),
        lowrank.TrainConfig(objective="expected", single_t=float(t))))
    j = [0, 2, 4][i]
    per = np.sum((pred[j] - y) ** 2, axis=(-1, -2))
    assert abs(one - per.mean() / lam) < 5 * per.std() / np.sqrt(m) / lam


@pytest.mark.parametrize("field,value", [("steps", True), ("steps", 0), ("num_t", 2.5),
                                         ("restarts", 0), ("num_components", False),
                                         ("polar_iters", -1)])
def test_bad_train_config_counts_raise(field, value):
  with pytest.raises(ValueError, match=f"`{field}`"):
    lowrank.TrainConfig(**{field: value})


def test_diverged_training_stops_with_the_step():
  """A rate that blows up stops with the step (and cell) instead of NaN bases."""
  rng = np.random.default_rng(6)
  y = rng.normal(size=(4, 2)) @ np.linalg.qr(rng.normal(size=(8, 2)))[0].T
  data = jnp.asarray(y, jnp.float32)
  cfg = lowrank.TrainConfig(steps=20, t_max=0.5, objective="expected", learning_rate=1e30)
  with pytest.raises(validation.DivergedError, match="non-finite loss nan at step 2 "):
    lowrank.train_one(jax.random.PRNGKey(0), data, jnp.ones(4), jnp.ones(2), cfg)
  with pytest.raises(validation.DivergedError, match="at step 2 of cell 0"):
    lowrank.train_grid(jax.random.split(jax.random.PRNGKey(0), 2), jnp.stack([data, data]),
                       jnp.ones((2, 4)), jnp.ones((2, 2)), cfg)
