"""Theory checks at scale.  See configs/theory_checks.py for the run command."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("theory_checks")
