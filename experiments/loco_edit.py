"""LOCO edit directions.  See configs/loco_edit.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("loco_edit")
