"""MoLRG phase transition with trained networks.  See configs/molrg_networks.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("molrg_networks")
