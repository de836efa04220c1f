"""A time-conditioned residual MLP denoiser for vectors (and flattened images).

`MLPDenoiser(data_shape, ...)(x [B, *data_shape], c [B], labels, key)` returns
a tensor shaped like `x`.  Each residual block is
`h ← h + W₂ dropout(SiLU(W₁ LN(h) + A emb))`; the output layer starts at zero.
"""

from __future__ import annotations

import math
from typing import Sequence

from flax import nnx

from repro_jax.networks.models import layers


class _Block(nnx.Module):

  def __init__(self, hidden: int, emb_dim: int, *, rngs: nnx.Rngs):
    self.norm = nnx.LayerNorm(hidden, rngs=rngs)
    self.dense0 = nnx.Linear(hidden, hidden, rngs=rngs)
    self.emb = nnx.Linear(emb_dim, hidden, rngs=rngs)
    self.dense_out = nnx.Linear(hidden, hidden, rngs=rngs)

  def __call__(self, h, emb, rate, key):
    u = nnx.silu(self.dense0(self.norm(h)) + self.emb(nnx.silu(emb)))
    return h + self.dense_out(layers.dropout(u, rate, key))


class MLPDenoiser(nnx.Module):
  """Residual MLP on flattened inputs.

  Args:
    data_shape: shape of one data point, e.g. `(D,)` or `(H, W, C)`.
    hidden: width of the hidden layers.
    depth: number of residual blocks.
    emb_dim: noise-embedding features (the conditioning vector has `4·emb_dim`).
    dropout: dropout rate inside the blocks.
    embedding: `"sinusoidal"` or `"fourier"`.
    num_classes: > 0 adds a class embedding.
    rngs: parameter initialization.
  """

  def __init__(self, data_shape: Sequence[int], *, hidden: int = 256, depth: int = 3,
               emb_dim: int = 64, dropout: float = 0.0, embedding: str = "sinusoidal",
               num_classes: int = 0, rngs: nnx.Rngs):
    if hidden < 1 or depth < 1:
      raise ValueError(f"MLP needs hidden >= 1 and depth >= 1; got {hidden}, {depth}.")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1); got {dropout}.")
    self.data_shape = tuple(data_shape)
    dim = math.prod(self.data_shape)
    self.embed = layers.NoiseEmbedding(emb_dim, kind=embedding, num_classes=num_classes,
                                       rngs=rngs)
    self.dense_in = nnx.Linear(dim, hidden, rngs=rngs)
    self.blocks = nnx.List([_Block(hidden, self.embed.out_dim, rngs=rngs)
                            for _ in range(depth)])
    self.norm_out = nnx.LayerNorm(hidden, rngs=rngs)
    self.dense_out = nnx.Linear(hidden, dim, kernel_init=nnx.initializers.zeros_init(),
                                rngs=rngs)
    self.dropout = dropout

  def __call__(self, x, c, labels=None, key=None):
    """`x [B, ...]`, `c [B]` → `[B, ...]` (same shape as `x`)."""
    emb = self.embed(c, labels)
    h = self.dense_in(x.reshape(x.shape[0], -1))
    for i, block in enumerate(self.blocks):
      h = block(h, emb, self.dropout, layers.block_key(key, i))
    return self.dense_out(nnx.silu(self.norm_out(h))).reshape(x.shape)
