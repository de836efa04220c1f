"""Tweedie conversions between the four prediction heads.

For the kernel `x_t = s (x0 + σ ε)` (docs/theory.md §0) and a posterior mean
`D = E[x0 | x_t]`:

    ε̂     = (x_t − s D) / (s σ)
    score = ∇ log p_t(x_t) = −ε̂ / (s σ)
    v     = a ε̂ − b D,   a = 1/sqrt(1+σ²), b = σ/sqrt(1+σ²)

(`v` is the VP "velocity" of Salimans & Ho, defined through σ alone so that it
does not depend on how the kernel is scaled.)  `s` and `σ` broadcast against
`x` from the left: scalars or `[B]` for `x` of shape `[B, ...]`.
"""

from __future__ import annotations

import jax.numpy as jnp

from repro_jax import validation

HEADS = ("x0", "eps", "score", "v")


def bcast(c, x):
  """A scalar or `[B]` coefficient broadcastable against `x [B, ...]`, in x's dtype.

  The one broadcast helper of the package (heads, network wraps, samplers).
  """
  c = jnp.asarray(c, dtype=x.dtype)
  return c.reshape(c.shape + (1,) * (x.ndim - c.ndim))


def _vp_coeffs(sigma, x):
  s = bcast(sigma, x)
  a = 1.0 / jnp.sqrt(1.0 + s * s)
  return a, s * a


def eps_from_x0(x_t, x0, scale, sigma):
  return (x_t - bcast(scale, x_t) * x0) / (bcast(scale, x_t) * bcast(sigma, x_t))


def x0_from_eps(x_t, eps, scale, sigma):
  return (x_t / bcast(scale, x_t)) - bcast(sigma, x_t) * eps


def score_from_eps(eps, scale, sigma):
  return -eps / (bcast(scale, eps) * bcast(sigma, eps))


def eps_from_score(score, scale, sigma):
  return -score * bcast(scale, score) * bcast(sigma, score)


def v_from_x0_eps(x0, eps, sigma):
  a, b = _vp_coeffs(sigma, x0)
  return a * eps - b * x0


def to_x0(head: str, out, x_t, scale, sigma):
  """Convert a network/denoiser output of kind `head` to the posterior mean."""
  if head == "x0":
    return out
  if head == "eps":
    return x0_from_eps(x_t, out, scale, sigma)
  if head == "score":
    return x0_from_eps(x_t, eps_from_score(out, scale, sigma), scale, sigma)
  if head == "v":
    # v = a ε − b x0 and x_t/s = x0 + σ ε  ⇒  x0 = a² (x_t/s) − b v  (a² + b² = 1, b = σ a).
    a, b = _vp_coeffs(sigma, x_t)
    return a * a * (x_t / bcast(scale, x_t)) - b * out
  raise validation.unknown_name("head", head, HEADS)


def from_x0(head: str, x0, x_t, scale, sigma):
  """Convert a posterior mean `D` to the requested head."""
  if head == "x0":
    return x0
  eps = eps_from_x0(x_t, x0, scale, sigma)
  if head == "eps":
    return eps
  if head == "score":
    return score_from_eps(eps, scale, sigma)
  if head == "v":
    return v_from_x0_eps(x0, eps, sigma)
  raise validation.unknown_name("head", head, HEADS)
