"""LOCO edit directions of trained denoisers (low-dim talk; docs/theory.md §6.2).

Run:
  python -m experiments.loco_edit --config=configs/loco_edit.py:cpu \
      --workdir=results/loco_edit

Variants:
- `cpu` (default): digits networks (a width-128 MLP and a width-32 DiT with
  EDM preconditioning, N = 1797, 3 seeds: the cross-model matrix models), 16
  images each, edited at t = 0.4 inside a centred 4×4 square; the MoLRG
  networks of jacobian_rank and the exact MoLRG posterior mean.
- `smoke` (seconds, tests): tiny MLPs, four images.
- `paper`: the CIFAR-10 U-Nets and DiTs of the cross-model matrix (D = 3072),
  64 images, Ω the centred 8×8 square; needs
  `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator.

The networks are restored from `zoo.dir` / `molrg.dir` (git-ignored
`workdirs/`), trained here if missing.  Fields and criteria:
`repro_jax.studies.loco_edit.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import loco_edit


def get_config(variant: str = "cpu"):
  return settings.to_config(loco_edit.settings(variant))
