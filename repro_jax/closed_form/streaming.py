"""Streaming (running log-sum-exp / running min) reductions over a data set.

The empirical denoiser, the smoothed distance and nearest-neighbour search all
reduce over the `N` rows of a data matrix `[N, D]` for a batch of queries
`[B, D]`.  They share one pattern: a matmul for `⟨x, y_i⟩` per chunk of rows,
an elementwise map, and a reduction that can be merged across chunks and across
devices.  Memory is `O(B · chunk + B · D)` on top of the data.

Chunks are read with `lax.dynamic_slice` inside a `lax.scan`, so the data is
never copied or padded; a ragged tail is handled by one extra block.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

# Rows per block.  On CPU a [B, chunk] block of logits for B = 256 then stays in
# L2 cache; `python -m benchmarks.bench_denoisers` compares 1024, 2048 and 4096.
DEFAULT_CHUNK = 1024


class LSEStats(NamedTuple):
  """Partial sums for `logits_i = −‖x − y_i‖² · c` over some rows i.

  Shapes: `max_logit [B]` (a shift, carries no gradient), `total [B] = Σ exp(logit − max)`,
  `weighted [B, D] = Σ exp(logit − max) y_i`.
  """
  max_logit: jax.Array
  total: jax.Array
  weighted: jax.Array


def _sq_dists(x, x_sq, y, y_sq, precision):
  """`‖x_b − y_i‖²` via one matmul, clamped at 0 against round-off.  `[B, C]`."""
  cross = jnp.matmul(x, y.T, precision=precision)
  return jnp.maximum(x_sq[:, None] - 2.0 * cross + y_sq[None, :], 0.0)


def _block_stats(x, x_sq, y, y_sq, coef, precision) -> LSEStats:
  d = _sq_dists(x, x_sq, y, y_sq, precision)
  # Shift by the smallest distance *before* scaling: the nearest row gets
  # exactly z = 0 whatever the rounding (with |logits| up to ~1e15 for far
  # queries and tiny σ, subtracting a max of scaled logits is not exact once
  # the compiler contracts the product into an FMA).  The shift is a constant
  # of the log-sum-exp, so it carries no gradient.
  d_min = lax.stop_gradient(jnp.min(d, axis=1))
  d_min_safe = jnp.where(jnp.isfinite(d_min), d_min, 0.0)
  p = jnp.exp(-(d - d_min_safe[:, None]) * coef[:, None])
  m = -d_min * coef
  return LSEStats(m, jnp.sum(p, axis=1), jnp.matmul(p, y, precision=precision))


def merge_stats(a: LSEStats, b: LSEStats) -> LSEStats:
  """Combine the partial sums of two disjoint row sets."""
  m = jnp.maximum(a.max_logit, b.max_logit)
  m_safe = jnp.where(jnp.isfinite(m), m, 0.0)

  def factor(mi):
    mi_safe = jnp.where(jnp.isfinite(mi), mi, 0.0)
    return jnp.where(jnp.isfinite(mi), jnp.exp(mi_safe - m_safe), 0.0)

  fa, fb = factor(a.max_logit), factor(b.max_logit)
  return LSEStats(m, a.total * fa + b.total * fb,
                  a.weighted * fa[:, None] + b.weighted * fb[:, None])


def _chunked(block_fn, merge_fn, data, y_sq, chunk):
  """Fold `block_fn(y_chunk, y_sq_chunk)` over row chunks of `data` with `merge_fn`."""
  n = data.shape[0]
  if chunk is None or chunk >= n:
    return block_fn(data, y_sq)
  n_full = n // chunk
  first = block_fn(data[:chunk], y_sq[:chunk])

  def body(carry, i):
    start = i * chunk
    y = lax.dynamic_slice_in_dim(data, start, chunk, axis=0)
    ys = lax.dynamic_slice_in_dim(y_sq, start, chunk, axis=0)
    return merge_fn(carry, block_fn(y, ys)), None

  acc, _ = lax.scan(body, first, jnp.arange(1, n_full))
  if n_full * chunk < n:
    tail = n_full * chunk
    acc = merge_fn(acc, block_fn(data[tail:], y_sq[tail:]))
  return acc


def lse_stats(x, data, coef, *, chunk=DEFAULT_CHUNK, precision="highest",
              data_sq=None) -> LSEStats:
  """Running log-sum-exp statistics of `−‖x − y_i‖² · coef` over all rows.

  Args:
    x: queries `[B, D]`.
    data: rows `[N, D]`.
    coef: per-query inverse temperature `[B]` (e.g. `1 / (2σ²)`).
    chunk: rows per block (None: one block).
    precision: matmul precision (`"highest"` keeps float32 distances exact on
      accelerators that default to reduced-precision matmuls).
    data_sq: optional precomputed `‖y_i‖²` `[N]`; rows with `+inf` are ignored
      (used to pad shards).
  """
  x_sq = jnp.sum(jnp.square(x), axis=1)
  y_sq = jnp.sum(jnp.square(data), axis=1) if data_sq is None else data_sq
  block = functools.partial(_block_stats, x, x_sq, coef=coef, precision=precision)
  return _chunked(lambda y, ys: block(y, ys), merge_stats, data, y_sq, chunk)


def lse_stats_sharded(x, data, coef, mesh, axis, *, chunk=DEFAULT_CHUNK,
                      precision="highest", data_sq=None) -> LSEStats:
  """`lse_stats` with the rows of `data` split over the devices on `axis`.

  Each device reduces its own rows; the partial sums are merged with one
  `pmax` and two `psum`s, so the result equals the single-device one up to
  float summation order.  `N` need not divide the device count: the data is
  padded with rows whose squared norm is `+inf` (weight exactly 0).
  `data_sq`: optional precomputed `‖y_i‖²` `[N]`.
  """
  n_dev = mesh.shape[axis]
  n = data.shape[0]
  pad = (-n) % n_dev
  y_sq = jnp.sum(jnp.square(data), axis=1) if data_sq is None else data_sq
  if pad:
    data = jnp.concatenate([data, jnp.zeros((pad, data.shape[1]), data.dtype)])
    y_sq = jnp.concatenate([y_sq, jnp.full((pad,), jnp.inf, y_sq.dtype)])

  def local(x, y, ys, c):
    s = lse_stats(x, y, c, chunk=chunk, precision=precision, data_sq=ys)
    m = lax.pmax(s.max_logit, axis)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    f = jnp.where(jnp.isfinite(s.max_logit),
                  jnp.exp(jnp.where(jnp.isfinite(s.max_logit), s.max_logit, 0.0)
                          - m_safe), 0.0)
    return LSEStats(m, lax.psum(s.total * f, axis),
                    lax.psum(s.weighted * f[:, None], axis))

  fn = jax.shard_map(local, mesh=mesh,
                     in_specs=(P(), P(axis, None), P(axis), P()),
                     out_specs=LSEStats(P(), P(), P()), check_vma=False)
  return fn(x, data, y_sq, coef)


class NNStats(NamedTuple):
  """Running nearest neighbour: `sq_dist [B]`, `index [B]` (int32)."""
  sq_dist: jax.Array
  index: jax.Array


def _merge_nn(a: NNStats, b: NNStats) -> NNStats:
  take_b = b.sq_dist < a.sq_dist
  return NNStats(jnp.where(take_b, b.sq_dist, a.sq_dist),
                 jnp.where(take_b, b.index, a.index))


def nearest(x, data, *, chunk=DEFAULT_CHUNK, precision="highest") -> NNStats:
  """Exact nearest row of `data` `[N, D]` for each query `[B, D]`, chunked."""
  x_sq = jnp.sum(jnp.square(x), axis=1)
  y_sq = jnp.sum(jnp.square(data), axis=1)
  rows = jnp.arange(data.shape[0], dtype=jnp.int32)

  # Row indices travel with the data through the same chunking as the norms.
  def block(y, ys_and_idx):
    ys, idx = ys_and_idx[:, 0], ys_and_idx[:, 1].astype(jnp.int32)
    d = _sq_dists(x, x_sq, y, ys, precision)
    j = jnp.argmin(d, axis=1)
    return NNStats(jnp.take_along_axis(d, j[:, None], axis=1)[:, 0], idx[j])

  # Indices are exact in float32 only up to 2**24 rows; use the data's dtype
  # but keep indices in their own column when they might overflow.
  if data.shape[0] >= 2**24 and data.dtype != jnp.float64:
    raise ValueError("nearest(): more than 2**24 rows need float64 data.")
  side = jnp.stack([y_sq, rows.astype(y_sq.dtype)], axis=1)
  return _chunked(block, _merge_nn, data, side, chunk)


def nearest_k(x, data, k: int, *, chunk=DEFAULT_CHUNK, precision="highest") -> NNStats:
  """The `k` nearest rows of `data` for each query: `sq_dist [B, k]`, `index [B, k]`."""
  if k > data.shape[0]:
    raise ValueError(f"k = {k} exceeds the {data.shape[0]} rows of `data`.")
  x_sq = jnp.sum(jnp.square(x), axis=1)
  y_sq = jnp.sum(jnp.square(data), axis=1)
  side = jnp.stack([y_sq, jnp.arange(data.shape[0]).astype(y_sq.dtype)], axis=1)

  def block(y, s):
    d = _sq_dists(x, x_sq, y, s[:, 0], precision)
    kk = min(k, y.shape[0])
    neg, j = lax.top_k(-d, kk)
    idx = s[:, 1].astype(jnp.int32)[j]
    if kk < k:   # a short ragged tail: pad with +inf distances
      neg = jnp.pad(neg, ((0, 0), (0, k - kk)), constant_values=-jnp.inf)
      idx = jnp.pad(idx, ((0, 0), (0, k - kk)))
    return NNStats(-neg, idx)

  def merge(a, b):
    d = jnp.concatenate([a.sq_dist, b.sq_dist], axis=1)
    i = jnp.concatenate([a.index, b.index], axis=1)
    neg, j = lax.top_k(-d, k)
    return NNStats(-neg, jnp.take_along_axis(i, j, axis=1))

  return _chunked(block, merge, data, side, chunk)
