"""Theory checks at scale (identities of THEORY.md §1–§2).

Run:
  python -m experiments.theory_checks --config=configs/theory_checks.py:cpu \
      --workdir=results/theory_checks
"""

import ml_collections


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_data = 4096
  c.dim = 64
  c.batch = 64
  c.chunk = 1000          # deliberately not a divisor of num_data: exercises the ragged tail
  c.log10_sigma_min = -3
  c.log10_sigma_max = 3
  c.num_sigmas = 13
  c.molrg_dim = 16
  c.molrg_ranks = (2, 3, 5)
  c.molrg_weights = (0.5, 0.3, 0.2)
  c.mc_sigma = 0.5
  c.mc_samples = 400_000
  if variant == "smoke":
    c.num_data, c.dim, c.batch, c.chunk, c.num_sigmas = 300, 8, 8, 64, 5
    c.mc_samples = 50_000
  elif variant == "paper":
    c.num_data, c.dim, c.batch, c.chunk = 50_000, 3072, 64, 4096
    c.num_sigmas = 25
  elif variant != "cpu":
    raise ValueError(f"unknown variant {variant!r}; choose cpu, smoke or paper.")
  return c
