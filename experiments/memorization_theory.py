"""Theorem 1 with the optimal denoiser ε*.  See configs/memorization_theory.py for the run command."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("memorization_theory")
