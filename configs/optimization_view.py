"""Diffusion sampling as distance minimization (the optimization view, THEORY.md §2).

Run:
  python -m experiments.optimization_view --config=configs/optimization_view.py:cpu \
      --workdir=results/optimization_view

Variants: `cpu` (default), `smoke` (seconds), `paper` (more samples and seeds).
Fields and criteria: `repro_jax.studies.optimization_view.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import optimization_view


def get_config(variant: str = "cpu"):
  return settings.to_config(optimization_view.settings(variant))
