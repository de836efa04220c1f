"""RP, GL and MAE scores as functions of their threshold, and threshold-free summaries.

A score at one threshold hides how close the per-noise similarities sit to it.
From the per-noise values the whole curve costs one sort: for sorted values
`s_(1) <= ... <= s_(B)` of one pair, the fraction strictly above `t` is
`1 − searchsorted(s, t, side="right") / B` (`exceedance`), for every `t` at once.
Conventions follow `metrics`: a pair is the same image when `sim > t`
(strict), a sample a copy when its best similarity is `> t`, a pair reproduced
by MAE when `MAE < t` (strict).

Shapes: per-noise values `[..., B]` (pair matrices `[I, J, B]`, per-model
`[K, B]`), thresholds `[T]`; results put `T` last.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax.analysis import bootstrap


@functools.partial(jax.jit, static_argnums=2)
def _ranks(values, t, side: str):
  """`[P, T]`: `searchsorted(sorted row, t, side)` for each row of `values [P, B]`."""
  rows = jnp.sort(values, axis=-1)
  return jax.vmap(lambda s: jnp.searchsorted(s, t, side=side))(rows)


def _count(values, thresholds, side):
  v = jnp.asarray(values)
  t = jnp.asarray(np.asarray(thresholds), v.dtype)
  n = _ranks(v.reshape(-1, v.shape[-1]), t, side)
  return np.asarray(n, np.float64).reshape(v.shape[:-1] + t.shape) / v.shape[-1]


def exceedance(values, thresholds) -> np.ndarray:
  """`[..., T]`: fraction of the B values above each threshold (strict)."""
  return 1.0 - _count(values, thresholds, "right")


def below(values, thresholds) -> np.ndarray:
  """`[..., T]`: fraction of the B values below each threshold (strict)."""
  return _count(values, thresholds, "left")


def _pairs(curves, mask):
  """Mean over masked pairs of per-pair curves `[I, J, T]`."""
  w = np.ones(curves.shape[:2]) if mask is None else np.asarray(mask, np.float64)
  if w.sum() == 0:
    return np.full(curves.shape[-1], np.nan)
  return np.einsum("ij,ijt->t", w, curves) / w.sum()


def rp_curve(sim, thresholds, mask=None) -> np.ndarray:
  """`[T]`: RP(t) averaged over the pairs of `mask [I, J]` (`sim [I, J, B]`)."""
  return _pairs(exceedance(sim, thresholds), mask)


def mae_curve(mae, thresholds, mask=None) -> np.ndarray:
  """`[T]`: MAE score P(MAE < t) averaged over masked pairs (`mae [I, J, B]`)."""
  return _pairs(below(mae, thresholds), mask)


def gl_curve(max_sim, thresholds, select=None) -> np.ndarray:
  """`[T]`: GL(t) = 1 − P(max-similarity > t), averaged over the selected models
  (`max_sim [K, B]`, `select [K]`)."""
  ex = exceedance(max_sim, thresholds)                        # [K, T]
  w = np.ones(ex.shape[0]) if select is None else np.asarray(select, np.float64)
  if w.sum() == 0:
    return np.full(ex.shape[-1], np.nan)
  return 1.0 - w @ ex / w.sum()


def band_rp(sim, thresholds, key, **kwargs) -> bootstrap.Estimate:
  """RP at each of a few thresholds `[T]` with bootstrap intervals (arrays `[T]`;
  keyword arguments of `bootstrap.pair_estimate`).  Costs `R · B · T · I · J`."""
  sim = np.asarray(sim)
  t = np.asarray(thresholds, sim.dtype)
  ind = sim[None] > t.reshape(-1, 1, 1, 1)                    # [T, I, J, B]
  return bootstrap.pair_estimate(ind, key, **kwargs)


def band_gl(max_sim, thresholds, key, **kwargs) -> bootstrap.Estimate:
  """GL at each threshold `[T]` with bootstrap intervals (`bootstrap.model_estimate`)."""
  max_sim = np.asarray(max_sim)
  t = np.asarray(thresholds, max_sim.dtype)
  return bootstrap.model_estimate(max_sim[None] <= t.reshape(-1, 1, 1), key, **kwargs)


def pooled(values, mask) -> np.ndarray:
  """`[P · B]`: the per-noise values of the masked pairs (or models), pooled."""
  values = np.asarray(values)
  return values[np.asarray(mask, bool)].reshape(-1)


def quantiles(values, qs) -> np.ndarray:
  """`[Q]` quantiles of pooled values (NaN if empty): a threshold-free summary."""
  values = np.asarray(values, np.float64).reshape(-1)
  if values.size == 0:
    return np.full(len(qs), np.nan)
  return np.quantile(values, qs)
