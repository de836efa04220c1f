"""Bootstrap intervals and threshold curves against slow loops and known truths."""

import math

import jax
import numpy as np
import pytest

from repro_jax.analysis import bootstrap
from repro_jax.analysis import score_curves


# Oracles ------------------------------------------------------------------------

def loop_pair_replicates(values, noise_idx, row_idx, col_idx, mask):
  """Replicate r: every (row draw, column draw) whose models the mask selects,
  each weighted by the mask and scored by its mean over the drawn noises."""
  out = []
  for r in range(noise_idx.shape[0]):
    num = den = 0.0
    for a in row_idx[r]:
      for c in col_idx[r]:
        w = mask[a, c]
        if w:
          num += w * np.mean([values[a, c, b] for b in noise_idx[r]])
          den += w
    out.append(num / den if den else np.nan)
  return np.array(out)


def loop_model_replicates(values, noise_idx, model_idx, select):
  out = []
  for r in range(noise_idx.shape[0]):
    num = den = 0.0
    for a in model_idx[r]:
      if select[a]:
        num += select[a] * np.mean([values[a, b] for b in noise_idx[r]])
        den += select[a]
    out.append(num / den if den else np.nan)
  return np.array(out)


def _data(seed=0, k=5, b=12):
  rng = np.random.default_rng(seed)
  sim = rng.uniform(0.5, 1.0, size=(k, k, b)).astype(np.float32)
  return (sim + sim.transpose(1, 0, 2)) / 2


# Against the loops ----------------------------------------------------------------

def test_pair_replicates_match_loop():
  values = _data()
  strata = np.array([0, 0, 0, 1, 1])
  key = jax.random.key(3)
  k_noise, k_model = jax.random.split(key)
  n_idx = np.asarray(bootstrap.noise_indices(k_noise, 12, 40))
  m_idx = np.asarray(bootstrap.model_indices(k_model, strata, 40))
  res = bootstrap.from_indices(n_idx, m_idx, 12, 5)
  means = bootstrap.noise_means(values, res)
  for mask in (bootstrap.pair_mask(strata == 0, strata == 0),        # within a cell
               bootstrap.pair_mask(strata == 0, strata == 1),        # across cells
               bootstrap.pair_mask(np.ones(5), np.ones(5))):
    got = np.asarray(bootstrap.pair_mean(means, mask, res.models, res.models))
    want = loop_pair_replicates(values, n_idx, m_idx, m_idx, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)
  # `draw` is `from_indices` of these draws.
  drawn = bootstrap.draw(key, 12, strata, 40)
  np.testing.assert_array_equal(drawn.noise, res.noise)
  np.testing.assert_array_equal(drawn.models, res.models)


def test_rectangular_pairs_match_loop():
  rng = np.random.default_rng(1)
  values = rng.uniform(size=(3, 2, 10))                 # rows: arch A, cols: arch B
  est = bootstrap.pair_estimate(values, jax.random.key(0), strata=[0, 0, 0],
                                col_strata=[5, 5], num_resamples=30, level=0.9)
  # The same draws, by hand: rows labelled 0, columns 1 (after relabelling).
  res = bootstrap.draw(jax.random.key(0), 10, [0, 0, 0, 1, 1], 30)
  k_noise, k_model = jax.random.split(jax.random.key(0))
  n_idx = np.asarray(bootstrap.noise_indices(k_noise, 10, 30))
  m_idx = np.asarray(bootstrap.model_indices(k_model, [0, 0, 0, 1, 1], 30))
  want = loop_pair_replicates(values, n_idx, m_idx[:, :3], m_idx[:, 3:] - 3, np.ones((3, 2)))
  lo, hi = np.quantile(want, [0.05, 0.95])
  assert est.value == pytest.approx(values.mean())
  assert (est.lo, est.hi) == pytest.approx((lo, hi), rel=1e-5)
  assert est.kept == 1.0
  assert res.models[:, 3:].sum(1).tolist() == [2.0] * 30    # columns stay columns


def test_model_replicates_and_gl_match_loop():
  rng = np.random.default_rng(2)
  max_sim = rng.uniform(0.8, 1.0, size=(4, 15)).astype(np.float32)
  strata = np.array([0, 0, 1, 1])
  select = np.array([1, 1, 0, 0])
  est = bootstrap.gl_estimate(max_sim, 0.9, jax.random.key(5), strata=strata, select=select,
                              num_resamples=50)
  k_noise, k_model = jax.random.split(jax.random.key(5))
  n_idx = np.asarray(bootstrap.noise_indices(k_noise, 15, 50))
  m_idx = np.asarray(bootstrap.model_indices(k_model, strata, 50))
  want = loop_model_replicates((max_sim <= 0.9).astype(float), n_idx, m_idx, select)
  assert est.value == pytest.approx(1 - (max_sim[:2] > 0.9).mean())
  lo, hi = np.quantile(want, [0.025, 0.975])
  assert (est.lo, est.hi) == pytest.approx((lo, hi), rel=1e-5)


def test_models_drawn_within_their_strata():
  strata = np.array([3, 1, 3, 7, 1, 3])
  idx = np.asarray(bootstrap.model_indices(jax.random.key(0), strata, 2000))
  assert idx.shape == (2000, 6)
  np.testing.assert_array_equal(strata[idx], np.broadcast_to(strata, idx.shape))
  # Uniform within a stratum: model 0's slot holds 0, 2, 5 a third of the time each.
  freq = np.bincount(idx[:, 0], minlength=6)[[0, 2, 5]] / 2000
  np.testing.assert_allclose(freq, 1 / 3, atol=0.04)
  assert np.all(idx[:, 3] == 3)                                  # alone in its stratum
  n = bootstrap.draw(jax.random.key(1), 9, strata, 7).noise
  np.testing.assert_array_equal(np.asarray(n).sum(1), 9)


def test_same_key_same_interval_and_other_key_differs():
  values = _data(seed=4, k=4, b=30) > 0.75
  kw = dict(strata=[0, 0, 1, 1], mask=bootstrap.pair_mask(np.ones(4), np.ones(4)),
            num_resamples=200)
  a = bootstrap.pair_estimate(values, jax.random.key(0), **kw)
  assert a == bootstrap.pair_estimate(values, jax.random.key(0), **kw)
  assert a != bootstrap.pair_estimate(values, jax.random.key(1), **kw)
  assert a.lo <= a.value <= a.hi


# Coverage on data with a known mean ----------------------------------------------------

def test_coverage_noise_bootstrap_bernoulli():
  """One pair of fixed models, B Bernoulli(p) noises: the 95 % interval covers p in
  95 % ± 3 % of 1000 data sets (Monte Carlo s.e. 0.7 %)."""
  p, b, d = 0.3, 200, 1000
  rng = np.random.default_rng(0)
  x = (rng.uniform(size=(d, b)) < p).astype(np.float32)
  values = np.zeros((d, 2, 2, b), np.float32)
  values[:, 0, 1] = values[:, 1, 0] = x
  res = bootstrap.draw(jax.random.key(0), b, [0, 1], 1000)
  reps = bootstrap.pair_mean(bootstrap.noise_means(values, res),
                             bootstrap.pair_mask([1, 1], [1, 1]), res.models, res.models)
  lo, hi = bootstrap.interval(reps, 0.95)
  cover = np.mean((lo <= p) & (p <= hi))
  assert abs(cover - 0.95) < 0.03, cover


def test_coverage_seeds_and_noises_crossed():
  """K exchangeable seeds × B shared noises with seed and noise effects,
  v = 1[u_k + w_b + e_kb > c]: resampling both (a pigeonhole bootstrap, slightly
  conservative for crossed designs) covers the population mean in 93–99 %."""
  k, b, d, su, sw, c = 30, 60, 500, 0.5, 0.5, 0.4
  p = 0.5 * math.erfc(c / math.sqrt(1 + su**2 + sw**2) / math.sqrt(2))
  rng = np.random.default_rng(1)
  z = (su * rng.normal(size=(d, k, 1)) + sw * rng.normal(size=(d, 1, b))
       + rng.normal(size=(d, k, b)))
  values = (z > c).astype(np.float32)
  res = bootstrap.draw(jax.random.key(2), b, np.zeros(k), 1000)
  reps = bootstrap.model_mean(bootstrap.noise_means(values, res), None, res.models)
  lo, hi = bootstrap.interval(reps, 0.95)
  cover = np.mean((lo <= p) & (p <= hi))
  assert 0.93 <= cover <= 0.99, cover
  # Noises only (seeds fixed) misses the seed spread and undercovers.
  fixed = bootstrap.model_mean(bootstrap.noise_means(values, res), None, None)
  lo, hi = bootstrap.interval(fixed, 0.95)
  assert np.mean((lo <= p) & (p <= hi)) < 0.9


# Degenerate cases --------------------------------------------------------------------

def test_one_seed_per_cell():
  values = _data(seed=5, k=2, b=20) > 0.75               # two cells of one model each
  within = bootstrap.pair_estimate(values, jax.random.key(0), strata=[0, 1],
                                   mask=bootstrap.pair_mask([1, 0], [1, 0]))
  assert math.isnan(within.value) and math.isnan(within.lo) and math.isnan(within.hi)
  assert within.kept == 0.0
  across = bootstrap.pair_estimate(values, jax.random.key(0), strata=[0, 1],
                                   mask=bootstrap.pair_mask([1, 0], [0, 1], distinct=False))
  noise_only = bootstrap.pair_estimate(values, jax.random.key(0), strata=None,
                                       mask=bootstrap.pair_mask([1, 0], [0, 1], distinct=False))
  assert across == noise_only and across.kept == 1.0     # model draws are the identity


def test_two_seeds_drop_half_the_replicates():
  values = _data(seed=6, k=2, b=20) > 0.75
  est = bootstrap.pair_estimate(values, jax.random.key(0), strata=[0, 0],
                                mask=bootstrap.pair_mask([1, 1], [1, 1]), num_resamples=2000)
  assert 0.45 < est.kept < 0.55
  noise_only = bootstrap.pair_estimate(values, jax.random.key(0), strata=[0, 1],
                                       mask=bootstrap.pair_mask([1, 1], [1, 1]),
                                       num_resamples=2000)
  assert est.value == noise_only.value
  assert est.hi - est.lo == pytest.approx(noise_only.hi - noise_only.lo, abs=0.03)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_all_equal_values_give_a_point_interval(fill):
  values = np.full((3, 3, 16), fill, np.float32)
  est = bootstrap.pair_estimate(values, jax.random.key(0), strata=[0, 0, 0],
                                mask=bootstrap.pair_mask(np.ones(3), np.ones(3)))
  assert est.value == est.lo == est.hi == fill
  gl = bootstrap.model_estimate(values[0], jax.random.key(0), strata=[0, 0, 0])
  assert gl.value == gl.lo == gl.hi == fill


def test_batched_thresholds_and_errors():
  sim = _data(seed=7, k=3, b=25)
  ts = np.array([0.6, 0.75, 0.9], np.float32)
  mask = bootstrap.pair_mask(np.ones(3), np.ones(3))
  band = score_curves.band_rp(sim, ts, jax.random.key(0), strata=[0, 0, 0], mask=mask,
                              num_resamples=100)
  for t, v, lo, hi in zip(ts, band.value, band.lo, band.hi):
    one = bootstrap.rp_estimate(sim, t, jax.random.key(0), strata=[0, 0, 0], mask=mask,
                                num_resamples=100)
    assert (one.value, one.lo, one.hi) == pytest.approx((v, lo, hi))
  assert np.all(np.diff(band.value) <= 0)                 # RP falls as the bar rises
  with pytest.raises(ValueError, match="col_strata"):
    bootstrap.pair_estimate(np.zeros((2, 3, 4)), jax.random.key(0))
  with pytest.raises(ValueError, match="level"):
    bootstrap.interval(np.zeros(5), 1.0)


# Threshold curves ----------------------------------------------------------------------

def test_curves_against_brute_force():
  rng = np.random.default_rng(8)
  sim = np.round(rng.uniform(0.5, 1.0, size=(3, 3, 40)), 2).astype(np.float32)
  ts = np.array([0.5, 0.7, 0.73, 0.9, 0.99, 1.0], np.float32)   # some equal to values
  mask = bootstrap.pair_mask([1, 1, 0], [1, 1, 0])
  ex = score_curves.exceedance(sim, ts)
  want = (sim[..., None] > ts).mean(2)
  np.testing.assert_allclose(ex, want)
  np.testing.assert_allclose(score_curves.rp_curve(sim, ts, mask),
                             [bootstrap.point_pair(sim > t, mask) for t in ts])
  np.testing.assert_allclose(score_curves.below(sim, ts), (sim[..., None] < ts).mean(2))
  np.testing.assert_allclose(score_curves.mae_curve(sim, ts, mask),
                             [bootstrap.point_pair(sim < t, mask) for t in ts])
  ms = sim[0]
  np.testing.assert_allclose(score_curves.gl_curve(ms, ts, [1, 0, 1]),
                             [1 - (ms[[0, 2]] > t).mean() for t in ts])
  assert np.isnan(score_curves.rp_curve(sim, ts, np.zeros((3, 3)))).all()
  assert score_curves.pooled(sim, mask).shape == (2 * 40,)
  np.testing.assert_allclose(score_curves.quantiles(sim[0, 1], [0.5]), np.median(sim[0, 1]))
