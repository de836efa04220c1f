"""Probability-flow ODE solvers in VE coordinates.

The PF-ODE of the kernel `x = x0 + σ ε` is `dx/dσ = ε(x, σ) = (x − D(x, σ)) / σ`;
in `λ = −log σ` (half the log-SNR) it reads `dx/dλ = −σ ε`, which has no linear
part: DPM-Solver's exponential integrator for the ε-head, written in VE
coordinates, is a Taylor expansion of ε in λ.  With `h = λ_next − λ = log(σ/σ_next)`:

- `euler`: `x' = x + (σ' − σ) ε(x, σ)` (= DDIM = DPM-Solver-1).
- `heun`: EDM's Algorithm 2: Euler, then the trapezoidal correction with
  `ε(x', σ')`; the last step to σ = 0 is Euler alone (`2n − 1` evaluations).
  Optional churn (EDM's `S_churn, S_tmin, S_tmax, S_noise`): before each step
  with `σ ∈ [S_tmin, S_tmax]`, raise σ to `σ̂ = σ (1 + γ)`, `γ = min(S_churn/n,
  √2 − 1)`, adding noise of variance `σ̂² − σ² = σ² γ (2 + γ)`; where γ = 0
  (σ outside `[S_tmin, S_tmax]`) the step is exactly the deterministic one.
  `euler` takes the same churn.
- `dpm_solver` (singlestep, Lu et al. 2022, `order` 1–3, `order` evaluations per
  step; intermediate points at `λ + r h`, i.e. `σ_r = σ^{1−r} σ'^r`):
    order 2 (`r = ½`): `u = x + (σ_r − σ) ε`, `x' = x + (σ' − σ) ε(u, σ_r)`;
    order 3 (`r₁ = ⅓, r₂ = ⅔`): DPM-Solver-3 with `D₁, D₂` the differences of ε.
- `dpm_solver_pp_2m` (multistep, data prediction, Lu et al. 2022b):
  `x' = (σ'/σ) x + (1 − σ'/σ) D̄`, `D̄ = (1 + 1/(2r)) D − 1/(2r) D_prev`,
  `r = h_prev / h`; the first step is first order.
For `dpm_solver*` the last step to σ = 0 returns `D(x, σ)` (first order, as in
k-diffusion).  All updates also run on increasing grids (inversion).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from repro_jax.samplers import _core


# Euler / Heun (EDM) -----------------------------------------------------------------

def _churn(x, s, key, opts):
  """EDM's noise injection: `(x̂, σ̂)` (the identity when churn is off)."""
  if not opts["noisy"]:
    return x, s
  g = jnp.where((s >= opts["s_tmin"]) & (s <= opts["s_tmax"]),
                jnp.minimum(opts["churn"] / opts["num_steps"], math.sqrt(2.0) - 1.0),
                0.0)
  s_hat = s * (1.0 + g)
  # σ̂² − σ² = σ² γ (2 + γ), written so that γ = 0 gives exactly 0 (a difference
  # of squares leaves a rounding remainder once the compiler fuses it into an FMA).
  std = s * jnp.sqrt(g * (2.0 + g))
  return x + std * opts["s_noise"] * _core.normal_like(key, x), s_hat


def _euler_step(den, x, state, i, s, s_next, key, opts):
  del i
  x, s = _churn(x, s, key, opts)
  x0 = den(x, s)
  return x + (s_next - s) * _core.eps_from(x, x0, s), state, x0


def _heun_step(den, x, state, i, s, s_next, key, opts):
  del i
  x, s = _churn(x, s, key, opts)
  x0 = den(x, s)
  d = _core.eps_from(x, x0, s)
  x_pred = x + (s_next - s) * d
  d_next = _core.eps_from(x_pred, den(x_pred, s_next), s_next)
  return x + (s_next - s) * 0.5 * (d + d_next), state, x0


def _euler_final(den, x, state, i, s, key, opts):
  """Churn, then Euler to σ = 0, which is `D(x̂, σ̂)`."""
  del i
  x, s = _churn(x, s, key, opts)
  x0 = den(x, s)
  return x0, state, x0


def _validate_churn(opts):
  _core.check_range(opts, "churn", 0.0, None)
  _core.check_range(opts, "s_noise", 0.0, None)
  _core.check_range(opts, "s_tmin", 0.0, None)
  lo, hi = float(opts["s_tmin"]), float(opts["s_tmax"])
  if math.isnan(hi) or hi < lo:
    raise ValueError(f"option `s_tmax` must be >= s_tmin = {lo}; got {opts['s_tmax']!r}.")


_CHURN_OPTIONS = (("churn", 0.0), ("s_tmin", 0.0), ("s_tmax", math.inf),
                  ("s_noise", 1.0))


def _churn_spec(name, step, evals):
  return _core.SamplerSpec(
      name=name, step=step, final=_euler_final, options=_CHURN_OPTIONS,
      validate=_validate_churn, stochastic=lambda o: float(o["churn"]) > 0.0,
      evals=lambda o: evals, invertible=True)


EULER = _churn_spec("euler", _euler_step, 1)
HEUN = _churn_spec("heun", _heun_step, 2)


# DPM-Solver (singlestep, ε-head) ----------------------------------------------------

def _sigma_at(s, s_next, r):
  """σ at `λ + r h`: the geometric interpolation `σ^{1−r} σ'^r`."""
  return s * jnp.power(s_next / s, r)


def _dpm_step(den, x, state, i, s, s_next, key, opts):
  del i, key
  order = opts["order"]
  x0 = den(x, s)
  e = _core.eps_from(x, x0, s)
  ds = s_next - s
  if order == 1:
    return x + ds * e, state, x0
  if order == 2:
    s1 = _sigma_at(s, s_next, 0.5)
    u = x + (s1 - s) * e
    return x + ds * _core.eps_from(u, den(u, s1), s1), state, x0
  r1, r2 = 1.0 / 3.0, 2.0 / 3.0
  h = jnp.log(s / s_next)
  s1, s2 = _sigma_at(s, s_next, r1), _sigma_at(s, s_next, r2)
  u1 = x + (s1 - s) * e
  d1 = _core.eps_from(u1, den(u1, s1), s1) - e
  phi2 = jnp.expm1(r2 * h) / (r2 * h) - 1.0
  u2 = x + (s2 - s) * e - (s2 * r2 / r1) * phi2 * d1
  d2 = _core.eps_from(u2, den(u2, s2), s2) - e
  phi = jnp.expm1(h) / h - 1.0
  return x + ds * e - (s_next / r2) * phi * d2, state, x0


def _validate_order(opts):
  if opts["order"] not in (1, 2, 3):
    raise ValueError(f"option `order` must be 1, 2 or 3; got {opts['order']!r}.")


DPM_SOLVER = _core.SamplerSpec(
    name="dpm_solver", step=_dpm_step, final=_core.denoise_final,
    static_options=(("order", 2),), validate=_validate_order,
    evals=lambda o: int(o["order"]), invertible=True)


# DPM-Solver++ (2M) ----------------------------------------------------------------

def _pp2m_init(x):
  return (jnp.zeros_like(x), jnp.zeros((), x.dtype))  # D_prev, h_prev


def _pp2m_step(den, x, state, i, s, s_next, key, opts):
  del key, opts
  x0_prev, h_prev = state
  x0 = den(x, s)
  h = jnp.log(s / s_next)
  r = jnp.where(i == 0, 1.0, h_prev / h)
  c = 0.5 / r
  x0_bar = jnp.where(i == 0, x0, (1.0 + c) * x0 - c * x0_prev)
  ratio = s_next / s
  return ratio * x + (1.0 - ratio) * x0_bar, (x0, h), x0


DPM_SOLVER_PP_2M = _core.SamplerSpec(
    name="dpm_solver_pp_2m", step=_pp2m_step, init=_pp2m_init,
    final=_core.denoise_final, invertible=True)
