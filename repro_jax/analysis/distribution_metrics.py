"""Distribution distances for samples whose true law is known (MoLRG).

With a closed-form denoiser there is no network to judge samples with (no FID,
no SSCD); but for a mixture of low-rank Gaussians `Σ_k π_k N(0, U_k U_kᵀ)`
the target is known exactly, so samples can be compared with it directly:

- `sliced_wasserstein`: SW₂ between two point clouds (e.g. samples and fresh
  draws of the true law): the root mean over random unit directions of the
  squared 1-D Wasserstein-2 distance of the projections;
- `component_moments` / `covariance_error`: assign each sample to its nearest
  subspace, express it in that subspace's basis and compare the per-component
  second moment `E[c cᵀ]` with the identity (`I_{r_k}`) and the component
  frequencies with `π_k`;
- the mean distance to the union of subspaces is `geometry.dist_subspaces`.

Shapes: samples `[B, D]`, bases `[K, D, R]` (orthonormal columns; components of
rank `r_k < R` pad with zero columns).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import validation


def _check_cloud(x, name):
  validation.check_ndim(x, 2, name, "BD")
  validation.check_nonempty(x, name)
  validation.check_finite(x, name)


def random_directions(key, dim: int, num: int, dtype=jnp.float32):
  """`num` directions uniform on the unit sphere of `R^dim`, `[dim, num]`."""
  v = jax.random.normal(key, (dim, num), dtype)
  return v / jnp.linalg.norm(v, axis=0, keepdims=True)


def _quantiles(sorted_proj, levels: int) -> np.ndarray:
  """Empirical quantile function of each column at `levels` midpoint levels."""
  u = (np.arange(levels) + 0.5) / levels
  return sorted_proj[np.floor(u * sorted_proj.shape[0]).astype(np.int64)]


def sliced_wasserstein(key, x, y, *, num_projections: int = 256):
  """Sliced Wasserstein-2 distance between the empirical laws of `x` and `y`.

  `SW₂² = E_θ W₂²(θᵀx, θᵀy)` over `θ` uniform on the sphere, estimated with
  `num_projections` random directions.  The 1-D `W₂²` compares the two
  quantile functions at `max(n, m)` midpoint levels, which is exact when the
  clouds have the same size (then it is the mean squared difference of the
  sorted projections).  The projections are sorted on the host with NumPy
  (XLA's CPU sort is an order of magnitude slower); this is an evaluation
  metric, not meant to be traced.

  Args:
    key: PRNG key for the directions.
    x: `[n, D]`.
    y: `[m, D]`.
    num_projections: number of random directions.

  Returns:
    scalar `SW₂` (float, same units as the data).
  """
  _check_cloud(x, "x")
  _check_cloud(y, "y")
  validation.check_same_dim(x, y, "x", "y")
  x = jnp.asarray(x)
  dirs = random_directions(key, x.shape[1], int(num_projections), x.dtype)
  px = np.sort(np.asarray(x @ dirs), axis=0)                            # [n, L]
  py = np.sort(np.asarray(jnp.asarray(y, x.dtype) @ dirs), axis=0)     # [m, L]
  levels = max(px.shape[0], py.shape[0])
  diff = _quantiles(px, levels).astype(np.float64) - _quantiles(py, levels)
  return float(np.sqrt(np.mean(np.square(diff))))


class ComponentMoments(NamedTuple):
  """Per-component statistics of samples assigned to their nearest subspace.

  Attributes:
    labels: `[B]` index of the nearest subspace of each sample.
    fractions: `[K]` fraction of samples assigned to each component.
    second_moments: `[K, R, R]` `E[c cᵀ]` of the coordinates `c = U_kᵀ x` of
      the samples assigned to component k (zero where none is).
  """
  labels: jax.Array
  fractions: jax.Array
  second_moments: jax.Array


@jax.jit
def _moments(x, bases):
  coords = jnp.einsum("bd,kdr->bkr", x, bases)                      # [B, K, R]
  labels = jnp.argmax(jnp.sum(jnp.square(coords), -1), axis=1)      # [B]
  onehot = jax.nn.one_hot(labels, bases.shape[0], dtype=x.dtype)    # [B, K]
  counts = jnp.sum(onehot, 0)                                       # [K]
  m = jnp.einsum("bk,bkr,bks->krs", onehot, coords, coords)
  m = m / jnp.maximum(counts, 1.0)[:, None, None]
  return ComponentMoments(labels, counts / x.shape[0], m)


def component_moments(x, bases) -> ComponentMoments:
  """Assign samples `x [B, D]` to the nearest of the subspaces `bases [K, D, R]`.

  For orthonormal bases the nearest subspace (smallest residual
  `‖x − U_k U_kᵀ x‖`) is the one with the largest `‖U_kᵀ x‖`.
  """
  _check_cloud(x, "x")
  validation.check_ndim(bases, 3, "bases", "KDR")
  if np.shape(x)[1] != np.shape(bases)[1]:
    raise ValueError(f"`x` [B, D] and `bases` [K, D, R] disagree on D: "
                     f"{np.shape(x)} vs {np.shape(bases)}.")
  x = jnp.asarray(x)
  return _moments(x, jnp.asarray(bases, x.dtype))


class CovarianceError(NamedTuple):
  """Distance of the per-component second moments to the true ones.

  Attributes:
    per_component: `[K]` `‖E[c cᵀ] − I_{r_k}‖_F / sqrt(r_k)` (relative
      Frobenius error; the true second moment of `N(0, U_k U_kᵀ)` in the
      basis `U_k` is the identity on its `r_k` columns).
    mean: mean of `per_component`.
    weight_error: `max_k |fraction_k − π_k|`.
  """
  per_component: jax.Array
  mean: jax.Array
  weight_error: jax.Array


def covariance_error(x, bases, weights=None) -> CovarianceError:
  """Per-component covariance error of samples `x [B, D]` against a MoLRG.

  Args:
    x: samples `[B, D]`.
    bases: `[K, D, R]`, the true subspaces (zero columns pad lower ranks).
    weights: true mixture weights `[K]` (default uniform).
  """
  mom = component_moments(x, bases)
  bases = jnp.asarray(bases, mom.second_moments.dtype)
  mask = (jnp.sum(jnp.square(bases), axis=1) > 0.5).astype(bases.dtype)   # [K, R]
  target = jax.vmap(jnp.diag)(mask)                                        # [K, R, R]
  ranks = jnp.sum(mask, axis=1)
  err = jnp.linalg.norm(mom.second_moments - target, axis=(1, 2)) / jnp.sqrt(ranks)
  k = bases.shape[0]
  pi = (jnp.full((k,), 1.0 / k) if weights is None
        else jnp.asarray(weights) / jnp.sum(jnp.asarray(weights)))
  return CovarianceError(err, jnp.mean(err), jnp.max(jnp.abs(mom.fractions - pi)))
