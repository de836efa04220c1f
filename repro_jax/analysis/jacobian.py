"""Jacobians of a denoiser's posterior mean: exact, matrix-free top-k, rank ratio.

For a canonical denoiser `D(x [B, ...], σ [B]) -> x0 [B, ...]` (VE
coordinates, `x = x0 + σ ε`, `repro_jax.diffusion.denoiser`) the Jacobian of
row b is

    J_b = ∂ D(x, σ)_b / ∂ x_b        [D, D],  D = prod(x.shape[1:])   (flattened),

the low-dim talk's `J_t(x_t) = ∇_{x_t} x_θ(x_t, t)` (docs/theory.md §6).
Every function here assumes the rows are independent (`D(x)_b` depends on
`x_b` only), which holds for every canonical denoiser, stacked model-major
ones included (`denoiser.stack`): a tangent applied to all B rows at once then
gives B Jacobian-vector products in one `jvp`, and a cotangent B
vector-Jacobian products in one `vjp`.

- `jacobian`: the exact `[B, D, D]` by D batched `jvp`s (the rows sharing
  each tangent), for D up to a few hundred.
- `randomized_svd` / `top_singular`: the top-k singular triplets of each J_b
  by randomized subspace iteration (Halko, Martinsson & Tropp 2011) with
  `k + oversample` batched `jvp`s and as many `vjp`s per power step; no
  `[D, D]` array is formed, memory is `O(B · (k + oversample) · activations)`.
  `randomized_svd` takes any row-wise linear map (e.g. a masked Jacobian for
  LOCO edits).
- `rank_ratio`: the number of singular values above `τ · s_1`, over D.

Conventions: J acts on flattened rows, `J_b[i, j] = ∂ x0_{b,i} / ∂ x_{b,j}`;
singular values are in descending order; `u [B, D_out, k]` (output space),
`v [B, D_in, k]` (input space), `J_b v_i ≈ s_i u_i`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from repro_jax.diffusion import denoiser as denoiser_lib

RowMap = Callable[[jax.Array], jax.Array]   # [B, D_in] -> [B, D_out], row-wise linear


class TopSingular(NamedTuple):
  """The top-k singular triplets of B matrices: `J_b ≈ u_b diag(s_b) v_bᵀ`.

  `u [B, D_out, k]`, `s [B, k]` (descending), `v [B, D_in, k]`.
  """
  u: jax.Array
  s: jax.Array
  v: jax.Array


def _check_rows(x, sigma):
  x = jnp.asarray(x)
  if x.ndim < 2 or x.shape[0] < 1:
    raise ValueError(f"x must be a batch [B, ...] of at least one row; got shape {x.shape}.")
  sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
  return x, sigma


def linearize_rows(denoise, x, sigma):
  """`D` at `x` and its row-wise linear maps, on flattened rows.

  Args:
    denoise: a canonical denoiser (rows independent).
    x: `[B, ...]`; sigma: `[B]` or a scalar, σ > 0.

  Returns:
    `(x0 [B, D], jvp, vjp)`: `jvp(T [B, D]) -> [B, D]` is `J_b T_b` per row and
    `vjp(C [B, D]) -> [B, D]` is `J_bᵀ C_b` per row.  Both come from ONE
    reverse-mode linearization (`jax.vjp`; the jvp is its transpose), so the
    forward pass is not redone, and a network whose gradients are a
    `custom_vjp` (the U-Net's convolutions), where forward mode cannot go,
    works too.
  """
  x, sigma = _check_rows(x, sigma)
  shape = x.shape

  def f(flat):
    return denoiser_lib.as_denoiser(denoise)(flat.reshape(shape), sigma).reshape(shape[0], -1)

  x0, vjp = jax.vjp(f, x.reshape(shape[0], -1))
  transpose = jax.linear_transpose(vjp, x0)
  return x0, lambda t: transpose((t,))[0], lambda c: vjp(c)[0]


def jacobian(denoise, x, sigma, *, chunk_size: int | None = None) -> jax.Array:
  """The exact Jacobian of every row, `[B, D, D]` with `J[b, i, j] = ∂x0_{b,i}/∂x_{b,j}`.

  D batched `jvp`s (one per input coordinate, each applied to every row);
  `chunk_size` of them at a time (`lax.map`), all at once when None.
  """
  x, sigma = _check_rows(x, sigma)
  b, d = x.shape[0], int(x[0].size)
  _, jvp, _ = linearize_rows(denoise, x, sigma)
  eye = jnp.eye(d, dtype=x.dtype)
  cols = jax.lax.map(lambda e: jvp(jnp.broadcast_to(e, (b, d))), eye,
                     batch_size=chunk_size)                   # [D_in, B, D_out]
  return jnp.transpose(cols, (1, 2, 0))


def _orth(y):
  """Orthonormal basis of the columns of `y [B, D, l]`, column by column (classical
  Gram–Schmidt, each column projected twice: orthogonal to round-off, like a
  Householder QR); a column left with under `l · eps` of its norm is numerically
  in the span of the previous ones and becomes 0.

  Written as matrix–vector products in XLA rather than a LAPACK QR of the tall
  block: jaxlib's LAPACK runs OpenBLAS threads that compete with XLA's for the
  cores (several times slower on a small CPU machine), and a Gram-matrix
  (Cholesky-like) QR loses the directions below `sqrt(eps)` of the largest,
  which float32 rank ratios at τ = 1e-3 need.
  """
  l = y.shape[-1]
  tol = l * jnp.finfo(y.dtype).eps

  def column(j, q):
    v0 = jax.lax.dynamic_index_in_dim(y, j, axis=2, keepdims=False)          # [B, D]
    v = v0
    for _ in range(2):
      v = v - jnp.einsum("bdk,bk->bd", q, jnp.einsum("bdk,bd->bk", q, v))
    n = jnp.linalg.norm(v, axis=1, keepdims=True)
    keep = n > tol * jnp.linalg.norm(v0, axis=1, keepdims=True)
    v = jnp.where(keep, v / jnp.where(keep, n, 1.0), 0.0)
    return jax.lax.dynamic_update_index_in_dim(q, v, j, axis=2)

  return jax.lax.fori_loop(0, l, column, jnp.zeros_like(y))


def _check_svd_args(k: int, oversample: int, power_iters: int, dim_in: int) -> None:
  if k < 1 or oversample < 0 or power_iters < 0:
    raise ValueError(f"need k >= 1, oversample >= 0, power_iters >= 0; got k={k}, "
                     f"oversample={oversample}, power_iters={power_iters}.")
  if k > dim_in:
    raise ValueError(f"k = {k} exceeds the input dimension {dim_in}.")


def randomized_svd(matvec: RowMap, rmatvec: RowMap, batch: int, dim_in: int, key, k: int, *,
                   oversample: int = 8, power_iters: int = 1, dtype=jnp.float32) -> TopSingular:
  """Top-k singular triplets of B row-wise linear maps by randomized subspace iteration.

  Args:
    matvec: `T [B, D_in] -> [B, D_out]`, row b mapped by `A_b`.
    rmatvec: `C [B, D_out] -> [B, D_in]`, row b mapped by `A_bᵀ`.
    batch, dim_in: B and D_in.
    key: PRNG key of the Gaussian test matrix `[B, D_in, l]`, `l = k + oversample`.
    k: number of triplets, `1 <= k <= min(D_in, D_out)`; `l` is capped at
      `min(D_in, D_out)`.
    oversample: extra test vectors (accuracy of the k-th triplet).
    power_iters: subspace iterations `q` (each costs l matvecs and l
      rmatvecs); the error of `s_i` shrinks like `(s_{l+1}/s_i)^{2q+1}`.

  Returns:
    `TopSingular(u [B, D_out, k], s [B, k], v [B, D_in, k])`.
  """
  _check_svd_args(k, oversample, power_iters, dim_in)
  dim_out = jax.eval_shape(matvec, jax.ShapeDtypeStruct((batch, dim_in), dtype)).shape[-1]
  if k > dim_out:
    raise ValueError(f"k = {k} exceeds the output dimension {dim_out}.")
  l = min(k + oversample, dim_in, dim_out)
  # Columns of a [B, D, l] block are mapped as l batched calls.
  apply = jax.vmap(matvec, in_axes=2, out_axes=2)
  apply_t = jax.vmap(rmatvec, in_axes=2, out_axes=2)

  omega = jax.random.normal(key, (batch, dim_in, l), dtype)
  y = apply(omega)                                             # [B, D_out, l]

  # A few (static) steps, unrolled: in a `fori_loop` XLA:CPU ran each step about
  # 4× slower than the same products outside it (benchmarks/bench_jacobian.py).
  for _ in range(power_iters):
    y = apply(_orth(apply_t(_orth(y))))
  q = _orth(y)                                                 # [B, D_out, l]
  bt = apply_t(q)                                              # [B, D_in, l] = Aᵀ Q
  # Aᵀ Q = Q2 R (R = Q2ᵀ Aᵀ Q, l × l), so Qᵀ A = Rᵀ Q2ᵀ and the SVD Rᵀ = Ũ S Ṽᵀ
  # gives u = Q Ũ, v = Q2 Ṽ: LAPACK's SVD of an l × l matrix only.
  q2 = _orth(bt)
  r = jnp.swapaxes(q2, 1, 2) @ bt                              # [B, l, l]
  ub, s, vt = jnp.linalg.svd(jnp.swapaxes(r, 1, 2))
  u, v = q @ ub, q2 @ jnp.swapaxes(vt, 1, 2)
  return TopSingular(u[..., :k], s[..., :k], v[..., :k])


def top_singular(denoise, x, sigma, key, k: int, *, oversample: int = 8,
                 power_iters: int = 1) -> TopSingular:
  """Top-k singular triplets of every row's Jacobian, matrix-free (`randomized_svd`).

  `x [B, ...]`, `sigma [B]` or a scalar; the cost is `(k + oversample) ·
  (power_iters + 1)` batched `jvp`s and as many `vjp`s of one linearization.
  """
  x, sigma = _check_rows(x, sigma)
  _check_svd_args(k, oversample, power_iters, int(x[0].size))   # before any work
  _, jvp, vjp = linearize_rows(denoise, x, sigma)
  return randomized_svd(jvp, vjp, x.shape[0], int(x[0].size), key, k,
                        oversample=oversample, power_iters=power_iters, dtype=x.dtype)


def singular_values(jac) -> jax.Array:
  """Singular values `[..., min(D_out, D_in)]` (descending) of Jacobians `[..., D_out, D_in]`."""
  return jnp.linalg.svd(jac, compute_uv=False)


def rank_ratio(s, tau, dim: int | None = None) -> jax.Array:
  """Numerical rank over D: `#{i : s_i > τ · s_1} / D` (docs/theory.md §6).

  Args:
    s: singular values `[..., n]`, descending (`s_1 = s[..., 0]`).
    tau: relative threshold(s): a scalar, or `[T]` for a band (a leading
      axis T is added to the result).
    dim: D (default n).  A zero matrix (`s_1 = 0`) has rank 0.
  """
  s = jnp.asarray(s)
  tau = jnp.asarray(tau, s.dtype)
  dim = s.shape[-1] if dim is None else dim
  cut = tau.reshape(tau.shape + (1,) * s.ndim) * s[..., :1]
  count = jnp.sum((s > cut) & (s > 0), axis=-1)
  return count / dim
