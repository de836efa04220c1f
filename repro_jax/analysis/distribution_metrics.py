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

Where the law is only known through data (digits), samples are compared with
the data by the Fréchet distance between Gaussians fitted to features
(`frechet_distance`; FID when the features are Inception's): the features
here are pixels or the learned descriptor's.  `frechet_bootstrap` gives its
replicates under the noise × seed bootstrap of `analysis.bootstrap`.

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


# Fréchet distance ------------------------------------------------------------------

class GaussianFit(NamedTuple):
  """Mean `[F]`, covariance `[F, F]` (float64) and the symmetric square root of
  the covariance (the reference side of `frechet_distance`)."""
  mean: np.ndarray
  cov: np.ndarray
  cov_sqrt: np.ndarray


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(cov)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_fit(features) -> GaussianFit:
  """Mean and covariance (divisor n − 1) of `features [n, F]`, n ≥ 2, in float64."""
  _check_cloud(features, "features")
  f = np.asarray(features, np.float64)
  if f.shape[0] < 2:
    raise ValueError(f"`features` needs at least 2 rows; got {f.shape[0]}.")
  cov = np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])
  return GaussianFit(f.mean(0), cov, _psd_sqrt(cov))


def _trace_sqrt_product(ref_sqrt: np.ndarray, cov: np.ndarray) -> np.ndarray:
  """`tr sqrt(Σ_ref^{1/2} Σ Σ_ref^{1/2})` (= `tr sqrt(Σ_ref Σ)`) for `cov [..., F, F]`."""
  m = ref_sqrt @ cov @ ref_sqrt
  w = np.linalg.eigvalsh(0.5 * (m + np.swapaxes(m, -1, -2)))
  return np.sum(np.sqrt(np.clip(w, 0.0, None)), axis=-1)


def frechet_distance(mean, cov, ref: GaussianFit):
  """Fréchet (2-Wasserstein) distance squared between `N(mean, cov)` and the
  reference fit: `‖μ − μ_ref‖² + tr(Σ + Σ_ref − 2 (Σ_ref^{1/2} Σ Σ_ref^{1/2})^{1/2})`.

  `mean [..., F]` and `cov [..., F, F]` may carry leading batch dimensions
  (bootstrap replicates); float64 result of shape `[...]`.  This is the
  quantity FID reports (in Inception features).
  """
  mean = np.asarray(mean, np.float64)
  cov = np.asarray(cov, np.float64)
  if mean.shape[-1:] != ref.mean.shape or cov.shape[-2:] != ref.cov.shape:
    raise ValueError(f"feature dimension mismatch: mean {mean.shape}, cov {cov.shape}, "
                     f"reference {ref.mean.shape}.")
  d2 = np.sum(np.square(mean - ref.mean), axis=-1)
  tr = np.trace(cov, axis1=-2, axis2=-1) + np.trace(ref.cov)
  return d2 + tr - 2.0 * _trace_sqrt_product(ref.cov_sqrt, cov)


@jax.jit
def _weighted_moments(features, weights):
  """Weighted mean `[R, F]` and covariance `[R, F, F]` of `features [n, F]` under
  `weights [R, n]` (counts; unbiased with the frequency-weight divisor W − 1)."""
  total = jnp.sum(weights, axis=1)
  mean = weights @ features / total[:, None]
  second = jnp.einsum("rn,nf,ng->rfg", weights, features, features)
  cov = (second - total[:, None, None] * mean[:, :, None] * mean[:, None, :]) / (
      total - 1.0)[:, None, None]
  return mean, cov


def frechet_bootstrap(features, ref: GaussianFit, noise_counts, model_counts, *,
                      chunk: int = 64) -> tuple[float, np.ndarray]:
  """Fréchet distance of samples to a reference, with bootstrap replicates.

  Args:
    features: `[K, B, F]`, model k's features of its sample from shared noise b.
    ref: the reference fit (e.g. `gaussian_fit` of the data's features).
    noise_counts: `[R, B]` how often each noise is drawn in each replicate
      (`bootstrap.Resample.noise`; the same for every model: samples are paired).
    model_counts: `[R, K]` how often each model is drawn (`Resample.models`).
    chunk: replicates per call (memory `O(chunk · K · B)`).

  Returns:
    `(value, replicates [R])`: the distance of all `K · B` samples pooled, and
    of each replicate's weighted pool.
  """
  f = np.asarray(features, np.float32)
  if f.ndim != 3:
    raise ValueError(f"`features` must be [K, B, F]; got shape {f.shape}.")
  k, b, _ = f.shape
  nc, mc = np.asarray(noise_counts, np.float32), np.asarray(model_counts, np.float32)
  if nc.ndim != 2 or nc.shape[1] != b or mc.shape != (nc.shape[0], k):
    raise ValueError(f"counts must be noise [R, {b}] and model [R, {k}]; got "
                     f"{nc.shape} and {mc.shape}.")
  value = float(frechet_distance(*gaussian_fit(f.reshape(k * b, -1))[:2], ref))
  flat = jnp.asarray(f.reshape(k * b, -1))
  reps = []
  for lo in range(0, nc.shape[0], int(chunk)):
    w = (mc[lo:lo + chunk, :, None] * nc[lo:lo + chunk, None, :]).reshape(-1, k * b)
    mean, cov = _weighted_moments(flat, jnp.asarray(w))
    reps.append(frechet_distance(np.asarray(mean), np.asarray(cov), ref))
  return value, np.concatenate(reps)
