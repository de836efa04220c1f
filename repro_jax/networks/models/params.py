"""Parameter initialization and the flat parameter layout.

`init_params` draws every random parameter from ONE normal vector: XLA
compiles each RNG call (threefry) and each output leaf separately, which costs
seconds on a CPU for a model with ~100 tensors.  Kernels get `N(0, 1/fan_in)`
(LeCun), embeddings `N(0, 1)`, biases 0, norm scales 1, and the kernels of
layers named `*_out` (residual-branch outputs, the network output) start at 0.

`ParamLayout` maps the nested parameter dict to one flat float32 vector `[P]`
and back.  The trainer keeps parameters, Adam moments and the EMA flat: the
optimizer update is then a few ops on one array instead of a few per tensor
(5× less HLO for a small U-Net step, and one fused kernel on a GPU).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _leaf_rule(path) -> str:
  names = [str(getattr(p, "key", p)) for p in path]
  leaf, owner = names[-1], (names[-2] if len(names) > 1 else "")
  if leaf == "kernel":
    return "zeros" if owner.endswith("_out") else "lecun"
  if leaf == "embedding":
    return "normal"
  if leaf == "scale":
    return "ones"
  return "zeros"


def init_params(shapes, key):
  """Parameters for the pytree of `shapes` (ShapeDtypeStructs) from one RNG draw.

  With a concrete key the draw is the only compiled op and the leaves are cut
  on the host; under a trace (jit, vmap, eval_shape) the same numbers are cut
  with `jnp`.
  """
  flat, treedef = jax.tree_util.tree_flatten_with_path(shapes)
  rules = [_leaf_rule(path) for path, _ in flat]
  sizes = [math.prod(s.shape) if r in ("lecun", "normal") else 0
           for r, (_, s) in zip(rules, flat)]
  z = jax.random.normal(key, (max(sum(sizes), 1),), jnp.float32)
  xp = jnp if isinstance(z, jax.core.Tracer) else np
  z = z if xp is jnp else np.asarray(z)
  out, offset = [], 0
  for rule, size, (_, s) in zip(rules, sizes, flat):
    if rule == "zeros":
      leaf = xp.zeros(s.shape, s.dtype)
    elif rule == "ones":
      leaf = xp.ones(s.shape, s.dtype)
    else:
      scale = 1.0 if rule == "normal" else 1.0 / math.sqrt(math.prod(s.shape[:-1]))
      leaf = (scale * z[offset:offset + size]).reshape(s.shape).astype(s.dtype)
      offset += size
    out.append(leaf)
  return jax.tree_util.tree_unflatten(treedef, out)


@dataclasses.dataclass(frozen=True, eq=False)
class ParamLayout:
  """Nested parameter dict ↔ flat float32 vector `[P]` (leaf order of `jax.tree`)."""
  treedef: Any
  shapes: tuple

  @classmethod
  def of(cls, shapes) -> "ParamLayout":
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    return cls(treedef, tuple(tuple(s.shape) for s in leaves))

  @property
  def size(self) -> int:
    return sum(math.prod(s) for s in self.shapes)

  def ravel(self, tree):
    """Nested dict → `[P]` (numpy in, numpy out; otherwise jnp)."""
    leaves = jax.tree_util.tree_leaves(tree)
    if all(isinstance(a, np.ndarray) for a in leaves):
      return np.concatenate([a.reshape(-1) for a in leaves]).astype(np.float32)
    return jnp.concatenate([jnp.ravel(a) for a in leaves]).astype(jnp.float32)

  def unravel(self, flat):
    """`[P]` → nested dict of arrays."""
    out, offset = [], 0
    for shape in self.shapes:
      n = math.prod(shape)
      out.append(flat[offset:offset + n].reshape(shape))
      offset += n
    return jax.tree_util.tree_unflatten(self.treedef, out)
