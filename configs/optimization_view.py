"""Diffusion sampling as distance minimization (the optimization view, THEORY.md §2).

Run:
  python -m experiments.optimization_view --config=configs/optimization_view.py:cpu \
      --workdir=results/optimization_view
"""

import ml_collections


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # MoLRG Σ_k (1/K) N(0, U_k U_kᵀ), orthogonal subspaces (low-dim talk).
  c.molrg_dim = 48
  c.molrg_components = 3
  c.molrg_rank = 4
  # Finite data set K for the trajectory diagnostics (empirical denoiser).
  c.finite_dataset = "digits"     # "digits" or "random" (uniform in [−1, 1]^random_dim)
  c.finite_num_train = 512
  c.random_dim = 64
  # Trajectory diagnostics: DDIM (σ-form) on three grids over the DDPM σ range.
  c.traj_num = 256
  c.traj_steps = (10, 20, 50, 100)
  c.traj_spacings = ("log_linear", "edm", "leading")
  c.traj_main_steps = 50          # trajectories drawn in the per-step figures
  c.identity_num = 64             # float64 trajectories for the gradient identity
  # Sampler table (NFE budgets) and schedule table, on MoLRG with its exact denoiser.
  c.num_samples = 10_000
  c.num_seeds = 3
  c.nfe = (5, 10, 20, 50)
  c.samplers = ("sigma_form", "gradient_estimation", "heun", "dpm_solver",
                "dpm_solver_pp_2m", "ddpm")
  c.sampler_spacing = "leading"   # DDIM's uniform τ of the DDPM schedule, for every sampler
  c.schedule_steps = 10
  c.schedule_spacings = ("log_linear", "leading", "leading_offset", "edm")
  c.sw_projections = 256
  if variant == "smoke":
    c.finite_dataset = "random"
    c.finite_num_train = 64
    c.random_dim = 16
    c.molrg_dim = 16
    c.molrg_components = 2
    c.molrg_rank = 2
    c.traj_num = 32
    c.traj_steps = (10, 40)
    c.traj_spacings = ("log_linear",)
    c.traj_main_steps = 40
    c.identity_num = 8
    c.num_samples = 512
    c.num_seeds = 2
    c.nfe = (5,)
    c.samplers = ("sigma_form", "gradient_estimation", "ddpm")
    c.sw_projections = 64
  elif variant == "paper":
    c.finite_num_train = 1797
    c.traj_num = 10_000
    c.identity_num = 256
    c.num_samples = 50_000
    c.num_seeds = 5
    c.nfe = (5, 10, 20, 50, 100)
    c.sw_projections = 1024
  elif variant != "cpu":
    raise ValueError(f"unknown variant {variant!r}; choose cpu, smoke or paper.")
  return c
