"""Diffusion sampling as distance minimization: diagnostics along trajectories.

The optimization view (docs/theory.md §2.4–§2.5) reads DDIM as gradient descent on
`f = ½ dist_K²` with step `β_t = 1 − σ_{t−1}/σ_t`, the denoiser's
`σ ε_θ(x, σ)` standing in for `∇f(x) = x − proj_K(x)`.  This module measures
that reading on sampled trajectories `xs [T+1, B, D]` over a grid
`sigmas [T+1]` (VE coordinates):

- `admissibility_ratio`: `dist_K(x_t) / (sqrt(D) σ_t)`, which the relative-
  error model keeps in `[1/ν, ν]`;
- `step_betas`, `shrink_factors`, `required_eta`: the per-step factor
  `dist_K(x_{t−1}) / dist_K(x_t)`, which the model confines to
  `[1 − β(η + 1), 1 + β(η − 1)] = (1 − β) ± βη`, and the smallest `η` for
  which an observed factor lies in that band;
- `molrg_smoothed_sq_distance`: the MoLRG analogue of the smoothed distance,
  `−2σ² log p_σ(x)` up to an x-independent constant, whose half-gradient is
  `σ ε*(x, σ)` for the MoLRG posterior mean (the finite-set version is
  `geometry.smoothed_sq_distance`);
- `identity_error`: `‖½∇ dist²_K(x, σ) − (x − D(x, σ))‖ / ‖x − D(x, σ)‖`
  per query, the gradient taken by autodiff.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import validation
from repro_jax.closed_form import denoisers


def step_betas(sigmas) -> np.ndarray:
  """`β_t = 1 − σ_{t−1}/σ_t` for each step of a decreasing grid, `[T]` (float64)."""
  s = np.asarray(sigmas, np.float64)
  if s.ndim != 1 or s.shape[0] < 2 or np.any(s[:-1] <= 0):
    raise ValueError(f"`sigmas` must be a 1-D grid with positive entries "
                     f"(except possibly the last); got {s}.")
  return 1.0 - s[1:] / s[:-1]


def admissibility_ratio(dists, sigmas, dim: int):
  """`dist_K(x_t) / (sqrt(D) σ_t)`, `[T', B]` for the entries with `σ_t > 0`.

  Args:
    dists: `[T+1, B]` distances to K along trajectories.
    sigmas: `[T+1]` grid (a trailing 0 is dropped).
    dim: ambient dimension D.
  """
  s = np.asarray(sigmas, np.float64)
  keep = int(np.sum(s > 0))
  return np.asarray(dists)[:keep] / (np.sqrt(dim) * s[:keep, None])


def shrink_factors(dists):
  """`dist_K(x_{t−1}) / dist_K(x_t)` per step, `[T, B]` from `dists [T+1, B]`."""
  d = np.asarray(dists, np.float64)
  return d[1:] / np.maximum(d[:-1], np.finfo(np.float64).tiny)


def required_eta(factors, betas):
  """Smallest `η ≥ 0` with `factor ∈ (1 − β) ± βη`: `|factor − (1 − β)| / β`.

  Args:
    factors: `[T, B]` shrink factors.
    betas: `[T]` step sizes `1 − σ_{t−1}/σ_t` (> 0).

  Returns:
    `[T, B]`.
  """
  b = np.asarray(betas, np.float64)[:, None]
  return np.abs(np.asarray(factors, np.float64) - (1.0 - b)) / b


def molrg_smoothed_sq_distance(x, bases, sigma, weights=None, ranks=None):
  """Smoothed squared distance to a union of subspaces, `[B]`.

  `−2σ² log Σ_k π_k exp(−q_k(x) / (2σ²))` with
  `q_k = ‖x‖² − ‖U_kᵀx‖²/(1 + σ²) + σ² r_k log((1 + σ²)/σ²)`,
  which is `−2σ² log p_σ(x)` for `p_σ = Σ_k π_k N(0, U_k U_kᵀ + σ² I)` minus the
  x-independent `D σ² log(2πσ²)`.  It tends to `min_k ‖x − U_k U_kᵀ x‖²` as
  σ → 0 and `½∇_x` of it is `x − D(x, σ) = σ ε*(x, σ)` for the MoLRG posterior
  mean `D` (`denoisers.molrg_denoiser` with α = 1, β = σ).

  Args:
    x: `[B, D]` (VE coordinates).
    bases: `[K, D, R]` orthonormal (zero-padded) bases.
    sigma: σ > 0, scalar or `[B]`.
    weights: mixture weights `[K]` (default uniform).
    ranks: `[K]` (default counted from the non-zero columns).
  """
  if not validation.is_traced(x, bases, sigma):
    validation.check_ndim(x, 2, "x", "BD")
    validation.check_ndim(bases, 3, "bases", "KDR")
    validation.check_positive(sigma, "sigma")
  x = jnp.asarray(x)
  s2 = jnp.broadcast_to(jnp.square(jnp.asarray(sigma, x.dtype)), x.shape[:1])
  k = bases.shape[0]
  log_pi = (jnp.full((k,), -jnp.log(k), x.dtype) if weights is None
            else jnp.log(jnp.asarray(weights, x.dtype) / jnp.sum(weights)))
  r = (denoisers.molrg_ranks(bases) if ranks is None else jnp.asarray(ranks)).astype(x.dtype)
  proj_sq = jnp.sum(jnp.square(jnp.einsum("bd,kdr->bkr", x, bases.astype(x.dtype))), -1)
  q = (jnp.sum(jnp.square(x), -1)[:, None] - proj_sq / (1.0 + s2[:, None])
       + s2[:, None] * r[None] * jnp.log((1.0 + s2[:, None]) / s2[:, None]))   # [B, K]
  return -2.0 * s2 * jax.nn.logsumexp(log_pi[None] - q / (2.0 * s2[:, None]), axis=1)


def identity_error(sq_distance: Callable, denoise: Callable, x, sigma):
  """Relative error of `½∇ dist²_K(x, σ) = x − D(x, σ)` per query, `[B]`.

  Args:
    sq_distance: `(x [B, D], sigma [B]) -> [B]`, a smoothed squared distance
      (rows independent, so the gradient of the sum is the per-row gradient).
    denoise: canonical denoiser `(x [B, D], sigma [B]) -> x0 [B, D]`.
    x: `[B, D]` (use float64 to see the identity to ~1e-12).
    sigma: σ > 0, scalar.
  """
  x = jnp.asarray(x)
  sig = jnp.full(x.shape[:1], sigma, x.dtype)
  half_grad = 0.5 * jax.grad(lambda q: jnp.sum(sq_distance(q, sig)))(x)
  resid = x - denoise(x, sig)
  scale = jnp.maximum(jnp.linalg.norm(resid, axis=1), jnp.finfo(x.dtype).tiny)
  return jnp.linalg.norm(half_grad - resid, axis=1) / scale
