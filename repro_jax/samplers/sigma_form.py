"""The σ-form samplers of the optimization view (docs/theory.md §2).

All are one update in VE coordinates (`x = x0 + σ ε`), with `ε_θ(x, σ) =
(x − D(x, σ)) / σ`, step `t` going from `σ_t` to `σ_{t−1}`:

    ε̄_t     = ε_θ(x_t, σ_t)                                  (first step)
    ε̄_t     = γ ε_θ(x_t, σ_t) + (1 − γ) ε_θ(x_{t+1}, σ_{t+1})  (later steps)
    σ_p     = (σ_{t−1} / σ_t^μ)^{1/(1−μ)}
    x_{t−1} = x_t + (σ_p − σ_t) ε̄_t + sqrt(σ_{t−1}² − σ_p²) w_t,   w_t ~ N(0, I)

- `γ = 1, μ = 0`: DDIM, i.e. Euler on `dx/dσ = ε` (gradient descent on
  `½ dist_K²` with step `1 − σ_{t−1}/σ_t`);
- `γ = 1, μ = ½`: the stochastic DDPM update (`σ_p = σ_{t−1}²/σ_t`);
- `γ = 2, μ = 0`: the gradient-estimation sampler (Algorithm 2);
- `0 < μ < ½` interpolates between the deterministic and the DDPM update.

The carried `ε_θ(x_{t+1}, σ_{t+1})` is the raw network output of the previous
step, as in docs/theory.md §2 (the talk's reference code mixes in the previous *combined*
ε̄ instead).  The update is well defined for `σ_{t−1} = 0` (`σ_p = 0`, no noise),
so a grid ending at 0 needs no special last step.
"""

from __future__ import annotations

import jax.numpy as jnp

from repro_jax.samplers import _core


def _step(den, x, eps_prev, i, s, s_next, key, opts):
  gamma, mu = opts["gamma"], opts["mu"]
  x0 = den(x, s)
  eps = _core.eps_from(x, x0, s)
  eps_bar = jnp.where(i == 0, eps, gamma * eps + (1.0 - gamma) * eps_prev)
  s_p = jnp.power(s_next / jnp.power(s, mu), 1.0 / (1.0 - mu))
  x_next = x + (s_p - s) * eps_bar
  if opts["noisy"]:
    std = jnp.sqrt(jnp.maximum(jnp.square(s_next) - jnp.square(s_p), 0.0))
    x_next = x_next + std * _core.normal_like(key, x)
  return x_next, eps, x0


def _validate(opts):
  _core.check_range(opts, "gamma", 0.0, None, lo_open=True)
  _core.check_range(opts, "mu", 0.0, 1.0, hi_open=True)


def _spec(name: str, gamma: float, mu: float) -> _core.SamplerSpec:
  return _core.SamplerSpec(
      name=name, step=_step, init=jnp.zeros_like,
      options=(("gamma", gamma), ("mu", mu)),
      validate=_validate,
      stochastic=lambda o: float(o["mu"]) > 0.0,
      invertible=False)


SIGMA_FORM = _spec("sigma_form", 1.0, 0.0)
DDPM = _spec("ddpm", 1.0, 0.5)
GRADIENT_ESTIMATION = _spec("gradient_estimation", 2.0, 0.0)
