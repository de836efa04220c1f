"""Reproducibility of partially fine-tuned diffusion models (reproducibility paper §4.3, Fig. 9).

Run:
  python -m experiments.fine_tuning --config=configs/fine_tuning.py:cpu \
      --workdir=results/fine_tuning

Variants:
- `cpu` (default): a width-32 DiT (EDM) pretrained on the digits of classes
  0-4, then, on nested subsets of the digits of classes 5-9 (N = 4, 16,
  128, 896), 2 seeds: trained from scratch, and fine-tuned with only its
  attention layers training (1500 steps of batch 32 each, learning rate 5e-3,
  EMA 0.99); RP between fine-tuned and
  from-scratch models, among the seeds of each, and GL, against N.
- `smoke` (seconds, tests): a tiny DiT, three N, 20 steps.
- `paper`: CIFAR-10 U-Nets of width 128 (ε-prediction on VP), pretrained on
  classes 0-4, attention fine-tuned on subsets of classes 5-9 (N = 64 to
  25000), 3 seeds, 10k noises; needs
  `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator.

The networks are kept under `zoo.dir` (git-ignored `workdirs/`), trained here
if missing.  Fields and criteria: `repro_jax.studies.fine_tuning.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import fine_tuning


def get_config(variant: str = "cpu"):
  return settings.to_config(fine_tuning.settings(variant))
