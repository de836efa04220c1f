"""Theorem 1 of the reproducibility paper, measured: copies, agreement, round trips.

With the empirical optimal denoiser ε* a deterministic sampler is a map
noise → training point.  The helpers here quantify it:

- `copy_stats`: for each sample its nearest and second-nearest training points
  and the distances to them, recomputed as `‖x − y_i‖` directly (the matmul form
  `‖x‖² − 2⟨x, y⟩ + ‖y‖²` used for the search has a round-off floor of about
  `sqrt(eps) ‖x‖`, which would hide an exact copy);
- `index_agreement`: the fraction of noises whose two samples reach the same
  training point (the RP of the theoretical map, no descriptor needed);
- `round_trip`: encode (ODE inversion) then decode, and the reverse.

Shapes: samples `[B, ...]`, training set `[N, ...]` (same trailing shape).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from repro_jax.closed_form import streaming
from repro_jax import samplers


class CopyStats(NamedTuple):
  """Nearest training points of each sample (all `[B]`).

  Attributes:
    index: nearest training index.
    second: second-nearest training index.
    d1: distance to the nearest.
    d2: distance to the second-nearest.
    ratio: `d1 / d2` (≈ 0 for a copy, ≈ 1 between two training points).
  """
  index: np.ndarray
  second: np.ndarray
  d1: np.ndarray
  d2: np.ndarray
  ratio: np.ndarray


def _flat(x):
  x = jnp.asarray(x)
  return x.reshape(x.shape[0], -1)


def copy_stats(samples, data, *, chunk: int = streaming.DEFAULT_CHUNK) -> CopyStats:
  """Nearest and second-nearest training points with exact distances.

  Args:
    samples: `[B, ...]`.
    data: `[N, ...]`, N ≥ 2.
    chunk: rows of `data` per block of the search.
  """
  x, y = _flat(samples), _flat(data)
  if y.shape[0] < 2:
    raise ValueError("copy_stats needs at least 2 training points.")
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"samples and data disagree on their size: {x.shape} vs {y.shape}.")
  res = streaming.nearest_k(x, y.astype(x.dtype), 2, chunk=chunk)
  idx = np.asarray(res.index)
  x_np = np.asarray(x, np.float64)
  y_np = np.asarray(y, np.float64)
  d = np.linalg.norm(x_np[:, None, :] - y_np[idx], axis=-1)          # [B, 2]
  # The search may order near-ties by round-off; sort by the exact distances.
  order = np.argsort(d, axis=1)
  d = np.take_along_axis(d, order, 1)
  idx = np.take_along_axis(idx, order, 1)
  return CopyStats(idx[:, 0], idx[:, 1], d[:, 0], d[:, 1],
                   d[:, 0] / np.maximum(d[:, 1], 1e-300))


def index_agreement(index_a, index_b) -> float:
  """Fraction of paired samples that reach the same training point."""
  a, b = np.asarray(index_a), np.asarray(index_b)
  if a.shape != b.shape:
    raise ValueError(f"index arrays must match; got {a.shape} and {b.shape}.")
  return float(np.mean(a == b))


class RoundTrip(NamedTuple):
  """Errors of encode → decode (data side) and decode → encode (noise side), `[B]`.

  Attributes:
    data_error: `‖decode(encode(x0)) − x0‖ / ‖x0‖`.
    noise_error: `‖encode(decode(z)) − z‖ / ‖z‖`.
    latents: `encode(x0)`, `[B, ...]`.
    decoded: `decode(encode(x0))`, `[B, ...]`.
  """
  data_error: np.ndarray
  noise_error: np.ndarray
  latents: np.ndarray
  decoded: np.ndarray


def _rel(a, b):
  a, b = np.asarray(_flat(a), np.float64), np.asarray(_flat(b), np.float64)
  return np.linalg.norm(a - b, axis=1) / np.maximum(np.linalg.norm(b, axis=1), 1e-300)


def round_trip(denoise: Callable, x0, noise, sigmas, *, sampler: str = "heun",
               **options) -> RoundTrip:
  """Encode `x0` and decode it back; decode `noise` and encode it back.

  Both directions use the same deterministic solver on the same grid, which
  should end at σ_min > 0 (`final="min"`) so that no final denoising step
  snaps the state onto a training point.

  Args:
    denoise: canonical denoiser (VE coordinates).
    x0: points `[B, ...]` taken as the states at `sigmas[-1]`.
    noise: standard-normal latents `[B', ...]`.
    sigmas: decreasing generation grid `[T+1]`.
    sampler: an invertible deterministic solver (`heun`, `ddim`, `euler`, ...).
  """
  z = samplers.invert(denoise, x0, sigmas, sampler=sampler, **options).samples
  back = samplers.sample_batched(denoise, z, sigmas, sampler=sampler, **options).samples
  gen = samplers.sample_batched(denoise, noise, sigmas, sampler=sampler, **options).samples
  z_back = samplers.invert(denoise, gen, sigmas, sampler=sampler, **options).samples
  return RoundTrip(_rel(back, x0), _rel(z_back, noise), np.asarray(z), np.asarray(back))
