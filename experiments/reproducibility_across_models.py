"""Reproducibility across models and disjoint halves.  See configs/reproducibility_across_models.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("reproducibility_across_models")
