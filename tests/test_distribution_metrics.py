"""Fréchet distance: analytic Gaussians, SciPy's matrix square root, and the
bootstrap replicates against explicitly repeated samples."""

import jax
import numpy as np
import pytest
import scipy.linalg

from repro_jax.analysis import bootstrap
from repro_jax.analysis import distribution_metrics as dm


def _fit(mean, cov):
  cov = np.asarray(cov, np.float64)
  return dm.GaussianFit(np.asarray(mean, np.float64), cov, np.real(scipy.linalg.sqrtm(cov)))


def _spd(rng, d):
  a = rng.normal(size=(d, d))
  return a @ a.T / d + 0.1 * np.eye(d)


def test_commuting_covariances_have_the_closed_form():
  rng = np.random.default_rng(0)
  q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
  a, b = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
  m1, m2 = rng.normal(size=5), rng.normal(size=5)
  got = dm.frechet_distance(m1, (q * a) @ q.T, _fit(m2, (q * b) @ q.T))
  want = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  np.testing.assert_allclose(got, want, rtol=1e-10)


def test_general_covariances_match_scipy_sqrtm_and_batch():
  rng = np.random.default_rng(1)
  s1, s2, s3 = _spd(rng, 6), _spd(rng, 6), _spd(rng, 6)
  m1, m2 = rng.normal(size=6), rng.normal(size=6)
  ref = dm.gaussian_fit(rng.multivariate_normal(m2, s2, size=50))
  fit = _fit(ref.mean, ref.cov)
  np.testing.assert_allclose(ref.cov_sqrt, fit.cov_sqrt, atol=1e-10)
  for s in (s1, s3):
    want = (np.sum((m1 - ref.mean) ** 2) + np.trace(s) + np.trace(ref.cov)
            - 2.0 * np.trace(np.real(scipy.linalg.sqrtm(s @ ref.cov))))
    np.testing.assert_allclose(dm.frechet_distance(m1, s, ref), want, rtol=1e-9)
  batch = dm.frechet_distance(np.stack([m1, m1]), np.stack([s1, s3]), ref)
  assert batch.shape == (2,)
  np.testing.assert_allclose(batch[1], dm.frechet_distance(m1, s3, ref), rtol=1e-12)
  assert abs(dm.frechet_distance(ref.mean, ref.cov, ref)) < 1e-9


def test_gaussian_fit_is_numpy_mean_and_cov():
  x = np.random.default_rng(2).normal(size=(40, 3))
  fit = dm.gaussian_fit(x)
  np.testing.assert_allclose(fit.mean, x.mean(0))
  np.testing.assert_allclose(fit.cov, np.cov(x, rowvar=False))


def test_bootstrap_replicates_equal_the_repeated_samples():
  rng = np.random.default_rng(3)
  k, b, f = 3, 20, 4
  feats = rng.normal(size=(k, b, f)).astype(np.float32)
  feats[1] += 0.5
  ref = dm.gaussian_fit(rng.normal(size=(60, f)))
  res = bootstrap.draw(jax.random.key(0), b, np.zeros(k), 7)
  value, reps = dm.frechet_bootstrap(feats, ref, res.noise, res.models, chunk=3)
  pooled = dm.gaussian_fit(feats.reshape(k * b, f))
  np.testing.assert_allclose(value, dm.frechet_distance(pooled.mean, pooled.cov, ref),
                             rtol=1e-6)
  assert reps.shape == (7,)
  nc, mc = np.asarray(res.noise), np.asarray(res.models)
  for r in range(7):
    rows = [np.repeat(feats[i], nc[r].astype(int), axis=0) for i in range(k)
            for _ in range(int(mc[r, i]))]
    fit = dm.gaussian_fit(np.concatenate(rows))
    np.testing.assert_allclose(reps[r], dm.frechet_distance(fit.mean, fit.cov, ref),
                               rtol=2e-4)
  # All counts one: every replicate is the point value.
  _, ones = dm.frechet_bootstrap(feats, ref, np.ones((2, b)), np.ones((2, k)))
  np.testing.assert_allclose(ones, value, rtol=1e-4)


def test_bad_input():
  ref = dm.gaussian_fit(np.random.default_rng(4).normal(size=(10, 3)))
  with pytest.raises(ValueError, match="2 rows"):
    dm.gaussian_fit(np.zeros((1, 3)))
  with pytest.raises(ValueError, match="mismatch"):
    dm.frechet_distance(np.zeros(4), np.eye(4), ref)
  with pytest.raises(ValueError, match=r"\[K, B, F\]"):
    dm.frechet_bootstrap(np.zeros((5, 3)), ref, np.ones((2, 5)), np.ones((2, 1)))
  with pytest.raises(ValueError, match="counts"):
    dm.frechet_bootstrap(np.zeros((2, 5, 3)), ref, np.ones((2, 4)), np.ones((2, 2)))
