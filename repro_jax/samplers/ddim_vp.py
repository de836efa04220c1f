"""DDIM with general η, written in DDIM's own (VP) coordinates (docs/theory.md §3).

DDIM's `α_t` is DDPM's `ᾱ_t = 1 / (1 + σ_t²)`; its state is `z_t = sqrt(ᾱ_t) x_t`
for the VE state `x_t = x0 + σ_t ε`.  One step `τ_i → τ_{i−1}` (here σ → σ_next):

    f_θ     = (z_t − sqrt(1 − ᾱ_t) ε_θ) / sqrt(ᾱ_t)        (= D(x_t, σ_t))
    σ_η     = η sqrt((1 − ᾱ_{t−1}) / (1 − ᾱ_t)) sqrt(1 − ᾱ_t / ᾱ_{t−1})
    z_{t−1} = sqrt(ᾱ_{t−1}) f_θ + sqrt(1 − ᾱ_{t−1} − σ_η²) ε_θ + σ_η w

and the sampler hands back `x_{t−1} = z_{t−1} / sqrt(ᾱ_{t−1})`.  `η = 0` is
deterministic and equals the σ-form Euler step; `η = 1` is DDPM's ancestral
step, the same update as the σ-form DDPM (`μ = ½`) noise draw for noise draw.
`variance="beta"` is the σ̂ row of DDIM's table: DDPM's larger variance
`σ̂² = β = 1 − ᾱ_t/ᾱ_{t−1}` of the strided step, drawn around the η = 1 mean
(DDPM's posterior mean), with no noise on the last step to σ = 0 (DDIM's
released code does the same; a draw there would leave `sqrt(1 − ᾱ_{τ_1})` of
noise in the sample); `eta` is then unused and must stay 0.
`1 − ᾱ` is computed as `σ² ᾱ` so that small σ keep their precision.
A grid ending at σ = 0 (`ᾱ = 1`) ends with `z = f_θ`: no special step needed.
Discrete sub-sequences (uniform / quadratic / trailing ... of DDPM's T = 1000
steps) come from `schedules.sigma_grid(get_schedule("ddpm"), n, spacing)`.
"""

from __future__ import annotations

import jax.numpy as jnp

from repro_jax.samplers import _core


def _step(den, x, state, i, s, s_next, key, opts):
  del i
  beta_var = opts["variance"] == "beta"
  eta = 1.0 if beta_var else opts["eta"]
  a = 1.0 / (1.0 + jnp.square(s))                       # ᾱ_t
  a_next = 1.0 / (1.0 + jnp.square(s_next))             # ᾱ_{t−1}
  one_minus_a = jnp.square(s) * a                       # 1 − ᾱ_t
  one_minus_a_next = jnp.square(s_next) * a_next        # 1 − ᾱ_{t−1}
  z = jnp.sqrt(a) * x
  x0 = den(x, s)                                        # f_θ(x_t)
  eps = (z - jnp.sqrt(a) * x0) / jnp.sqrt(one_minus_a)
  # 1 − ᾱ_t/ᾱ_{t−1} = (σ_t² − σ_{t−1}²) ᾱ_t.
  sig_eta = eta * jnp.sqrt(one_minus_a_next / one_minus_a) * jnp.sqrt(
      jnp.maximum((jnp.square(s) - jnp.square(s_next)) * a, 0.0))
  direction = jnp.sqrt(jnp.maximum(one_minus_a_next - jnp.square(sig_eta), 0.0))
  z_next = jnp.sqrt(a_next) * x0 + direction * eps
  if opts["noisy"]:
    # σ̂ = sqrt(1 − ᾱ_t/ᾱ_{t−1}), none on a step to σ = 0.
    std = (jnp.where(s_next > 0, jnp.sqrt((jnp.square(s) - jnp.square(s_next)) * a), 0.0)
           if beta_var else sig_eta)
    z_next = z_next + std * _core.normal_like(key, x)
  return z_next / jnp.sqrt(a_next), state, x0


VARIANCES = ("eta", "beta")


def _validate(opts):
  _core.check_range(opts, "eta", 0.0, 1.0)
  if opts["variance"] not in VARIANCES:
    raise ValueError(f"option 'variance' must be one of {VARIANCES}; got "
                     f"{opts['variance']!r}.")
  if opts["variance"] == "beta" and float(opts["eta"]) != 0.0:
    raise ValueError("option 'eta' is not used with variance='beta' (DDPM's σ̂² = β); "
                     f"leave it at 0, got {opts['eta']!r}.")


DDIM = _core.SamplerSpec(
    name="ddim", step=_step, options=(("eta", 0.0),),
    static_options=(("variance", "eta"),), validate=_validate,
    stochastic=lambda o: o["variance"] == "beta" or float(o["eta"]) > 0.0,
    invertible=True)
