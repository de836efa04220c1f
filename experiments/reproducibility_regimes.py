"""Reproducibility regimes with trained networks.  See configs/reproducibility_regimes.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("reproducibility_regimes")
