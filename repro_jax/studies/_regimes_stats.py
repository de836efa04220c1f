"""Statistics of the reproducibility-regimes study: intervals, threshold band, distributions.

One `Cell` holds the per-noise values of the K models of one N plus the ε*
generation (index K) and one set of bootstrap draws (`analysis.bootstrap`):
noises resampled jointly for all models, the seeds of each width resampled as
clusters, ε* alone in its stratum.  Every RP, GL and MAE score of the study is
a masked mean of these values, so its point value, its interval and its curve
against the threshold come from the same arrays.

Shapes: K models of one N (+1 for ε*), B noises, R resamples, T thresholds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from repro_jax.analysis import bootstrap
from repro_jax.analysis import score_curves

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# Histogram bins of 1 − similarity (log-spaced: the similarities that matter sit near 1).
HIST_EDGES = np.logspace(-6.0, np.log10(2.0), 57)


class Scored(NamedTuple):
  """An estimate and its bootstrap replicates `[R, ...]` (to average over widths)."""
  est: bootstrap.Estimate
  reps: np.ndarray


def mean_of(scored: list[Scored], level: float) -> Scored:
  """The mean of several scores over the same draws (e.g. over widths)."""
  value = np.mean([s.est.value for s in scored], axis=0)
  reps = np.mean([s.reps for s in scored], axis=0)        # NaN if any is NaN
  return Scored(bootstrap.estimate(value, reps, level), reps)


def as_fields(name: str, s: Scored | bootstrap.Estimate) -> dict:
  """`{name: value, name_ci: [lo, hi]}` for metrics.json."""
  est = s.est if isinstance(s, Scored) else s
  return {name: _jsonable(est.value), f"{name}_ci": est.ci}


def as_columns(name: str, s: Scored) -> dict:
  """`{name: value, name_lo: lo, name_hi: hi}` for a CSV row."""
  return {name: float(s.est.value), f"{name}_lo": float(s.est.lo),
          f"{name}_hi": float(s.est.hi)}


def _jsonable(v):
  v = np.asarray(v, np.float64)
  return float(v) if v.ndim == 0 else v.tolist()


class Cell:
  """The models of one N and ε* (last), their per-noise values and bootstrap draws.

  Args:
    pair_values: `rpr.pair_values` of the stack `[K + 1, B, ...]`.
    max_sim: `{label: [K + 1, B]}` best similarity of each sample to the training set.
    thresholds: `{label: threshold}` of each similarity.
    mae_threshold: the MAE score's threshold on [0, 255].
    strata: `[K + 1]` labels: the width index of each model, ε* a label of its own.
    key, num_resamples, level: the bootstrap's draws and interval level.
  """

  def __init__(self, pair_values, max_sim, thresholds, mae_threshold, strata, key,
               num_resamples, level):
    self.sim = {label: pair_values[f"sim_{label}"] for label in thresholds}
    self.max_sim = max_sim
    self.thresholds = {k: float(v) for k, v in thresholds.items()}
    self.strata = np.asarray(strata)
    self.level = float(level)
    mae = pair_values["mae"]
    self.pair_ind = {f"rp_{label}": s > np.asarray(thresholds[label], s.dtype)
                     for label, s in self.sim.items()}
    self.pair_ind["mae"] = mae < np.asarray(mae_threshold, mae.dtype)
    self.model_ind = {f"gl_{label}": m <= np.asarray(thresholds[label], m.dtype)
                      for label, m in max_sim.items()}
    b = mae.shape[-1]
    self.res = bootstrap.draw(key, b, self.strata, num_resamples)
    self._means = {}

  @property
  def num_models(self) -> int:
    """K + 1 (ε* included)."""
    return len(self.strata)

  def _noise_means(self, name):
    if name not in self._means:
      values = self.pair_ind.get(name, self.model_ind.get(name))
      self._means[name] = bootstrap.noise_means(values, self.res)
    return self._means[name]

  def pair(self, name: str, rows, cols, seeds: bool = True, across: bool = False) -> Scored:
    """Score `name` ("rp_<label>", "mae") averaged over pairs (row in `rows`,
    column in `cols`, never a model with itself; with `across`, only pairs of
    different strata); `seeds=False` keeps the models fixed (intervals over the
    noises only)."""
    mask = bootstrap.pair_mask(rows, cols)
    if across:
      mask &= self.strata[:, None] != self.strata[None]
    counts = self.res.models if seeds else None
    reps = np.asarray(bootstrap.pair_mean(self._noise_means(name), mask, counts, counts))
    value = bootstrap.point_pair(self.pair_ind[name], mask)
    return Scored(bootstrap.estimate(value, reps, self.level), reps)

  def model(self, name: str, select, seeds: bool = True) -> Scored:
    """Score `name` ("gl_<label>") averaged over the selected models."""
    counts = self.res.models if seeds else None
    reps = np.asarray(bootstrap.model_mean(self._noise_means(name), select, counts))
    value = bootstrap.point_model(self.model_ind[name], select)
    return Scored(bootstrap.estimate(value, reps, self.level), reps)

  def pair_matrix_ci(self, name: str) -> np.ndarray:
    """`[K + 1, K + 1, 2]`: the noise-only interval of every pair's score."""
    lo, hi = bootstrap.interval(self._noise_means(name), self.level)
    return np.stack([lo, hi], -1)

  def pair_matrix(self, name: str) -> np.ndarray:
    """`[K + 1, K + 1]`: every pair's score."""
    return np.mean(self.pair_ind[name], axis=-1, dtype=np.float64)

  # Over thresholds ----------------------------------------------------------------

  def seed_masks(self):
    """One mask per width: its models' pairs of distinct seeds."""
    widths = np.unique(self.strata[:-1])
    return [bootstrap.pair_mask(self.strata == w, self.strata == w) for w in widths]

  def band(self, label: str, thresholds) -> dict:
    """RP between seeds (mean over widths) and GL (all models) at each threshold
    `[T]`, with intervals over the same draws."""
    t = np.asarray(thresholds, self.sim[label].dtype)
    ind = self.sim[label][None] > t.reshape(-1, 1, 1, 1)                  # [T, K+1, K+1, B]
    means = bootstrap.noise_means(ind, self.res)
    per_width = []
    for mask in self.seed_masks():
      reps = np.asarray(bootstrap.pair_mean(means, mask, self.res.models, self.res.models))
      per_width.append(Scored(bootstrap.estimate(bootstrap.point_pair(ind, mask), reps,
                                                 self.level), reps))
    rp = mean_of(per_width, self.level) if per_width else None
    models = np.arange(self.num_models) < self.num_models - 1
    gl_ind = self.max_sim[label][None] <= t.reshape(-1, 1, 1)            # [T, K+1, B]
    reps = np.asarray(bootstrap.model_mean(bootstrap.noise_means(gl_ind, self.res),
                                           models, self.res.models))
    gl = bootstrap.estimate(bootstrap.point_model(gl_ind, models), reps, self.level)
    out = dict(thresholds=[float(x) for x in thresholds], **as_fields("gl", gl))
    if rp is not None:
      out.update(as_fields("rp_seed", rp))
    return out

  def curves(self, label: str, thresholds) -> dict:
    """Point curves `[T]`: RP between seeds (mean over widths), across widths, to ε*,
    and GL of the models."""
    sim, k = self.sim[label], self.num_models
    models = np.arange(k) < k - 1
    seed = [score_curves.rp_curve(sim, thresholds, m) for m in self.seed_masks()]
    cross = bootstrap.pair_mask(models, models) & (self.strata[:, None] != self.strata[None])
    return dict(
        rp_seed=np.mean(seed, axis=0) if seed else np.full(len(thresholds), np.nan),
        rp_cross=score_curves.rp_curve(sim, thresholds, cross),
        rp_theory=score_curves.rp_curve(sim, thresholds, bootstrap.pair_mask(models, ~models)),
        gl=score_curves.gl_curve(self.max_sim[label], thresholds, models))

  def distributions(self, label: str) -> dict:
    """Threshold-free: quantiles and histograms (of 1 − similarity) of the per-noise
    similarity between seeds of one width, and of each model's best similarity to
    its training set."""
    upper = np.triu(np.ones((self.num_models,) * 2, bool), 1)
    seed_mask = np.any(self.seed_masks(), axis=0) & upper
    seed = score_curves.pooled(self.sim[label], seed_mask)
    models = np.arange(self.num_models) < self.num_models - 1
    best = score_curves.pooled(self.max_sim[label], models)
    hist = lambda v: np.histogram(np.clip(1.0 - v.astype(np.float64), HIST_EDGES[0],
                                          HIST_EDGES[-1]), HIST_EDGES)[0]
    return dict(seed_quantiles=score_curves.quantiles(seed, QUANTILES),
                train_quantiles=score_curves.quantiles(best, QUANTILES),
                seed_hist=hist(seed), train_hist=hist(best))


def dip(values, lo, hi):
  """The dip of a curve over N (point values, interval bounds `[S]`).

  Returns `(index of the interior minimum, holds)` where holds means the
  interval at that minimum lies wholly below the intervals at both ends;
  `(None, None)` with fewer than three N.
  """
  values, lo, hi = (np.asarray(x, np.float64) for x in (values, lo, hi))
  if values.size < 3 or np.all(np.isnan(values[1:-1])):
    return None, None
  m = 1 + int(np.nanargmin(values[1:-1]))
  return m, bool(hi[m] < lo[0] and hi[m] < lo[-1])
