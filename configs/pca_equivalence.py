"""PCA equivalence of the K = 1 low-rank denoiser (THEORY.md §4, low-dim talk).

Run:
  python -m experiments.pca_equivalence --config=configs/pca_equivalence.py:cpu \
      --workdir=results/pca_equivalence
"""

import ml_collections


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.dim = 48                       # D, as in the low-dim talk
  c.ranks = tuple(range(1, 17))    # r of the phase diagram
  c.ns = tuple(range(1, 25))       # N of the phase diagram
  c.num_seeds = 3
  c.curve_ranks = (2, 4, 8, 12, 16)
  c.threshold = 0.5                # success: ‖U⋆U⋆ᵀ − U_gU_gᵀ‖_F below this
  c.pca_tolerance = 1e-3           # the claim: ‖U⋆U⋆ᵀ − PCA‖_F ≤ this when N ≥ r

  # Training (lowrank.TrainConfig): exact E_ε, averaged over a t grid, float64,
  # Riemannian-preconditioned Nesterov SGD (N = r cells are ill-conditioned).
  c.float64 = True
  c.train = ml_collections.ConfigDict()
  c.train.objective = "expected"
  c.train.steps = 200
  c.train.learning_rate = 0.5
  c.train.optimizer = "sgd"
  c.train.momentum = 0.9
  c.train.schedule = "vp"
  c.train.t_min = 0.01
  c.train.t_max = 0.5
  c.train.num_t = 8
  c.train.precondition = True
  c.train.precondition_damping = 1e-8
  c.train.max_grad_norm = 0.3

  # Whole grid again: plain Riemannian SGD in float32 (no preconditioning).
  c.plain_sgd = True
  c.plain_learning_rate = 1.0
  # Variants on a few cells: one t only, and sampled (t, ε) SGD, ε drawn in
  # the model's coordinates or in R^D.
  c.variants = ("single_t", "mc_model", "mc_ambient")
  c.variant_ranks = (4, 8)
  c.variant_ns = (2, 6, 12, 16)
  c.single_t = 0.1
  c.mc_steps = 1000
  c.mc_learning_rate = 0.3
  c.mc_noise_per_point = 8
  if variant == "smoke":
    c.dim = 12
    c.ranks = (1, 2, 3, 4)
    c.ns = (1, 2, 3, 4, 5, 6)
    c.num_seeds = 2
    c.curve_ranks = (2, 4)
    c.train.steps = 100
    c.plain_sgd = False
    c.variants = ()                  # covered by tests/test_lowrank.py
    c.variant_ranks = (2,)
    c.variant_ns = (1, 4)
    c.mc_steps = 300
  elif variant == "paper":
    c.dim = 96
    c.ranks = tuple(range(1, 33))
    c.ns = tuple(range(1, 49))
    c.num_seeds = 10
    c.curve_ranks = (2, 4, 8, 16, 24, 32)
    c.train.steps = 500
    c.mc_steps = 5000
  elif variant != "cpu":
    raise ValueError(f"unknown variant {variant!r}; choose cpu, smoke or paper.")
  return c
