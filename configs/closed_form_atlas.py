"""Which closed form explains the network? An atlas of analytic denoisers
against the zoo (docs/theory.md §6.6).

Run:
  python -m experiments.closed_form_atlas --config=configs/closed_form_atlas.py:cpu \
      --workdir=results/closed_form_atlas

Variants:
- `cpu` (default): the digits MLPs of reproducibility_regimes (EDM, width 128,
  N = 16 … 1797, 3 seeds: the (N, σ) map), the cross-model matrix's other
  members (MLPs VP-ε and VP-v, the DiT) at N = 16 and 1797, and
  jacobian_rank's MoLRG MLPs,
  against ε*, the Gaussian, the smoothed closed-form score and the LS / ELS /
  patch-composite denoisers (windows 3–9 fitted per σ), on a 10-step grid.
- `smoke` (seconds, tests): tiny networks, a 3-step grid, windows 3 and 5.
- `paper`: the CIFAR-10 zoo's U-Nets and DiT (needs
  `--config.zoo.train.data.path=<cifar-10-batches-py>` and an accelerator).

The networks are restored from `zoo.dir` / `molrg.dir` when the studies that
own them have trained them, trained here otherwise.  Fields and criteria:
`repro_jax.studies.closed_form_atlas.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import closed_form_atlas


def get_config(variant: str = "cpu"):
  return settings.to_config(closed_form_atlas.settings(variant))
