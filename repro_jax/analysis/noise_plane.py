"""The noise hyperplane of the reproducibility paper (Fig. 4) and its basins.

Three anchor noises `ε1, ε2, ε3` span the plane

    ε(a, b) = a (ε2 − ε1) + b (ε3 − ε1) + ε1,    (a, b) ∈ [−0.1, 1.1]²,

so `(0, 0)`, `(1, 0)`, `(0, 1)` are the anchors.  A deterministic sampler maps
each plane point to a sample; with the memorizing denoiser ε* every sample is a
training point, so the plane splits into *basins* labelled by the training
index reached (`basin_labels`).  Plotting helpers keep one colour per training
index across panels (`basin_palette`, `plot_basins`).

Grids are row-major `[G_b, G_a]`: row i is `b = b_axis[i]`, column j is
`a = a_axis[j]`; flattened arrays `[G_b · G_a, ...]` follow the same order.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from repro_jax import validation
from repro_jax.closed_form import geometry

ANCHOR_COORDS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))   # ε1, ε2, ε3 as (a, b)
ANCHOR_MARKERS = ("^", "s", "o")                       # the paper's triangle, square, circle


def plane_axis(num: int, lo: float = -0.1, hi: float = 1.1) -> np.ndarray:
  """`num` equally spaced coordinates in `[lo, hi]`, float64 `[G]`."""
  if int(num) < 2 or not lo < hi:
    raise ValueError(f"need num >= 2 and lo < hi; got num={num}, lo={lo}, hi={hi}.")
  return np.linspace(lo, hi, int(num))


def plane_noises(anchors, a_axis, b_axis):
  """Noises `ε(a, b)` on the grid `b_axis × a_axis`, `[G_b · G_a, ...]`.

  Args:
    anchors: `[3, ...]`, the noises `ε1, ε2, ε3`.
    a_axis: `[G_a]` coefficients of `ε2 − ε1`.
    b_axis: `[G_b]` coefficients of `ε3 − ε1`.
  """
  anchors = jnp.asarray(anchors)
  if anchors.ndim < 2 or anchors.shape[0] != 3:
    raise ValueError(f"`anchors` must have shape [3, ...]; got {anchors.shape}.")
  e1, e2, e3 = anchors[0], anchors[1], anchors[2]
  bb, aa = np.meshgrid(np.asarray(b_axis), np.asarray(a_axis), indexing="ij")
  a = jnp.asarray(aa.reshape(-1), anchors.dtype)
  b = jnp.asarray(bb.reshape(-1), anchors.dtype)
  shape = (-1,) + (1,) * (anchors.ndim - 1)
  return (a.reshape(shape) * (e2 - e1)[None] + b.reshape(shape) * (e3 - e1)[None]
          + e1[None])


def basin_labels(samples, data, **kwargs) -> np.ndarray:
  """Index of the nearest training point of each sample, int `[M]`.

  Args:
    samples: `[M, ...]`.
    data: training set `[N, ...]` (same trailing shape).
    **kwargs: passed to `geometry.nearest_neighbors` (`chunk_size`).
  """
  s = jnp.asarray(samples)
  d = jnp.asarray(data)
  idx, _ = geometry.nearest_neighbors(s.reshape(s.shape[0], -1),
                                      d.reshape(d.shape[0], -1), **kwargs)
  return np.asarray(idx)


def boundary_fraction(label_grid) -> float:
  """Fraction of horizontally or vertically adjacent grid pairs with different labels.

  Small values mean large basins: nearby noises reach the same training point
  (the paper's local Lipschitzness).  `label_grid` `[G_b, G_a]`.
  """
  g = np.asarray(label_grid)
  validation.check_ndim(g, 2, "label_grid", "GG")
  diffs = np.concatenate([(g[1:] != g[:-1]).reshape(-1), (g[:, 1:] != g[:, :-1]).reshape(-1)])
  return float(diffs.mean())


def basin_palette(label_sets, cmap_names=("tab20", "tab20b", "tab20c")) -> dict:
  """One colour per training index, shared by every panel.

  Indices are ordered by their total count over `label_sets` (a list of label
  arrays), the most frequent getting the first colours of `cmap_names`;
  indices beyond the available colours are grey.

  Returns:
    `{index: (r, g, b, a)}`.
  """
  import matplotlib
  counts: dict[int, int] = {}
  for labels in label_sets:
    for i, c in zip(*np.unique(np.asarray(labels), return_counts=True)):
      counts[int(i)] = counts.get(int(i), 0) + int(c)
  colors = [tuple(c) for name in cmap_names
            for c in matplotlib.colormaps[name](np.linspace(0, 1, 20))]
  order = sorted(counts, key=lambda i: (-counts[i], i))
  grey = (0.6, 0.6, 0.6, 1.0)
  return {i: (colors[k] if k < len(colors) else grey) for k, i in enumerate(order)}


def label_image(label_grid, palette: dict) -> np.ndarray:
  """RGBA image `[G_b, G_a, 4]` of a label grid under `palette`."""
  g = np.asarray(label_grid)
  grey = (0.6, 0.6, 0.6, 1.0)
  return np.array([[palette.get(int(v), grey) for v in row] for row in g])


def plot_basins(ax, label_grid, palette: dict, a_axis, b_axis, *,
                anchor_labels=None, title: str = "") -> None:
  """Draw a basin map on a matplotlib axis, anchors marked as in Fig. 4.

  Args:
    ax: matplotlib axis.
    label_grid: `[G_b, G_a]` training indices.
    palette: `basin_palette` output.
    a_axis, b_axis: the grid coordinates.
    anchor_labels: optional training indices reached from `ε1, ε2, ε3`
      (written beside the markers).
    title: panel title.
  """
  a_axis, b_axis = np.asarray(a_axis), np.asarray(b_axis)
  da, db = (a_axis[1] - a_axis[0]) / 2, (b_axis[1] - b_axis[0]) / 2
  ax.imshow(label_image(label_grid, palette), origin="lower", interpolation="nearest",
            extent=(a_axis[0] - da, a_axis[-1] + da, b_axis[0] - db, b_axis[-1] + db))
  for k, ((a, b), m) in enumerate(zip(ANCHOR_COORDS, ANCHOR_MARKERS)):
    ax.plot(a, b, m, ms=8, mfc="white", mec="black", mew=1.5)
    if anchor_labels is not None:
      ax.annotate(f"#{int(anchor_labels[k])}", (a, b), xytext=(4, 4),
                  textcoords="offset points", fontsize=7,
                  bbox=dict(boxstyle="round,pad=0.1", fc="white", alpha=0.8, lw=0))
  ax.set(xlabel="a", ylabel="b", title=title)
