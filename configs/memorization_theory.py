"""Theorem 1 of the reproducibility paper with the empirical optimal denoiser ε*.

Run:
  python -m experiments.memorization_theory --config=configs/memorization_theory.py:cpu \
      --workdir=results/memorization_theory
  # with CIFAR-10 (python-pickle batches, no download):
  python -m experiments.memorization_theory --config=configs/memorization_theory.py:paper \
      --config.cifar10_dir=/data/cifar-10-batches-py
"""

import ml_collections


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Training sets (each scaled to [−1, 1]): uniform random vectors, a finite
  # MoLRG sample, scikit-learn's 8×8 digits, and CIFAR-10 when a path is given.
  c.datasets = ("random", "molrg", "digits")
  c.num_train = 512
  c.random_dim = 64
  c.molrg_dim = 48
  c.molrg_components = 2
  c.molrg_rank = 4
  c.cifar10_dir = None     # directory of CIFAR-10 python batches; None skips CIFAR-10
  c.cifar10_num_train = 1024
  # Sampling: EDM σ range, the reference map is Heun with `ref_steps` EDM steps.
  c.sigma_min = 0.002
  c.sigma_max = 80.0
  c.num_noises = 500
  c.steps = (5, 10, 20, 50, 100)
  c.table_steps = 100      # step count of the copy / RP tables (one of `steps`)
  c.ref_steps = 200
  c.descriptor = "ncc"     # pixel similarity, threshold calibrated per data set
  c.calibration_noise = 0.1
  # Invertibility: encode training points, decode; decode noises, encode.
  c.round_trip_num = 200
  c.round_trip_steps = (5, 10, 20, 50, 100)
  c.round_trip_samplers = ("ddim", "heun")
  # Noise plane (Fig. 4).
  c.plane_dataset = "digits"
  c.plane_grid = 48
  c.plane_steps = (5, 10, 50)
  c.plane_samplers = ("ddim", "heun")
  c.plane_candidates = 32  # noises tried as anchors (three reaching distinct points)
  if variant == "smoke":
    # Sizes chosen so that most runs share compiled loops (64 noises = 8×8 plane).
    c.datasets = ("digits",)
    c.num_train = 64
    c.num_noises = 64
    c.steps = (5, 40)
    c.table_steps = 40
    c.ref_steps = 80
    c.round_trip_num = 64
    c.round_trip_steps = (5, 40)
    c.round_trip_samplers = ("heun",)
    c.plane_grid = 8
    c.plane_steps = (5, 40)
    c.plane_samplers = ("heun",)
    c.plane_candidates = 64
  elif variant == "paper":
    c.datasets = ("random", "molrg", "digits", "cifar10")
    c.num_train = 1024
    c.random_dim = 3072
    c.num_noises = 10_000
    c.steps = (5, 10, 20, 50, 100, 200)
    c.table_steps = 200
    c.ref_steps = 400
    c.round_trip_num = 1000
    c.round_trip_steps = (5, 10, 20, 50, 100, 200)
    c.plane_dataset = "cifar10"
    c.plane_grid = 100
    c.plane_steps = (5, 10, 50, 200)
  elif variant != "cpu":
    raise ValueError(f"unknown variant {variant!r}; choose cpu, smoke or paper.")
  return c
