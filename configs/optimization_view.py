"""Diffusion sampling as distance minimization (the optimization view, docs/theory.md §2).

Run:
  python -m experiments.optimization_view --config=configs/optimization_view.py:cpu \
      --workdir=results/optimization_view

Variants: `cpu` (default; exact denoisers: 512 digits and a MoLRG in D = 48,
256 trajectories, 10 000 samples × 3 seeds; trained denoisers: the digits MLP of
the cross-model matrix and jacobian_rank's MoLRG MLPs at their generalization N,
3 seeds, 1000 samples per model, restored from `workdirs/`, trained there if
missing), `smoke` (seconds; random points in D = 16, tiny networks), `paper`
(all 1797 digits, 10 000 trajectories, 50 000 samples × 5 seeds, NFE up to 100;
the zoo's CIFAR-10 U-Net as the trained subject, which needs
`--config.zoo.train.data.path=<cifar-10-batches-py>`; an accelerator job).
Fields and criteria: `repro_jax.studies.optimization_view.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import optimization_view


def get_config(variant: str = "cpu"):
  return settings.to_config(optimization_view.settings(variant))
