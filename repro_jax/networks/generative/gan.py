"""GAN generators and critics (Flax NNX) and their losses.

Shapes: `z [B, L]` standard normal latents, images `x [B, H, W, C]` in
`[−1, 1]` (the generator ends in `tanh`), critic scores `[B]`.

- `arch="mlp"`: two hidden layers of `width` units (the 8×8 digits);
- `arch="dcgan"`: the DCGAN layout (Radford et al., 2016): a linear map to a
  4×4 map of `4·width` channels, stride-2 transposed convolutions doubling the
  resolution to `H × W`; the critic mirrors it with stride-2 convolutions.

`spectral=True` wraps every weight layer of the critic in `nnx.SpectralNorm`
(Miyato et al., 2018: W / σ_max(W), σ_max by one power-iteration step per
call whose vector `u` is a `BatchStat`, updated only in training).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

ARCHS = ("mlp", "dcgan")


def _check_arch(arch: str, data_shape) -> None:
  if arch not in ARCHS:
    raise ValueError(f"unknown GAN architecture {arch!r}; choose one of {ARCHS}.")
  if len(data_shape) != 3:
    raise ValueError(f"data_shape must be (H, W, C); got {tuple(data_shape)}.")
  if arch == "dcgan":
    h, w, _ = data_shape
    if h != w or h < 8 or h & (h - 1):
      raise ValueError(f"the DCGAN layout needs square images of a power-of-two side >= 8; "
                       f"got {tuple(data_shape)}.")


def _ups(h: int) -> int:
  """Number of stride-2 layers between 4×4 and h×h."""
  return int(np.log2(h)) - 2


class Generator(nnx.Module):
  """`z [B, L] -> x [B, H, W, C]` in [−1, 1]."""

  def __init__(self, data_shape, latent: int, width: int, arch: str = "mlp", *,
               rngs: nnx.Rngs):
    _check_arch(arch, data_shape)
    self.data_shape, self.arch, self.width = tuple(int(d) for d in data_shape), arch, width
    h, w, c = self.data_shape
    if arch == "mlp":
      self.layers = nnx.List([nnx.Linear(latent, width, rngs=rngs),
                              nnx.Linear(width, width, rngs=rngs),
                              nnx.Linear(width, h * w * c, rngs=rngs)])
    else:
      k = _ups(h)
      self.stem = nnx.Linear(latent, 16 * width * 2**(k - 1), rngs=rngs)
      chans = [width * 2**(k - 1 - i) for i in range(k)] + [c]
      self.layers = nnx.List([nnx.ConvTranspose(chans[i], chans[i + 1], (4, 4), strides=(2, 2),
                                                padding="SAME", rngs=rngs)
                              for i in range(k)])

  def __call__(self, z):
    h, w, c = self.data_shape
    if self.arch == "mlp":
      x = z
      for layer in self.layers[:-1]:
        x = nnx.relu(layer(x))
      return jnp.tanh(self.layers[-1](x)).reshape((-1, h, w, c))
    k = _ups(h)
    x = nnx.relu(self.stem(z)).reshape((-1, 4, 4, self.width * 2**(k - 1)))
    for i, layer in enumerate(self.layers):
      x = layer(x)
      x = jnp.tanh(x) if i == len(self.layers) - 1 else nnx.relu(x)
    return x


class Critic(nnx.Module):
  """`x [B, H, W, C] -> [B]` scores (no sigmoid: WGAN critic or hinge discriminator)."""

  def __init__(self, data_shape, width: int, arch: str = "mlp", spectral: bool = False, *,
               rngs: nnx.Rngs):
    _check_arch(arch, data_shape)
    self.arch = arch
    h, w, c = (int(d) for d in data_shape)
    wrap = ((lambda layer: nnx.SpectralNorm(layer, rngs=rngs)) if spectral
            else (lambda layer: layer))
    self.spectral = spectral
    if arch == "mlp":
      layers = [nnx.Linear(h * w * c, width, rngs=rngs), nnx.Linear(width, width, rngs=rngs),
                nnx.Linear(width, 1, rngs=rngs)]
    else:
      k = _ups(h)
      chans = [c] + [width * 2**i for i in range(k)]
      layers = [nnx.Conv(chans[i], chans[i + 1], (4, 4), strides=(2, 2), padding="SAME",
                         rngs=rngs) for i in range(k)]
      layers.append(nnx.Linear(16 * chans[-1], 1, rngs=rngs))
    self.layers = nnx.List([wrap(layer) for layer in layers])

  def __call__(self, x, update_stats: bool = False):
    if self.arch == "mlp":
      x = x.reshape((x.shape[0], -1))
    for i, layer in enumerate(self.layers):
      if i == len(self.layers) - 1:
        x = x.reshape((x.shape[0], -1))
      x = layer(x, update_stats=update_stats) if self.spectral else layer(x)
      if i < len(self.layers) - 1:
        x = nnx.leaky_relu(x, 0.2)
    return x[:, 0]


def generate(graphdef, params, z):
  """Images `[B, H, W, C]` of the generator `(graphdef, params)` from `z [B, L]`."""
  z = jnp.asarray(z)
  if z.ndim != 2:
    raise ValueError(f"z must have shape [B, latent]; got {z.shape}.")
  return nnx.merge(graphdef, params)(z)


def gradient_penalty(critic_fn, real, fake, eps):
  """WGAN-GP's penalty `mean_b (‖∇_x D(x̂_b)‖ − 1)²`, `x̂ = ε x_real + (1 − ε) x_fake`.

  Args:
    critic_fn: `x [B, ...] -> [B]`, each score depending only on its own image.
    real, fake: `[B, ...]`.
    eps: `[B]` mixing weights in [0, 1] (Gulrajani et al., 2017: uniform).
  """
  eps = eps.reshape((-1,) + (1,) * (real.ndim - 1))
  mixed = eps * real + (1.0 - eps) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(mixed)
  norms = jnp.sqrt(jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=1) + 1e-12)
  return jnp.mean((norms - 1.0) ** 2)


def wgan_losses(d_real, d_fake):
  """`(critic loss without the penalty, generator loss)` of WGAN scores `[B]`."""
  return jnp.mean(d_fake) - jnp.mean(d_real), -jnp.mean(d_fake)


def hinge_losses(d_real, d_fake):
  """`(discriminator loss, generator loss)` of the hinge GAN (SNGAN's objective)."""
  return (jnp.mean(jax.nn.relu(1.0 - d_real)) + jnp.mean(jax.nn.relu(1.0 + d_fake)),
          -jnp.mean(d_fake))
