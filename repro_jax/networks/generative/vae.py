"""A Gaussian VAE (Flax NNX) and its ELBO terms.

Encoder `q(z|x) = N(μ(x), diag exp(logvar(x)))`, prior `p(z) = N(0, I)`,
decoder `p(x|z) = N(f(z), obs_std² I)` with `f` ending in `tanh` (images in
`[−1, 1]`).  Shapes: `x [B, H, W, C]`, `z, μ, logvar [B, L]`.  Loss per
image: `recon + β · KL`, `recon = ‖x − f(z)‖² / (2 obs_std²)` (the negative
log-likelihood up to a constant), `z = μ + exp(logvar / 2) ε`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class VAE(nnx.Module):
  """MLP encoder and decoder with two hidden layers of `width` units."""

  def __init__(self, data_shape, latent: int, width: int, *, rngs: nnx.Rngs):
    if len(data_shape) != 3:
      raise ValueError(f"data_shape must be (H, W, C); got {tuple(data_shape)}.")
    self.data_shape = tuple(int(d) for d in data_shape)
    dim = self.data_shape[0] * self.data_shape[1] * self.data_shape[2]
    self.enc = nnx.List([nnx.Linear(dim, width, rngs=rngs), nnx.Linear(width, width, rngs=rngs)])
    self.mu = nnx.Linear(width, latent, rngs=rngs)
    self.logvar = nnx.Linear(width, latent, rngs=rngs)
    self.dec = nnx.List([nnx.Linear(latent, width, rngs=rngs),
                         nnx.Linear(width, width, rngs=rngs),
                         nnx.Linear(width, dim, rngs=rngs)])

  def encode(self, x):
    h = x.reshape((x.shape[0], -1))
    for layer in self.enc:
      h = nnx.relu(layer(h))
    return self.mu(h), self.logvar(h)

  def decode(self, z):
    h = z
    for layer in self.dec[:-1]:
      h = nnx.relu(layer(h))
    return jnp.tanh(self.dec[-1](h)).reshape((-1,) + self.data_shape)

  def __call__(self, z):
    return self.decode(z)


def generate(graphdef, params, z):
  """Decoder means `[B, H, W, C]` of the VAE `(graphdef, params)` at `z [B, L]`."""
  z = jnp.asarray(z)
  if z.ndim != 2:
    raise ValueError(f"z must have shape [B, latent]; got {z.shape}.")
  return nnx.merge(graphdef, params).decode(z)


def kl_diag_gaussian(mu, logvar):
  """`KL(N(μ, diag e^logvar) ‖ N(0, I))` per row, `[B]` (analytic)."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + mu**2 - 1.0 - logvar, axis=-1)


def elbo_terms(model: VAE, x, key, obs_std: float):
  """`(recon [B], kl [B])`: one reparameterized draw of the reconstruction term and
  the analytic KL; the negative ELBO is `recon + kl` (+ a constant)."""
  mu, logvar = model.encode(x)
  z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)
  err = (x - model.decode(z)).reshape((x.shape[0], -1))
  return jnp.sum(err**2, axis=-1) / (2.0 * obs_std**2), kl_diag_gaussian(mu, logvar)
