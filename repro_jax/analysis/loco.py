"""LOCO edit directions: the low-rank Jacobian restricted to an image region.

LOCO Edit (Chen et al., NeurIPS 2024; the low-dim talk; docs/theory.md §6.2)
edits a region Ω of a generated image at one noise level: it moves `x_t`
along directions `v` whose effect on the posterior mean `D(x_t)` is inside Ω
and (nearly) nothing outside, then finishes sampling.  The directions come
from the Jacobian `J = ∂D/∂x_t` of `analysis.jacobian`, matrix-free.

Conventions as `analysis.jacobian`: rows are flattened, `x [B, ...]`,
`σ [B]`, VE coordinates (`x = x0 + σ ε`), rows independent.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from repro_jax.analysis import jacobian as jac
class EditDirections(NamedTuple):
  """LOCO edit directions of B inputs (`masked_directions`).

  `top`: the top-k triplets of the masked, null-space-projected Jacobian
  `P_Ω J N` (`top.v [B, D, k]` the edit directions in input space, unit norm;
  `top.u [B, D, k]`, `top.s [B, k]` their effect inside the mask);
  `null [B, D, null_k]`: the right singular vectors of `P_Ωᶜ J` that were
  projected out (the directions that change the outside most).
  """
  top: jac.TopSingular
  null: jax.Array


def masked_directions(denoise, x, sigma, mask, key, k: int, *, null_k: int = 8,
                      oversample: int = 8, power_iters: int = 2) -> EditDirections:
  """LOCO edit directions: change the posterior mean inside a region, not outside.

  With `P_Ω` the restriction of the output to the region (`mask`, 1 inside)
  and `P_Ωᶜ` to the rest, the directions are the top right singular vectors of
  `P_Ω J N`, where `N = I − V_c V_cᵀ` removes the `null_k` input directions
  `V_c` that change the outside most (the top right singular vectors of
  `P_Ωᶜ J`); both by randomized subspace iteration (the "generalized power
  method"), matrix-free (docs/theory.md §6.2).  Then `D(x + λ v_i) ≈ D(x) +
  λ J v_i` changes the region by `λ s_i u_i` and the rest by `λ P_Ωᶜ J v_i`,
  which the projection keeps small.

  Args:
    denoise: a canonical denoiser; x: `[B, ...]`; sigma: `[B]` or a scalar.
    mask: the region, of the data shape `x.shape[1:]` or `x.shape` (1 inside,
      0 outside; fractional values weight the pixels).
    key: PRNG key of the test matrices.
    k: number of directions; null_k: directions projected out (0: none).
    oversample, power_iters: as `randomized_svd`.
  """
  x, sigma = jac._check_rows(x, sigma)
  b, d = x.shape[0], int(x[0].size)
  jac._check_svd_args(k, oversample, power_iters, d)
  if null_k < 0 or null_k + k > d:
    raise ValueError(f"need 0 <= null_k and null_k + k <= D = {d}; got null_k={null_k}, k={k}.")
  mask = jnp.asarray(mask, x.dtype)
  if mask.shape not in (x.shape, x.shape[1:]):
    raise ValueError(f"mask must have the data shape {x.shape[1:]} or {x.shape}; got "
                     f"{mask.shape}.")
  inside = jnp.broadcast_to(mask, x.shape).reshape(b, d)
  outside = 1.0 - inside
  _, jvp, vjp = jac.linearize_rows(denoise, x, sigma)
  k_null, k_top = jax.random.split(key)
  if null_k:
    null = jac.randomized_svd(lambda t: outside * jvp(t), lambda c: vjp(outside * c), b, d, k_null,
                          null_k, oversample=oversample, power_iters=power_iters,
                          dtype=x.dtype).v                                  # [B, D, null_k]
  else:
    null = jnp.zeros((b, d, 0), x.dtype)

  def project(t):                                  # N t = t − V_c V_cᵀ t, per row
    return t - jnp.einsum("bdk,bk->bd", null, jnp.einsum("bdk,bd->bk", null, t))

  top = jac.randomized_svd(lambda t: inside * jvp(project(t)), lambda c: project(vjp(inside * c)),
                       b, d, k_top, k, oversample=oversample, power_iters=power_iters,
                       dtype=x.dtype)
  return EditDirections(top, null)
