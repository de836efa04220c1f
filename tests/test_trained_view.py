"""The optimization view's trained-denoiser part (`_trained_view`): its weighted
statistics against brute force on repeated samples, and its verdict logic."""

import jax
import numpy as np

from repro_jax.analysis import bootstrap
from repro_jax.analysis import distribution_metrics as dm
from repro_jax.closed_form import denoisers
from repro_jax.studies import _trained_view as tv
from repro_jax.studies import runner


def test_weighted_quantile_is_the_quantile_of_repeated_values():
  rng = np.random.default_rng(0)
  v = rng.normal(size=50)
  w = rng.integers(0, 4, size=50)
  rep = np.sort(np.repeat(v, w))
  for q in (0.01, 0.3, 0.5, 0.95, 0.99):
    # The smallest value whose cumulative count reaches q · total.
    want = rep[max(int(np.ceil(q * len(rep))) - 1, 0)]
    assert tv.weighted_quantile(v, w, q) == want
  assert np.isnan(tv.weighted_quantile(v, np.zeros(50), 0.5))


def test_quantile_replicates_are_the_weighted_quantile_of_each_replicate():
  rng = np.random.default_rng(3)
  values = np.round(rng.normal(size=(4, 3, 20)), 1)       # ties
  values[0, 1, :3] = np.nan
  mask = rng.random(values.shape) < 0.7
  res = bootstrap.draw(jax.random.key(4), 20, np.zeros(3, np.int64), 30)
  value, reps = tv._quantile_reps(values, mask, res, 0.9)
  ok = (mask & np.isfinite(values)).astype(float)
  assert value == tv.weighted_quantile(values, ok, 0.9)
  for r, w in enumerate(tv._replicate_weights(res)):
    want = tv.weighted_quantile(values, ok * w[None], 0.9)
    assert reps[r] == want or (np.isnan(reps[r]) and np.isnan(want))


def test_cov_bootstrap_replicates_are_the_error_of_the_resampled_cloud():
  bases = np.asarray(denoisers.random_molrg_bases(jax.random.key(0), 12, 2, 3))
  x, _ = denoisers.sample_molrg(jax.random.key(1), bases, 3 * 40)
  x = np.asarray(x).reshape(3, 40, 12) * np.array([1.0, 1.3, 0.8])[:, None, None]
  res = bootstrap.draw(jax.random.key(2), 40, np.zeros(3, np.int64), 5)
  value, reps = tv.cov_bootstrap(x, bases, res)
  np.testing.assert_allclose(value, float(dm.covariance_error(x.reshape(-1, 12), bases).mean),
                             rtol=1e-5)
  w = tv._replicate_weights(res).astype(np.int64)            # [R, M, B]
  for r in range(5):
    cloud = np.repeat(x.reshape(-1, 12), w[r].ravel(), axis=0)
    np.testing.assert_allclose(reps[r], float(dm.covariance_error(cloud, bases).mean),
                               rtol=1e-4)


def _est(value, lo, hi, fraction=1.0):
  return {"value": value, "ci": [lo, hi], "fraction": fraction}


def _subject(nu_hi, eta_hi, ge_hi, ll_hi, trained=True):
  diag = dict(nu=_est(1.5, 1.4, nu_hi), eta_95=_est(0.5, 0.4, eta_hi),
              eta_median=_est(0.1, 0.05, 0.2))
  return dict(kind="molrg", trained=trained, diagnostics=diag, contrasts=dict(
      ge_minus_ddim={"SW2": {"5": _est(ge_hi - 0.1, ge_hi - 0.2, ge_hi)}},
      log_linear_minus={"SW2": {"leading": _est(ll_hi - 0.1, ll_hi - 0.2, ll_hi)}}))


def test_verdicts_follow_the_declared_criteria():
  s = runner.study_settings("optimization_view", "smoke")
  ok = _subject(s.max_nu - 0.1, s.max_eta_95 - 0.1, -0.01, -0.01)
  bad = _subject(s.max_nu + 0.1, s.max_eta_95 + 0.1, 0.01, 0.2)
  # An exact subject that fails everything does not count: verdicts are on trained ones.
  exact_bad = dict(bad, trained=False)
  for subjects, want in (({"a": ok, "x": exact_bad}, ["reproduced"] * 4),
                         ({"a": ok, "b": bad}, ["partly", "partly", "partly",
                                                "not reproduced"]),
                         ({"b": bad}, ["not reproduced"] * 4)):
    got = [v.verdict for v in tv.verdicts(s, {"subjects": subjects})]
    assert got == want, (list(subjects), got)
  # Log-linear ahead by value but not significantly everywhere: partly.
  close = _subject(1.0, 0.1, -0.01, 0.05)
  close["contrasts"]["log_linear_minus"]["SW2"]["leading"] = _est(-0.01, -0.03, 0.01)
  assert tv.verdicts(s, {"subjects": {"c": close}})[3].verdict == "partly"


def test_trajectory_eta_of_one_subspace_is_the_posterior_shrinkage():
  """For K = 1 the posterior mean is U Uᵀx/(1 + σ²) and proj_K(x) = U Uᵀx, so
  η_t = (σ²/(1 + σ²)) ‖U Uᵀx_t‖ / ‖(I − U Uᵀ) x_t‖ along the same trajectory."""
  from repro_jax import samplers
  from repro_jax.diffusion import denoiser
  from repro_jax.studies import optimization_view as ov
  bases = np.asarray(denoisers.random_molrg_bases(jax.random.key(0), 10, 1, 3))
  sub = tv.Subject("one", "molrg", denoiser.molrg(bases), 1, bases, (10,), False)
  sig = ov.schedule_grid("log_linear", 8, final="min")
  z = jax.random.normal(jax.random.key(1), (16, 10))
  got = tv.trajectories(sub, sig, z)
  xs = np.asarray(samplers.sample_batched(sub.den, z, sig, sampler="sigma_form",
                                          return_trajectory=True).xs, np.float64)
  u = bases[0].astype(np.float64)
  on = np.linalg.norm(xs @ u, axis=-1)                         # ‖Uᵀx‖ = ‖U Uᵀx‖
  off = np.linalg.norm(xs - (xs @ u) @ u.T, axis=-1)           # dist_K(x)
  s2 = np.asarray(sig, np.float64)[:, None] ** 2
  np.testing.assert_allclose(got["eta"][:, 0], (s2 / (1 + s2) * on / off)[:-1], rtol=2e-3)
  np.testing.assert_allclose(got["ratio"][:, 0],
                             off / (np.sqrt(10) * np.asarray(sig)[:, None]), rtol=2e-3)
  assert got["eta_shrink"].shape == (len(sig) - 1, 1, 16)
