"""Reproducibility across samplers and kernels.  See configs/reproducibility_across_samplers.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("reproducibility_across_samplers")
