"""Typed training settings and their named variants.

`TrainSettings` mirrors the sections of the training config file (`data`, `model`,
`diffusion`, `optim`, `train`); the entry points parse a ConfigDict into it
once (`repro_jax.settings.parse`) and the training stack reads only this.
`MODEL_FIELDS` says which `ModelSettings` fields each model is built from,
`WIDTH_FIELD` which one is its width (a zoo's widths, the plan's shrunk network).

Variants (`variant(name)`):

- `smoke`: seconds; a tiny U-Net on 64 digits for tests.
- `cpu`: U-Net width 32 (0.7M parameters) on all 1797 8×8 digits, 4000 steps
  of batch 64: ~10 minutes on a 2-core CPU (~0.15 s/step).
- `molrg`: U-Net on the 4×4×3 image view of a MoLRG (K = 2, D = 48, r = 4).
- `paper`: CIFAR-10 32×32, DDPM++-like U-Net of width 128 (the paper's widths
  are 64/128/256), ε-prediction on the VP SDE, batch 128; for a GPU/TPU.
  Needs `data.path=<cifar-10-batches-py>`.
"""

from __future__ import annotations

import dataclasses

from repro_jax import settings as settings_lib
from repro_jax.data.settings import DataSettings

VARIANTS = ("smoke", "cpu", "molrg", "paper")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSettings:
  """Architecture (`name`: `unet | mlp | dit`) and its options; see `models.MODELS`.

  Each model reads only its fields (`MODEL_FIELDS`); `width` is shared by the
  U-Net and the DiT, `depth` and `emb_dim` by the MLP and the DiT.
  """
  name: str = "unet"
  width: int = 32                       # unet channels at the first level; dit token features
  ch_mult: tuple[int, ...] = (1, 2)     # unet
  num_res_blocks: int = 1               # unet
  attn_resolutions: tuple[int, ...] = (4,)   # unet
  norm_groups: int = 8                  # unet
  hidden: int = 256                     # mlp width
  depth: int = 3                        # mlp residual blocks; dit transformer blocks
  emb_dim: int = 64                     # mlp, dit: noise-embedding features (unet: width)
  dropout: float = 0.0
  embedding: str = "sinusoidal"         # sinusoidal | fourier
  num_classes: int = 0                  # > 0: class-conditional (labels from the data)
  label_dropout: float = 0.0            # drop labels to "none" with this probability
  patch_size: int = 2                   # dit: p×p patches are its tokens (p divides H, W)
  num_heads: int = 4                    # dit: attention heads (divide width)
  mlp_ratio: float = 4.0                # dit: MLP hidden features per token feature
  conv_impl: str = "canonical"          # unet: canonical | xla | im2col (layers.CONV_IMPLS)


# The fields each model is built from (`models.build(name, shape, key, **options)`).
MODEL_FIELDS = {
    "unet": ("width", "ch_mult", "num_res_blocks", "attn_resolutions", "dropout",
             "norm_groups", "embedding", "num_classes", "conv_impl"),
    "mlp": ("hidden", "depth", "emb_dim", "dropout", "embedding", "num_classes"),
    "dit": ("width", "depth", "patch_size", "num_heads", "mlp_ratio", "emb_dim", "dropout",
            "embedding", "num_classes"),
}
# The field that sets each model's size: a zoo's widths, the plan's shrunk network.
WIDTH_FIELD = {"unet": "width", "mlp": "hidden", "dit": "width"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionSettings:
  """Parameterization (`eps | x0 | v | edm`), its schedule and EDM's constants."""
  parameterization: str = "eps"
  schedule: str = "vp"                  # repro_jax.diffusion.schedules registry (eps/x0/v)
  time_input: str = "t"                 # t | log_sigma
  sigma_data: float = 0.5
  p_mean: float = -1.2
  p_std: float = 1.2


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimSettings:
  """Adam / AdamW with linear warm-up and global-norm clipping (0: off)."""
  name: str = "adam"
  learning_rate: float = 1e-3
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  warmup_steps: int = 200
  grad_clip: float = 1.0


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoopSettings:
  """Steps, logging, checkpoints, EMA and devices of the training loop."""
  batch_size: int = 64                  # global batch, split over the devices
  num_steps: int = 4000
  log_every: int = 100                  # steps per jitted chunk
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  ema_decay: float = 0.999
  num_devices: int = 0                  # data-parallel devices (0: all)
  step_loop: str = "auto"               # scan | python | auto (python for the U-Net on CPU)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSettings:
  """Everything that defines one training run."""
  seed: int = 0
  distributed: bool = False             # jax.distributed.initialize() (multi-host)
  data: DataSettings = dataclasses.field(default_factory=DataSettings)
  model: ModelSettings = dataclasses.field(default_factory=ModelSettings)
  diffusion: DiffusionSettings = dataclasses.field(default_factory=DiffusionSettings)
  optim: OptimSettings = dataclasses.field(default_factory=OptimSettings)
  train: LoopSettings = dataclasses.field(default_factory=LoopSettings)


_VARIANT_CHANGES = {
    "smoke": dict(
        data=dict(num_train=64),
        model=dict(width=8, norm_groups=4, ch_mult=(1, 2), attn_resolutions=(4,)),
        optim=dict(warmup_steps=5),
        train=dict(batch_size=16, num_steps=20, log_every=10, checkpoint_every=10,
                   keep_checkpoints=2, num_devices=1)),
    "cpu": {},
    "molrg": dict(
        data=dict(name="molrg_image"),
        model=dict(width=32, ch_mult=(1, 2), attn_resolutions=(2,))),
    "paper": dict(
        data=dict(name="cifar10", num_train=1024),
        model=dict(width=128, ch_mult=(1, 2, 2, 2), num_res_blocks=2,
                   attn_resolutions=(16,), norm_groups=32, dropout=0.1),
        optim=dict(learning_rate=2e-4, warmup_steps=5000),
        train=dict(batch_size=128, num_steps=200_000, log_every=500,
                   checkpoint_every=10_000, ema_decay=0.9999, num_devices=0)),
}


def variant(name: str = "cpu") -> TrainSettings:
  """The named training variant (`VARIANTS`)."""
  if name not in _VARIANT_CHANGES:
    raise ValueError(f"unknown training variant {name!r}; choose one of {VARIANTS}.")
  return settings_lib.override(TrainSettings(), _VARIANT_CHANGES[name], where="train")
