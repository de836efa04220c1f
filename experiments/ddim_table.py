"""DDIM's η × steps table, consistency and interpolation.  See configs/ddim_table.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("ddim_table")
