"""Reproducibility of partially fine-tuned diffusion models.  See configs/fine_tuning.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("fine_tuning")
