"""Which closed form explains the network?  See configs/closed_form_atlas.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("closed_form_atlas")
