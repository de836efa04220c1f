"""Null-space watermarks (low-dim talk: Shallow Diffuse; docs/theory.md §6.2).

Run:
  python -m experiments.watermark --config=configs/watermark.py:cpu \
      --workdir=results/watermark

Variants:
- `cpu` (default): digits networks (a width-128 MLP and a width-32 DiT with
  EDM preconditioning, N = 1797, 3 seeds: the cross-model matrix models), 32
  images each, a watermark injected at t = 0.3 in J's null space, a random
  direction or J's range; detection after Heun inversion, clean and under blur,
  noise, brightness/contrast and JPEG.
- `smoke` (seconds, tests): tiny MLPs, six images.
- `paper`: the CIFAR-10 U-Nets and DiTs of the cross-model matrix (D = 3072);
  needs `--config.zoo.train.data.path=<cifar-10-batches-py>` and an
  accelerator (J's top 256 directions found matrix-free per image).

The networks are restored from `zoo.dir` (git-ignored `workdirs/`), trained
here if missing.  Fields and criteria: `repro_jax.studies.watermark.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import watermark


def get_config(variant: str = "cpu"):
  return settings.to_config(watermark.settings(variant))
