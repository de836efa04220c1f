"""DDIM's η × steps table with trained denoisers (DDIM talk, Table 1; docs/theory.md §3).

Run:
  python -m experiments.ddim_table --config=configs/ddim_table.py:cpu \
      --workdir=results/ddim_table

Variants:
- `cpu` (default): the digits MLPs of the cross-model matrix (VP-ε and EDM,
  N = 1797, 3 seeds) and jacobian_rank's MoLRG MLPs (N = 512, 3 seeds) beside
  the exact MoLRG posterior mean; rows η = 0, 0.2, 0.5, 1 and σ̂ (DDPM's
  σ² = β), S = 10, 20, 50, 100, 1000 on DDPM's schedule, 1000 noises per
  model; Fréchet distance in the learned descriptor's features and in pixels
  (digits), sliced W2 to held-out draws (MoLRG); consistency across S and
  slerp interpolation.
- `smoke` (seconds, tests): tiny MLPs, two rows, three step counts.
- `paper`: the zoo's CIFAR-10 U-Net (ε-prediction, the generalizing N), 10 000
  samples per model; needs `--config.zoo.train.data.path=<cifar-10-batches-py>`
  and an accelerator.

The networks are restored from `zoo.dir` (git-ignored `workdirs/`), trained
here if missing.  Fields and criteria: `repro_jax.studies.ddim_table.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import ddim_table


def get_config(variant: str = "cpu"):
  return settings.to_config(ddim_table.settings(variant))
