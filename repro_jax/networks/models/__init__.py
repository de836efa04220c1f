"""Denoising networks (Flax NNX) and their training parameterizations.

- `UNet`: DDPM++-style U-Net for images `[B, H, W, C]`.
- `MLPDenoiser`: residual MLP for vectors `[B, D]` (or flattened images).
- `DiT`: small diffusion transformer (DiT / U-ViT style, adaLN-Zero) on p×p
  patches of images `[B, H, W, C]`.
- `Parameterization` / `get_parameterization`: eps, x0, v and EDM preconditioning
  (training loss + the canonical sampler wrap).
- `build(name, data_shape, key, **options)`: a model from the registry `MODELS`
  (`"unet"`, `"mlp"`, `"dit"`); `check_unet_args` / `check_dit_args` reject
  impossible options before anything is built.
- `split(model)`: `(graphdef, params)` with params a pure nested dict of arrays;
  `apply(graphdef, params, x, c, labels, key)` runs it functionally.
- `abstract(name, data_shape, **options)`: `(graphdef, param shapes)` without
  allocating; `init_params(shapes, key)` draws the parameters (one RNG call).
- `ParamLayout`: the parameters as ONE flat float32 vector `[P]` (what the
  trainer, the optimizer, the EMA and the checkpoints hold).

What belongs here: a new architecture (registered in `MODELS`) or training
parameterization.  May import `repro_jax.diffusion`, `repro_jax.validation`.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from repro_jax import validation
from repro_jax.networks.models.mlp import MLPDenoiser
from repro_jax.networks.models.params import ParamLayout
from repro_jax.networks.models.params import init_params
from repro_jax.networks.models.precond import PARAMETERIZATIONS
from repro_jax.networks.models.precond import Parameterization
from repro_jax.networks.models.precond import get_parameterization
from repro_jax.networks.models.transformer import DiT
from repro_jax.networks.models.transformer import check_dit_args
from repro_jax.networks.models.unet import UNet
from repro_jax.networks.models.unet import check_unet_args

MODELS = {"unet": UNet, "mlp": MLPDenoiser, "dit": DiT}


def build(name: str, data_shape: Sequence[int], key, **options) -> nnx.Module:
  """Instantiate model `name` for data points of shape `data_shape`."""
  if name not in MODELS:
    raise validation.unknown_name("model", name, MODELS)
  return MODELS[name](tuple(data_shape), rngs=nnx.Rngs(params=key), **options)


def split(model: nnx.Module):
  """`(graphdef, params)`: the static graph and a pure dict of parameter arrays."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise ValueError("models must hold only nnx.Param state; found extra state "
                     f"{jax.tree.map(lambda a: a.shape, rest)}.")
  return graphdef, nnx.to_pure_dict(params)


def abstract(name: str, data_shape: Sequence[int], **options):
  """`(graphdef, params as ShapeDtypeStructs)` of model `name`, nothing allocated."""
  model = nnx.eval_shape(lambda: build(name, data_shape, jax.random.key(0), **options))
  return split(model)


def apply(graphdef, params, x, c, labels=None, key=None):
  """Run the network functionally: `[B, ...]`, `c [B]` → `[B, ...]`."""
  return nnx.merge(graphdef, params)(x, c, labels, key)


__all__ = ["UNet", "MLPDenoiser", "DiT", "Parameterization", "get_parameterization",
           "PARAMETERIZATIONS", "MODELS", "build", "split", "abstract", "init_params",
           "ParamLayout", "apply", "check_unet_args", "check_dit_args"]
