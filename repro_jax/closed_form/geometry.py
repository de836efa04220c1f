"""Distances and projections to the data set `K` (docs/theory.md §2).

- finite `K` (a training set `[N, D]`): exact `dist_K` / `proj_K` by chunked
  nearest-neighbour search;
- union of subspaces (MoLRG support, bases `[K, D, R]`):
  `dist = min_k ‖x − U_k U_kᵀ x‖`;
- the smoothed squared distance
  `dist²_K(x, σ) = −2σ² log Σ_i exp(−‖x − y_i‖² / (2σ²))`, whose gradient
  is `2 (x − D*(x, σ)) = 2 σ ε*(x, σ)` (D* the empirical denoiser at scale 1).

Dtypes and checks follow `repro_jax.closed_form.denoisers`: integer inputs are
promoted to the default float dtype, float16 / bfloat16 are computed in
float32; shapes are checked also under `jit` / `vmap`, values (finite `x` and
data, σ > 0, orthonormal bases) on concrete arguments.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from repro_jax import validation
from repro_jax.closed_form import streaming
from repro_jax.closed_form.denoisers import _cast
from repro_jax.closed_form.denoisers import _per_row
from repro_jax.closed_form.denoisers import check_bases
from repro_jax.closed_form.denoisers import check_data
from repro_jax.closed_form.denoisers import check_params
from repro_jax.closed_form.denoisers import check_query


@functools.partial(jax.jit, static_argnames=("chunk_size", "precision"))
def _nearest(x, data, chunk_size, precision):
  return streaming.nearest(x, data, chunk=chunk_size, precision=precision)


def nearest_neighbors(x, data, *, chunk_size=streaming.DEFAULT_CHUNK,
                      precision="highest"):
  """Index and squared distance of the nearest row of `data` `[N, D]`.

  Args:
    x: queries `[B, D]`.
    data: `[N, D]`.

  Returns:
    `(index [B] int32, sq_dist [B])` (ties: the lowest index).
  """
  x, data = jnp.asarray(x), jnp.asarray(data)
  out, dt = validation.float_dtypes(x=x, data=data)
  check_data(data)
  check_query(x, data, "data")
  validation.check_chunk(chunk_size)
  x, data = _cast(dt, x, data)
  res = _nearest(x, data, chunk_size, precision)
  return res.index, res.sq_dist.astype(out)


def dist_finite(x, data, **kwargs):
  """`dist_K(x) = min_i ‖x − y_i‖`, `[B]`."""
  return jnp.sqrt(nearest_neighbors(x, data, **kwargs)[1])


def proj_finite(x, data, **kwargs):
  """`proj_K(x)`: the nearest row of `data` (ties: lowest index), `[B, D]`."""
  return jnp.asarray(data)[nearest_neighbors(x, data, **kwargs)[0]]


@jax.jit
def _subspace_residuals(x, bases):
  coords = jnp.einsum("bd,kdr->bkr", x, bases)
  proj = jnp.einsum("bkr,kdr->bkd", coords, bases)
  return jnp.sum(jnp.square(x[:, None, :] - proj), -1), proj        # [B, K], [B, K, D]


def _prepare_subspaces(x, bases):
  x, bases = jnp.asarray(x), jnp.asarray(bases)
  out, dt = validation.float_dtypes(x=x, bases=bases)
  check_bases(bases)
  validation.check_ndim(x, 2, "x", "BD")
  if x.shape[1] != bases.shape[1]:
    raise ValueError(f"`x` [B, D] and `bases` [K, D, R] disagree on D: "
                     f"{x.shape} vs {bases.shape}.")
  validation.check_finite(x, "x")
  return out, *_cast(dt, x, bases)


def dist_subspaces(x, bases):
  """Distance to a union of subspaces, `min_k ‖x − U_k U_kᵀ x‖`, `[B]`.

  `bases` `[K, D, R]` with orthonormal (or zero) columns.
  """
  out, x, bases = _prepare_subspaces(x, bases)
  return jnp.sqrt(jnp.min(_subspace_residuals(x, bases)[0], axis=1)).astype(out)


def proj_subspaces(x, bases):
  """Projection onto the nearest subspace of the union, `[B, D]`, and its index `[B]`."""
  out, x, bases = _prepare_subspaces(x, bases)
  res, proj = _subspace_residuals(x, bases)
  k = jnp.argmin(res, axis=1)
  return jnp.take_along_axis(proj, k[:, None, None], axis=1)[:, 0].astype(out), k


@functools.partial(jax.jit, static_argnames=("chunk_size", "precision", "mesh",
                                             "axis"))
def _smoothed(x, data, sigma, chunk_size, precision, mesh, axis):
  sigma = _per_row(sigma, x.shape[0], x.dtype)
  coef = 0.5 / jnp.square(sigma)
  if mesh is None:
    st = streaming.lse_stats(x, data, coef, chunk=chunk_size, precision=precision)
  else:
    st = streaming.lse_stats_sharded(x, data, coef, mesh, axis,
                                      chunk=chunk_size, precision=precision)
  return -2.0 * jnp.square(sigma) * (st.max_logit + jnp.log(st.total))


def smoothed_sq_distance(x, data, sigma, *, chunk_size=streaming.DEFAULT_CHUNK,
                         mesh=None, axis="data", precision="highest"):
  """Smoothed squared distance `−2σ² log Σ_i exp(−‖x − y_i‖² / (2σ²))`, `[B]`.

  It lies in `[dist_K(x)² − 2σ² log N, dist_K(x)²]` and tends to `dist_K(x)²`
  as σ → 0; `½ ∇_x` of it equals `σ ε*(x, σ) = x − D*(x, σ)` (VE coordinates).

  Args:
    x: `[B, D]` (VE coordinates, `x = x0 + σ ε`).
    data: `[N, D]`.
    sigma: σ > 0, scalar or `[B]`.
  """
  x, data = jnp.asarray(x), jnp.asarray(data)
  out, dt = validation.float_dtypes(x=x, data=data)
  check_data(data)
  check_query(x, data, "data")
  check_params(x, sigma=sigma)
  validation.check_chunk(chunk_size)
  x, data, sigma = _cast(dt, x, data, sigma)
  return _smoothed(x, data, sigma, chunk_size, precision, mesh, axis).astype(out)
