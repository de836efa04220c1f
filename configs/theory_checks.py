"""Theory checks at scale (identities of docs/theory.md §1–§2).

Run:
  python -m experiments.theory_checks --config=configs/theory_checks.py:cpu \
      --workdir=results/theory_checks

Variants: `cpu` (default), `smoke` (seconds), `paper` (N = 50 000, D = 3072).
Fields and tolerances: `repro_jax.studies.theory_checks.Settings`.
"""

from repro_jax import settings
from repro_jax.studies import theory_checks


def get_config(variant: str = "cpu"):
  return settings.to_config(theory_checks.settings(variant))
