"""The conventions every other package shares: the forward process and its heads.

What belongs here: noise schedules (`schedules`: the kernel
`x_t = s_t (x0 + σ_t ε)` and σ grids), the Tweedie conversions between the x0,
ε, score and v heads (`heads`), and the canonical denoiser interface the
samplers and metrics consume (`denoiser_fn`).

May import: `repro_jax.validation` and the closed forms it wraps
(`repro_jax.closed_form`); nothing from samplers, networks, analysis or studies.
"""
