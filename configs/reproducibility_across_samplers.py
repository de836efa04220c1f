"""Reproducibility across samplers and across VP / VE training.

Run (after, or instead of, reproducibility_regimes: the trained models are
shared through `zoo.dir` and trained here if missing):
  python -m experiments.reproducibility_across_samplers \
      --config=configs/reproducibility_across_samplers.py:cpu \
      --workdir=results/reproducibility_across_samplers

`cpu`: 3.5 min with the zoo of reproducibility_regimes present (2 min of it
training the VP group), about 1 min when every group is cached.

Variants `cpu`, `cpu_full`, `smoke`, `paper` use the model grid (`zoo`) of the
same variant of `reproducibility_regimes` (both read
`repro_jax.studies._zoo_study.zoo_settings(variant)`), so no model is trained
twice; the other-kernel group (`kernel`: VP ε-prediction against the zoo's
EDM models; EDM against the paper zoo's VP models) adds one width × one seed
per N.  Fields and criteria:
`repro_jax.studies.reproducibility_across_samplers.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import reproducibility_across_samplers


def get_config(variant: str = "cpu"):
  return settings.to_config(reproducibility_across_samplers.settings(variant))
