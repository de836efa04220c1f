"""Reproducibility across architectures, kernels and samplers (paper Fig. 3,
App. A) and between models trained on disjoint halves (Kadkhodaie et al. 2024).

Run:
  python -m experiments.reproducibility_across_models \
      --config=configs/reproducibility_across_models.py:cpu \
      --workdir=results/reproducibility_across_models

Variants:
- `cpu` (default): on 8×8 digits, a residual MLP (width 128) trained with EDM
  preconditioning, VP ε-prediction and VP v-prediction, a DiT (width 32) and a
  U-Net (width 16) with EDM, three seeds each at N = 16 and N = 1797, sampled
  with Heun and DDIM from 256 shared noises; disjoint halves: the MLP (EDM) at
  N = 16 … 898 per half, three seeds.
- `cpu_full`: one more matrix N (64) and halves N, the zoo's `cpu_full` noises.
- `smoke` (seconds, tests): tiny MLPs and DiT, two sizes.
- `paper`: U-Nets (VP ε, EDM, VP v) and a DiT on CIFAR-10; needs
  `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator.

The trained models are kept under `zoo.dir` (git-ignored `workdirs/`).
A member is `(label, model, width, parameterization, schedule)`; the other
training settings are the zoo's (`zoo.train`).  Fields and criteria:
`repro_jax.studies.reproducibility_across_models.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import reproducibility_across_models


def get_config(variant: str = "cpu"):
  return settings.to_config(reproducibility_across_models.settings(variant))
