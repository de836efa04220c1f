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


def molrg_cell(key, dim: int, num_components: int, r_max: int, n_max: int, n, r):
  """One padded cell of a MoLRG phase diagram, balanced over components.

  The ground truth `[K, D, R_max]` (mutually orthogonal, `random_molrg_bases`)
  and the coefficients depend only on `key`: with the same key, the data of
  `(n, r)` are nested in those of larger `n` or `r` (common random numbers
  across the grid).  `n`, `r` may be traced.

  Returns:
    `(data [K·n_max, D], mask [K·n_max], rank_mask [R_max], truth [K, D, R_max]
    (masked to rank r), labels [K·n_max])`; component k owns rows
    `k·n_max … k·n_max + n − 1`; padded rows are zero.
  """
  k_b, k_z = jax.random.split(key)
  bases = denoisers.random_molrg_bases(k_b, dim, num_components, r_max)
  rank_mask = (jnp.arange(r_max) < r).astype(bases.dtype)
  truth = bases * rank_mask
  z = jax.random.normal(k_z, (num_components, n_max, r_max), bases.dtype) * rank_mask
  data = jnp.einsum("kdr,knr->knd", truth, z).reshape(num_components * n_max, dim)
  mask = jnp.tile((jnp.arange(n_max) < n).astype(bases.dtype), num_components)
  labels = jnp.repeat(jnp.arange(num_components), n_max)
  return data * mask[:, None], mask, rank_mask, truth, labels


class Grid(NamedTuple):
  """A padded grid of MoLRG cells (C cells), ready for `train_grid`.

  `seed, n, r` `[C]` (cell coordinates; n is the number of points per
  component), `data [C, K·N_max, D]`, `mask [C, K·N_max]`, `rank_mask [C, R_max]`,
  `truth [C, K, D, R_max]`, `labels [C, K·N_max]`.
  """
  seed: jax.Array
  n: jax.Array
  r: jax.Array
  data: jax.Array
  mask: jax.Array
  rank_mask: jax.Array
  truth: jax.Array
  labels: jax.Array


@compile_friendly_rng
def molrg_grid(key, seeds, ns, rs, *, dim: int, num_components: int = 1,
               r_max: int | None = None, n_max: int | None = None) -> Grid:
  """All cells `seeds × ns × rs` (in that order, rs fastest) of a phase diagram.

  Cells with the same seed share `fold_in(key, seed)`, so their data are
  nested (common random numbers): the curves over N and r are smooth in the
  randomness, not only in expectation.
  """
  seeds, ns, rs = (np.asarray(v, np.int32) for v in (seeds, ns, rs))
  r_max = int(rs.max()) if r_max is None else r_max
  n_max = int(ns.max()) if n_max is None else n_max
  s, n, r = (g.reshape(-1) for g in np.meshgrid(seeds, ns, rs, indexing="ij"))
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(s))
  cell = jax.jit(jax.vmap(functools.partial(
      molrg_cell, dim=dim, num_components=num_components, r_max=r_max, n_max=n_max)))
  data, mask, rank_mask, truth, labels = cell(keys, n=jnp.asarray(n), r=jnp.asarray(r))
  return Grid(jnp.asarray(s), jnp.asarray(n), jnp.asarray(r), data, mask, rank_mask,
              truth, labels)
