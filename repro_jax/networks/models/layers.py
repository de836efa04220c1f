"""Building blocks shared by the U-Net, the MLP denoiser and the DiT (Flax NNX).

Noise-level embeddings are pure functions of the conditioning scalar `c [B]`
the parameterization hands the network (`repro_jax.networks.models.precond`):

- `sinusoidal` (DDPM's positional embedding) expects `c` on a time-step scale,
  roughly `[0, 1000]`;
- `fourier` (NCSN++ / EDM style random features, fixed frequencies drawn from
  a constant seed so they are not state) expects `c = O(1)`, e.g. `¼ log σ`.

Dropout takes an explicit PRNG key (`None` = deterministic, for sampling).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from repro_jax import validation
from repro_jax.networks.models import conv as conv_lib

EMBEDDINGS = ("sinusoidal", "fourier")
CONV_IMPLS = ("canonical", "xla", "im2col")
_FOURIER_SCALE = 16.0


def sinusoidal_embedding(c, dim: int, max_period: float = 10000.0):
  """DDPM positional embedding of `c [B]` → `[B, dim]` (`dim` even)."""
  half = dim // 2
  freqs = np.exp(-math.log(max_period) * np.arange(half) / max(half - 1, 1))
  args = c[:, None].astype(jnp.float32) * jnp.asarray(freqs, jnp.float32)[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def fourier_embedding(c, dim: int, scale: float = _FOURIER_SCALE):
  """Gaussian Fourier features `[cos, sin](2π f c)`, `f ~ N(0, scale²)` fixed; `[B, dim]`."""
  freqs = np.random.RandomState(0).randn(dim // 2).astype(np.float32) * scale
  args = 2.0 * np.pi * c[:, None].astype(jnp.float32) * jnp.asarray(freqs)[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def embed_noise(c, dim: int, kind: str):
  if kind == "sinusoidal":
    return sinusoidal_embedding(c, dim)
  if kind == "fourier":
    return fourier_embedding(c, dim)
  raise validation.unknown_name("noise embedding", kind, EMBEDDINGS)


def dropout(x, rate: float, key):
  """Inverted dropout with an explicit key; identity when `key is None` or `rate == 0`."""
  if key is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def block_key(key, index: int):
  return None if key is None else jax.random.fold_in(key, index)


class NoiseEmbedding(nnx.Module):
  """`c [B]` (and optional class labels `[B]`) → conditioning vector `[B, E]`.

  Embeds `c` (sinusoidal or Fourier, `dim` features), then a two-layer SiLU
  MLP to `E = 4·dim`; a learned class embedding is added when
  `num_classes > 0` (labels `−1` or `None` mean unconditional).
  """

  def __init__(self, dim: int, *, kind: str = "sinusoidal", num_classes: int = 0,
               rngs: nnx.Rngs):
    if kind not in EMBEDDINGS:
      raise validation.unknown_name("noise embedding", kind, EMBEDDINGS)
    if dim < 2 or dim % 2:
      raise ValueError(f"embedding dim must be even and >= 2; got {dim}.")
    self.dim, self.kind, self.num_classes = dim, kind, num_classes
    self.out_dim = 4 * dim
    self.dense0 = nnx.Linear(dim, self.out_dim, rngs=rngs)
    self.dense1 = nnx.Linear(self.out_dim, self.out_dim, rngs=rngs)
    if num_classes > 0:
      # One extra row: index `num_classes` is the "no label" token.
      self.label_embed = nnx.Embed(num_classes + 1, self.out_dim, rngs=rngs)

  def __call__(self, c, labels=None):
    h = self.dense1(nnx.silu(self.dense0(embed_noise(c, self.dim, self.kind))))
    if self.num_classes > 0:
      if labels is None:
        labels = jnp.full(c.shape, self.num_classes, jnp.int32)
      labels = jnp.where(labels < 0, self.num_classes, labels)
      h = h + self.label_embed(labels)
    return h


def conv(cin: int, cout: int, kernel: int = 3, *, strides: int = 1, zero_init: bool = False,
         impl: str = "canonical", rngs: nnx.Rngs) -> nnx.Conv:
  """`nnx.Conv` (SAME padding) computed the way `impl` (one of `CONV_IMPLS`) says.

  The parameters (`kernel [k, k, cin, cout]`, `bias [cout]`), their
  initializers and the outputs are those of a plain `nnx.Conv` for every
  `impl`; only how XLA computes them differs:
  `"xla"`: XLA's convolution and autodiff's gradients (the plain `nnx.Conv`);
  `"canonical"`: `conv.conv_general_dilated`, gradients as canonical
  convolutions (much faster inside a `lax.scan` on XLA:CPU);
  `"im2col"`: `conv.im2col_conv_general_dilated`, patches × kernel matrix
  (fast when many models are vmapped on XLA:CPU; small images only).
  """
  if impl not in CONV_IMPLS:
    raise validation.unknown_name("convolution implementation", impl, CONV_IMPLS)
  kw = {"kernel_init": nnx.initializers.zeros_init()} if zero_init else {}
  if impl == "canonical":
    kw["conv_general_dilated"] = conv_lib.conv_general_dilated
  elif impl == "im2col":
    kw["conv_general_dilated"] = conv_lib.im2col_conv_general_dilated
  return nnx.Conv(cin, cout, (kernel, kernel), strides=strides, rngs=rngs, **kw)


class ResBlock(nnx.Module):
  """DDPM++ residual block: GN-SiLU-conv, + emb, GN-SiLU-dropout-conv; skip / √2."""

  def __init__(self, cin: int, cout: int, emb_dim: int, *, groups: int,
               dropout_rate: float, conv_impl: str = "canonical", rngs: nnx.Rngs):
    self.norm0 = nnx.GroupNorm(cin, num_groups=groups, rngs=rngs)
    self.conv0 = conv(cin, cout, impl=conv_impl, rngs=rngs)
    self.emb = nnx.Linear(emb_dim, cout, rngs=rngs)
    self.norm1 = nnx.GroupNorm(cout, num_groups=groups, rngs=rngs)
    self.conv_out = conv(cout, cout, zero_init=True, impl=conv_impl, rngs=rngs)
    self.skip = (conv(cin, cout, 1, impl=conv_impl, rngs=rngs) if cin != cout
                 else None)
    self.dropout_rate = dropout_rate

  def __call__(self, x, emb, key=None):
    h = self.conv0(nnx.silu(self.norm0(x)))
    h = h + self.emb(nnx.silu(emb))[:, None, None, :]
    h = dropout(nnx.silu(self.norm1(h)), self.dropout_rate, key)
    h = self.conv_out(h)
    skip = x if self.skip is None else self.skip(x)
    return (skip + h) * (1.0 / math.sqrt(2.0))


class AttnBlock(nnx.Module):
  """Single-head self-attention over the `H·W` positions; residual / √2."""

  def __init__(self, channels: int, *, groups: int, rngs: nnx.Rngs):
    self.norm = nnx.GroupNorm(channels, num_groups=groups, rngs=rngs)
    self.qkv = nnx.Linear(channels, 3 * channels, rngs=rngs)
    self.proj_out = nnx.Linear(channels, channels,
                           kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

  def __call__(self, x):
    b, h, w, c = x.shape
    q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b, h * w, 3 * c), 3, axis=-1)
    logits = jnp.einsum("bqc,bkc->bqk", q, k) / math.sqrt(c)
    out = jnp.einsum("bqk,bkc->bqc", jax.nn.softmax(logits, axis=-1), v)
    return (x + self.proj_out(out).reshape(b, h, w, c)) * (1.0 / math.sqrt(2.0))


class Downsample(nnx.Module):
  """Stride-2 3×3 convolution: `[B, H, W, C]` → `[B, H/2, W/2, C]`."""

  def __init__(self, channels: int, *, conv_impl: str = "canonical", rngs: nnx.Rngs):
    self.conv = conv(channels, channels, strides=2, impl=conv_impl, rngs=rngs)

  def __call__(self, x):
    return self.conv(x)


class Upsample(nnx.Module):
  """Nearest-neighbour ×2 then 3×3 convolution."""

  def __init__(self, channels: int, *, conv_impl: str = "canonical", rngs: nnx.Rngs):
    self.conv = conv(channels, channels, impl=conv_impl, rngs=rngs)

  def __call__(self, x):
    x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return self.conv(x)
