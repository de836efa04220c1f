"""Diffusion sampling as distance minimization.  See configs/optimization_view.py for the run command."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("optimization_view")
