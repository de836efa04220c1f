"""Training configs for `python -m experiments.train`.

Variants (`--config=configs/train.py:<variant>`):

- `smoke`: seconds; a tiny U-Net on 64 digits for tests.
- `cpu`: U-Net width 32 (0.7M parameters) on all 1797 8×8 digits, 4000 steps
  of batch 64: ~10 minutes on a 2-core CPU (~0.15 s/step).
- `molrg`: U-Net on the 4×4×3 image view of a MoLRG (K = 2, D = 48, r = 4).
- `paper`: CIFAR-10 32×32, DDPM++-like U-Net of width 128 (the paper's widths
  are 64/128/256: `--config.model.width=64`), ε-prediction on the VP SDE,
  batch 128; for a GPU/TPU.  Needs `--config.data.path=<cifar-10-batches-py>`.

Example:

  python -m experiments.train --config=configs/train.py:cpu --workdir=workdirs/digits \
      --config.data.num_train=256 --config.model.width=32
"""

from repro_jax import settings
from repro_jax.networks.training import settings as train_settings

VARIANTS = train_settings.VARIANTS


def get_config(variant: str = "cpu"):
  """The training variant as a ConfigDict (fields: `repro_jax.networks.training.TrainSettings`)."""
  return settings.to_config(train_settings.variant(variant))
