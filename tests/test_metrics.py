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


def test_nearest_train_finds_the_copied_image_at_distance_zero():
  """Index and exact distance against brute force; an exact copy reads 0, not the
  round-off floor (~sqrt(eps)·‖x‖) of the matmul-form search."""
  rng = np.random.default_rng(1)
  train = (10.0 * rng.normal(size=(50, 6, 6, 1))).astype(np.float32)   # large norms
  samples = np.concatenate([train[[7, 3, 49]], rng.normal(size=(4, 6, 6, 1))]).astype(np.float32)
  d = np.linalg.norm((samples[:, None] - train[None]).reshape(7, 50, -1), axis=-1)
  for chunk in (7, 4096):
    nn = metrics.nearest_train(samples, train, chunk=chunk)
    np.testing.assert_array_equal(nn.index, d.argmin(1))
    np.testing.assert_allclose(nn.distance, d.min(1), rtol=1e-5)
    np.testing.assert_array_equal(nn.distance[:3], 0.0)
  with pytest.raises(ValueError, match="same shape"):
    metrics.nearest_train(samples, train[..., :4, :])
  with pytest.raises(ValueError, match="`samples` contains NaN"):
    metrics.nearest_train(_nan(samples), train)


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
  many, one = (metrics.nearest_train(samples, train, chunk=7, mesh=m) for m in (mesh8, None))
  np.testing.assert_array_equal(many.index, one.index)
  np.testing.assert_allclose(many.distance, one.distance, rtol=1e-6)


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


def test_threshold_is_strict_at_the_boundary(images):
  """A similarity exactly at the threshold does not count (`sim > threshold`);
  an MAE exactly at the threshold does not count either (`MAE < threshold`)."""
  train, samples = images
  x1, x2 = samples, np.concatenate([train[:10], samples[10:][::-1]])
  s = np.asarray(metrics.paired_similarity(x1, x2, metrics.get_similarity("ncc", 0.0)))
  for b in (0, 3, 12):                       # the threshold at a copy's and a fresh pair's value
    sim = metrics.Similarity("ncc", metrics.ncc_descriptor, float(s[b]))
    rp = float(metrics.rp_score(x1, x2, sim))
    assert rp == pytest.approx(np.mean(s > s[b]))
    assert rp < np.mean(s >= s[b])           # the pair at the boundary is left out
  # GL: the threshold at one sample's best similarity; that sample is not a copy.
  best = np.asarray(metrics.max_similarity(samples, train, metrics.get_similarity("ncc", 0.0))
                    .value)
  sim = metrics.Similarity("ncc", metrics.ncc_descriptor, float(best[2]))
  gl = float(metrics.gl_score(samples, train, sim))
  assert gl == pytest.approx(1 - np.mean(best > best[2]))
  assert gl > 1 - np.mean(best >= best[2])
  # MAE: the threshold at one pair's MAE.
  mae = np.asarray(metrics.paired_mae(x1, x2))
  score = float(metrics.mae_score(x1, x2, threshold=float(mae[4])))
  assert score == pytest.approx(np.mean(mae < mae[4])) and score < np.mean(mae <= mae[4])


def _nan(a):
  a = np.array(a, dtype=np.float64)
  a.reshape(-1)[5] = np.nan
  return a


@pytest.mark.parametrize("case", [
    "rp_nan", "mae_nan", "paired_similarity_inf", "gl_nan_train", "gl_nan_samples",
    "rp_matrix_nan", "mae_matrix_nan", "l_generalize_nan", "ratio_nan",
    "rp_between_nan", "rp_cond_nan", "calibrate_nan",
    "gl_chunk_0", "max_similarity_chunk_0", "l_generalize_chunk_0", "ratio_chunk_0",
    "gl_d_mismatch", "l_generalize_d_mismatch", "gl_empty_train", "rp_empty",
    "ratio_one_train", "rp_between_shape", "max_similarity_scalar",
])
def test_bad_metric_input_raises_value_error(images, case):
  train, samples = images
  sim = metrics.get_similarity("ncc", 0.6)
  stack = np.stack([samples, samples[::-1]])
  calls = {
      "rp_nan": (lambda: metrics.rp_score(_nan(samples), samples, sim), "`x1` contains NaN"),
      "mae_nan": (lambda: metrics.mae_score(_nan(samples), samples), "`x1` contains NaN"),
      "paired_similarity_inf": (lambda: metrics.paired_similarity(
          samples, np.where(samples > 0.5, np.inf, samples), sim), "`x2` contains NaN or inf"),
      "gl_nan_train": (lambda: metrics.gl_score(samples, _nan(train), sim),
                       "`train` contains NaN"),
      "gl_nan_samples": (lambda: metrics.gl_score(_nan(samples), train, sim),
                         "`samples` contains NaN"),
      "rp_matrix_nan": (lambda: metrics.rp_matrix(_nan(stack), sim), "`samples` contains NaN"),
      "mae_matrix_nan": (lambda: metrics.mae_matrix(_nan(stack)), "`samples` contains NaN"),
      "l_generalize_nan": (lambda: metrics.l_generalize(samples, _nan(train)),
                           "`train` contains NaN"),
      "ratio_nan": (lambda: metrics.nearest_train_distance_ratio(_nan(samples), train),
                    "`samples` contains NaN"),
      "rp_between_nan": (lambda: metrics.rp_between(samples, _nan(stack), sim),
                         "`x2c` contains NaN"),
      "rp_cond_nan": (lambda: metrics.rp_cond(stack, _nan(stack), sim), "`x2` contains NaN"),
      "calibrate_nan": (lambda: metrics.calibrate(jax.random.PRNGKey(0), _nan(train)),
                        "`images` contains NaN"),
      "gl_chunk_0": (lambda: metrics.gl_score(samples, train, sim, chunk=0), "`chunk`"),
      "max_similarity_chunk_0": (lambda: metrics.max_similarity(samples, train, sim, chunk=0),
                                 "`chunk`"),
      "l_generalize_chunk_0": (lambda: metrics.l_generalize(samples, train, chunk=0),
                               "`chunk`"),
      "ratio_chunk_0": (lambda: metrics.nearest_train_distance_ratio(samples, train, chunk=0),
                        "`chunk`"),
      "gl_d_mismatch": (lambda: metrics.gl_score(samples, train[:, :5], sim),
                        "same shape"),
      "l_generalize_d_mismatch": (lambda: metrics.l_generalize(samples, train[..., :4, :]),
                                  "same shape"),
      "gl_empty_train": (lambda: metrics.gl_score(samples, train[:0], sim), "`train` is empty"),
      "rp_empty": (lambda: metrics.rp_score(samples[:0], samples[:0], sim), "`x1` is empty"),
      "ratio_one_train": (lambda: metrics.nearest_train_distance_ratio(samples, train[:1]),
                          "at least 2"),
      "rp_between_shape": (lambda: metrics.rp_between(samples, stack[:, :3], sim), "`x2c`"),
      "max_similarity_scalar": (lambda: metrics.max_similarity(np.float32(1.0), train, sim),
                                "`samples` must have shape"),
  }
  call, match = calls[case]
  with pytest.raises(ValueError, match=match):
    call()


def test_lists_and_integer_pixels_are_accepted(images):
  """Nested lists and integer images behave as the float arrays they hold."""
  train, samples = images
  sim = metrics.get_similarity("ncc", 0.6)
  ints = np.round(samples * 100).astype(np.int32)
  ref = float(metrics.rp_score(ints / 1.0, ints[::-1] / 1.0, sim))
  assert float(metrics.rp_score(ints, ints[::-1], sim)) == pytest.approx(ref)
  assert float(metrics.rp_score(ints.tolist(), ints[::-1].tolist(), sim)) == pytest.approx(ref)
  assert float(metrics.gl_score(samples.tolist(), train.tolist(), sim)) == pytest.approx(
      float(metrics.gl_score(samples, train, sim)))
  assert float(metrics.mae_score(ints.tolist(), ints.tolist())) == 1.0
  x1c = samples.reshape(2, 10, 6, 6, 1)
  assert float(metrics.rp_cond(x1c.tolist(), x1c[::-1].tolist(), sim)) == pytest.approx(
      float(metrics.rp_cond(x1c, x1c[::-1], sim)))
