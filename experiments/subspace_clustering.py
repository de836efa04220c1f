"""Subspace clustering (K > 1).  See configs/subspace_clustering.py for the run command."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("subspace_clustering")
