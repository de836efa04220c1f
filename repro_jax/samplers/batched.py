"""Sampling many noises: fixed-size padded batches, stacks of models, a device mesh.

    res = sample_batched(denoise, noise, sigmas, sampler="heun", batch_size=256,
                         mesh=None)

runs `sample` on batches of `batch_size` noises (the last batch padded with
zeros, so every call has the same shape and the compiled sampler is reused).
A stack of M models (`Denoiser.num_models = M`, e.g.
`training.stacked_denoiser`) is fed M copies of each batch, model-major
(`[M · b, ...]`), and comes back as `[M, B, ...]`.  With a 1-D mesh (axis
"data", `repro_jax.sharding.make_mesh`) each batch is split over its devices
(`NamedSharding(mesh, P("data"))`); the denoiser's arrays follow JAX's
placement (replicated unless they are sharded already, e.g. the rows of an
`empirical(data, mesh=mesh)`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from repro_jax import sharding as sharding_lib
from repro_jax.diffusion import denoiser as denoiser_lib
from repro_jax.samplers import api
from repro_jax.samplers._core import SampleResult


def _check_batch_size(batch_size) -> None:
  if batch_size is None:
    return
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size < 1:
    raise ValueError(f"`batch_size` must be an integer >= 1; got {batch_size!r}.")


def sample_batched(denoise, noise, sigmas, *, sampler: str = "ddim",
                   batch_size: int | None = None, mesh=None, key=None,
                   return_trajectory: bool = False, **options) -> SampleResult:
  """Run `sample` over every noise in fixed-size batches, optionally on a mesh.

  Args:
    denoise: a `Denoiser` (or a canonical callable, taken as one model).  A
      stack of M models (`num_models = M`) runs every model on the same noises.
    noise: standard-normal `z [B, ...]`; the run starts at `σ_max z`.
    sigmas: strictly decreasing σ grid `[T+1]` (VE), as for `sample`.
    sampler: registry name; `**options` its options.
    batch_size: noises per sampler call (None: all B in one call).  The last
      batch is padded with zeros; a mesh rounds the batch up to a multiple of
      its device count.
    mesh: optional 1-D mesh with axis "data" over which each batch is split.
    key: PRNG key of a stochastic sampler: `key` itself when the noises run in
      one call, `fold_in(key, j)` for batch j otherwise.  The draws depend on
      the batch shape (not on the mesh).
    return_trajectory: also return the states and the x0 estimates.

  Returns:
    `SampleResult`: `samples [B, ...]` (one model) or `[M, B, ...]` (a stack of
    M), `xs [T+1, (M,) B, ...]`, `x0_hats [T, (M,) B, ...]` with a trajectory,
    and `sigmas [T+1]`.
  """
  den = denoiser_lib.as_denoiser(denoise)
  _check_batch_size(batch_size)
  noise = jnp.asarray(noise)
  if noise.ndim < 1 or noise.shape[0] < 1:
    raise ValueError(f"`noise` must have shape [B, ...] with B >= 1; got {noise.shape}.")
  b = noise.shape[0]
  m = den.num_models or 1
  size = b if batch_size is None else min(int(batch_size), b)
  devices = 1 if mesh is None else mesh.shape[sharding_lib.DATA_AXIS]
  size = -(-size // devices) * devices
  put = None if mesh is None else NamedSharding(mesh, P(sharding_lib.DATA_AXIS))
  num_batches = -(-b // size)

  def run(z, k):
    if den.stacked:   # every model on the same noises, model-major
      z = jnp.broadcast_to(z[None], (m,) + z.shape).reshape((m * size,) + z.shape[1:])
    if put is not None:
      z = jax.device_put(z, put)
    # `den.fn`, not `den`: the compiled sampler is cached per callable, and a
    # value re-wrapped around the same callable reuses it.
    return api.sample(den.fn, z, sigmas, sampler=sampler, key=k,
                      return_trajectory=return_trajectory, **options)

  if num_batches == 1 and size == b and not den.stacked:
    return run(noise, key)
  parts, r = [], None
  for j in range(num_batches):
    z = noise[j * size:(j + 1) * size]
    keep = z.shape[0]
    if keep < size:   # same shape for every batch: one compilation
      z = jnp.concatenate([z, jnp.zeros((size - keep,) + z.shape[1:], z.dtype)])
    r = run(z, key if num_batches == 1 or key is None else jax.random.fold_in(key, j))
    parts.append(tuple(None if a is None else
                       a.reshape(a.shape[:axis] + (m, size) + a.shape[axis + 1:])
                       [(slice(None),) * (axis + 1) + (slice(0, keep),)]
                       for a, axis in ((r.samples, 0), (r.xs, 1), (r.x0_hats, 1))))

  def cat(i, axis):
    if parts[0][i] is None:
      return None
    out = jnp.concatenate([p[i] for p in parts], axis + 1)
    return out if den.stacked else jnp.squeeze(out, axis)

  return SampleResult(cat(0, 0), cat(1, 1), cat(2, 1), r.sigmas)
