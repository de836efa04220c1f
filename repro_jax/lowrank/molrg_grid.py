"""Padded grids of MoLRG training sets for vmapped phase diagrams (docs/theory.md §4).

A phase diagram over (seed, N, r) is one `jit(vmap(...))` when every cell has
the same array shapes: data are padded to `N_max` rows per component with a row
`mask`, ground-truth bases to `R_max` columns with a `rank_mask`.  Cells with
the same seed share their random numbers, so their data are nested.
`lowrank.train_grid` trains a `Grid` in one compiled program.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax.closed_form import denoisers
from repro_jax.lowrank.model import compile_friendly_rng


def molrg_cell(key, dim: int, num_components: int, r_max: int, n_max: int, n, r,
               noise=0.0, angle=90.0, sizes: tuple[int, ...] | None = None):
  """One padded cell of a MoLRG phase diagram: `x = U_k a + ν e`.

  The ground truth `[K, D, R_max]` and the coefficients depend only on `key`:
  with the same key, the data of `(n, r)` are nested in those of larger `n` or
  `r` (common random numbers across the grid), and the noise `e` and the
  angle change nothing else.  `n`, `r`, `noise` and `angle` may be traced.

  Args:
    key: PRNG key of the cell.
    dim, num_components, r_max, n_max: D, K, R_max and the rows per unit of
      `sizes` (static).
    n: points per unit of `sizes` (component k has `sizes[k]·n` points).
    r: rank of every component (columns `r … R_max − 1` are zero).
    noise: ν, the standard deviation of the isotropic noise `e ~ N(0, I_D)`
      added to every point (the coefficients are `a ~ N(0, I_r)`).
    angle: θ in degrees.  `U_0 = Q_0` and, for k ≥ 1, `U_k = cos θ Q_0 +
      sin θ Q_k` with `[Q_0 … Q_{K−1}]` orthonormal: every principal angle
      between `U_0` and `U_k` is θ (between `U_j` and `U_k`, j, k ≥ 1, it is
      `arccos(cos² θ)`).  θ = 90° gives the mutually orthogonal subspaces of
      the low-dim talk (the same bases as `random_molrg_bases`).
    sizes: static relative sizes of the components (default all 1), e.g.
      `(4, 1)`: component 0 has four times as many points as component 1.

  Returns:
    `(data [K·M, D], mask [K·M], rank_mask [R_max], truth [K, D, R_max]
    (masked to rank r), labels [K·M])` with `M = max(sizes)·n_max`;
    component k owns rows `k·M … k·M + sizes[k]·n − 1`; padded rows are zero.
  """
  sizes = (1,) * num_components if sizes is None else tuple(int(v) for v in sizes)
  if len(sizes) != num_components or min(sizes) < 1:
    raise ValueError(f"`sizes` needs {num_components} positive entries; got {sizes!r}.")
  rows = max(sizes) * n_max
  k_b, k_z = jax.random.split(key)
  q = denoisers.random_molrg_bases(k_b, dim, num_components, r_max)         # [K, D, R]
  # Through the complement 90° − θ: θ = 90° gives cos θ = 0 and sin θ = 1 exactly.
  comp = jnp.deg2rad(90.0 - jnp.asarray(angle, q.dtype))
  bases = jnp.concatenate([q[:1], jnp.sin(comp) * q[:1] + jnp.cos(comp) * q[1:]])
  rank_mask = (jnp.arange(r_max) < r).astype(q.dtype)
  truth = bases * rank_mask
  z = jax.random.normal(k_z, (num_components, rows, r_max), q.dtype) * rank_mask
  e = jax.random.normal(jax.random.fold_in(key, 2), (num_components, rows, dim), q.dtype)
  data = (jnp.einsum("kdr,knr->knd", truth, z) + noise * e).reshape(num_components * rows, dim)
  mask = jnp.concatenate([(jnp.arange(rows) < m * n).astype(q.dtype) for m in sizes])
  labels = jnp.repeat(jnp.arange(num_components), rows)
  return data * mask[:, None], mask, rank_mask, truth, labels


class Grid(NamedTuple):
  """A padded grid of MoLRG cells (C cells), ready for `train_grid`.

  `seed, n, r, noise, angle` `[C]` (cell coordinates; n is the number of
  points per unit of the grid's `sizes`), `data [C, K·M, D]`, `mask [C, K·M]`,
  `rank_mask [C, R_max]`, `truth [C, K, D, R_max]`, `labels [C, K·M]`
  (`M = max(sizes)·N_max`, see `molrg_cell`).
  """
  seed: jax.Array
  n: jax.Array
  r: jax.Array
  data: jax.Array
  mask: jax.Array
  rank_mask: jax.Array
  truth: jax.Array
  labels: jax.Array
  noise: jax.Array
  angle: jax.Array


@compile_friendly_rng
def molrg_grid(key, seeds, ns, rs, *, dim: int, num_components: int = 1,
               r_max: int | None = None, n_max: int | None = None,
               noises=(0.0,), angles=(90.0,), sizes: tuple[int, ...] | None = None) -> Grid:
  """All cells `seeds × noises × angles × ns × rs` (in that order, rs fastest).

  Cells with the same seed share `fold_in(key, seed)`, so their data are
  nested (common random numbers): the curves over N, r, ν and θ are smooth in
  the randomness, not only in expectation.  `noises`, `angles` and `sizes`
  are those of `molrg_cell`.
  """
  seeds, ns, rs = (np.asarray(v, np.int32) for v in (seeds, ns, rs))
  noises, angles = (np.asarray(v, np.float32) for v in (noises, angles))
  if noises.min() < 0 or not np.all(np.isfinite(noises)):
    raise ValueError(f"`noises` must be finite and >= 0; got {noises.tolist()}.")
  if angles.min() <= 0 or angles.max() > 90:
    raise ValueError(f"`angles` must lie in (0, 90] degrees; got {angles.tolist()}.")
  r_max = int(rs.max()) if r_max is None else r_max
  n_max = int(ns.max()) if n_max is None else n_max
  s, nu, th, n, r = (g.reshape(-1) for g in np.meshgrid(seeds, noises, angles, ns, rs,
                                                        indexing="ij"))
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(s))
  cell = jax.jit(jax.vmap(functools.partial(
      molrg_cell, dim=dim, num_components=num_components, r_max=r_max, n_max=n_max,
      sizes=sizes)))
  data, mask, rank_mask, truth, labels = cell(keys, n=jnp.asarray(n), r=jnp.asarray(r),
                                              noise=jnp.asarray(nu), angle=jnp.asarray(th))
  return Grid(jnp.asarray(s), jnp.asarray(n), jnp.asarray(r), data, mask, rank_mask,
              truth, labels, jnp.asarray(nu), jnp.asarray(th))
