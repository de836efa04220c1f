"""The conventions every other package shares: the forward process, its heads,
the canonical denoiser.

What belongs here: noise schedules (`schedules`: the kernel
`x_t = s_t (x0 + σ_t ε)` and σ grids), the Tweedie conversions between the x0,
ε, score and v heads and the one broadcast helper (`heads`), and the canonical
denoiser `denoise(x [B, ...], σ [B]) -> x0` in VE coordinates as a value
(`denoiser`: the `Denoiser` type, the closed forms, the one network wrap
`from_model`, `stack` for many models, the registry `DENOISERS` / `make`).

May import: `repro_jax.validation`, `repro_jax.settings` and the closed forms
it wraps (`repro_jax.closed_form`); nothing from samplers, analysis or studies,
and `repro_jax.networks.training` only lazily, inside the registry's
`"network"` entry.
"""
