"""Subspace clustering with the K > 1 low-rank mixture denoiser (THEORY.md §4).

Run:
  python -m experiments.subspace_clustering --config=configs/subspace_clustering.py:cpu \
      --workdir=results/subspace_clustering
"""

import ml_collections


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.ks = (2, 3)                    # K of the phase diagrams
  c.dims = (48, 96)                # D: the talk's 48, and twice it
  c.ranks = (2, 4, 6, 8)           # r (every component)
  c.ns = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)   # N per component
  c.num_seeds = 3
  c.threshold = 0.5                # success: min_π max_k ‖P_k − P_g,π(k)‖_F below this

  # Training (lowrank.TrainConfig): Monte Carlo t and ε.
  c.train = ml_collections.ConfigDict()
  c.train.objective = "mc"
  c.train.noise_space = "model"
  c.train.noise_per_point = 2
  c.train.steps = 200
  c.train.learning_rate = 0.1
  c.train.optimizer = "sgd"
  c.train.momentum = 0.9
  c.train.schedule = "vp"
  c.train.t_min = 0.01
  c.train.t_max = 0.1
  c.train.init = "seeded"
  c.train.restarts = 1

  # Random initializations (K = ks[0], D = dims[0], N ∈ random_ns): how often
  # plain training from a random start finds the clustering solution.
  c.random_ns = (10, 12)
  c.random_restarts = 4

  # K-subspaces baseline.
  c.kss_iters = 15
  c.kss_restarts = 4
  if variant == "smoke":
    c.ks = (2,)
    c.dims = (12,)
    c.ranks = (1, 2)
    c.ns = (1, 2, 3, 4)
    c.num_seeds = 2
    c.train.steps = 120
    c.random_ns = ()                 # the random-start panel runs at cpu scale only
    c.kss_iters = 6
    c.kss_restarts = 2
  elif variant == "paper":
    c.ranks = (2, 4, 6, 8, 10, 12)
    c.ns = tuple(range(1, 19))
    c.num_seeds = 10
    c.train.steps = 1000
    c.train.noise_per_point = 8
    c.train.restarts = 4
    c.random_ns = (12, 18)
    c.random_restarts = 16
    c.kss_iters = 30
    c.kss_restarts = 10
  elif variant != "cpu":
    raise ValueError(f"unknown variant {variant!r}; choose cpu, smoke or paper.")
  return c
