"""Metrics against brute-force NumPy on small sets (docs/theory.md §5)."""

import jax
import numpy as np
import pytest

from oracles import np_ncc
from repro_jax.analysis import metrics


@pytest.fixture
def images():
  rng = np.random.default_rng(0)
  train = np.tanh(rng.normal(size=(40, 6, 6, 1)))
  copies = np.clip(train[:10] + 0.05 * rng.normal(size=(10, 6, 6, 1)), -1, 1)
  fresh = np.tanh(rng.normal(size=(10, 6, 6, 1)))
  return train, np.concatenate([copies, fresh])


def test_rp_and_mae_scores(images, x64):
  train, samples = images
  sim = metrics.get_similarity("ncc", 0.6)
  x1, x2 = samples, np.concatenate([train[:10], samples[10:][::-1]])
  s = np.diag(np_ncc(x1, x2))
  np.testing.assert_allclose(metrics.paired_similarity(x1, x2, sim), s, rtol=1e-10)
  assert float(metrics.rp_score(x1, x2, sim)) == pytest.approx((s > 0.6).mean())
  mae = np.abs((x1 + 1) * 127.5 - (x2 + 1) * 127.5).reshape(20, -1).mean(1)
  np.testing.assert_allclose(metrics.paired_mae(x1, x2), mae, rtol=1e-10)
  assert float(metrics.mae_score(x1, x2)) == pytest.approx((mae < 15).mean())
  assert float(metrics.mae_score(x1, x2, threshold=1e9)) == 1.0


def test_pairwise_matrices(images, x64):
  train, samples = images
  sim = metrics.get_similarity("ncc", 0.5)
  stack = np.stack([samples, samples[::-1], np.roll(samples, 1, axis=0)])
  rp, mean_sim = metrics.rp_matrix(stack, sim)
  for m in range(3):
    for n in range(3):
      s = np.diag(np_ncc(stack[m], stack[n]))
      assert float(rp[m, n]) == pytest.approx((s > 0.5).mean())
      assert float(mean_sim[m, n]) == pytest.approx(s.mean())
  mm = metrics.mae_matrix(stack)
  assert float(mm[0, 1]) == pytest.approx(float(metrics.mae_score(stack[0], stack[1])))
  np.testing.assert_allclose(np.diag(mm), 1.0)


@pytest.mark.parametrize("chunk", [7, 4096])
def test_gl_and_nearest(images, chunk, x64):
  train, samples = images
  sim = metrics.get_similarity("ncc", 0.6)
  s = np_ncc(samples, train)
  ms = metrics.max_similarity(samples, train, sim, chunk=chunk)
  np.testing.assert_allclose(ms.value, s.max(1), rtol=1e-10, atol=1e-12)
  np.testing.assert_array_equal(ms.index, s.argmax(1))
  assert float(metrics.gl_score(samples, train, sim, chunk=chunk)) == pytest.approx(
      1 - (s.max(1) > 0.6).mean())
  # The 10 copies are memorized, the 10 fresh samples are not.
  assert float(metrics.gl_score(samples[:10], train, sim)) == 0.0
  d = np.sqrt(((samples.reshape(20, 1, -1) - train.reshape(1, 40, -1)) ** 2).sum(-1))
  ds = np.sort(d, axis=1)
  assert float(metrics.l_generalize(samples, train, chunk=chunk)) == pytest.approx(ds[:, 0].mean())
  np.testing.assert_allclose(metrics.nearest_train_distance_ratio(samples, train, chunk=chunk),
                             ds[:, 0] / ds[:, 1], rtol=1e-9)


@pytest.mark.parametrize("num_samples", [20, 13])   # 13 does not divide 8: padded
def test_training_set_searches_on_eight_devices_equal_one(images, mesh8, num_samples):
  """The samples split over 8 fake devices, the training set replicated: one device's numbers."""
  train, samples = (a.astype(np.float32) for a in images)
  samples = samples[:num_samples]
  sim = metrics.get_similarity("ncc", 0.6)
  one = metrics.max_similarity(samples, train, sim, chunk=7)
  many = metrics.max_similarity(samples, train, sim, chunk=7, mesh=mesh8)
  assert many.value.shape == (num_samples,) and len(many.value.sharding.device_set) == 8
  np.testing.assert_allclose(many.value, one.value, rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(many.index, one.index)
  assert float(metrics.gl_score(samples, train, sim, chunk=7, mesh=mesh8)) == \
      float(metrics.gl_score(samples, train, sim, chunk=7))
  np.testing.assert_allclose(metrics.l_generalize(samples, train, chunk=7, mesh=mesh8),
                             metrics.l_generalize(samples, train, chunk=7), rtol=1e-6)
  np.testing.assert_allclose(
      metrics.nearest_train_distance_ratio(samples, train, chunk=7, mesh=mesh8),
      metrics.nearest_train_distance_ratio(samples, train, chunk=7), rtol=1e-6)


def test_conditional_rp(images, x64):
  _, samples = images
  sim = metrics.get_similarity("ncc", 0.6)
  x1c = samples.reshape(2, 10, 6, 6, 1)
  x2c = x1c[::-1]
  s = np.concatenate([np.diag(np_ncc(x1c[c], x2c[c])) for c in range(2)])
  assert float(metrics.rp_cond(x1c, x2c, sim)) == pytest.approx((s > 0.6).mean())
  x1 = samples[:10]
  best = np.max(np.stack([np.diag(np_ncc(x1, x2c[c])) for c in range(2)]), 0)
  assert float(metrics.rp_between(x1, x2c, sim)) == pytest.approx((best > 0.6).mean())


def test_calibration_separates_copies_from_distinct(x64):
  from sklearn.datasets import load_digits
  digits = load_digits().images[:300] / 8.0 - 1.0
  cal = metrics.calibrate(jax.random.PRNGKey(0), digits[..., None], "ncc", num_pairs=500)
  assert np.median(cal.perturbed) > cal.threshold > np.median(cal.distinct)
  assert cal.accuracy > 0.9
  # The threshold is where the balanced accuracy is maximal (brute force).
  grid = np.linspace(-1, 1, 2001)
  acc = 0.5 * ((cal.perturbed[None] > grid[:, None]).mean(1)
               + (cal.distinct[None] <= grid[:, None]).mean(1))
  assert 0.5 * ((cal.perturbed > cal.threshold).mean() + (cal.distinct <= cal.threshold).mean()) \
      >= acc.max() - 1e-12


def test_bad_input(images):
  train, samples = images
  with pytest.raises(ValueError, match="Unknown similarity"):
    metrics.get_similarity("sscd", 0.6)
  with pytest.raises(ValueError, match="threshold"):
    metrics.get_similarity("ncc", 3.0)
  with pytest.raises(ValueError, match="equal shapes"):
    metrics.rp_score(samples, samples[:3], metrics.get_similarity("ncc", 0.6))
