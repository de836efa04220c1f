"""Bootstrap confidence intervals over noises and seeds for RP, GL and MAE scores.

The scores of the reproducibility studies are means of per-noise quantities:
RP between models i and j is the mean over the B shared noises of
`1[sim_b(i, j) > t]`, GL of model i the mean of `1[max_n sim_b(i, y_n) <= t]`,
the MAE score the mean of `1[MAE_b(i, j) < t]`.  Such a score varies with two
draws: the noises (B of them, shared by every model: the data are paired) and
the training seeds (the models of one cell are exchangeable draws).  One
bootstrap replicate redraws both:

- the noises: B indices with replacement, the same for every model, so pairs
  stay paired (`Resample.noise [R, B]`: how often each noise was drawn);
- the models: each model is replaced by a model drawn with replacement from its
  own stratum (e.g. the seeds of one width and N), so a seed moves with all its
  noises: a cluster bootstrap (`Resample.models [R, K]`: how often each model
  was drawn).

A pair statistic is the weighted mean, over pairs `(i, j)` selected by a mask,
of the noise mean `m_r(i, j) = Σ_b n_rb v_b(i, j) / B`, with weights
`mask(i, j) · c_ri · c_rj` (`pair_mean`).  A zero on the mask's diagonal keeps a
model from being paired with a copy of itself; a replicate left with no pair
(every draw of a cell hit the same seed) has no value (NaN) and is dropped, i.e.
the bootstrap is conditioned on drawing two distinct models.  A model statistic
(GL) is the weighted mean over selected models with weights `c_ri`
(`model_mean`).  Intervals are percentile intervals at `level` over the kept
replicates (`interval`); `Estimate.kept` is the fraction kept.

Seeds and noises are crossed (every seed sees every noise), so resampling both is
Owen's (2007) pigeonhole bootstrap: mildly conservative, never blind to either
source (tests/test_bootstrap.py checks the coverage).

Between two sets of models (rows = models of architecture A, columns = models of
architecture B; values `[I, J, B]`), the rows and the columns are resampled
within their own strata and the noises jointly (`pair_estimate(...,
col_strata=...)`).

Degenerate cases (tested in tests/test_bootstrap.py):
- one model per stratum: model resampling is the identity; the interval is over
  the noises only.  A pair statistic within a one-model stratum has no pair:
  value and interval are NaN.
- two models per stratum: within-stratum pair statistics have one pair; the
  replicates that draw the same seed twice (half of them) are dropped, so the
  interval is again over the noises only.  Two seeds cannot measure the spread
  between seeds; the interval then understates it.
- all-equal per-noise values: every replicate equals the point value and the
  interval is `[v, v]`.

Shapes: `R` resamples, `B` noises, `K` models (`I`, `J` rows and columns of a
pair matrix); leading batch dimensions `...` (e.g. thresholds `T`) ride along.
Draws come from an explicit `key`; the same key gives the same intervals.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_LEVEL = 0.95
DEFAULT_RESAMPLES = 1000


class Resample(NamedTuple):
  """Counts of one set of bootstrap draws (float32, exact integers).

  Attributes:
    noise: `[R, B]` times each noise is drawn in each replicate (rows sum to B).
    models: `[R, K]` times each model is drawn (sums to each stratum's size).
  """
  noise: jax.Array
  models: jax.Array

  @property
  def num_resamples(self) -> int:
    return int(self.noise.shape[0])


class Estimate(NamedTuple):
  """A point value, its percentile interval and the fraction of replicates kept.

  Fields are floats, or arrays of the statistic's batch shape.
  """
  value: float | np.ndarray
  lo: float | np.ndarray
  hi: float | np.ndarray
  kept: float

  @property
  def ci(self) -> list:
    """`[lo, hi]` (JSON-able); for a batch, `[..., 2]` nested lists."""
    lo, hi = np.asarray(self.lo, np.float64), np.asarray(self.hi, np.float64)
    if lo.ndim == 0:
      return [float(lo), float(hi)]
    return np.stack([lo, hi], -1).tolist()


@functools.partial(jax.jit, static_argnums=1)
def _counts(idx, n: int) -> jax.Array:
  """`[R, n]` float32: occurrences of each of `0..n-1` in each row of `idx [R, m]`."""
  return jax.vmap(lambda row: jnp.bincount(row, length=n))(idx).astype(jnp.float32)


def _check_strata(strata) -> np.ndarray:
  strata = np.asarray(strata)
  if strata.ndim != 1 or strata.size == 0:
    raise ValueError(f"`strata` must be a non-empty 1-D array of labels; got shape "
                     f"{strata.shape}.")
  return strata


def model_indices(key, strata, num_resamples: int) -> jax.Array:
  """int `[R, K]`: each model replaced by a uniform draw from its own stratum.

  Args:
    strata: `[K]` labels; models with equal labels are exchangeable (the seeds
      of one cell).  `arange(K)` keeps every model fixed.
  """
  strata = _check_strata(strata)
  order = np.argsort(strata, kind="stable")                 # members grouped by label
  labels, start, size = np.unique(strata[order], return_index=True, return_counts=True)
  pos = np.searchsorted(labels, strata)
  return _pick(key, jnp.asarray(order), jnp.asarray(start[pos]), jnp.asarray(size[pos]),
               int(num_resamples))


@functools.partial(jax.jit, static_argnums=4)
def _pick(key, order, start, size, num_resamples):
  u = jax.random.uniform(key, (num_resamples, order.size))
  pick = jnp.minimum(jnp.floor(u * size).astype(jnp.int32), size - 1)
  return order[start + pick]


def noise_indices(key, num_noises: int, num_resamples: int) -> jax.Array:
  """int `[R, B]`: B noise indices drawn with replacement per replicate."""
  if int(num_noises) < 1:
    raise ValueError(f"`num_noises` must be >= 1; got {num_noises}.")
  return jax.random.randint(key, (int(num_resamples), int(num_noises)), 0, int(num_noises))


def from_indices(noise_idx, model_idx, num_noises: int, num_models: int) -> Resample:
  """The counts of given draws (`noise_idx [R, B]`, `model_idx [R, K]`)."""
  return Resample(_counts(noise_idx, int(num_noises)), _counts(model_idx, int(num_models)))


def draw(key, num_noises: int, strata, num_resamples: int = DEFAULT_RESAMPLES) -> Resample:
  """Joint draws of the noises (shared by all models) and of the models within
  their `strata [K]` (see `model_indices`)."""
  k_noise, k_model = jax.random.split(key)
  strata = _check_strata(strata)
  return from_indices(noise_indices(k_noise, num_noises, num_resamples),
                      model_indices(k_model, strata, num_resamples), num_noises, strata.size)


def noise_means(values, res: Resample) -> jax.Array:
  """`[R, ...]`: the resampled mean over the last axis of `values [..., B]`."""
  values = jnp.asarray(values, jnp.float32)
  if values.shape[-1] != res.noise.shape[1]:
    raise ValueError(f"`values` has {values.shape[-1]} noises on its last axis; the "
                     f"resample has {res.noise.shape[1]}.")
  return _noise_means(res.noise, values)


@jax.jit
def _noise_means(noise, values):
  return jnp.einsum("rb,...b->r...", noise, values) / values.shape[-1]


def _ratio(num, den, batch_ndim: int):
  den = den.reshape(den.shape + (1,) * batch_ndim)
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)


def pair_mean(means, mask=None, rows=None, cols=None) -> jax.Array:
  """`[R, ...]`: the weighted mean over pairs of `means [R, ..., I, J]`.

  Args:
    means: per-pair noise means of each replicate (`noise_means` of `[..., I, J, B]`).
    mask: `[I, J]` pair weights (bool or float; default all pairs).
    rows: `[R, I]` model counts of the rows (`Resample.models`); None keeps the
      rows fixed.
    cols: `[R, J]` model counts of the columns; pass the same array as `rows`
      when rows and columns are the same models.  None keeps them fixed.

  Returns NaN for a replicate whose weights sum to zero.
  """
  means = jnp.asarray(means)
  r, (i, j) = means.shape[0], means.shape[-2:]
  mask = jnp.ones((i, j)) if mask is None else jnp.asarray(mask, jnp.float32)
  rows = jnp.ones((r, i)) if rows is None else rows
  cols = jnp.ones((r, j)) if cols is None else cols
  return _pair_mean(means, mask, rows, cols)


@jax.jit
def _pair_mean(means, mask, rows, cols):
  w = mask[None] * rows[:, :, None] * cols[:, None, :]        # [R, I, J]
  num = jnp.einsum("rij,r...ij->r...", w, means)
  return _ratio(num, w.sum((1, 2)), means.ndim - 3)


def model_mean(means, select=None, counts=None) -> jax.Array:
  """`[R, ...]`: the weighted mean over models of `means [R, ..., K]` (`select [K]`
  weights, default all; `counts [R, K]` from `Resample.models`, None = fixed)."""
  means = jnp.asarray(means)
  r, k = means.shape[0], means.shape[-1]
  select = jnp.ones((k,)) if select is None else jnp.asarray(select, jnp.float32)
  counts = jnp.ones((r, k)) if counts is None else counts
  return _model_mean(means, select, counts)


@jax.jit
def _model_mean(means, select, counts):
  w = select[None] * counts                                    # [R, K]
  return _ratio(jnp.einsum("rk,r...k->r...", w, means), w.sum(1), means.ndim - 2)


def point_pair(values, mask=None) -> np.ndarray:
  """The point value of `pair_mean` on `values [..., I, J, B]` (float64; NaN if no pair)."""
  m = np.mean(np.asarray(values, np.float64), axis=-1)
  w = np.ones(m.shape[-2:]) if mask is None else np.asarray(mask, np.float64)
  den = w.sum()
  return np.einsum("ij,...ij->...", w, m) / den if den > 0 else np.full(m.shape[:-2], np.nan)


def point_model(values, select=None) -> np.ndarray:
  """The point value of `model_mean` on `values [..., K, B]` (float64)."""
  m = np.mean(np.asarray(values, np.float64), axis=-1)
  w = np.ones(m.shape[-1]) if select is None else np.asarray(select, np.float64)
  den = w.sum()
  return np.einsum("k,...k->...", w, m) / den if den > 0 else np.full(m.shape[:-1], np.nan)


def interval(replicates, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
  """Percentile interval `(lo, hi)` of `replicates [R, ...]` over axis 0, NaNs
  dropped (linear interpolation between order statistics, as `np.quantile`)."""
  if not 0.0 < float(level) < 1.0:
    raise ValueError(f"`level` must lie in (0, 1); got {level}.")
  reps = np.asarray(replicates, np.float64)
  a = (1.0 - float(level)) / 2.0
  if np.all(np.isnan(reps)):
    nan = np.full(reps.shape[1:], np.nan)
    return nan, nan
  lo, hi = np.nanquantile(reps, [a, 1.0 - a], axis=0)
  return lo, hi


def estimate(value, replicates, level: float = DEFAULT_LEVEL) -> Estimate:
  """`Estimate` from a point value and its replicates `[R, ...]`."""
  reps = np.asarray(replicates, np.float64)
  lo, hi = interval(reps, level)
  kept = float(np.mean(np.all(np.isfinite(reps.reshape(reps.shape[0], -1)), axis=1)))
  if np.ndim(value) == 0:
    value, lo, hi = float(value), float(lo), float(hi)
  return Estimate(value, lo, hi, kept)


# One-call estimates -------------------------------------------------------------

def _pair_resample(key, num_noises, strata, col_strata, shape, num_resamples):
  i, j = shape
  strata = np.arange(i) if strata is None else _check_strata(strata)
  if len(strata) != i:
    raise ValueError(f"`strata` must have {i} labels (the rows); got {len(strata)}.")
  if col_strata is None:
    if i != j:
      raise ValueError("a rectangular pair matrix needs `col_strata` (its columns are "
                       "other models than its rows).")
    res = draw(key, num_noises, strata, num_resamples)
    return res, res.models, res.models
  col_strata = _check_strata(col_strata)
  if len(col_strata) != j:
    raise ValueError(f"`col_strata` must have {j} labels (the columns); got "
                     f"{len(col_strata)}.")
  # Columns get labels of their own: a row and a column are never exchangeable.
  _, col_codes = np.unique(col_strata, return_inverse=True)
  _, row_codes = np.unique(strata, return_inverse=True)
  res = draw(key, num_noises, np.concatenate([row_codes, row_codes.max() + 1 + col_codes]),
             num_resamples)
  return res, res.models[:, :i], res.models[:, i:]


def pair_estimate(values, key, *, strata=None, col_strata=None, mask=None,
                  num_resamples: int = DEFAULT_RESAMPLES,
                  level: float = DEFAULT_LEVEL) -> Estimate:
  """Mean over (masked) pairs of per-noise `values [..., I, J, B]`, with its interval.

  Args:
    values: per-noise pair values, e.g. `sim > t` for RP or `mae < t` for MAE.
    key: PRNG key of the draws.
    strata: `[I]` labels of the rows' models (exchangeable seeds share a label);
      None keeps them fixed (noises only).
    col_strata: None when the columns are the same models as the rows (square
      matrix, resampled together); else `[J]` labels of the column models (a
      matrix between two sets, e.g. two architectures).
    mask: `[I, J]` pair weights; default all pairs (exclude `i == j` yourself when
      rows and columns are the same models, e.g. `pair_mask`).
  """
  values = np.asarray(values)
  res, rows, cols = _pair_resample(key, values.shape[-1], strata, col_strata,
                                   values.shape[-3:-1], num_resamples)
  reps = pair_mean(noise_means(values, res), mask, rows, cols)
  return estimate(point_pair(values, mask), reps, level)


def model_estimate(values, key, *, strata=None, select=None,
                   num_resamples: int = DEFAULT_RESAMPLES,
                   level: float = DEFAULT_LEVEL) -> Estimate:
  """Mean over (selected) models of per-noise `values [..., K, B]`, with its interval
  (`strata [K]` as in `pair_estimate`)."""
  values = np.asarray(values)
  k = values.shape[-2]
  strata = np.arange(k) if strata is None else strata
  res = draw(key, values.shape[-1], strata, num_resamples)
  reps = model_mean(noise_means(values, res), select, res.models)
  return estimate(point_model(values, select), reps, level)


def rp_estimate(sim, threshold: float, key, **kwargs) -> Estimate:
  """RP = P(sim > threshold) over the noises, averaged over pairs (`sim [..., I, J, B]`;
  keyword arguments of `pair_estimate`)."""
  sim = np.asarray(sim)
  return pair_estimate(sim > np.asarray(threshold, sim.dtype), key, **kwargs)


def mae_estimate(mae, threshold: float, key, **kwargs) -> Estimate:
  """MAE score = P(MAE < threshold) (`mae [..., I, J, B]` on [0, 255])."""
  mae = np.asarray(mae)
  return pair_estimate(mae < np.asarray(threshold, mae.dtype), key, **kwargs)


def gl_estimate(max_sim, threshold: float, key, **kwargs) -> Estimate:
  """GL = 1 − P(max-similarity to the training set > threshold) (`max_sim [..., K, B]`;
  keyword arguments of `model_estimate`)."""
  max_sim = np.asarray(max_sim)
  return model_estimate(max_sim <= np.asarray(threshold, max_sim.dtype), key, **kwargs)


def pair_mask(rows: Sequence[bool], cols: Sequence[bool], *, distinct: bool = True
              ) -> np.ndarray:
  """`[I, J]` bool: pairs with a selected row and a selected column, without the
  diagonal when `distinct` (rows and columns the same models)."""
  m = np.outer(np.asarray(rows, bool), np.asarray(cols, bool))
  if distinct:
    if m.shape[0] != m.shape[1]:
      raise ValueError("`distinct` needs a square mask (rows and columns the same models).")
    m &= ~np.eye(m.shape[0], dtype=bool)
  return m
