"""Reproducibility of class-conditional diffusion models (reproducibility paper §4.1, Fig. 7).

Run:
  python -m experiments.conditional_models --config=configs/conditional_models.py:cpu \
      --workdir=results/conditional_models

Variants:
- `cpu` (default): class-conditional width-128 MLPs (N = 16 and 1797) and
  width-32 DiTs (N = 1797), EDM preconditioning, label dropout 0.1, 3 seeds
  each (trained once under `zoo.dir`, restored after); the unconditional MLP
  and DiT groups of the cross-model matrix (restored); 64 noises × 10 classes
  × guidance scales w ∈ {0, 1, 2, 4}; RP_cond, RP_between (matched and
  unmatched class), RP to the class-conditional ε*.
- `smoke` (seconds, tests): tiny MLPs and DiTs, six noises.
- `paper`: CIFAR-10 conditional U-Nets and DiTs against the cross-model
  matrix's CIFAR-10 U-Net and DiT; needs
  `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator.

Fields and criteria: `repro_jax.studies.conditional_models.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import conditional_models


def get_config(variant: str = "cpu"):
  return settings.to_config(conditional_models.settings(variant))
