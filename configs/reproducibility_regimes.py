"""Reproducibility regimes with trained networks (paper Fig. 1, 2, 4, 6).

Run:
  python -m experiments.reproducibility_regimes \
      --config=configs/reproducibility_regimes.py:cpu \
      --workdir=results/reproducibility_regimes

Variants:
- `cpu` (default): residual-MLP denoisers of hidden width 128 and 256 (EDM
  preconditioning) on 8×8 digits, N ∈ {16, 64, 256, 1024, 1797}, three seeds
  per width, 5000 steps of batch 64, 1024 shared noises, bootstrap intervals
  over noises and seeds, pixel NCC and a learned descriptor.  Training the
  zoo takes about 10 min on an idle 2-core machine; the study itself about
  1.5 min once the models are in `zoo.dir`.
- `cpu_full` (a few hours): widths 128/256/512, N = 2^4 … 2^10 and 1797,
  10 000 steps.
- `smoke` (seconds, tests): tiny widths, two sizes, 20 steps.
- `paper`: the paper's grid, U-Net widths 64/128/256 (DDPM ε-prediction, VP)
  on CIFAR-10 N = 2^6 … 2^15, 10 000 noises; needs
  `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator.

The trained models are kept under `zoo.dir` (git-ignored `workdirs/`) and
reused by `reproducibility_across_samplers`.  Fields and criteria:
`repro_jax.studies.reproducibility_regimes.Settings` (the zoo:
`repro_jax.networks.model_zoo.ZooSettings`, its variants in
`repro_jax/studies/_zoo_study.py`).
"""

from repro_jax import settings
from repro_jax.studies import reproducibility_regimes


def get_config(variant: str = "cpu"):
  return settings.to_config(reproducibility_regimes.settings(variant))
