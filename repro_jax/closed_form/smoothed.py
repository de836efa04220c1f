"""The smoothed closed-form denoiser of σ-CFDMs (docs/theory.md §6.6).

Scarvelis, Sáez de Ocáriz Borde & Solomon (*Closed-Form Diffusion Models*,
TMLR 2025, arXiv:2310.12395) write the forward process as the interpolant
`x_t = t y + (1 − t) ε` (`t ∈ (0, 1)`, `t = 1` the data), whose empirical
score is `ŝ_t(x) = (t D̂(x) − x) / (1 − t)²` with `D̂` the empirical
(memorizing) posterior mean.  Their σ-CFDM replaces it by its Gaussian
smoothing with a *fixed* radius `τ` in those coordinates (their σ):

    s_t^τ(x) = E_{z ~ N(0, I)} ŝ_t(x + τ z) = (t E_z D̂(x + τ z) − x) / (1 − t)²

(`E[z] = 0` removes the `τ z` of the linear term).  By Tweedie the score
`(s D − x) / (s σ)²` of the kernel `x_t = s (x0 + σ ε)` with `s = t`,
`σ = (1 − t)/t` has the posterior-mean ("x0") head

    D^τ(x_t) = E_z D̂(x_t + τ z),
    D̂(u) = Σ_i w_i(u) y_i,   w = softmax_i(−‖u/s − y_i‖² / (2σ²)),

the empirical denoiser averaged over a Gaussian ball of radius `τ` around the
query, i.e. radius `τ/s` in VE coordinates `x_t/s = x0 + σ ε`.  For the
canonical VE denoiser (`s = 1`, `x = x0 + σ ε`) the paper's fixed `τ` becomes
the σ-dependent VE radius `τ (1 + σ)` (since `1/t = 1 + σ`), see
`ve_radius`.  `τ = 0` is the empirical denoiser; σ → ∞ gives the data mean
for any `τ`.

What is exact and what is estimated: the sum over the `N` data rows is exact
(streamed, `streaming.lse_stats`; the paper's nearest-neighbour estimator
truncates it, which is not done here).  The expectation over `z` of a softmax
of Gaussian logits has no closed form, so it is estimated by `M = num_draws`
draws from an explicit `key` (antithetic pairs `±z` by default): the result is
a deterministic, smooth function of `(x, σ)` for a given key, which is what an
ODE sampler needs.  Its Monte Carlo error shrinks as `1/sqrt(M)`.  Draw `m`
of row `b` is `smoothing_draws(key, M, B, D)[m, b]`.

Memory: `O(B · chunk + B · D)` on top of the data; cost: `M` empirical
denoiser evaluations.  Dtypes and checks as `repro_jax.closed_form.denoisers`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from repro_jax import validation
from repro_jax.closed_form import streaming
from repro_jax.closed_form.denoisers import _cast
from repro_jax.closed_form.denoisers import _per_row
from repro_jax.closed_form.denoisers import check_data
from repro_jax.closed_form.denoisers import check_params
from repro_jax.closed_form.denoisers import check_query
from repro_jax.diffusion import heads as heads_lib

# How a canonical (VE) denoiser reads its smoothing radius, see `ve_radius`.
SMOOTHING_COORDINATES = ("interpolant", "ve")


def ve_radius(smoothing, sigma, coordinates: str = "interpolant"):
  """The VE-coordinate smoothing radius of a canonical denoiser at noise level σ.

  `"interpolant"`: `τ` is the paper's radius in `x_t = t y + (1 − t) ε`, so
  in VE coordinates (`x_t / t`, `t = 1/(1 + σ)`) the radius is `τ (1 + σ)`.
  `"ve"`: `τ` is the radius in VE coordinates at every σ.
  `smoothing`, `sigma`: scalars or `[B]`.
  """
  if coordinates == "interpolant":
    return smoothing * (1.0 + sigma)
  if coordinates == "ve":
    return smoothing + 0.0 * sigma
  raise validation.unknown_name("smoothing coordinates", coordinates, SMOOTHING_COORDINATES)


def _draw(key, m, batch, dim, dtype, antithetic):
  """Draw `m` (`[B, D]`): with `antithetic`, draws `2k` and `2k + 1` are `±z_k`."""
  if antithetic:
    z = jax.random.normal(jax.random.fold_in(key, m // 2), (batch, dim), dtype)
    return jnp.where(m % 2 == 0, z, -z)
  return jax.random.normal(jax.random.fold_in(key, m), (batch, dim), dtype)


def smoothing_draws(key, num_draws: int, batch: int, dim: int, *, antithetic: bool = True,
                    dtype=None):
  """The standard normal draws `z` `[M, B, D]` that `smoothed_denoiser` uses.

  `dtype`: the denoiser's compute dtype, i.e. the promoted float dtype of its
  `x` and `data` (float32 for float16 inputs); default: the default float
  dtype.  Materialized here only for inspection and oracles; the denoiser
  draws them one at a time.
  """
  validation.check_int(num_draws, "num_draws", minimum=1)
  _check_key(key)
  dtype = jnp.result_type(float) if dtype is None else dtype
  return jax.vmap(lambda m: _draw(key, m, batch, dim, dtype, antithetic))(
      jnp.arange(num_draws))


def _check_key(key):
  k = jnp.asarray(key) if not isinstance(key, jax.Array) else key
  if jnp.issubdtype(k.dtype, jax.dtypes.prng_key):
    if k.shape != ():
      raise ValueError(f"`key` must be a single PRNG key; got shape {k.shape}.")
    return
  if k.shape != (2,) or k.dtype != jnp.uint32:
    raise ValueError("`key` must be a PRNG key (`jax.random.key(seed)` or "
                     f"`jax.random.PRNGKey(seed)`); got {k.dtype} of shape {k.shape}.")


@functools.partial(jax.jit, static_argnames=("num_draws", "antithetic", "chunk_size",
                                             "precision", "head", "mesh", "axis"))
def _smoothed(x, data, sigma, scale, smoothing, key, data_sq, *, num_draws, antithetic,
              chunk_size, precision, head, mesh, axis):
  b, d = x.shape
  sigma = _per_row(sigma, b, x.dtype)
  scale = _per_row(scale, b, x.dtype)
  radius = (_per_row(smoothing, b, x.dtype) / scale)[:, None]     # VE coordinates
  x_ve = x / scale[:, None]
  coef = 0.5 / jnp.square(sigma)

  def add_draw(m, acc):
    q = x_ve + radius * _draw(key, m, b, d, x.dtype, antithetic)
    if mesh is None:
      st = streaming.lse_stats(q, data, coef, chunk=chunk_size, precision=precision,
                               data_sq=data_sq)
    else:
      st = streaming.lse_stats_sharded(q, data, coef, mesh, axis, chunk=chunk_size,
                                        precision=precision, data_sq=data_sq)
    return acc + st.weighted / st.total[:, None]

  x0 = lax.fori_loop(0, num_draws, add_draw, jnp.zeros_like(x_ve)) / num_draws
  return heads_lib.from_x0(head, x0, x, scale, sigma)


def smoothed_denoiser(x, data, sigma, smoothing, *, key, num_draws: int = 16,
                      antithetic: bool = True, scale=1.0, head="x0",
                      chunk_size=streaming.DEFAULT_CHUNK, mesh=None, axis="data",
                      precision="highest", data_sq=None):
  """The σ-CFDM posterior mean `D^τ(x) = E_{z ~ N(0, I)} D̂(x + τ z)` (module docstring).

  `D̂` is the empirical denoiser of `data` for the kernel `x_t = s (x0 + σ ε)`;
  the smoothing radius `τ` is in the coordinates of `x` (the paper's
  interpolant: `s = t`, `σ = (1 − t)/t`; a canonical VE denoiser: `s = 1` and
  `τ = ve_radius(...)`).  The expectation is a `num_draws`-point Monte Carlo
  estimate from `key`; the sum over data rows is exact.

  Args:
    x: noisy queries `[B, D]`.
    data: training set `[N, D]`.
    sigma: noise-to-signal level σ > 0, scalar or `[B]`.
    smoothing: radius τ ≥ 0 (0: the empirical denoiser), scalar or `[B]`.
    key: PRNG key of the draws (`smoothing_draws` replays them).
    num_draws: M ≥ 1 draws of `z` per query.
    antithetic: use the pairs `±z` (exact for the odd part of `D̂` around `x`).
    scale: kernel scale s > 0, scalar or `[B]`.
    head: `"x0"` (posterior mean), `"eps"`, `"score"` (the paper's smoothed
      score `s_t^τ`) or `"v"`.
    chunk_size, mesh, axis, precision, data_sq: as `denoisers.empirical_denoiser`.

  Returns:
    `[B, D]`, the requested head, in the dtype of `x` and `data`.
  """
  x, data = jnp.asarray(x), jnp.asarray(data)
  out, dt = validation.float_dtypes(x=x, data=data)
  check_data(data)
  check_query(x, data, "data")
  check_params(x, sigma=sigma, scale=scale)
  validation.check_batch_param(smoothing, np.shape(x)[0], "smoothing")
  validation.check_positive(smoothing, "smoothing", allow_zero=True)
  validation.check_int(num_draws, "num_draws", minimum=1)
  if not isinstance(antithetic, bool):
    raise ValueError(f"`antithetic` must be True or False; got {antithetic!r}.")
  _check_key(key)
  if head not in heads_lib.HEADS:
    raise validation.unknown_name("head", head, heads_lib.HEADS)
  if data_sq is not None and np.shape(data_sq) != np.shape(data)[:1]:
    raise ValueError(f"`data_sq` must have shape [N] = {np.shape(data)[:1]}; got "
                     f"{np.shape(data_sq)}.")
  validation.check_chunk(chunk_size)
  x, data, sigma, scale, smoothing, data_sq = _cast(dt, x, data, sigma, scale, smoothing,
                                                    data_sq)
  return _smoothed(x, data, sigma, scale, smoothing, key, data_sq, num_draws=num_draws,
                   antithetic=antithetic, chunk_size=chunk_size, precision=precision,
                   head=head, mesh=mesh, axis=axis).astype(out)
