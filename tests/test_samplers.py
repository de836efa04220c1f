"""Samplers against oracles: the exact Gaussian PF-ODE map, NumPy transcriptions
of the σ-form and DDIM-η updates, identities between samplers, Monte Carlo
marginals, inversion round trips, and bad input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax.diffusion import denoiser
from repro_jax import samplers
from repro_jax.diffusion import schedules
from repro_jax.samplers import _core

# A 3-D Gaussian N(μ, V diag(λ) Vᵀ) with a spread of eigenvalues.
_RNG = np.random.default_rng(0)
_V, _ = np.linalg.qr(_RNG.normal(size=(3, 3)))
_LAM = np.array([0.05, 0.7, 3.0])
_MU = np.array([0.5, -1.0, 2.0])
_COV = _V @ np.diag(_LAM) @ _V.T
_Z = _RNG.normal(size=(6, 3))


def _gauss():
  return denoiser.gaussian(_MU, _COV)


def _np_gauss_x0(x, s):
  """Independent NumPy posterior mean `μ + Σ (Σ + σ² I)⁻¹ (x − μ)`, float64."""
  return _MU + (x - _MU) @ np.linalg.solve(_COV + s * s * np.eye(3), _COV).T


def _exact_flow(x, s0, s1):
  """Exact PF-ODE map σ0 → σ1 for N(μ, Σ): eigen-coordinates scale by sqrt((λ+σ1²)/(λ+σ0²))."""
  c = (x - _MU) @ _V
  return _MU + (c * np.sqrt((_LAM + s1**2) / (_LAM + s0**2))) @ _V.T


def _grid(n, spacing="logsnr", final="min", lo=0.05, hi=20.0):
  return schedules.sigma_grid(schedules.get_schedule("edm"), n, spacing, final=final,
                              sigma_min=lo, sigma_max=hi)


# Convergence to the exact map, with the measured order ---------------------------

@pytest.mark.parametrize("sampler,options,order", [
    ("euler", {}, 1), ("ddim", {}, 1), ("heun", {}, 2),
    ("dpm_solver", {"order": 2}, 2), ("dpm_solver", {"order": 3}, 3),
    ("dpm_solver_pp_2m", {}, 2),
])
def test_order_of_convergence_to_exact_gaussian_flow(x64, sampler, options, order):
  steps = (16, 32, 64)
  errs = []
  for n in steps:
    g = _grid(n)
    out = samplers.sample(_gauss(), _Z, g, sampler=sampler, **options).samples
    errs.append(np.abs(np.asarray(out) - _exact_flow(_Z * g[0], g[0], g[-1])).max())
  slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
  assert errs[-1] < 0.1
  assert abs(slope - order) < 0.3, (errs, slope)


@pytest.mark.parametrize("sched,spacing", [("vp", "uniform"), ("vp", "quadratic"),
                                           ("ve", "logsnr"), ("edm", "edm")])
def test_dpm_solver_converges_on_time_uniform_logsnr_quadratic_grids(x64, sched, spacing):
  errs = []
  for n in (10, 40):
    g = schedules.sigma_grid(schedules.get_schedule(sched), n, spacing, final="min")
    out = samplers.sample(_gauss(), _Z, g, sampler="dpm_solver", order=3).samples
    errs.append(np.abs(np.asarray(out) - _exact_flow(_Z * g[0], g[0], g[-1])).max())
  assert errs[1] < errs[0] / 8 and errs[1] < 5e-3, errs


def test_final_step_to_zero_is_the_posterior_mean(x64):
  """Grid ending at 0 = the same run stopped at σ_min, then `D(·, σ_min)`."""
  g = _grid(16, final="zero", lo=0.05)
  for name in ("heun", "dpm_solver", "dpm_solver_pp_2m", "ddim", "euler", "sigma_form"):
    out = samplers.sample(_gauss(), _Z, g, sampler=name).samples
    stop = np.asarray(samplers.sample(_gauss(), _Z, g[:-1], sampler=name).samples)
    np.testing.assert_allclose(out, _np_gauss_x0(stop, g[-2]), rtol=1e-10, atol=1e-10,
                               err_msg=name)
  ref = _np_gauss_x0(_exact_flow(_Z * g[0], g[0], g[-2]), g[-2])
  out = samplers.sample(_gauss(), _Z, g, sampler="dpm_solver", order=3).samples
  assert np.abs(np.asarray(out) - ref).max() < 1e-3


# Identities between samplers (float64, 1e-10) --------------------------------

@pytest.mark.parametrize("spacing", ["leading", "quadratic", "trailing"])
def test_ddim_vp_eta0_equals_sigma_form_euler(x64, spacing):
  g = schedules.sigma_grid(schedules.get_schedule("ddpm"), 10, spacing)
  den = _gauss()
  ref = samplers.sample(den, _Z, g, sampler="sigma_form").samples
  for name, opts in [("ddim", {"eta": 0.0}), ("euler", {}),
                     ("gradient_estimation", {"gamma": 1.0}), ("dpm_solver", {"order": 1})]:
    out = samplers.sample(den, _Z, g, sampler=name, **opts).samples
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10, err_msg=name)


def test_ddim_eta1_is_the_sigma_form_ddpm_update_noise_for_noise(x64):
  g = schedules.sigma_grid(schedules.get_schedule("ddpm"), 12, "trailing")
  key = jax.random.key(3)
  a = samplers.sample(_gauss(), _Z, g, sampler="ddim", eta=1.0, key=key).samples
  b = samplers.sample(_gauss(), _Z, g, sampler="ddpm", key=key).samples
  np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def _np_noise(key, i, shape):
  return np.asarray(jax.random.normal(jax.random.fold_in(key, i), shape, jnp.float64))


def _np_sigma_form(x, sigmas, gamma, mu, key):
  """NumPy transcription of docs/theory.md §2 (σ-form DDIM / DDPM / gradient estimation)."""
  eps_prev = None
  for i in range(len(sigmas) - 1):
    s, s_prev = sigmas[i], sigmas[i + 1]
    eps = (x - _np_gauss_x0(x, s)) / s
    eps_bar = eps if eps_prev is None else gamma * eps + (1 - gamma) * eps_prev
    s_p = (s_prev / s**mu)**(1 / (1 - mu))
    x = x + (s_p - s) * eps_bar
    if mu > 0:
      x = x + np.sqrt(s_prev**2 - s_p**2) * _np_noise(key, i, x.shape)
    eps_prev = eps
  return x


@pytest.mark.parametrize("gamma,mu,final", [(2.0, 0.0, "min"), (2.0, 0.0, "zero"),
                                            (1.5, 0.3, "zero"), (1.0, 0.5, "min")])
def test_sigma_form_matches_numpy_transcription(x64, gamma, mu, final):
  g = _grid(7, "log_linear", final=final, lo=0.02, hi=30.0)
  key = jax.random.key(7)
  out = samplers.sample(_gauss(), _Z, g, sampler="sigma_form", gamma=gamma, mu=mu,
                        key=key).samples
  ref = _np_sigma_form(_Z * g[0], g, gamma, mu, key)
  np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_ddim_eta_matches_numpy_transcription_on_ddpm_table(x64):
  """DDIM-η (docs/theory.md §3) on DDPM's ᾱ table at τ = leading sub-sequence, then α_0 := 1."""
  n, eta, key = 8, 0.5, jax.random.key(11)
  sched = schedules.get_schedule("ddpm")
  tau = (np.arange(n) * (1000 // n))[::-1]
  abar = np.concatenate([sched.alpha_bars()[tau], [1.0]])
  g = schedules.sigma_grid(sched, n, "leading")
  np.testing.assert_allclose(g, np.sqrt((1 - abar) / abar), rtol=1e-12, atol=0)
  z_t = np.sqrt(abar[0]) * (_Z * g[0])
  for i in range(n):
    a, a_prev = abar[i], abar[i + 1]
    x_ve = z_t / np.sqrt(a)
    f = _np_gauss_x0(x_ve, g[i])
    eps = (z_t - np.sqrt(a) * f) / np.sqrt(1 - a)
    sig = eta * np.sqrt((1 - a_prev) / (1 - a)) * np.sqrt(1 - a / a_prev)
    z_t = (np.sqrt(a_prev) * f + np.sqrt(1 - a_prev - sig**2) * eps
           + sig * _np_noise(key, i, z_t.shape))
  out = samplers.sample(_gauss(), _Z, g, sampler="ddim", eta=eta, key=key).samples
  np.testing.assert_allclose(out, z_t, rtol=1e-9, atol=1e-10)


def test_ddim_beta_variance_is_ddpm_posterior_mean_plus_beta_noise(x64):
  """σ̂ row: DDPM's posterior mean μ̃ (written with β, ᾱ; Ho et al. eq. 7) plus
  sqrt(β) noise, β = 1 − ᾱ_t/ᾱ_{t−1} of the strided step, none on the last step."""
  n, key = 6, jax.random.key(5)
  sched = schedules.get_schedule("ddpm")
  tau = (np.arange(n) * (1000 // n))[::-1]
  abar = np.concatenate([sched.alpha_bars()[tau], [1.0]])
  g = schedules.sigma_grid(sched, n, "leading")
  z_t = np.sqrt(abar[0]) * (_Z * g[0])
  for i in range(n):
    a, a_prev = abar[i], abar[i + 1]
    beta = 1.0 - a / a_prev
    x0 = _np_gauss_x0(z_t / np.sqrt(a), g[i])
    mean = (np.sqrt(a_prev) * beta / (1 - a) * x0
            + np.sqrt(1 - beta) * (1 - a_prev) / (1 - a) * z_t)
    z_t = mean + (np.sqrt(beta) * _np_noise(key, i, z_t.shape) if i < n - 1 else 0.0)
  out = samplers.sample(_gauss(), _Z, g, sampler="ddim", variance="beta", key=key).samples
  np.testing.assert_allclose(out, z_t, rtol=1e-9, atol=1e-10)
  # Its noise is larger than η = 1's on every step but the last (same mean).
  eta1 = samplers.sample(_gauss(), _Z, g, sampler="ddim", eta=1.0, key=key).samples
  assert np.abs(np.asarray(out) - np.asarray(eta1)).max() > 1e-3


def test_ddim_variance_option_is_checked():
  g = _grid(4)
  with pytest.raises(ValueError, match="variance"):
    samplers.sample(_gauss(), _Z, g, sampler="ddim", variance="huge", key=jax.random.key(0))
  with pytest.raises(ValueError, match="eta"):
    samplers.sample(_gauss(), _Z, g, sampler="ddim", variance="beta", eta=0.5,
                    key=jax.random.key(0))
  with pytest.raises(ValueError, match="key"):
    samplers.sample(_gauss(), _Z, g, sampler="ddim", variance="beta")
  with pytest.raises(ValueError, match="deterministic"):
    samplers.invert(_gauss(), _Z, g, sampler="ddim", variance="beta")


def test_single_point_dataset_is_returned_exactly(x64):
  y = np.array([[0.3, -1.2, 2.5, 0.0]])
  den = denoiser.empirical(y)
  z = np.random.default_rng(1).normal(size=(5, 4))
  g = schedules.sigma_grid(schedules.get_schedule("edm"), 6, "edm")
  for name in ("ddim", "euler", "heun", "dpm_solver", "dpm_solver_pp_2m"):
    out = samplers.sample(den, z, g, sampler=name).samples
    np.testing.assert_allclose(out, np.broadcast_to(y, (5, 4)), atol=1e-12, err_msg=name)


# Trajectories, evaluation counts, compilation ----------------------------------

def test_trajectory_shapes_and_x0_estimates(x64):
  g = _grid(5, final="zero")
  r = samplers.sample(_gauss(), _Z, g, sampler="ddim", return_trajectory=True)
  assert r.xs.shape == (6, 6, 3) and r.x0_hats.shape == (5, 6, 3) and r.sigmas.shape == (6,)
  np.testing.assert_allclose(r.xs[0], _Z * g[0])
  np.testing.assert_allclose(r.xs[-1], r.samples)
  for t in range(5):
    np.testing.assert_allclose(r.x0_hats[t], _np_gauss_x0(np.asarray(r.xs[t]), g[t]),
                               rtol=1e-10, atol=1e-10)
  # Without the trajectory the samples are the same.
  np.testing.assert_allclose(samplers.sample(_gauss(), _Z, g, sampler="ddim").samples,
                             r.samples, rtol=1e-12)


def test_heun_uses_2n_minus_1_evaluations():
  calls = []
  base = _gauss()

  def counting(x, s):
    jax.debug.callback(lambda: calls.append(1))
    return base(x, s)

  g = _grid(5, final="zero")
  samplers.sample(counting, _Z.astype(np.float32), g, sampler="heun").samples.block_until_ready()
  assert len(calls) == 9 == samplers.num_evaluations("heun", g)
  assert samplers.num_evaluations("dpm_solver", g, order=3) == 13
  assert samplers.num_evaluations("heun", g[:-1]) == 8


def test_no_retrace_for_new_grid_values_of_same_length():
  den = _gauss()
  z = _Z.astype(np.float32)
  samplers.sample(den, z, _grid(4), sampler="heun")
  n = _core._drive._cache_size()
  samplers.sample(den, z + 1.0, _grid(4, lo=0.1, hi=5.0), sampler="heun")
  samplers.sample(den, z, _grid(4, "edm"), sampler="heun")
  assert _core._drive._cache_size() == n


# Stochastic samplers -----------------------------------------------------------

@pytest.mark.parametrize("sampler,opts", [("ddpm", {}), ("ddim", {"eta": 0.5}),
                                          ("heun", {"churn": 5.0}),
                                          ("gradient_estimation", {"mu": 0.2})])
def test_same_key_same_output(sampler, opts):
  g = _grid(6, final="zero")
  z = _Z.astype(np.float32)
  run = lambda k: np.asarray(samplers.sample(_gauss(), z, g, sampler=sampler, key=k,
                                             **opts).samples)
  a, b, c = run(jax.random.key(0)), run(jax.random.key(0)), run(jax.random.key(1))
  np.testing.assert_array_equal(a, b)
  assert np.abs(a - c).max() > 1e-3


def test_ddpm_marginal_variance_matches_schedule_monte_carlo(x64):
  """x_σ from the DDPM update on N(μ, diag(λ)) data has variance ≈ λ + σ² at every σ."""
  lam, mu = np.array([0.3, 2.0]), np.array([1.0, -0.5])
  den = denoiser.gaussian(mu, np.diag(lam))
  g = _grid(120, "log_linear", final="zero", lo=0.02, hi=10.0)
  w = np.asarray(jax.random.normal(jax.random.key(0), (20000, 2), jnp.float64))
  z = (mu + np.sqrt(lam + g[0]**2) * w) / g[0]  # start on the exact marginal at σ_max
  r = samplers.sample(den, z, g, sampler="ddpm", key=jax.random.key(1),
                      return_trajectory=True)
  xs = np.asarray(r.xs)
  for t in (0, 30, 60, 90, 110, 120):
    var = xs[t].var(axis=0)
    np.testing.assert_allclose(var, lam + g[t]**2, rtol=0.06, err_msg=f"step {t}")
    np.testing.assert_allclose(xs[t].mean(axis=0), mu, atol=0.03 * np.sqrt(lam + g[t]**2).max())


# Inversion (Theorem 1's encoder) -----------------------------------------------

@pytest.mark.parametrize("sampler", ["heun", "dpm_solver", "euler"])
def test_inversion_round_trip_shrinks_with_steps(x64, sampler):
  x0 = _MU + _Z @ np.diag(np.sqrt(_LAM)) @ _V.T
  errs, z_errs = [], []
  for n in (8, 32):
    g = _grid(n)
    inv = samplers.invert(_gauss(), x0, g, sampler=sampler)
    z_exact = _exact_flow(x0, g[-1], g[0]) / g[0]
    z_errs.append(np.abs(np.asarray(inv.samples) - z_exact).max())
    back = samplers.sample(_gauss(), inv.samples, g, sampler=sampler).samples
    errs.append(np.abs(np.asarray(back) - x0).max())
  assert errs[1] < errs[0] / 3 and z_errs[1] < z_errs[0] / 3, (errs, z_errs)
  assert errs[1] < (0.02 if sampler != "euler" else 0.2)


def test_inversion_encodes_memorized_points_exactly():
  """Empirical denoiser: data → latent → the same data point (grid ending at 0)."""
  data = np.random.default_rng(2).normal(size=(12, 8)).astype(np.float32)
  den = denoiser.empirical(data)
  g = schedules.sigma_grid(schedules.get_schedule("edm"), 18, "edm")
  inv = samplers.invert(den, data[:5], g, sampler="heun", return_trajectory=True)
  assert inv.xs.shape == (18, 5, 8) and inv.sigmas[0] < inv.sigmas[-1]
  assert np.all(np.isfinite(inv.samples))
  back = samplers.sample(den, inv.samples, g, sampler="heun").samples
  np.testing.assert_allclose(back, data[:5], atol=1e-5)


def test_inversion_grid():
  np.testing.assert_array_equal(samplers.inversion_grid([5.0, 1.0, 0.1, 0.0]), [0.1, 1.0, 5.0])
  np.testing.assert_array_equal(samplers.inversion_grid([0.1, 1.0]), [0.1, 1.0])
  with pytest.raises(ValueError, match="at least two"):
    samplers.inversion_grid([1.0, 0.0])


# Bad input -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(sampler="nope"), "Unknown sampler 'nope'"),
    (dict(sampler="gradient_estimation", gamma=0.0), "`gamma`"),
    (dict(sampler="gradient_estimation", gamma=float("inf")), "`gamma`"),
    (dict(sampler="ddim", eta=1.5), "`eta`"),
    (dict(sampler="ddim", eta=-0.1), "`eta`"),
    (dict(sampler="ddim", eta=True), "`eta` must be a number"),
    (dict(sampler="sigma_form", mu=1.0), "`mu`"),
    (dict(sampler="ddpm", mu=-0.1), "`mu`"),
    (dict(sampler="dpm_solver", order=4), "`order`"),
    (dict(sampler="heun", churn=-1.0), "`churn`"),
    (dict(sampler="ddim", gamma=2.0), "no option"),
    (dict(sampler="ddpm"), "pass a PRNG `key`"),
    (dict(sampler="ddpm", key=3), "`key`"),
])
def test_bad_sampler_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    samplers.sample(_gauss(), _Z.astype(np.float32), _grid(3), **kwargs)


@pytest.mark.parametrize("grid,match", [([5.0, 6.0, 0.0], "decreasing"),
                                        ([5.0, 1.0, 1.0], "decreasing"),
                                        ([5.0], "at least 2"),
                                        ([5.0, -1.0], ">= 0"),
                                        ([np.nan, 1.0], "finite")])
def test_bad_grids(grid, match):
  with pytest.raises(ValueError, match=match):
    samplers.sample(_gauss(), _Z.astype(np.float32), grid)


def test_bad_noise_and_inversion_arguments():
  g = _grid(3)
  with pytest.raises(ValueError, match="`noise`"):
    samplers.sample(_gauss(), np.ones((4, 5), np.float32), g)
  with pytest.raises(ValueError, match="`noise`"):
    samplers.sample(_gauss(), np.full((4, 3), np.nan, np.float32), g)
  with pytest.raises(ValueError, match="cannot invert"):
    samplers.invert(_gauss(), _Z, g, sampler="ddpm")
  with pytest.raises(ValueError, match="deterministic"):
    samplers.invert(_gauss(), _Z, g, sampler="ddim", eta=0.5)
  with pytest.raises(ValueError, match="steps"):
    schedules.sigma_grid(schedules.get_schedule("edm"), 0, "edm")


def test_sharded_empirical_denoiser_gives_the_same_samples(mesh8):
  """The data rows split over 8 fake devices: same samples as on one device."""
  rng = np.random.default_rng(5)
  data = rng.normal(size=(20, 6)).astype(np.float32)  # 20 rows: padded to 24
  z = rng.normal(size=(4, 6)).astype(np.float32)
  g = schedules.sigma_grid(schedules.get_schedule("edm"), 6, "edm")
  one = samplers.sample(denoiser.empirical(data), z, g, sampler="heun").samples
  many = samplers.sample(denoiser.empirical(data, mesh=mesh8), z, g, sampler="heun").samples
  np.testing.assert_allclose(many, one, rtol=1e-5, atol=1e-5)


# Every solver against a NumPy transcription of its paper, on non-uniform grids ----

def _vp_coeffs(s):
  """VP coefficients `(α, σ_vp)` of the VE level σ: `α = 1/√(1+σ²)`, `σ_vp = σ α`."""
  a = 1.0 / np.sqrt(1.0 + s * s)
  return a, s * a


def _eps_vp(z, s):
  """ε-prediction at the VP state `z = α x` (the exact Gaussian posterior)."""
  a, _ = _vp_coeffs(s)
  return (z / a - _np_gauss_x0(z / a, s)) / s


def _sigma_of_lambda(lam):
  return np.exp(-lam)           # λ = log(α/σ_vp) = −log σ


def _np_dpm_solver(x, sigmas, order):
  """DPM-Solver-1/2/3 (Lu et al. 2022, singlestep, r₁ = ½ for order 2 and
  r₁ = ⅓, r₂ = ⅔ for order 3) in VP coordinates `z = α x`; a last step to σ = 0
  returns the posterior mean."""
  for s, s_next in zip(sigmas[:-1], sigmas[1:]):
    if s_next == 0:
      return _np_gauss_x0(x, s)
    a, sv = _vp_coeffs(s)
    a_t, sv_t = _vp_coeffs(s_next)
    z = a * x
    lam, lam_t = -np.log(s), -np.log(s_next)
    h = lam_t - lam
    e = _eps_vp(z, s)
    if order == 1:
      z = (a_t / a) * z - sv_t * np.expm1(h) * e
    elif order == 2:
      r1 = 0.5
      s1 = _sigma_of_lambda(lam + r1 * h)
      a1, sv1 = _vp_coeffs(s1)
      u = (a1 / a) * z - sv1 * np.expm1(r1 * h) * e
      z = ((a_t / a) * z - sv_t * np.expm1(h) * e
           - sv_t / (2 * r1) * np.expm1(h) * (_eps_vp(u, s1) - e))
    else:
      r1, r2 = 1 / 3, 2 / 3
      s1, s2 = _sigma_of_lambda(lam + r1 * h), _sigma_of_lambda(lam + r2 * h)
      (a1, sv1), (a2, sv2) = _vp_coeffs(s1), _vp_coeffs(s2)
      u1 = (a1 / a) * z - sv1 * np.expm1(r1 * h) * e
      d1 = _eps_vp(u1, s1) - e
      u2 = ((a2 / a) * z - sv2 * np.expm1(r2 * h) * e
            - (sv2 * r2 / r1) * (np.expm1(r2 * h) / (r2 * h) - 1) * d1)
      d2 = _eps_vp(u2, s2) - e
      z = ((a_t / a) * z - sv_t * np.expm1(h) * e
           - (sv_t / r2) * (np.expm1(h) / h - 1) * d2)
    x = z / a_t
  return x


def _np_dpm_solver_pp_2m(x, sigmas):
  """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2) in VP coordinates:
  `z' = (σ_vp'/σ_vp) z − α' (e^{−h} − 1) D̄`, `D̄ = (1 + 1/(2r)) D − 1/(2r) D_prev`,
  `r = h_prev / h`, first step `D̄ = D`; a last step to σ = 0 returns D."""
  d_prev, h_prev = None, None
  for s, s_next in zip(sigmas[:-1], sigmas[1:]):
    d = _np_gauss_x0(x, s)
    if s_next == 0:
      return d
    a, sv = _vp_coeffs(s)
    a_t, sv_t = _vp_coeffs(s_next)
    h = np.log(s) - np.log(s_next)          # λ_t − λ_s
    if d_prev is None:
      d_bar = d
    else:
      r = h_prev / h
      d_bar = (1 + 1 / (2 * r)) * d - 1 / (2 * r) * d_prev
    z = (sv_t / sv) * (a * x) - a_t * np.expm1(-h) * d_bar
    x = z / a_t
    d_prev, h_prev = d, h
  return x


def _np_euler_heun(x, sigmas, heun):
  """EDM's Algorithm 1/2 (deterministic): Euler on dx/dσ = (x − D)/σ, Heun's
  trapezoidal correction except on a last step to σ = 0."""
  for s, s_next in zip(sigmas[:-1], sigmas[1:]):
    d = (x - _np_gauss_x0(x, s)) / s
    x_new = x + (s_next - s) * d
    if heun and s_next > 0:
      d_next = (x_new - _np_gauss_x0(x_new, s_next)) / s_next
      x_new = x + (s_next - s) * 0.5 * (d + d_next)
    x = x_new
  return x


_TRANSCRIPTIONS = {
    ("euler", 0): lambda x, g: _np_euler_heun(x, g, False),
    ("heun", 0): lambda x, g: _np_euler_heun(x, g, True),
    ("dpm_solver", 1): lambda x, g: _np_dpm_solver(x, g, 1),
    ("dpm_solver", 2): lambda x, g: _np_dpm_solver(x, g, 2),
    ("dpm_solver", 3): lambda x, g: _np_dpm_solver(x, g, 3),
    ("dpm_solver_pp_2m", 0): _np_dpm_solver_pp_2m,
}


def _nonuniform_grids():
  edm = schedules.get_schedule("edm")
  vp = schedules.get_schedule("vp")
  return {
      "edm_rho7_min": schedules.sigma_grid(edm, 7, "edm", final="min"),
      "edm_rho3_zero": schedules.sigma_grid(edm, 7, "edm", final="zero", rho=3.0,
                                            sigma_max=20.0),
      "vp_quadratic_min": schedules.sigma_grid(vp, 6, "quadratic", final="min"),
      "vp_quadratic_zero": schedules.sigma_grid(vp, 6, "quadratic", final="zero"),
      "irregular": np.array([30.0, 11.0, 9.0, 2.5, 2.0, 0.3, 0.04]),
  }


@pytest.mark.parametrize("grid", sorted(_nonuniform_grids()))
@pytest.mark.parametrize("sampler,order", sorted(_TRANSCRIPTIONS))
def test_solver_matches_numpy_transcription_on_nonuniform_grids(x64, sampler, order, grid):
  """Non-uniform steps in log-SNR: a swapped step ratio or a wrong coefficient
  of any solver changes the result far beyond 1e-10."""
  g = _nonuniform_grids()[grid]
  h = np.diff(-np.log(g[g > 0]))
  assert np.ptp(h) > 0.1 * h.mean()       # the steps in λ are far from constant
  opts = {"order": order} if sampler == "dpm_solver" else {}
  out = samplers.sample(_gauss(), _Z, g, sampler=sampler, **opts).samples
  ref = _TRANSCRIPTIONS[(sampler, order)](_Z * g[0], g)
  np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


# Churn ---------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["euler", "heun"])
@pytest.mark.parametrize("use_x64", [False, True])
def test_zero_churn_gamma_is_exactly_the_deterministic_step(sampler, use_x64):
  """Churn enabled, but γ = 0 where σ is outside [s_tmin, s_tmax]: those steps
  are bit-identical to the deterministic solver (the compiled loop is jitted)."""
  with jax.enable_x64(use_x64):
    dtype = jnp.zeros(()).dtype
    data = np.random.default_rng(3).normal(size=(30, 3)).astype(dtype)
    den = denoiser.empirical(data)
    z = _Z.astype(dtype)
    g = schedules.edm_sigmas(12)
    key = jax.random.key(0)
    ref = samplers.sample(den, z, g, sampler=sampler, return_trajectory=True)
    # No σ of the grid in range: the whole run is deterministic.
    for lo, hi in ((100.0, 200.0), (0.0, 1e-3)):
      out = samplers.sample(den, z, g, sampler=sampler, key=key, churn=30.0,
                            s_tmin=lo, s_tmax=hi)
      np.testing.assert_array_equal(out.samples, ref.samples)
    # Churn only on σ ∈ [0.5, 5]: every step before it is untouched, then it differs.
    out = samplers.sample(den, z, g, sampler=sampler, key=key, churn=30.0, s_tmin=0.5,
                          s_tmax=5.0, return_trajectory=True)
    first = int(np.argmax(g <= 5.0))
    assert 0 < first < len(g) - 2
    np.testing.assert_array_equal(out.xs[:first + 1], ref.xs[:first + 1])
    assert np.abs(np.asarray(out.xs[first + 1]) - np.asarray(ref.xs[first + 1])).max() > 1e-3
    # s_noise = 0: churned σ̂ but no noise, the same for every key.
    a = samplers.sample(den, z, g, sampler=sampler, key=key, churn=5.0, s_noise=0.0)
    b = samplers.sample(den, z, g, sampler=sampler, key=jax.random.key(9), churn=5.0,
                        s_noise=0.0)
    np.testing.assert_array_equal(a.samples, b.samples)


# Dtypes and data on the sampling path ------------------------------------------

@pytest.mark.parametrize("sampler", ["heun", "euler", "dpm_solver", "dpm_solver_pp_2m",
                                     "ddim"])
def test_float16_sampling_on_the_default_edm_grid(sampler):
  """σ_min = 0.002 and pixel-scale data: float16 in, float16 out, the float32 answer."""
  rng = np.random.default_rng(4)
  g = schedules.edm_sigmas(18)
  for unit in (1.0, 300.0):
    data = (unit * rng.normal(size=(40, 8))).astype(np.float16)
    z = rng.normal(size=(16, 8)).astype(np.float16)
    out = samplers.sample(denoiser.empirical(data), z, g, sampler=sampler).samples
    ref = samplers.sample(denoiser.empirical(data.astype(np.float32)),
                          z.astype(np.float32), g, sampler=sampler).samples
    assert out.dtype == np.float16
    out = np.asarray(out, np.float32)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out / unit, np.asarray(ref) / unit, atol=2e-3)


def test_nan_data_is_rejected_on_the_sampling_path():
  data = np.random.default_rng(5).normal(size=(10, 3)).astype(np.float32)
  data[3, 1] = np.nan
  with pytest.raises(ValueError, match="`data` contains NaN"):
    samplers.sample(denoiser.empirical(data), _Z.astype(np.float32), [80.0, 1.0, 0.0])
  with pytest.raises(ValueError, match="`data` is empty"):
    denoiser.empirical(np.zeros((0, 3), np.float32))
  with pytest.raises(ValueError, match="orthonormal"):
    denoiser.molrg(2.0 * np.eye(3)[None, :, :2])
  with pytest.raises(ValueError, match="positive semi-definite"):
    denoiser.gaussian(np.zeros(3), -np.eye(3))


# Batched sampling: fixed-size padded batches, stacks of models, a mesh ------------

def _stack_of_two(data):
  """Two empirical denoisers (the data and its negative) as one stack, M = 2."""
  return denoiser.stack(denoiser.empirical, jnp.stack([data, -data]), name="empirical",
                        data_shape=data.shape[1:])


def test_sample_batched_equals_one_call():
  rng = np.random.default_rng(6)
  data = rng.normal(size=(15, 4)).astype(np.float32)
  z = rng.normal(size=(11, 4)).astype(np.float32)
  g = _grid(5, spacing="edm", final="zero")
  den = denoiser.empirical(data)
  one = samplers.sample(den, z, g, sampler="heun", return_trajectory=True)
  for batch_size in (None, 4, 11, 50):
    got = samplers.sample_batched(den, z, g, sampler="heun", batch_size=batch_size,
                                  return_trajectory=True)
    assert got.samples.shape == (11, 4) and got.xs.shape == (6, 11, 4)
    assert got.x0_hats.shape == (5, 11, 4)
    for a, b in zip(got[:3], one[:3]):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  # A stack of M models on the same noises: [M, B, ...], model m as if alone.
  stack = _stack_of_two(data)
  got = samplers.sample_batched(stack, z, g, sampler="heun", batch_size=4,
                                return_trajectory=True)
  assert got.samples.shape == (2, 11, 4) and got.xs.shape == (6, 2, 11, 4)
  np.testing.assert_allclose(got.samples[0], one.samples, rtol=1e-6, atol=1e-6)
  alone = samplers.sample(denoiser.empirical(-data), z, g, sampler="heun")
  np.testing.assert_allclose(got.samples[1], alone.samples, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="`batch_size`"):
    samplers.sample_batched(den, z, g, batch_size=0)


def test_sample_batched_stochastic_keys():
  """One call uses `key`, batch j of several `fold_in(key, j)`; the draws depend on it."""
  rng = np.random.default_rng(7)
  data = rng.normal(size=(6, 3)).astype(np.float32)
  z = rng.normal(size=(4, 3)).astype(np.float32)
  g = _grid(4, spacing="edm", final="zero")
  den, key = denoiser.empirical(data), jax.random.key(3)
  full = samplers.sample_batched(den, z, g, sampler="ddpm", key=key).samples
  np.testing.assert_array_equal(full, samplers.sample(den, z, g, sampler="ddpm", key=key).samples)
  halves = samplers.sample_batched(den, z, g, sampler="ddpm", key=key, batch_size=2).samples
  second = samplers.sample(den, z[2:], g, sampler="ddpm", key=jax.random.fold_in(key, 1))
  np.testing.assert_array_equal(halves[2:], second.samples)


def test_sample_batched_on_eight_devices_equals_one(mesh8):
  """The batch split over 8 fake devices: the samples of one device (B = 13 is padded)."""
  rng = np.random.default_rng(8)
  data = rng.normal(size=(20, 6)).astype(np.float32)
  z = rng.normal(size=(13, 6)).astype(np.float32)
  g = schedules.sigma_grid(schedules.get_schedule("edm"), 6, "edm")
  for den in (denoiser.empirical(data), _stack_of_two(data)):
    for batch_size in (None, 5):
      one = samplers.sample_batched(den, z, g, sampler="heun", batch_size=batch_size)
      many = samplers.sample_batched(den, z, g, sampler="heun", batch_size=batch_size,
                                     mesh=mesh8)
      assert many.samples.shape == one.samples.shape
      assert len(many.samples.sharding.device_set) == 8     # it ran on the mesh
      np.testing.assert_allclose(many.samples, one.samples, rtol=1e-5, atol=1e-5)
  # The batch and the data rows both split over the mesh.
  ref = samplers.sample(denoiser.empirical(data), z, g, sampler="heun").samples
  sharded = samplers.sample_batched(denoiser.empirical(data, mesh=mesh8), z, g,
                                    sampler="heun", mesh=mesh8)
  np.testing.assert_allclose(sharded.samples, ref, rtol=1e-5, atol=1e-5)
