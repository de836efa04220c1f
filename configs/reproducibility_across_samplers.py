"""Reproducibility across samplers and across VP / VE training.

Run (after, or instead of, reproducibility_regimes: the trained models are
shared through `zoo.dir` and trained here if missing):
  python -m experiments.reproducibility_across_samplers \
      --config=configs/reproducibility_across_samplers.py:cpu \
      --workdir=results/reproducibility_across_samplers

`cpu`: 3.5 min with the zoo of reproducibility_regimes present (2 min of it
training the VP group), about 1 min when every group is cached.

Variants `cpu`, `cpu_full`, `smoke`, `paper` use the model grid (`zoo`) of the
same variant of configs/reproducibility_regimes.py, so no model is trained
twice; the other-kernel group (VP ε-prediction against the zoo's EDM models;
EDM against the paper zoo's VP models) adds one width × one seed per N.
"""

import importlib.util
import pathlib

import ml_collections

VARIANTS = ("cpu", "cpu_full", "smoke", "paper")


def _regimes_config(variant):
  path = pathlib.Path(__file__).with_name("reproducibility_regimes.py")
  spec = importlib.util.spec_from_file_location("_config_reproducibility_regimes", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {VARIANTS}.")
  base = _regimes_config(variant)
  c = ml_collections.ConfigDict()
  c.seed = base.seed
  c.zoo = base.zoo
  for k in ("noise_seed", "num_noises", "sigma_min", "sigma_max", "chunk", "similarity",
            "calib_pairs", "calib_noise", "calib_shift", "paper_threshold", "mae_threshold"):
    c[k] = base[k]
  # (label, registry name, steps) on the EDM ρ-grid; deterministic options.
  c.samplers = (("DDIM", "ddim", 50), ("Heun", "heun", 18),
                ("DPM-Solver-2", "dpm_solver", 18),
                ("grad. est. γ=2", "gradient_estimation", 50))
  c.reference = 1                   # index of the sampler used for the kernel comparison
  # VP vs VE: a group trained with another kernel (here ε-prediction on the VP
  # SDE) on the same images, against the zoo's EDM (VE) models.
  c.kernel = ml_collections.ConfigDict(dict(
      width_index=0, seeds=(0,), clip_x0=True,   # DDPM's x0 clipping, for both kernels
      diffusion=dict(parameterization="eps", schedule="vp", time_input="t")))
  if variant == "smoke":
    c.samplers = (("DDIM", "ddim", 6), ("Heun", "heun", 4),
                  ("DPM-Solver-2", "dpm_solver", 4),
                  ("grad. est. γ=2", "gradient_estimation", 6))
  elif variant == "paper":
    # The paper's zoo is already ε-prediction VP: compare with EDM instead.
    c.kernel.diffusion = dict(parameterization="edm", schedule="vp", time_input="t")
  return c
