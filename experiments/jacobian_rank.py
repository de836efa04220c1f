"""Low-rank Jacobians of the posterior mean.  See configs/jacobian_rank.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("jacobian_rank")
