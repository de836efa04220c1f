"""Memorization → generalization of trained denoisers on a MoLRG (docs/theory.md §4–§5).

Run:
  python -m experiments.molrg_networks --config=configs/molrg_networks.py:cpu \
      --workdir=results/molrg_networks

Variants: `cpu` (default: 24 MLP cells in one vmapped program + a 4-cell U-Net
check; a few minutes on 2 CPU cores), `smoke` (seconds, for tests), `paper`
(GPU: U-Net and MLP on the full, finer grid with 3 seeds).
Fields, training settings of each architecture and criteria:
`repro_jax.studies.molrg_networks.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import molrg_networks


def get_config(variant: str = "cpu"):
  return settings.to_config(molrg_networks.settings(variant))
