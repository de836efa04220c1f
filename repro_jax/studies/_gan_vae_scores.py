"""Scores of the GAN/VAE control that no other study makes: sample quality and collapse.

- `frechet_distance`: the Fréchet distance between two Gaussian fits of
  features (FID's formula, here in the learned descriptor's feature space);
- `duplicate_rate`: for every sample, the fraction of the SAME model's samples
  from other noises that the similarity calls a copy (a collapsed generator
  gives near 1, distinct images give about the threshold's false-positive rate);
- `mean_estimates`, `fd_estimates`: per entry (a variant's models), the
  statistic of its pooled samples with a percentile interval over bootstrap
  draws of its seeds (within the entry) and of the noises (shared), the draws
  applied as weights (`bootstrap.Resample` counts).

Shapes: `K` sample sets (models), `B` noises, `F` features, `N` training images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax.analysis import bootstrap


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(0.5 * (a + a.T))
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(f1, f2, ddof: int = 1) -> float:
  """`‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1^½ Σ2 Σ1^½)^½)` of features `f1 [B1, F]`, `f2 [B2, F]`
  (float64; covariances with `ddof`)."""
  f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
    raise ValueError(f"features must be [B >= 2, F] with equal F; got {f1.shape} and "
                     f"{f2.shape}.")
  mu1, mu2 = f1.mean(0), f2.mean(0)
  s1, s2 = np.cov(f1, rowvar=False, ddof=ddof), np.cov(f2, rowvar=False, ddof=ddof)
  r1 = _sqrtm_psd(s1)
  cross = np.trace(_sqrtm_psd(r1 @ s2 @ r1))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)


def duplicate_rate(feats, threshold: float, chunk: int = 2048) -> np.ndarray:
  """`[K, B]`: per sample, the fraction of the other `B − 1` samples of its model
  with feature similarity above `threshold` (`feats [K, B, F]`, unit rows; one
  model and `chunk` rows at a time, so memory stays `chunk × B`)."""
  f = np.asarray(feats, np.float32)
  if f.ndim != 3 or f.shape[1] < 2:
    raise ValueError(f"feats must be [K, B >= 2, F]; got {f.shape}.")
  k, b = f.shape[:2]
  out = np.zeros((k, b))
  for m in range(k):
    for i in range(0, b, int(chunk)):
      hits = (f[m, i:i + int(chunk)] @ f[m].T) > threshold                  # [c, B]
      rows = np.arange(i, min(i + int(chunk), b))
      hits[rows - i, rows] = False
      out[m, rows] = hits.sum(-1) / (b - 1)
  return out


def weighted_frechet(feats, weights, ref_mean, ref_cov):
  """FD (covariances with `ddof=0`) of `feats [P, F]` weighted by each row of
  `weights [R, P]` (bootstrap counts) against a fixed Gaussian: `[R]`."""
  return np.asarray(_weighted_frechet(jnp.asarray(feats, jnp.float32),
                                      jnp.asarray(weights, jnp.float32),
                                      jnp.asarray(ref_mean, jnp.float32),
                                      jnp.asarray(ref_cov, jnp.float32)))


@jax.jit
def _weighted_frechet(f, w, mu2, s2):
  w = w / jnp.sum(w, axis=1, keepdims=True)
  mu1 = w @ f                                                         # [R, F]
  outer = (f[:, :, None] * f[:, None, :]).reshape(f.shape[0], -1)      # [P, F·F]
  s1 = (w @ outer).reshape(mu1.shape + mu1.shape[-1:]) - mu1[:, :, None] * mu1[:, None, :]

  def sqrtm(a):
    ev, v = jnp.linalg.eigh(0.5 * (a + jnp.swapaxes(a, -1, -2)))
    return (v * jnp.sqrt(jnp.clip(ev, 0.0))[..., None, :]) @ jnp.swapaxes(v, -1, -2)

  r1 = sqrtm(s1)
  cross = jnp.trace(sqrtm(r1 @ s2 @ r1), axis1=-2, axis2=-1)
  return (jnp.sum((mu1 - mu2) ** 2, -1) + jnp.trace(s1, axis1=-2, axis2=-1) + jnp.trace(s2)
          - 2.0 * cross)


def _weights(res: bootstrap.Resample, members) -> np.ndarray:
  """`[R, k · B]` counts of (model, noise) pairs of an entry's `members [k]`."""
  models, noise = np.asarray(res.models), np.asarray(res.noise)
  return (models[:, members, None] * noise[:, None, :]).reshape(len(models), -1)


def _interval(value, reps, level: float) -> dict:
  a = (1.0 - level) / 2.0
  return {"value": float(value), "ci": [float(np.quantile(reps, a)),
                                        float(np.quantile(reps, 1.0 - a))]}


def mean_estimates(values, entry_of, res: bootstrap.Resample, level: float) -> list[dict]:
  """Per entry, `{"value", "ci"}` of the mean of `values [K, B]` over its models and the
  noises; replicates weight them by the draws `res` (models within their entry)."""
  v, entry_of = np.asarray(values, np.float64), np.asarray(entry_of)
  out = []
  for e in range(int(entry_of.max()) + 1):
    members = np.flatnonzero(entry_of == e)
    w = _weights(res, members)
    reps = (w @ v[members].reshape(-1)) / w.sum(1)
    out.append(_interval(v[members].mean(), reps, level))
  return out


def fd_estimates(feats, ref, entry_of, res: bootstrap.Resample, level: float) -> list[dict]:
  """Per entry, `{"value", "ci"}` of the FD of its pooled features (`feats [K, B, F]`)
  to `ref [N, F]` (fixed); replicates weighted by the draws `res`."""
  f, ref, entry_of = np.asarray(feats), np.asarray(ref, np.float64), np.asarray(entry_of)
  mu2, s2 = ref.mean(0), np.cov(ref, rowvar=False, ddof=0)
  out = []
  for e in range(int(entry_of.max()) + 1):
    members = np.flatnonzero(entry_of == e)
    pooled = f[members].reshape(-1, f.shape[-1])
    reps = weighted_frechet(pooled, _weights(res, members), mu2, s2)
    out.append(_interval(frechet_distance(pooled, ref, ddof=0), reps, level))
  return out
