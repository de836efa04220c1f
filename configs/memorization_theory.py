"""Theorem 1 of the reproducibility paper with the empirical optimal denoiser ε*.

Run:
  python -m experiments.memorization_theory --config=configs/memorization_theory.py:cpu \
      --workdir=results/memorization_theory
  # with CIFAR-10 (python-pickle batches, no download):
  python -m experiments.memorization_theory --config=configs/memorization_theory.py:paper \
      --config.cifar10_dir=/data/cifar-10-batches-py

Variants: `cpu` (default), `smoke` (seconds), `paper` (adds CIFAR-10).
Fields and criteria: `repro_jax.studies.memorization_theory.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import memorization_theory


def get_config(variant: str = "cpu"):
  return settings.to_config(memorization_theory.settings(variant))
