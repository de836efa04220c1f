"""A small diffusion transformer (DiT / U-ViT style) for images, in Flax NNX.

`DiT(image_shape, ...)(x [B, H, W, C], c [B], labels [B] | None, key=None)`
returns a tensor shaped like `x`; what it means (ε, x0, v or EDM's `F`) is
fixed by the parameterization that trains it (`repro_jax.networks.models.precond`).

Layout (Peebles & Xie 2023, adaLN-Zero): the image is cut into
`L = (H/p)(W/p)` non-overlapping p×p patches, each a token of `p·p·C` values,
embedded linearly to `width` features plus a fixed 2-D sin-cos position
embedding (row-major tokens `[B, L, width]`); then `depth` blocks

    h ← h + g₁ · Attn(LN(h) (1 + a₁) + b₁)
    h ← h + g₂ · MLP(LN(h) (1 + a₂) + b₂)

whose shifts `b`, scales `a` and gates `g` are a linear map of the noise (and
class) embedding `layers.NoiseEmbedding`, zero at initialization, so every
block starts as the identity; a final LN modulated the same way, a linear map
to `p·p·C` per token (zero at initialization: the fresh network outputs
exactly 0, like the U-Net and the MLP) and the patches put back in place.
Without the position embedding the network would be equivariant to any
permutation of the patches.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from repro_jax.networks.models import layers


def check_dit_args(image_shape, width: int, depth: int, patch_size: int, num_heads: int,
                   mlp_ratio: float, dropout: float) -> None:
  """Raise a clear ValueError for an impossible DiT before building it.

  `image_shape=None` checks only what does not depend on the data (the
  training config is checked so before the data are read).
  """
  if image_shape is not None and len(image_shape) != 3:
    raise ValueError(
        f"the DiT needs images [H, W, C]; got data shape {tuple(image_shape)} "
        "(use model.name='mlp' for vectors, or an image view such as 'molrg_image').")
  if min(width, depth, patch_size, num_heads) < 1:
    raise ValueError(f"the DiT needs width, depth, patch_size and num_heads >= 1; got "
                     f"width={width}, depth={depth}, patch_size={patch_size}, "
                     f"num_heads={num_heads}.")
  if width % num_heads:
    raise ValueError(f"num_heads={num_heads} does not divide width={width} (each head "
                     "takes width / num_heads features).")
  if not (math.isfinite(mlp_ratio) and _mlp_hidden(width, mlp_ratio) >= 1):
    raise ValueError(f"mlp_ratio must be > 0 with width · mlp_ratio >= 1; got "
                     f"mlp_ratio={mlp_ratio}, width={width}.")
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1); got {dropout}.")
  if image_shape is not None:
    h, w, _ = image_shape
    if h % patch_size or w % patch_size:
      raise ValueError(f"patch_size={patch_size} does not divide the image size {h}×{w}; "
                       "choose a patch size that divides both sides.")


def _mlp_hidden(width: int, mlp_ratio: float) -> int:
  return int(round(width * mlp_ratio))


def sincos_position_embedding(rows: int, cols: int, dim: int) -> np.ndarray:
  """Fixed 2-D sin-cos embedding of a `rows × cols` grid, `[rows·cols, dim]` float32.

  Tokens in row-major order; the first `dim // 2` features encode the row, the
  others the column, each as `[sin, cos](pos · 10000^(−k/n))` truncated to its
  share (so any `dim` works).  A constant, not a parameter.
  """
  def axis(pos, d):
    half = (d + 1) // 2
    freqs = 1.0 / 10000.0 ** (np.arange(half) / max(half, 1))
    args = pos[:, None].astype(np.float64) * freqs[None]
    return np.concatenate([np.sin(args), np.cos(args)], axis=1)[:, :d]
  r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
  d_row = dim // 2
  return np.concatenate([axis(r.ravel(), d_row), axis(c.ravel(), dim - d_row)],
                        axis=1).astype(np.float32)


def patchify(x, p: int):
  """`[B, H, W, C]` → tokens `[B, (H/p)(W/p), p·p·C]` (row-major patches)."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens, image_shape: Sequence[int], p: int):
  """Inverse of `patchify`: `[B, L, p·p·C]` → `[B, H, W, C]`."""
  h, w, c = image_shape
  b = tokens.shape[0]
  x = tokens.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h, w, c)


def _modulate(h, shift, scale):
  """`h [B, L, F] · (1 + scale [B, F]) + shift [B, F]`."""
  return h * (1.0 + scale[:, None, :]) + shift[:, None, :]


def _norm(width, rngs):
  # adaLN supplies the affine part: the LayerNorm itself has no parameters.
  return nnx.LayerNorm(width, use_scale=False, use_bias=False, rngs=rngs)


def _zeros_linear(cin, cout, rngs):
  # Named `*_out` where used: `params.init_params` also starts those kernels at 0.
  return nnx.Linear(cin, cout, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)


class _Attention(nnx.Module):
  """Multi-head self-attention over the tokens `[B, L, width]`."""

  def __init__(self, width: int, num_heads: int, *, rngs: nnx.Rngs):
    self.qkv = nnx.Linear(width, 3 * width, rngs=rngs)
    self.proj = nnx.Linear(width, width, rngs=rngs)
    self.num_heads = num_heads

  def __call__(self, h):
    b, n, w = h.shape
    qkv = self.qkv(h).reshape(b, n, 3, self.num_heads, w // self.num_heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]          # [B, L, heads, w/heads]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(w // self.num_heads)
    out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
    return self.proj(out.reshape(b, n, w))


class _Block(nnx.Module):
  """Pre-LN transformer block with adaLN-Zero conditioning."""

  def __init__(self, width: int, num_heads: int, mlp_hidden: int, emb_dim: int, *,
               rngs: nnx.Rngs):
    self.norm0 = _norm(width, rngs)
    self.attn = _Attention(width, num_heads, rngs=rngs)
    self.norm1 = _norm(width, rngs)
    self.mlp0 = nnx.Linear(width, mlp_hidden, rngs=rngs)
    self.mlp1 = nnx.Linear(mlp_hidden, width, rngs=rngs)
    self.adaln_out = _zeros_linear(emb_dim, 6 * width, rngs)   # shift, scale, gate × 2

  def __call__(self, h, emb, rate, key):
    b0, a0, g0, b1, a1, g1 = jnp.split(self.adaln_out(nnx.silu(emb)), 6, axis=-1)
    h = h + g0[:, None, :] * self.attn(_modulate(self.norm0(h), b0, a0))
    u = nnx.gelu(self.mlp0(_modulate(self.norm1(h), b1, a1)))
    return h + g1[:, None, :] * self.mlp1(layers.dropout(u, rate, key))


class DiT(nnx.Module):
  """Diffusion transformer on p×p patches, conditioned by adaLN-Zero.

  Args:
    image_shape: `(H, W, C)` of the data (`patch_size` divides H and W).
    width: token features.
    depth: transformer blocks.
    patch_size: side p of the square patches (tokens `L = HW/p²`).
    num_heads: attention heads (divides `width`).
    mlp_ratio: hidden features of each block's MLP per token feature.
    emb_dim: noise-embedding features (the conditioning vector has `4·emb_dim`).
    dropout: dropout rate on each block's MLP hidden layer.
    embedding: `"sinusoidal"` or `"fourier"` noise embedding.
    num_classes: > 0 adds a class embedding (labels `[B]`, −1 = none).
    rngs: parameter initialization.
  """

  def __init__(self, image_shape: Sequence[int], *, width: int = 32, depth: int = 3,
               patch_size: int = 2, num_heads: int = 4, mlp_ratio: float = 4.0,
               emb_dim: int = 64, dropout: float = 0.0, embedding: str = "sinusoidal",
               num_classes: int = 0, rngs: nnx.Rngs):
    check_dit_args(image_shape, width, depth, patch_size, num_heads, mlp_ratio, dropout)
    c = image_shape[-1]
    p = patch_size
    self.image_shape, self.patch_size, self.width = tuple(image_shape), p, width
    self.dropout = dropout
    self.embed = layers.NoiseEmbedding(emb_dim, kind=embedding, num_classes=num_classes,
                                       rngs=rngs)
    self.patch_embed = nnx.Linear(p * p * c, width, rngs=rngs)
    hidden = _mlp_hidden(width, mlp_ratio)
    self.blocks = nnx.List([_Block(width, num_heads, hidden, self.embed.out_dim, rngs=rngs)
                            for _ in range(depth)])
    self.norm_out = _norm(width, rngs)
    self.final_adaln_out = _zeros_linear(self.embed.out_dim, 2 * width, rngs)
    self.dense_out = _zeros_linear(width, p * p * c, rngs)

  def __call__(self, x, c, labels=None, key=None):
    """`x [B, H, W, C]`, `c [B]`, `labels [B]` or None, dropout `key` or None → `[B, H, W, C]`."""
    emb = self.embed(c, labels)
    rows, cols, _ = self.image_shape
    p = self.patch_size
    # A constant of the static shapes (folded by XLA), so not part of the state.
    pos = sincos_position_embedding(rows // p, cols // p, self.width)
    h = self.patch_embed(patchify(x, p)) + jnp.asarray(pos, x.dtype)
    for i, block in enumerate(self.blocks):
      h = block(h, emb, self.dropout, layers.block_key(key, i))
    shift, scale = jnp.split(self.final_adaln_out(nnx.silu(emb)), 2, axis=-1)
    out = self.dense_out(_modulate(self.norm_out(h), shift, scale))
    return unpatchify(out, self.image_shape, self.patch_size)
