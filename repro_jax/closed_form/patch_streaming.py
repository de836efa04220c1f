"""Streaming log-sum-exp over the patches of a training set (the kernel of `patch`).

The patch posteriors of `repro_jax.closed_form.patch` weigh training patches
`y` against query patches `x` with `softmax(−‖x − y‖²_m / (2σ²))`, where
`‖v‖²_m = Σ_o m_o v_o²` restricts the distance to the offsets `o` of a window
(`m_o ∈ {0, 1}`), and average *values* that differ from the compared keys
(the centre pixel of each patch, or the whole patch).  This module folds those
sums over chunks of training images with the running log-sum-exp of
`streaming` (`LSEStats`, `merge_stats`): patches are cut out of each chunk
inside the `lax.scan`, so neither the `[B·H·W, N·H·W]` logits nor the
`[N·H·W, K]` training patches are ever held at once.  The query images are
taken `b` at a time (a `lax.map` over tiles of about `QUERY_ROWS` windows)
and the training images `n` at a time, so that a block of logits stays in
cache (`DEFAULT_BLOCK_LOGITS`).

Two pairings of queries with keys:

- *local* (`equivariant=False`): the query patch at position p meets the
  patches at p of every training image; one batched matmul over positions,
  logits `[P, b, n]` per block (patches cut positions first, `[P, n, K]`).
- *equivariant*: every query patch meets every admitted training patch at any
  position; one matmul, logits `[b·P, n·P]` per block.  Admission is a code
  per position: a key at q is used for a query at p only if their codes
  agree (the zero-padding class of the boundary rule, or crops inside the
  image), added to the distances as a 0/+inf penalty.

Two kinds of window mask:

- *shared* (one window for the whole batch): queries are pre-multiplied by m,
  so `x_m · y` is one matmul with the plain key patches, and `‖y‖²_m = y² · m`
  one matrix-vector product per chunk;
- *per row* (σ, hence the window, differs between rows): queries
  `[m ⊙ x, −m/2]` against keys `[y, y²]` give `−½(‖y‖²_m − 2 x_m · y)` in one
  matmul with twice the features.

Memory per block: the logits above, the chunk's patches `[n, P, K]` and the
weighted values; in all `O(b·P·n·(P or 1) + n·P·K + B·P·V)`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from repro_jax.closed_form import streaming
from repro_jax.closed_form.streaming import LSEStats

# Logits per block: 2**21 float32 (8 MB) stay in the last-level cache, where
# the exponentials and sums after the matmul cost about half of what they cost
# on blocks four times larger; query rows per tile: about 4096.
# `python -m benchmarks.bench_patch` compares block sizes.
DEFAULT_BLOCK_LOGITS = 2**21
QUERY_ROWS = 4096


class Queries(NamedTuple):
  """The query side of a patch posterior, per image (`B` images, `P` positions).

  Attributes:
    features: `[B, P, F]`: `m ⊙ x` (shared mask, `F = K`) or `[m ⊙ x, −m/2]`
      (per-row masks, `F = 2K`).
    sq_norm: `‖x‖²_m`, `[B, P]`.
    coef: `1/(2σ²)` per image, `[B]`.
    key_mask: the shared mask `m [K]`, or None for per-row masks.
    codes: `(query [B, P], key [B or 1, P])` int admission codes, or None
      (every key admitted).  Equivariant pairing only.
  """
  features: jax.Array
  sq_norm: jax.Array
  coef: jax.Array
  key_mask: jax.Array | None
  codes: tuple[jax.Array, jax.Array] | None


def tiles(batch: int, positions: int, equivariant: bool, num_images: int,
          chunk: int | None = None, block_logits: int = DEFAULT_BLOCK_LOGITS):
  """`(images per query tile, training images per block)`: a block of about
  `block_logits` logits unless `chunk` fixes the training images per block."""
  b_tile = int(max(1, min(batch, QUERY_ROWS // positions)))
  per_image = b_tile * positions * (positions if equivariant else 1)
  if chunk is None:
    chunk = max(1, block_logits // per_image)
  return b_tile, int(min(num_images, chunk))


def _keys(y, key_mask):
  """Key features and `‖y‖²_m` of patches `y [..., K]` (`[...]`)."""
  if key_mask is None:
    return jnp.concatenate([y, jnp.square(y)], axis=-1), None
  return y, jnp.einsum("...k,k->...", jnp.square(y), key_mask)


def _weights(d, coef):
  """`exp(−(d − d_min) · coef)` over the last axis and the shift `−d_min · coef`
  (stable, see `streaming`)."""
  d_min = lax.stop_gradient(jnp.min(d, axis=-1, keepdims=True))
  d_min_safe = jnp.where(jnp.isfinite(d_min), d_min, 0.0)
  p = jnp.exp(-(d - d_min_safe) * coef[..., None])
  return p, -d_min[..., 0] * coef


def _block_local(q: Queries, y, values, ok, precision) -> LSEStats:
  """Stats of one chunk for the local pairing, positions first: queries
  `[P, b, F]`, patches `y [P, n, K]`, values `[P, n, V]`; rows `p·b + b'`."""
  npos, b = q.sq_norm.shape
  kf, ksq = _keys(y, q.key_mask)
  cross = jnp.einsum("pbf,pnf->pbn", q.features, kf, precision=precision)
  d = q.sq_norm[..., None] - 2.0 * cross
  if ksq is not None:
    d = d + ksq[:, None, :]
  d = jnp.maximum(d, 0.0)
  if ok is not None:                                  # padding images of a shard
    d = jnp.where(ok[None, None, :], d, jnp.inf)
  p, m = _weights(d, q.coef[None, :])
  w = jnp.einsum("pbn,pnv->pbv", p, values, precision=precision)
  return LSEStats(m.reshape(npos * b), jnp.sum(p, -1).reshape(npos * b),
                  w.reshape(npos * b, -1))


def _block_equivariant(q: Queries, y, values, ok, precision) -> LSEStats:
  """Stats of one chunk for the equivariant pairing, rows `b·P + p`."""
  b, npos = q.sq_norm.shape
  n = y.shape[0]
  kf, ksq = _keys(y, q.key_mask)
  cross = jnp.matmul(q.features.reshape(b * npos, -1), kf.reshape(n * npos, -1).T,
                     precision=precision)
  d = q.sq_norm.reshape(b * npos, 1) - 2.0 * cross
  if ksq is not None:
    d = d + ksq.reshape(1, n * npos)
  d = jnp.maximum(d, 0.0)
  # Admission as an additive 0/+inf penalty on the 2-D logits: a 4-D broadcast
  # [b, P, n, P] of the codes costs more than the exponentials on CPU.
  if q.codes is not None:
    qc, kc = q.codes
    pen = jnp.where(qc[:, :, None] == kc[:, None, :], 0.0, jnp.inf).astype(d.dtype)
    d = d + jnp.tile(pen.reshape(b * npos, npos), (1, n))
  if ok is not None:
    d = jnp.where(jnp.repeat(ok, npos)[None, :], d, jnp.inf)
  p, m = _weights(d, jnp.repeat(q.coef, npos))
  w = jnp.matmul(p, values.reshape(n * npos, -1), precision=precision)
  return LSEStats(m, jnp.sum(p, -1), w)


def patch_stats(q: Queries, images, extract: Callable, *, center_values: bool,
                equivariant: bool, chunk: int | None, precision, valid=None) -> LSEStats:
  """Running log-sum-exp statistics of the patch posteriors over all training images.

  The query images are processed in tiles (`tiles`), each against all
  training images folded in blocks of `chunk` images (None: automatic).

  Args:
    q: the queries (`Queries`).
    images: training images `[N, H, W, C]`.
    extract: `images [n, H, W, C] -> patches [n, P, K]` (the window layout).
    center_values: average the centre pixels `[n, P, C]` (True) or the whole
      patches `[n, P, K]` (False).
    equivariant: the pairing (module docstring).
    chunk: training images per block, or None.
    precision: matmul precision.
    valid: optional `[N]` bool; images marked False get weight 0 (shard padding).

  Returns:
    `LSEStats` with rows `b·P + p`: `[B·P]`, `[B·P]`, `[B·P, V]`.
  """
  n_img, h, w, c = images.shape
  b, npos = q.sq_norm.shape
  b_tile, chunk = tiles(b, npos, equivariant, n_img, chunk)
  block_fn = _block_equivariant if equivariant else _block_local
  side = jnp.ones((n_img,), bool) if valid is None else valid

  def one_tile(qt):
    if not equivariant:   # positions first: one batched matmul per chunk, no copies
      qt = qt._replace(features=jnp.swapaxes(qt.features, 0, 1), sq_norm=qt.sq_norm.T)

    def block(imgs, ok):
      y = extract(imgs, positions_first=not equivariant)
      if center_values:
        values = imgs.reshape(imgs.shape[0], h * w, c)
        values = values if equivariant else jnp.swapaxes(values, 0, 1)
      else:
        values = y
      return block_fn(qt, y, values, None if valid is None else ok, precision)

    st = streaming._chunked(block, streaming.merge_stats, images, side, chunk)
    if equivariant:
      return st
    bt = qt.sq_norm.shape[1]
    return LSEStats(*(jnp.swapaxes(a.reshape((npos, bt) + a.shape[1:]), 0, 1).reshape(
        a.shape) for a in st))

  n_tiles = -(-b // b_tile)
  if n_tiles == 1:
    return one_tile(q)
  pad = n_tiles * b_tile - b
  shared_keys = q.codes is not None and q.codes[1].shape[0] == 1

  def split(a):   # [B, ...] -> [tiles, b_tile, ...], padding rows repeat row 0
    a = jnp.concatenate([a, jnp.broadcast_to(a[:1], (pad,) + a.shape[1:])]) if pad else a
    return a.reshape((n_tiles, b_tile) + a.shape[1:])

  codes = None if q.codes is None else (split(q.codes[0]),
                                        None if shared_keys else split(q.codes[1]))
  parts = (split(q.features), split(q.sq_norm), split(q.coef), codes)

  def tile(part):
    f, sq, coef, cd = part
    if cd is not None:
      cd = (cd[0], q.codes[1] if shared_keys else cd[1])
    return one_tile(Queries(f, sq, coef, q.key_mask, cd))

  st = lax.map(tile, parts)
  return LSEStats(*(a.reshape((n_tiles * b_tile * npos,) + a.shape[2:])[:b * npos]
                    for a in st))


def patch_stats_sharded(q: Queries, images, extract: Callable, mesh, axis, *,
                        center_values: bool, equivariant: bool, chunk: int,
                        precision) -> LSEStats:
  """`patch_stats` with the training images split over the devices on `axis`.

  The queries are replicated; each device folds its own images and the
  partial sums are merged with one `pmax` and two `psum`s (as
  `streaming.lse_stats_sharded`).  N need not divide the device count: padding
  images are marked invalid and get weight exactly 0.
  """
  n_dev = mesh.shape[axis]
  n = images.shape[0]
  pad = (-n) % n_dev
  valid = jnp.ones((n,), bool)
  if pad:
    images = jnp.concatenate([images, jnp.zeros((pad,) + images.shape[1:], images.dtype)])
    valid = jnp.concatenate([valid, jnp.zeros((pad,), bool)])

  def local(q, imgs, ok):
    s = patch_stats(q, imgs, extract, center_values=center_values,
                    equivariant=equivariant, chunk=chunk, precision=precision,
                    valid=ok if pad else None)
    m = lax.pmax(s.max_logit, axis)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    fin = jnp.isfinite(s.max_logit)
    f = jnp.where(fin, jnp.exp(jnp.where(fin, s.max_logit, 0.0) - m_safe), 0.0)
    return LSEStats(m, lax.psum(s.total * f, axis), lax.psum(s.weighted * f[:, None], axis))

  q_spec = jax.tree.map(lambda _: P(), q)
  fn = jax.shard_map(local, mesh=mesh,
                     in_specs=(q_spec, P(axis, None, None, None), P(axis)),
                     out_specs=LSEStats(P(), P(), P()), check_vma=False)
  return fn(q, images, valid)
