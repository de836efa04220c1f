"""Reproducibility in solving inverse problems (reproducibility paper §4.2, Fig. 8, App. D).

Run:
  python -m experiments.inverse_problems --config=configs/inverse_problems.py:cpu \
      --workdir=results/inverse_problems

Variants:
- `cpu` (default): the zoo's digits networks (width-128 MLPs with EDM and v
  preconditioning, a width-32 DiT with EDM; N = 16 and 1797, 3 seeds each),
  restored from `workdirs/repro_zoo`, each solving the same 1000 (noise,
  observation) inpainting problems by deterministic DPS (easy mask: 4×4 =
  25 %, hard: 6×6 = 56.25 % of the 8×8 image); RP of the restorations within
  and across architecture families; the empirical denoiser's restoration
  against the most consistent training image; the ε-prediction MLP probed.
  The DPS step ξ is calibrated first (a grid of 0.03–3 × the paper's ξ = 1 on
  128 disjoint pairs; the smallest ξ whose worst family median observed-pixel
  residual is within 10 % of the minimum) and every restoration uses it.
- `smoke` (seconds, tests): tiny MLP and DiT, 12 pairs.
- `paper`: the CIFAR-10 U-Nets and DiT of the cross-model matrix (32×32 masks
  16×16 = 25 % and 25×25 = 61.04 %, 10k pairs, DPM-Solver-3, 34 steps);
  needs `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator.

Fields and criteria: `repro_jax.studies.inverse_problems.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import inverse_problems


def get_config(variant: str = "cpu"):
  return settings.to_config(inverse_problems.settings(variant))
