"""Reproducibility in solving inverse problems.  See configs/inverse_problems.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("inverse_problems")
