"""Stiefel-manifold geometry for orthonormal bases `[..., D, C]` (matmuls only).

Used by the Riemannian training of the low-rank denoisers (`repro_jax.lowrank.model`):
tangent projection, a Newton–Schulz polar retraction and Haar-random bases.
A stack of K bases `[K, D, R]` is orthonormalized either block by block or
jointly, as one `[D, K·R]` matrix (`flatten_blocks` / `unflatten_blocks`).
Zero (padded) columns stay exactly zero through every function here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def flatten_blocks(bases, joint):
  """`[K, D, R]` → matrices to orthonormalize: `[1, D, KR]` (joint) or `[K, D, R]`."""
  if not joint:
    return bases
  k, d, r = bases.shape
  return jnp.transpose(bases, (1, 0, 2)).reshape(1, d, k * r)


def unflatten_blocks(x, shape, joint):
  if not joint:
    return x
  k, d, r = shape
  return jnp.transpose(x[0].reshape(d, k, r), (1, 0, 2))


def tangent_projection(x, g):
  """Project `g` onto the tangent space of the Stiefel manifold at `x`.

  `g − x sym(xᵀ g)`; `x`, `g` `[..., D, C]` (zero columns stay zero).
  """
  xtg = jnp.swapaxes(x, -1, -2) @ g
  return g - x @ (0.5 * (xtg + jnp.swapaxes(xtg, -1, -2)))


def polar_retraction(x, iters: int = 4):
  """Orthonormal polar factor of `x [..., D, C]` by Newton–Schulz iterations.

  `x ← 1.5 x − 0.5 x xᵀx` converges quadratically to `U Vᵀ` (x = U S Vᵀ) when
  every singular value lies in (0, √3); the input is scaled down when the
  Gershgorin bound on `‖xᵀx‖₂` exceeds 2.  Zero columns stay exactly zero, so
  padded ranks need no special case.  After a tangent step `x + Δ` the singular
  values are `sqrt(1 + eig(ΔᵀΔ)) ≥ 1`, close to 1: 3–4 iterations reach float32
  round-off.
  """
  gram = jnp.swapaxes(x, -1, -2) @ x
  bound = jnp.max(jnp.sum(jnp.abs(gram), -1), -1)[..., None, None]
  x = jnp.where(bound > 2.0, x / jnp.sqrt(bound), x)
  for _ in range(iters):
    x = 1.5 * x - 0.5 * x @ (jnp.swapaxes(x, -1, -2) @ x)
  return x


def random_stiefel(key, dim: int, num_components: int, rank: int, *,
                   joint: bool = True, dtype=jnp.float32):
  """Random orthonormal bases `[K, D, R]` (QR of a Gaussian, signs fixed).

  With `joint`, the K blocks are mutually orthogonal (needs `K R ≤ D`).
  """
  cols = num_components * rank if joint else rank
  reps = 1 if joint else num_components
  g = jax.random.normal(key, (reps, dim, cols), dtype)
  q, r = jnp.linalg.qr(g)
  q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]
  return unflatten_blocks(q, (num_components, dim, rank), joint)


def project_blocks(bases, g, joint: bool):
  """`tangent_projection` for a stack of bases `[K, D, R]` (jointly or per block)."""
  x = tangent_projection(flatten_blocks(bases, joint), flatten_blocks(g, joint))
  return unflatten_blocks(x, bases.shape, joint)


def retract_blocks(bases, joint: bool, iters: int = 4):
  """`polar_retraction` for a stack of bases `[K, D, R]` (jointly or per block)."""
  return unflatten_blocks(polar_retraction(flatten_blocks(bases, joint), iters),
                          bases.shape, joint)
