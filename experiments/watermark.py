"""Null-space watermarks.  See configs/watermark.py."""

from experiments import _cli

if __name__ == "__main__":
  _cli.main_for("watermark")
