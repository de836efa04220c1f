"""PCA equivalence (K = 1).  See configs/pca_equivalence.py for the run command."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("pca_equivalence")
