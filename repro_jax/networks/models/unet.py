"""A DDPM++-style U-Net in Flax NNX, from 4×4 images up to 32×32 and beyond.

`UNet(image_shape, ...)(x [B, H, W, C], c [B], labels [B] | None, key=None)`
returns a tensor shaped like `x`; what it means (ε, x0 or EDM's `F`) is
fixed by the parameterization that trains it (`repro_jax.networks.models.precond`).

Layout: conv-in, then per resolution level `num_res_blocks` residual blocks
(self-attention after each at the resolutions in `attn_resolutions`) and a
stride-2 downsample; a middle ResBlock-Attn-ResBlock; the mirrored decoder
with skip connections (`num_res_blocks + 1` blocks per level) and nearest ×2
upsampling; GroupNorm-SiLU-conv out (zero-initialized).
"""

from __future__ import annotations

from typing import Sequence

from flax import nnx
import jax.numpy as jnp

from repro_jax.networks.models import layers


def check_unet_args(image_shape, width: int, ch_mult: Sequence[int],
                    attn_resolutions: Sequence[int], norm_groups: int,
                    num_res_blocks: int, dropout: float) -> None:
  """Raise a clear ValueError for an impossible U-Net before building it."""
  if len(image_shape) != 3:
    raise ValueError(
        f"the U-Net needs images [H, W, C]; got data shape {tuple(image_shape)} "
        "(use model.name='mlp' for vectors, or an image view such as 'molrg_image').")
  h, w, _ = image_shape
  levels = len(ch_mult)
  if levels < 1 or min(ch_mult) < 1 or width < 1 or num_res_blocks < 1:
    raise ValueError(f"need width >= 1, num_res_blocks >= 1 and ch_mult of positive "
                     f"ints; got width={width}, ch_mult={tuple(ch_mult)}, "
                     f"num_res_blocks={num_res_blocks}.")
  factor = 2**(levels - 1)
  if h % factor or w % factor:
    raise ValueError(
        f"image size {h}×{w} is not divisible by 2^(len(ch_mult) − 1) = {factor}; "
        f"use fewer levels than ch_mult={tuple(ch_mult)}.")
  for c in [width] + [width * m for m in ch_mult]:
    if c % norm_groups:
      raise ValueError(f"GroupNorm groups={norm_groups} do not divide {c} channels "
                       f"(width={width}, ch_mult={tuple(ch_mult)}).")
  resolutions = [h // 2**i for i in range(levels)]
  bad = [r for r in attn_resolutions if r not in resolutions]
  if bad:
    raise ValueError(f"attention resolution(s) {bad} are not among the U-Net's "
                     f"levels {resolutions} for {h}×{w} images.")
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1); got {dropout}.")


class UNet(nnx.Module):
  """DDPM++-like U-Net.

  Args:
    image_shape: `(H, W, C)` of the data.
    width: channels at the first level (the paper's "UNet-64/128/256").
    ch_mult: channel multiplier per resolution level.
    num_res_blocks: residual blocks per level (encoder).
    attn_resolutions: resolutions (in pixels, e.g. `(16,)`) with self-attention.
    dropout: dropout rate inside the residual blocks.
    norm_groups: GroupNorm groups (must divide every channel count).
    embedding: `"sinusoidal"` or `"fourier"` noise embedding.
    num_classes: > 0 adds a class embedding (labels `[B]`, −1 = none).
    conv_impl: how the convolutions are computed (`layers.CONV_IMPLS`):
      `"canonical"` (gradients as canonical NHWC/HWIO convolutions,
      `models.conv`), `"xla"` (autodiff's) or `"im2col"` (patches × matrix,
      for many vmapped models on CPU); same parameters and outputs.
    rngs: parameter initialization.
  """

  def __init__(self, image_shape: Sequence[int], *, width: int = 32,
               ch_mult: Sequence[int] = (1, 2), num_res_blocks: int = 1,
               attn_resolutions: Sequence[int] = (4,), dropout: float = 0.0,
               norm_groups: int = 8, embedding: str = "sinusoidal",
               num_classes: int = 0, conv_impl: str = "canonical", rngs: nnx.Rngs):
    ch_mult, attn_resolutions = tuple(ch_mult), tuple(attn_resolutions)
    check_unet_args(image_shape, width, ch_mult, attn_resolutions, norm_groups,
                    num_res_blocks, dropout)
    h, _, c_in = image_shape
    self.image_shape = tuple(image_shape)
    self.num_levels = len(ch_mult)
    self.num_res_blocks = num_res_blocks
    self.embed = layers.NoiseEmbedding(width, kind=embedding, num_classes=num_classes,
                                       rngs=rngs)
    emb = self.embed.out_dim
    kw = dict(groups=norm_groups, dropout_rate=dropout, conv_impl=conv_impl, rngs=rngs)
    self.conv_in = layers.conv(c_in, width, impl=conv_impl, rngs=rngs)

    down, down_attn, downsample, skips = [], [], [], [width]
    ch = width
    for i, mult in enumerate(ch_mult):
      res = h // 2**i
      for _ in range(num_res_blocks):
        down.append(layers.ResBlock(ch, width * mult, emb, **kw))
        ch = width * mult
        down_attn.append(layers.AttnBlock(ch, groups=norm_groups, rngs=rngs)
                         if res in attn_resolutions else None)
        skips.append(ch)
      if i < self.num_levels - 1:
        downsample.append(layers.Downsample(ch, conv_impl=conv_impl, rngs=rngs))
        skips.append(ch)
    self.down = nnx.List(down)
    self.down_attn = nnx.List(down_attn)
    self.downsample = nnx.List(downsample)

    self.mid0 = layers.ResBlock(ch, ch, emb, **kw)
    self.mid_attn = layers.AttnBlock(ch, groups=norm_groups, rngs=rngs)
    self.mid1 = layers.ResBlock(ch, ch, emb, **kw)

    up, up_attn, upsample = [], [], []
    for i in reversed(range(self.num_levels)):
      res = h // 2**i
      for _ in range(num_res_blocks + 1):
        up.append(layers.ResBlock(ch + skips.pop(), width * ch_mult[i], emb, **kw))
        ch = width * ch_mult[i]
        up_attn.append(layers.AttnBlock(ch, groups=norm_groups, rngs=rngs)
                       if res in attn_resolutions else None)
      if i > 0:
        upsample.append(layers.Upsample(ch, conv_impl=conv_impl, rngs=rngs))
    self.up = nnx.List(up)
    self.up_attn = nnx.List(up_attn)
    self.upsample = nnx.List(upsample)

    self.norm_out = nnx.GroupNorm(ch, num_groups=norm_groups, rngs=rngs)
    self.conv_out = layers.conv(ch, c_in, zero_init=True, impl=conv_impl, rngs=rngs)

  def __call__(self, x, c, labels=None, key=None):
    """`x [B, H, W, C]`, `c [B]`, `labels [B]` or None, dropout `key` or None → `[B, H, W, C]`."""
    emb = self.embed(c, labels)
    h = self.conv_in(x)
    hs = [h]
    n = 0
    for i in range(self.num_levels):
      for _ in range(self.num_res_blocks):
        h = self.down[n](h, emb, layers.block_key(key, n))
        if self.down_attn[n] is not None:
          h = self.down_attn[n](h)
        hs.append(h)
        n += 1
      if i < self.num_levels - 1:
        h = self.downsample[i](h)
        hs.append(h)

    h = self.mid0(h, emb, layers.block_key(key, n))
    h = self.mid1(self.mid_attn(h), emb, layers.block_key(key, n + 1))
    n += 2

    m = 0
    for i in range(self.num_levels):
      for _ in range(self.num_res_blocks + 1):
        h = self.up[m](jnp.concatenate([h, hs.pop()], axis=-1), emb,
                       layers.block_key(key, n + m))
        if self.up_attn[m] is not None:
          h = self.up_attn[m](h)
        m += 1
      if i < self.num_levels - 1:
        h = self.upsample[i](h)
    return self.conv_out(nnx.silu(self.norm_out(h)))
