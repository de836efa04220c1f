"""Memorization → generalization of trained denoisers on a MoLRG (docs/theory.md §4–§5).

Run:
  python -m experiments.molrg_networks --config=configs/molrg_networks.py:cpu \
      --workdir=results/molrg_networks

Variants: `cpu` (default: 5 ranks × 11 N; 165 MLPs (3 seeds), 55 U-Nets and
55 DiTs (1 seed), each architecture in one vmapped program; about 24 minutes
on 2 CPU cores), `smoke` (seconds, for tests), `paper` (GPU: 6 ranks × 17 N,
3 seeds of every architecture).
Fields, training settings of each architecture and criteria:
`repro_jax.studies.molrg_networks.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import molrg_networks


def get_config(variant: str = "cpu"):
  return settings.to_config(molrg_networks.settings(variant))
