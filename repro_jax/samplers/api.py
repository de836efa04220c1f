"""Sampler registry and the one function that runs any of them: `sample`.

    result = sample(denoise, noise, sigmas, sampler="heun", key=None, **options)

`denoise(x, sigma[B]) -> x0` is the canonical denoiser of
`repro_jax.diffusion.denoiser` (VE coordinates, `x = x0 + σ ε`); `noise [B, ...]` is
standard normal and the run starts at `x = σ_max · noise`; `sigmas [T+1]` is a
strictly decreasing grid, e.g. `schedules.sigma_grid(schedule, T, spacing,
final="zero" | "min")`: a last entry 0 denoises to σ = 0, a positive one stops
at σ_min.

| name | update | options (default) |
| --- | --- | --- |
| `ddim` | DDIM-η in ᾱ coordinates (η = 0 deterministic, η = 1 DDPM; `variance="beta"`: DDPM's σ̂² = β) | `eta` (0), `variance` (`eta`) |
| `sigma_form` | σ-form family of the optimization view | `gamma` (1), `mu` (0) |
| `ddpm` | σ-form stochastic DDPM update | `gamma` (1), `mu` (½) |
| `gradient_estimation` | Algorithm 2 of the optimization view | `gamma` (2), `mu` (0) |
| `euler` | PF-ODE Euler (EDM, optional churn) | `churn` (0), `s_tmin`, `s_tmax`, `s_noise` |
| `heun` | PF-ODE Heun (EDM, 2n − 1 evaluations, optional churn) | as `euler` |
| `dpm_solver` | DPM-Solver singlestep | `order` (2; 1–3) |
| `dpm_solver_pp_2m` | DPM-Solver++ 2M multistep | — |
"""

from __future__ import annotations

from typing import Callable

from repro_jax import validation
from repro_jax.diffusion.schedules import check_sigma_grid
from repro_jax.samplers import _core
from repro_jax.samplers import ddim_vp
from repro_jax.samplers import ode
from repro_jax.samplers import sigma_form
from repro_jax.samplers._core import SampleResult
from repro_jax.samplers._core import SamplerSpec

SAMPLERS: dict[str, SamplerSpec] = {
    spec.name: spec for spec in (
        ddim_vp.DDIM, sigma_form.SIGMA_FORM, sigma_form.DDPM,
        sigma_form.GRADIENT_ESTIMATION, ode.EULER, ode.HEUN, ode.DPM_SOLVER,
        ode.DPM_SOLVER_PP_2M)
}


def get_sampler(name: str) -> SamplerSpec:
  """The registered `SamplerSpec` called `name` (ValueError listing the names)."""
  if not isinstance(name, str) or name not in SAMPLERS:
    raise validation.unknown_name("sampler", name, SAMPLERS)
  return SAMPLERS[name]


def sample(denoise: Callable, noise, sigmas, *, sampler: str = "ddim", key=None,
           return_trajectory: bool = False, **options) -> SampleResult:
  """Run a registered sampler from `x = sigmas[0] · noise` along `sigmas`.

  Args:
    denoise: canonical denoiser `denoise(x [B, ...], sigma [B]) -> x0 [B, ...]`
      (VE coordinates).  It is traced once per object and input shape; the
      arrays it closes over (data, parameters) are captured then, as with
      `jax.jit`, and passed to the compiled loop as arguments, not constants.
      Reuse the object to reuse the compilation; build a new one when its
      parameters change.
    noise: standard-normal `z [B, ...]`.
    sigmas: strictly decreasing σ grid `[T+1]` (VE), used as given; last entry
      0 (denoise to σ = 0) or > 0 (stop at σ_min).
    sampler: registry name (see the module docstring).
    key: PRNG key, required when the options make the sampler stochastic;
      step t draws from `fold_in(key, t)`.
    return_trajectory: also return `xs [T+1, B, ...]` and `x0_hats [T, B, ...]`.
    **options: the sampler's options (`eta`, `gamma`, `mu`, `order`, `churn`, ...).

  Returns:
    `SampleResult(samples [B, ...], xs, x0_hats, sigmas [T+1])`.
  """
  spec = get_sampler(sampler)
  noise = _core.check_start(noise, "noise")
  check_sigma_grid(sigmas)
  x = noise * float(sigmas[0])
  return _core.run(spec, denoise, x, sigmas, key=key,
                   return_trajectory=return_trajectory, arg_name="noise", **options)


def num_evaluations(sampler: str, sigmas, **options) -> int:
  """Denoiser evaluations of `sample(..., sampler, sigmas, **options)`."""
  return _core.num_evaluations(get_sampler(sampler), sigmas, **options)
