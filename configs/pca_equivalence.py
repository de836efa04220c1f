"""PCA equivalence of the K = 1 low-rank denoiser (docs/theory.md §4.6, low-dim talk).

Run:
  python -m experiments.pca_equivalence --config=configs/pca_equivalence.py:cpu \
      --workdir=results/pca_equivalence

Variants: `cpu` (default; D = 48, r ≤ 16, N ≤ 24, 3 seeds, and a noisy panel
r = 4, ν ≤ 0.2, N ≤ 128, 8 seeds: under a minute on a CPU), `smoke` (D = 12, no
float32 or variant reruns, a tiny noisy panel: seconds), `paper` (D = 96,
r ≤ 32, N ≤ 48, 10 seeds; noisy panel r = 8, N ≤ 128: for an accelerator).
Settings with `noise_levels=()` skip the noisy panel (its verdicts: "not tested").
Fields and criteria: `repro_jax.studies.pca_equivalence.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import pca_equivalence


def get_config(variant: str = "cpu"):
  return settings.to_config(pca_equivalence.settings(variant))
