"""Score error and per-sample generalization labels for models of a MoLRG.

docs/theory.md §5 (low-dim talk): a model trained on N samples of a mixture of
low-rank Gaussians is judged by

- `L_score = E_{σ, x0, ε} ‖s_θ(x_σ, σ) − s_MoLRG(x_σ, σ)‖`: the distance of its
  score to the exact one (`denoisers.molrg_denoiser(..., head="score")`);
- its samples `F_θ(ε)`: are they on the support (the union of subspaces) and
  are they new, or copies of training points?

Conventions: VE coordinates (`x_σ = x0 + σ ε`, docs/theory.md §0), in which the score
of any canonical denoiser `D(x, σ)` is `(D − x) / σ²`.  Shapes: `B` samples,
`N` training points, `D` flattened dimension, `K` components, `R` max rank,
`S` noise levels.  The array functions are pure and jittable / vmappable (over
models, bases and keys: the checks of the closed forms skip traced values);
`regime` and `crossing` summarize the results on the host.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax.closed_form import denoisers
from repro_jax.closed_form import geometry

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]

COPY_RATIO = 1.0 / 3.0   # d1/d2 below this: a copy (Somepalli et al. 2023; Gu et al. 2023)
SUPPORT_TOL = 0.2        # dist_support(x)/‖x‖ below this: on the support


class ScoreError(NamedTuple):
  """Score distance to the exact MoLRG score, overall and per noise level.

  Attributes:
    l_score: `E ‖s_θ − s*‖` over σ log-uniform (stratified on `sigmas`), x0, ε.
    l_score_rel: mean over σ of `E_σ‖s_θ − s*‖ / E_σ‖s*‖` (scale-free: each
      noise level counts equally; `= E‖D_θ − D*‖ / E‖x − D*‖` at each σ).
    sigmas: `[S]` the noise levels.
    abs_per_sigma: `[S]` `E_σ ‖s_θ − s*‖`.
    rel_per_sigma: `[S]` `E_σ ‖s_θ − s*‖ / E_σ ‖s*‖`.
  """
  l_score: jax.Array
  l_score_rel: jax.Array
  sigmas: jax.Array
  abs_per_sigma: jax.Array
  rel_per_sigma: jax.Array


def score_sigmas(sigma_min: float, sigma_max: float, num_sigmas: int) -> np.ndarray:
  """Log-spaced noise levels `[S]` from `sigma_min` to `sigma_max`."""
  if not 0 < sigma_min < sigma_max or num_sigmas < 1:
    raise ValueError(f"need 0 < sigma_min < sigma_max and num_sigmas >= 1; got "
                     f"{sigma_min}, {sigma_max}, {num_sigmas}.")
  return np.geomspace(sigma_min, sigma_max, num_sigmas)


def score_errors(denoise: Denoiser, bases, x0, eps, sigma, weights=None,
                 data_shape=None):
  """Per-sample `‖s_θ(x, σ) − s*(x, σ)‖` and `‖s*(x, σ)‖` at `x = x0 + σ ε`.

  Args:
    denoise: canonical `denoise(x [B, *data_shape], σ [B]) -> x0` (VE).
    bases: MoLRG bases `[K, D, R]` (zero columns pad lower ranks).
    x0, eps: `[B, D]` clean points and standard-normal noise.
    sigma: `[B]` noise levels.
    weights: mixture weights `[K]` (default uniform).
    data_shape: the denoiser's per-example shape (default `(D,)`).

  Returns:
    `(err [B], true_norm [B])` in score units.
  """
  x = x0 + sigma[:, None] * eps
  shape = (x.shape[0],) + tuple(data_shape or x.shape[1:])
  d_model = denoise(x.reshape(shape), sigma).reshape(x.shape)
  s_model = (d_model - x) / jnp.square(sigma)[:, None]
  s_true = denoisers.molrg_denoiser(x, bases, jnp.ones_like(sigma), sigma, weights,
                                    head="score")
  return (jnp.linalg.norm(s_model - s_true, axis=-1),
          jnp.linalg.norm(s_true, axis=-1))


def l_score(denoise: Denoiser, bases, key, *, num_samples: int = 1024,
            sigma_min: float = 0.01, sigma_max: float = 10.0, num_sigmas: int = 16,
            weights=None, data_shape=None) -> ScoreError:
  """Monte Carlo `L_score` of a denoiser against the exact MoLRG score.

  σ is stratified: `num_samples // num_sigmas` draws of `(x0 ~ MoLRG, ε)` at
  each of `num_sigmas` log-spaced levels in `[sigma_min, sigma_max]` (a
  log-uniform σ, the uniform-in-log-SNR analogue of the talk's `t ~ U(0, 1)`).

  Args:
    denoise: canonical denoiser (VE), e.g. `models.Parameterization.denoiser(net)`.
    bases: `[K, D, R]` orthonormal (or zero) columns.
    key: PRNG key.
    num_samples: total draws B (rounded down to a multiple of `num_sigmas`).
    sigma_min, sigma_max, num_sigmas: the σ grid.
    weights: mixture weights `[K]`.
    data_shape: per-example shape the denoiser takes (e.g. `(4, 4, 3)`).

  Returns:
    `ScoreError` (see there); the exact denoiser gives zeros.
  """
  sig = jnp.asarray(score_sigmas(sigma_min, sigma_max, num_sigmas), bases.dtype)
  per = max(num_samples // num_sigmas, 1)
  k_x, k_e = jax.random.split(key)
  x0, _ = denoisers.sample_molrg(k_x, bases, per * num_sigmas, weights)
  eps = jax.random.normal(k_e, x0.shape, x0.dtype)
  sigma = jnp.repeat(sig, per)
  err, norm = score_errors(denoise, bases, x0, eps, sigma, weights, data_shape)
  err, norm = err.reshape(num_sigmas, per), norm.reshape(num_sigmas, per)
  abs_s = err.mean(1)
  rel_s = abs_s / norm.mean(1)
  return ScoreError(l_score=abs_s.mean(), l_score_rel=rel_s.mean(), sigmas=sig,
                    abs_per_sigma=abs_s, rel_per_sigma=rel_s)


class SampleLabels(NamedTuple):
  """Per-sample geometry of generated points `[B]` (and the fractions, scalars).

  Attributes:
    support_dist: `dist(x, ∪_k span U_k) / ‖x‖` (0 on the support, ≈ 1 for
      isotropic noise in high dimension).
    nn_dist: distance to the nearest training point (L_generalize per sample).
    nn_ratio: `d1 / d2`, nearest over second-nearest training distance.
    on_support: `support_dist < support_tol`.
    copy: `nn_ratio < copy_ratio`.
    new: on the support and not a copy: a generalizing sample.
    frac_on_support, frac_copy, frac_new: their means.
  """
  support_dist: jax.Array
  nn_dist: jax.Array
  nn_ratio: jax.Array
  on_support: jax.Array
  copy: jax.Array
  new: jax.Array
  frac_on_support: jax.Array
  frac_copy: jax.Array
  frac_new: jax.Array


def nearest_two(x, train, train_mask=None):
  """Distances to the nearest and second-nearest rows of `train`: `[B, 2]`.

  Args:
    x: `[B, D]`.
    train: `[N, D]` (N ≥ 2 valid rows).
    train_mask: `[N]` bool/0-1; False rows are ignored (padding of a smaller
      subset, so that subsets of different sizes vmap together).
  """
  d2 = (jnp.sum(jnp.square(x), 1)[:, None] - 2.0 * x @ train.T
        + jnp.sum(jnp.square(train), 1)[None])
  if train_mask is not None:
    d2 = jnp.where(jnp.asarray(train_mask, bool)[None], d2, jnp.inf)
  neg, _ = jax.lax.top_k(-d2, 2)
  return jnp.sqrt(jnp.maximum(-neg, 0.0))


def sample_labels(samples, train, bases, *, train_mask=None,
                  support_tol: float = SUPPORT_TOL,
                  copy_ratio: float = COPY_RATIO) -> SampleLabels:
  """Label generated samples as on-support / copies / new.

  A *copy* lies much closer to one training point than to any other (the
  standard `d1/d2 < 1/3` test of the memorization literature); *new* samples
  are on the support of the true distribution but not copies.  For a model
  that samples the true MoLRG exactly, `frac_copy ≈ P(d1/d2 < 1/3)`, which is
  `3^{-r}` for points uniform in `r` dimensions: ≈ 0.11 at r = 2, ≈ 0 beyond.

  Args:
    samples: `[B, D]` (flattened) generated points.
    train: `[N, D]` training points (rows where `train_mask` is False ignored).
    bases: `[K, D, R]` the true subspaces.
    train_mask: optional `[N]`.
    support_tol, copy_ratio: thresholds.

  Returns:
    `SampleLabels`.
  """
  x = samples.reshape(samples.shape[0], -1)
  rel = geometry.dist_subspaces(x, bases) / jnp.maximum(jnp.linalg.norm(x, axis=1),
                                                        1e-12)
  d = nearest_two(x, train.reshape(train.shape[0], -1), train_mask)
  ratio = d[:, 0] / jnp.maximum(d[:, 1], 1e-30)
  on = rel < support_tol
  copy = ratio < copy_ratio
  new = on & ~copy
  mean = lambda a: jnp.mean(a.astype(jnp.float32))
  return SampleLabels(support_dist=rel, nn_dist=d[:, 0], nn_ratio=ratio, on_support=on,
                      copy=copy, new=new, frac_on_support=mean(on), frac_copy=mean(copy),
                      frac_new=mean(new))


REGIMES = ("memorization", "transition", "generalization")


def regime(frac_copy: float, frac_new: float, level: float = 0.5) -> str:
  """Cell label: `memorization` if most samples are copies, `generalization` if
  most are new and on the support, else `transition`."""
  if frac_copy >= level:
    return "memorization"
  if frac_new >= level:
    return "generalization"
  return "transition"


def crossing(ns, values, level: float = 0.5) -> float:
  """First `N` where `values` (over increasing `ns`) reaches `level`,
  geometrically interpolated between grid points; nan if never, `ns[0]` if at once."""
  ns, values = np.asarray(ns, float), np.asarray(values, float)
  above = np.nonzero(values >= level)[0]
  if not above.size:
    return float("nan")
  i = int(above[0])
  if i == 0:
    return float(ns[0])
  v0, v1 = values[i - 1], values[i]
  f = (level - v0) / (v1 - v0) if v1 != v0 else 1.0
  return float(math.exp(math.log(ns[i - 1]) + f * (math.log(ns[i]) - math.log(ns[i - 1]))))
