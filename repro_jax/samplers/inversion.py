"""Deterministic inversion (data → noise): the PF-ODE run with increasing σ.

Theorem 1's encoder: for the memorizing denoiser a deterministic sampler is an
invertible map noise → data; running the same ODE forward in σ recovers the
noise.  `invert(denoise, x0, sigmas)` takes the *generation* grid (decreasing,
as given to `sample`), walks it backwards from its smallest positive σ — a
trailing 0 is skipped and `x0` is taken as the state at σ_min — up to σ_max,
and returns the latent `z = x(σ_max) / σ_max`, so that
`sample(denoise, invert(denoise, x0, sigmas).samples, sigmas)` ≈ `x0` (exactly,
up to the solver error, when the grid ends at σ_min; through the final
denoising step when it ends at 0).  An increasing grid starting above 0 is also
accepted and used as given.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from repro_jax.samplers import _core
from repro_jax.samplers import api
from repro_jax.diffusion.schedules import check_sigma_grid


def inversion_grid(sigmas) -> np.ndarray:
  """Increasing grid `[T'+1]`, all > 0, that `invert` walks for `sigmas`."""
  s = np.asarray(sigmas, np.float64)
  if s.ndim == 1 and s.shape[0] >= 2 and s[0] < s[-1]:
    check_sigma_grid(s[::-1])
    up = s
  else:
    check_sigma_grid(s)
    up = s[::-1]
  if up[0] == 0.0:
    up = up[1:]
  if up.shape[0] < 2:
    raise ValueError(f"`sigmas` needs at least two entries > 0 to invert; got {s}.")
  return up


def invert(denoise: Callable, x0, sigmas, *, sampler: str = "heun",
           return_trajectory: bool = False, **options) -> _core.SampleResult:
  """Encode data `x0 [B, ...]` to latents `z [B, ...]` with a deterministic ODE.

  Args:
    denoise: canonical denoiser (VE coordinates).
    x0: data points `[B, ...]`, the state at the grid's smallest positive σ.
    sigmas: the generation grid `[T+1]` (decreasing; see the module docstring)
      or an increasing grid with entries > 0.
    sampler: a deterministic solver: `euler`, `heun`, `ddim` (η = 0),
      `dpm_solver` (any order) or `dpm_solver_pp_2m`.
    return_trajectory: also return `xs`, `x0_hats` along the increasing grid.
    **options: the solver's options (they must keep it deterministic).

  Returns:
    `SampleResult` with `samples = z = x(σ_max) / σ_max`, and `sigmas` the
    increasing grid walked.
  """
  spec = api.get_sampler(sampler)
  if not spec.invertible:
    names = sorted(n for n, s in api.SAMPLERS.items() if s.invertible)
    raise ValueError(f"sampler {sampler!r} cannot invert; use one of {names}.")
  if spec.stochastic(spec.resolve(options)):
    raise ValueError(f"inversion needs a deterministic update; options {options} "
                     f"make {sampler!r} stochastic.")
  up = inversion_grid(sigmas)
  res = _core.run(spec, denoise, x0, up, return_trajectory=return_trajectory,
                  arg_name="x0", check_grid=False, **options)
  return res._replace(samples=res.samples / float(up[-1]))
