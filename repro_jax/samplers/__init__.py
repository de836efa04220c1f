"""Samplers, inversion and the noise → data map.

Every sampler is a jitted `lax.scan` over a σ grid in VE coordinates
(`x = x0 + σ ε`), driven by a canonical denoiser `denoise(x, sigma[B]) -> x0`
(a `repro_jax.diffusion.denoiser.Denoiser` or any such callable), batched over
`B`, chosen by name:

    from repro_jax import samplers, sharding
    from repro_jax.diffusion import denoiser, schedules
    den = denoiser.empirical(data)                          # data [N, ...]
    sigmas = schedules.sigma_grid(schedules.get_schedule("edm"), 18, "edm")
    res = samplers.sample(den, z, sigmas, sampler="heun")   # z [B, ...] ~ N(0, I)
    res.samples                                             # [B, ...]
    z_back = samplers.invert(den, res.samples, sigmas).samples
    many = samplers.sample_batched(den, z, sigmas, sampler="heun", batch_size=256,
                                   mesh=sharding.make_mesh())

Public surface:
- `sample(denoise, noise, sigmas, *, sampler, key, return_trajectory, **options)`
- `sample_batched(denoise, noise, sigmas, *, sampler, batch_size, mesh, key,
  return_trajectory, **options)`: every noise in fixed-size padded batches,
  a stack of M models (`[M, B, ...]`), the batch split over a 1-D mesh
- `invert(denoise, x0, sigmas, *, sampler, return_trajectory, **options)`
- `SAMPLERS`, `get_sampler(name)`, `num_evaluations(name, sigmas, **options)`
- `SampleResult(samples, xs, x0_hats, sigmas)`, `SamplerSpec`
- `sample_from_data(data, noise=None, *, seed, num_samples, sigmas, schedule,
  steps, spacing, final, sampler, return_trajectory, batch_size, mesh, **options)`,
  `sample_with(denoise, like, ...)` for any denoiser, and
  `sample_to_files(data, out, ...)` (the `experiments.sample` entrypoint).

What belongs here: every sampler and inversion (a new sampler is a registered
`SamplerSpec`), and the batched sampling entry points.  May import
`repro_jax.diffusion`, `repro_jax.closed_form`, `repro_jax.data`, `repro_jax.io`,
`repro_jax.plotting`, `repro_jax.sharding`, `repro_jax.validation`; `from_data` loads trained
networks lazily through `repro_jax.networks.training`.
"""

from repro_jax.samplers._core import SampleResult
from repro_jax.samplers._core import SamplerSpec
from repro_jax.samplers.api import SAMPLERS
from repro_jax.samplers.api import get_sampler
from repro_jax.samplers.api import num_evaluations
from repro_jax.samplers.api import sample
from repro_jax.samplers.batched import sample_batched
from repro_jax.samplers.from_data import make_sigmas
from repro_jax.samplers.from_data import parse_sigmas
from repro_jax.samplers.from_data import resolve_noise
from repro_jax.samplers.from_data import sample_from_data
from repro_jax.samplers.from_data import sample_with
from repro_jax.samplers.from_data import sample_to_files
from repro_jax.samplers.from_data import save_image_grid
from repro_jax.samplers.inversion import invert
from repro_jax.samplers.inversion import inversion_grid

__all__ = [
    "SAMPLERS", "SampleResult", "SamplerSpec", "get_sampler", "invert",
    "inversion_grid", "make_sigmas", "num_evaluations",
    "parse_sigmas", "resolve_noise", "sample", "sample_batched", "sample_from_data",
    "sample_to_files", "sample_with", "save_image_grid",
]
