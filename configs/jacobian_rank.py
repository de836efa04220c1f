"""Low-rank Jacobians of the posterior mean (low-dim talk; docs/theory.md §6).

Run:
  python -m experiments.jacobian_rank --config=configs/jacobian_rank.py:cpu \
      --workdir=results/jacobian_rank

Variants:
- `cpu` (default): exact Jacobians (D batched jvps) of digits networks (a
  width-128 MLP and a width-32 DiT with EDM preconditioning, 3 seeds, N = 16
  and 1797: the models of reproducibility_across_models' matrix), ε* and the
  digits' Gaussian denoiser,
  and on a MoLRG (D = 48, K = 2, r = 4) of the exact posterior mean, ε* and MLPs
  (3 seeds, N = 8 and 512), at 12 VP times, 32 inputs each.
- `smoke` (seconds, tests): tiny MLPs, three times, four inputs.
- `paper`: CIFAR-10 U-Nets and DiTs (D = 3072, the cross-model matrix's) with
  the top 256 singular values found matrix-free; needs `--config.zoo.train.data.path=<cifar-10-batches-py>`
  and an accelerator.

The networks are kept under `zoo.dir` and `molrg.dir` (git-ignored `workdirs/`);
the digits networks are restored when reproducibility_across_models has
trained them, trained here otherwise.  Fields and criteria: `repro_jax.studies.jacobian_rank.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import jacobian_rank


def get_config(variant: str = "cpu"):
  return settings.to_config(jacobian_rank.settings(variant))
