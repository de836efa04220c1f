"""Reproducibility of class-conditional diffusion models.  See configs/conditional_models.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("conditional_models")
