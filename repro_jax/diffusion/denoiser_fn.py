"""One canonical denoiser interface for the samplers.

Every sampler consumes a *canonical denoiser*

    denoise(x, sigma) -> x0,    x [B, ...] in VE coordinates (x = x0 + σ ε),
                                sigma [B] (σ > 0),  x0 [B, ...] = E[x0 | x],

i.e. the posterior-mean head in the kernel with `s = 1` (THEORY.md §0).  Any
network or closed form is wrapped into it once:

- `from_model(fn, schedule, head)` wraps `fn(x_t, t) -> head` trained on the
  kernel `x_t = s_t (x0 + σ_t ε)` of `schedule` (its input is rescaled by
  `s_t`, its time is `t = schedule.t_of_sigma(σ)`, its head converted by
  Tweedie);
- `empirical(data)`, `gaussian(mean, cov)`, `gmm(mixture)`, `molrg(bases)`
  wrap the closed forms of `repro_jax.closed_form.denoisers`.

Images `[B, H, W, C]` are flattened for the closed forms and reshaped back.
`eps_of(denoise)` gives the ε-head `(x − D(x, σ)) / σ` the σ-form samplers use.
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp

from repro_jax import validation
from repro_jax.closed_form import denoisers
from repro_jax.diffusion import heads as heads_lib
from repro_jax.diffusion.schedules import Schedule

DenoiserFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]

TIME_INPUTS = ("t", "sigma", "log_sigma", "edm")


def _bc(c, x):
  c = jnp.asarray(c, x.dtype)
  return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def _model_time(schedule: Schedule, sigma, time_input: str):
  if time_input == "t":
    return schedule.t_of_sigma(sigma)
  if time_input == "sigma":
    return sigma
  if time_input == "log_sigma":
    return jnp.log(sigma)
  if time_input == "edm":
    return 0.25 * jnp.log(sigma)
  raise ValueError(f"Unknown time_input {time_input!r}; choose one of {TIME_INPUTS}.")


def from_model(fn: Callable, schedule: Schedule, head: str = "eps", *,
               time_input: str = "t") -> DenoiserFn:
  """Wrap `fn(x_t, t) -> head` into the canonical `denoise(x, σ) -> x0`.

  Args:
    fn: network or function of the schedule's coordinates `x_t [B, ...]` and
      its conditioning `[B]`.
    schedule: the kernel `x_t = s_t (x0 + σ_t ε)` the function assumes.
    head: what `fn` predicts: `"x0"`, `"eps"`, `"score"` or `"v"`.
    time_input: what `fn` is conditioned on: the schedule's `"t"`, `"sigma"`,
      `"log_sigma"`, or EDM's `"edm"` (`c_noise = ¼ log σ`).
  """
  if head not in heads_lib.HEADS:
    raise ValueError(f"Unknown head {head!r}; choose one of {heads_lib.HEADS}.")
  if time_input not in TIME_INPUTS:
    raise ValueError(f"Unknown time_input {time_input!r}; choose one of {TIME_INPUTS}.")

  def denoise(x, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    s = schedule.scale_of_sigma(sigma).astype(x.dtype)
    x_t = _bc(s, x) * x
    out = fn(x_t, _model_time(schedule, sigma, time_input))
    return heads_lib.to_x0(head, out, x_t, s, sigma)

  return denoise


def _flat(closed_form):
  def denoise(x, sigma):
    shape = x.shape
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), shape[:1])
    return closed_form(x.reshape(shape[0], -1), sigma).reshape(shape)
  return denoise


def empirical(data, **kwargs) -> DenoiserFn:
  """Canonical form of `denoisers.empirical_denoiser` over `data [N, ...]`.

  The squared norms of the rows are computed once here, not at every call,
  and the data are checked here (shape, N ≥ 1, finite): the samplers trace
  the denoiser, where value checks do not run (`repro_jax.validation`).
  """
  data = jnp.asarray(data)
  if data.ndim < 2:
    raise ValueError(f"`data` must have shape [N, ...] with a feature axis; got "
                     f"shape {data.shape}.")
  flat = data.reshape(data.shape[0], math.prod(data.shape[1:]))
  denoisers.check_data(flat)
  _, dt = validation.float_dtypes(data=flat)   # float16 norms overflow at pixel scale
  sq = jnp.sum(jnp.square(flat.astype(dt)), axis=1)
  return _flat(lambda x, s: denoisers.empirical_denoiser(x, flat, s, data_sq=sq, **kwargs))


def gaussian(mean, cov) -> DenoiserFn:
  """Canonical form of the posterior mean of `N(mean [D], cov [D, D])`."""
  mix = denoisers.GaussianMixture.from_covariances(
      jnp.ones((1,)), jnp.asarray(mean)[None], jnp.asarray(cov)[None])
  return gmm(mix)


def gmm(mixture: denoisers.GaussianMixture) -> DenoiserFn:
  """Canonical form of `denoisers.gmm_denoiser`."""
  return _flat(lambda x, s: denoisers.gmm_denoiser(x, mixture, s))


def molrg(bases, weights=None) -> DenoiserFn:
  """Canonical form of `denoisers.molrg_denoiser` (α = 1, β = σ); the bases
  and weights are checked here."""
  denoisers.check_bases(bases)
  if weights is not None:
    denoisers.check_weights(weights, jnp.shape(bases)[0])
  return _flat(lambda x, s: denoisers.molrg_denoiser(
      x, bases, jnp.ones_like(s), s, weights))


def eps_of(denoise: DenoiserFn) -> DenoiserFn:
  """ε-head in VE coordinates: `ε(x, σ) = (x − D(x, σ)) / σ`."""
  def eps(x, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return (x - denoise(x, sigma)) / _bc(sigma, x)
  return eps
