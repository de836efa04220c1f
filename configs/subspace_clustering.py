"""Subspace clustering with the K > 1 low-rank mixture denoiser (docs/theory.md §4.7).

Run:
  python -m experiments.subspace_clustering --config=configs/subspace_clustering.py:cpu \
      --workdir=results/subspace_clustering

Variants: `cpu` (default; K ∈ {2, 3}, D ∈ {48, 96}, r ≤ 8, N ≤ 12 per component,
3 seeds, plus random starts: under a minute on a CPU), `smoke` (one small panel:
seconds), `paper` (r ≤ 12, N ≤ 18, 10 seeds, 1000 steps: for an accelerator).
Fields and criteria: `repro_jax.studies.subspace_clustering.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import subspace_clustering


def get_config(variant: str = "cpu"):
  return settings.to_config(subspace_clustering.settings(variant))
