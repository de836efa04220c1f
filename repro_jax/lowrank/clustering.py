"""K-subspaces clustering, subspace distances and label accuracy (docs/theory.md §4–§5).

The subspace-clustering problem of the low-dim talk,

    max (1/N) Σ_k Σ_{i ∈ C_k} ‖U_kᵀ x_i‖²,   C_k = {i : ‖U_kᵀ x_i‖ ≥ ‖U_lᵀ x_i‖ ∀ l},

is solved here by the classical alternating K-subspaces algorithm (assign each
point to the subspace that captures most of its energy, then refit each `U_k`
as the top-r left singular subspace of its cluster), from several random
restarts, keeping the best objective.  Unlike the trained model of
`repro_jax.lowrank.model`, the K subspaces are not constrained to be orthogonal.

Shapes: points `[N, D]` with a row `mask [N]`; bases `[K, D, R]` with zero
columns for ranks below R (`rank_mask [R]` or `[K, R]`).  Everything is pure
and vmappable over grids of cells.
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


# Distances and matching --------------------------------------------------------

def projection_distance(u, v):
  """`‖U Uᵀ − V Vᵀ‖_F` for orthonormal (or zero) columns, `[..., D, R]` → `[...]`.

  Computed from the `D × D` projectors, not from `sqrt(r + r' − 2‖UᵀV‖_F²)`,
  which loses every digit below `sqrt(eps)` (≈ 3e-4 in float32).
  """
  pu = u @ jnp.swapaxes(u, -1, -2)
  pv = v @ jnp.swapaxes(v, -1, -2)
  return jnp.sqrt(jnp.sum(jnp.square(pu - pv), axis=(-2, -1)))


def permutations(k: int) -> np.ndarray:
  """All permutations of `range(k)`, `[k!, k]` int32 (static; K ≤ ~6)."""
  return np.array(list(itertools.permutations(range(k))), np.int32)


def matched_distances(bases, reference):
  """Per-component distances after the best matching of components.

  The matching minimizes the largest distance `max_k ‖P_k − Q_{π(k)}‖_F`
  over permutations π (all K! enumerated).

  Args:
    bases: `[K, D, R]`; reference: `[K, D, R']`.

  Returns:
    `(distances [K], perm [K])`: `distances[k] = ‖P_k − Q_{perm[k]}‖_F`.
  """
  k = bases.shape[0]
  pair = projection_distance(bases[:, None], reference[None])             # [K, K]
  perms = jnp.asarray(permutations(k))                                   # [P, K]
  cost = pair[jnp.arange(k)[None, :], perms]                             # [P, K]
  best = jnp.argmin(jnp.max(cost, -1) + 1e-6 * jnp.sum(cost, -1))
  return cost[best], perms[best]


def max_matched_distance(bases, reference):
  """`min_π max_k ‖P_k − Q_{π(k)}‖_F`: the recovery error of a set of subspaces."""
  return jnp.max(matched_distances(bases, reference)[0])


def label_accuracy(pred, labels, mask, num_components: int):
  """Cluster-assignment accuracy under the best relabelling of `pred`.

  Args:
    pred, labels: `[N]` ints in `[0, K)`; mask: `[N]`.

  Returns:
    scalar in [0, 1]: `max_π mean_i [π(pred_i) = labels_i]` over masked rows.
  """
  perms = jnp.asarray(permutations(num_components))                      # [P, K]
  hits = perms[:, pred] == labels[None, :]                               # [P, N]
  m = jnp.asarray(mask, jnp.float32)
  return jnp.max(jnp.sum(hits * m, -1)) / jnp.maximum(jnp.sum(m), 1.0)


# The subspace-clustering objective -------------------------------------------

def energies(x, bases):
  """`‖U_kᵀ x_i‖²`, `[N, K]`."""
  return jnp.sum(jnp.square(jnp.einsum("nd,kdr->nkr", x, bases)), -1)


def assign(x, bases):
  """`C_k`: each point's subspace of largest captured energy, `[N]` int32."""
  return jnp.argmax(energies(x, bases), -1).astype(jnp.int32)


def clustering_objective(x, mask, bases):
  """`(1/N) Σ_i max_k ‖U_kᵀ x_i‖²` over the masked rows (the talk's objective)."""
  x = jnp.asarray(x)
  m = jnp.asarray(mask, x.dtype)
  return jnp.sum(m * jnp.max(energies(x, bases), -1)) / jnp.maximum(jnp.sum(m), 1.0)


class KSubspacesResult(NamedTuple):
  """`bases [K, D, R]`, `labels [N]`, `objective` (scalar), `restart_objectives [S]`."""
  bases: jax.Array
  labels: jax.Array
  objective: jax.Array
  restart_objectives: jax.Array


def _refit(x, mask, labels, bases, cmask, power_iters):
  """Refit each `U_k` to the top-r left singular subspace of its cluster.

  Block power iterations `U_k ← orth(X_kᵀ X_k U_k)` warm-started from the
  current bases: matmuls and a `D × R` QR, where an `eigh` of every `D × D`
  cluster scatter costs ~D³ per component per restart per iteration (minutes
  over a D = 96 grid on a CPU).  The top-r subspace is the only stable fixed
  point, and for points lying exactly in r-dimensional subspaces one
  iteration from any start that is not orthogonal to them reaches it.  An
  empty cluster keeps its basis.
  """
  k = bases.shape[0]
  onehot = jax.nn.one_hot(labels, k, dtype=x.dtype) * mask[:, None]     # [N, K]
  u = bases
  for _ in range(power_iters):
    coords = jnp.einsum("nd,kdr->nkr", x, u) * onehot[..., None]
    v = jnp.einsum("nd,nkr->kdr", x, coords) * cmask[:, None, :]
    q, rr = jnp.linalg.qr(v)
    q = q * jnp.where(jnp.diagonal(rr, axis1=-2, axis2=-1) < 0, -1.0, 1.0)[:, None, :]
    u = q * cmask[:, None, :]
  return jnp.where((jnp.sum(onehot, 0) > 0)[:, None, None], u, bases)


def seed_bases(key, x, mask, rank_mask, refine_iters: int = 3):
  """Initial bases from local neighbourhoods of the data, k-means++ style.

  Subspace k starts as the span of an anchor point and its `r − 1` nearest
  neighbours in absolute cosine similarity (points of one subspace are more
  coherent with each other than with points of another), then is refined by
  `refine_iters` block power iterations on the anchor's cos²-weighted scatter
  `Σ_j cos²(anchor, x_j) x_j x_jᵀ`: a local PCA.  Without noise the span is
  already exact and stays so; with noise the nearest neighbours are nearly
  parallel to the anchor, so the span's other directions are mostly noise,
  and the weighted scatter recovers them from every coherent point.  The
  first anchor is uniform; each next one is drawn with probability ∝ (energy
  fraction left outside the subspaces seeded so far)².  Far fewer restarts
  are needed than from random subspaces or random points, which mix clusters
  as soon as r is large.

  Args:
    key: PRNG key.
    x: points `[N, D]`; mask: `[N]`.
    rank_mask: `[K, R]` active columns of each subspace.
    refine_iters: power iterations of the local PCA (static; 0: the plain span).

  Returns:
    `[K, D, R]`, each block orthonormal (blocks not mutually orthogonal).
  """
  cmask = jnp.asarray(rank_mask, x.dtype)
  k, r = cmask.shape
  n = x.shape[0]
  mask = jnp.asarray(mask, x.dtype)
  x = x * mask[:, None]
  xn = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-30)
  cos = jnp.where(mask[None, :] > 0, jnp.abs(xn @ xn.T), -1.0)          # [N, N]
  # One RNG op (each jax.random call compiles its own threefry): Gumbel noise
  # for the anchors and Gaussian fill, per subspace.
  g = jax.random.normal(key, (k, n + x.shape[1] * r), x.dtype)
  gumbel = -jnp.log(-jnp.log(jnp.clip(jax.scipy.special.ndtr(g[:, :n]), 1e-30, 1 - 1e-7)))
  fills = g[:, n:].reshape(k, x.shape[1], r)
  seeds, left = [], mask
  for j in range(k):
    logits = jnp.where(mask > 0, 2.0 * jnp.log(jnp.maximum(left, 1e-12)), -jnp.inf)
    anchor = jnp.argmax(logits + gumbel[j])
    top, idx = jax.lax.top_k(cos[anchor], min(r, n))
    # Fewer than r valid points: random directions complete the span.
    fill = fills[j]
    pts = fill.at[:, :idx.shape[0]].set(jnp.where(top[None, :] >= 0, x[idx].T,
                                                  fill[:, :idx.shape[0]]))
    q, _ = jnp.linalg.qr(pts * cmask[j][None, :])
    w = jnp.square(jnp.maximum(cos[anchor], 0.0))                          # [N]
    for _ in range(refine_iters):
      q, _ = jnp.linalg.qr(x.T @ (w[:, None] * (x @ (q * cmask[j][None, :]))))
    q = q * cmask[j][None, :]
    seeds.append(q)
    left = jnp.minimum(left, 1.0 - jnp.sum(jnp.square(xn @ q), -1))
  return jnp.stack(seeds)


@functools.partial(jax.jit, static_argnames=("num_components", "iters", "restarts",
                                             "power_iters"))
def k_subspaces(key, x, mask, rank_mask, num_components: int, *,
                iters: int = 20, restarts: int = 4,
                power_iters: int = 2) -> KSubspacesResult:
  """K-subspaces clustering by alternating assignment / PCA, best of restarts.

  Args:
    key: PRNG key of the restarts' seeding.
    x: points `[N, D]`; mask: `[N]`.
    rank_mask: `[R]` or `[K, R]` active columns of each subspace.
    num_components: K (static).
    iters: alternations per restart (static).
    restarts: random restarts (static); the one with the largest
      `clustering_objective` is returned.
    power_iters: block power iterations per refit (static; see `_refit`).

  Returns:
    `KSubspacesResult`.
  """
  k = num_components
  mask = jnp.asarray(mask, x.dtype)
  x = x * mask[:, None]
  cmask = jnp.broadcast_to(jnp.asarray(rank_mask, x.dtype), (k, rank_mask.shape[-1]))

  def one(key):
    def body(_, bases):
      return _refit(x, mask, assign(x, bases), bases, cmask, power_iters)
    bases = jax.lax.fori_loop(0, iters, body, seed_bases(key, x, mask, cmask))
    return bases, clustering_objective(x, mask, bases)

  bases, obj = jax.vmap(one)(jax.random.split(key, restarts))
  best = jnp.argmax(obj)
  return KSubspacesResult(bases[best], assign(x, bases[best]), obj[best], obj)


def k_subspaces_grid(keys, x, mask, rank_mask, num_components: int, *,
                     iters: int = 20, restarts: int = 4) -> KSubspacesResult:
  """`k_subspaces` vmapped over cells: keys `[C]`, x `[C, N, D]`, mask `[C, N]`,
  rank_mask `[C, R]` or `[C, K, R]`."""
  with jax.threefry_partitionable(False):   # see lowrank.compile_friendly_rng
    return _k_subspaces_grid(keys, x, mask, rank_mask, num_components, iters, restarts)


@functools.partial(jax.jit, static_argnums=(4, 5, 6))
def _k_subspaces_grid(keys, x, mask, rank_mask, num_components, iters, restarts):
  fn = functools.partial(k_subspaces, num_components=num_components, iters=iters,
                         restarts=restarts)
  return jax.vmap(fn)(keys, x, mask, rank_mask)
