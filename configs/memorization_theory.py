"""Theorem 1 of the reproducibility paper with the empirical optimal denoiser ε*.

Run:
  python -m experiments.memorization_theory --config=configs/memorization_theory.py:cpu \
      --workdir=results/memorization_theory
  # with CIFAR-10 (python-pickle batches, no download):
  python -m experiments.memorization_theory --config=configs/memorization_theory.py:paper \
      --config.cifar10_dir=/data/cifar-10-batches-py \
      --workdir=workdirs/results-paper/memorization_theory

Variants: `cpu` (default; random, MoLRG and digits sets of 512 points, 500
noises; about a minute on 2 CPU cores), `smoke` (seconds; 64 digits), `paper`
(1024 points per set, 10 000 noises, a 100 × 100 noise plane, and CIFAR-10
when `cifar10_dir` is set, otherwise a "not tested" verdict; an accelerator job).
Fields and criteria: `repro_jax.studies.memorization_theory.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import memorization_theory


def get_config(variant: str = "cpu"):
  return settings.to_config(memorization_theory.settings(variant))
