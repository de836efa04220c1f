"""The one place that chooses matplotlib's backend.

Every figure of the library is drawn through `pyplot()`: it selects the
non-interactive Agg backend once (figures are files, never windows; this also
works on a machine without a display) and returns `matplotlib.pyplot`.
Figures are saved atomically with `repro_jax.io.save_figure`.
"""

from __future__ import annotations

import functools


@functools.cache
def pyplot():
  """`matplotlib.pyplot` on the Agg backend (selected on the first call)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt
