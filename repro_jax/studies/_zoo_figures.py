"""Figures of the reproducibility experiments (paper Fig. 1, 2, 4, 6 and the sampler study).

Every function takes measured numbers (the dicts the studies compute) and a
path, draws one figure with matplotlib (Agg) and saves it atomically.
"""

from __future__ import annotations

import numpy as np

from repro_jax import plotting
from repro_jax import io
from repro_jax.analysis import noise_plane
from repro_jax.analysis import reproducibility as rpr

REGIME_COLORS = {"memorization": "#f4c7c3", "transition": "#fff2b3",
                 "generalization": "#c9e7c5"}
MARKER_GLYPHS = {"^": "▲", "s": "■", "o": "●"}


def _to_image(x):
  """`[H, W, C]` in [−1, 1] → displayable `[H, W]` or `[H, W, 3]` in [0, 1]."""
  x = np.clip((np.asarray(x, np.float32) + 1.0) / 2.0, 0.0, 1.0)
  return x[..., 0] if x.shape[-1] == 1 else x


def mosaic(rows, pad: int = 1):
  """Tile `rows` (a list of `[C, H, W, ch]` arrays) into one image with white gaps."""
  rows = [np.stack([_to_image(x) for x in r]) for r in rows]
  r, c = len(rows), rows[0].shape[0]
  h, w = rows[0].shape[1:3]
  extra = rows[0].shape[3:]
  out = np.ones((r * (h + pad) - pad, c * (w + pad) - pad) + extra, np.float32)
  for i, row in enumerate(rows):
    for j, img in enumerate(row):
      out[i * (h + pad):i * (h + pad) + h, j * (w + pad):j * (w + pad) + w] = img
  return out


def shade_regimes(ax, sizes, regimes):
  """Shade each N's span (between geometric midpoints) by its regime."""
  sizes = np.asarray(sizes, np.float64)
  logs = np.log2(sizes)
  edges = np.concatenate([[logs[0] - 0.5], (logs[1:] + logs[:-1]) / 2, [logs[-1] + 0.5]])
  for k, reg in enumerate(regimes):
    ax.axvspan(2**edges[k], 2**edges[k + 1], color=REGIME_COLORS[reg], alpha=0.7, lw=0,
               zorder=0)


def _log2_axis(ax, sizes):
  ax.set_xscale("log", base=2)
  ax.set_xticks(list(sizes))
  ax.set_xticklabels([str(int(n)) for n in sizes], fontsize=8)
  ax.minorticks_off()
  ax.set_xlim(sizes[0] / 2**0.5, sizes[-1] * 2**0.5)


def _regime_legend(ax):
  from matplotlib.patches import Patch
  return [Patch(color=c, alpha=0.7, label=k) for k, c in REGIME_COLORS.items()]


def calibration(path, cal, paper_threshold: float, model_pairs: dict, descriptor: str):
  """Histograms of distinct vs perturbed-copy similarities, with the thresholds.

  Args:
    cal: `metrics.Calibration`.
    model_pairs: `{label: similarities [B]}` of model pairs, drawn as outlines.
  """
  plt = plotting.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw=dict(width_ratios=[1.3, 1]))
  zoom = 0.85
  for ax, lo, width in ((axes[0], -0.2, 0.0125), (axes[1], zoom, 0.0025)):
    bins = np.arange(lo, 1.0 + width, width)
    def hist(v, **kw):
      v = np.asarray(v)
      v = v[v >= lo]
      if v.size:   # a density of an empty range is undefined
        ax.hist(v, bins=bins, density=True, **kw)
    hist(cal.distinct, alpha=0.55, color="tab:blue", label="distinct training images")
    hist(cal.perturbed, alpha=0.55, color="tab:orange", label="image vs perturbed copy")
    for (label, s), color in zip(model_pairs.items(),
                                 ("k", "tab:red", "tab:green", "tab:purple")):
      hist(s, histtype="step", lw=1.3, color=color, label=label)
    ax.axvline(cal.threshold, color="k", lw=1.5,
               label=f"calibrated threshold {cal.threshold:.3f}")
    if paper_threshold >= lo:
      ax.axvline(paper_threshold, color="gray", ls="--", lw=1.2,
                 label=f"paper's (SSCD) threshold {paper_threshold:g}")
    ax.set(xlabel=f"{descriptor} similarity", ylabel="density", xlim=(lo, 1.0))
  axes[0].set(yscale="log", title=f"threshold calibration (balanced accuracy "
                                  f"{cal.accuracy:.3f})")
  axes[1].set(title=f"zoom on [{zoom}, 1]")
  axes[0].legend(fontsize=7, loc="upper left")
  io.save_figure(fig, path)


def _yerr(values, cis):
  """Asymmetric error bars `[2, S]` from point values and `[lo, hi]` intervals."""
  v = np.asarray(values, np.float64)
  ci = np.asarray([[np.nan, np.nan] if c is None else c for c in cis], np.float64)
  return np.abs(np.stack([v - ci[:, 0], ci[:, 1] - v]))


def regimes(path, per_size, names, config):
  """Fig. 2: RP (same width, other seed; across widths), GL and MAE score vs N, with
  their bootstrap intervals (noises and seeds) as error bars."""
  plt = plotting.pyplot()
  sizes = [s["N"] for s in per_size]
  reg = [s["regime"] for s in per_size]
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  for ax in axes:
    shade_regimes(ax, sizes, reg)
  shift = 2.0 ** (0.06 * (np.arange(len(names)) - (len(names) - 1) / 2))   # bars apart
  for i, nm in enumerate(names):
    c = colors[i % len(colors)]
    w = [s["widths"][nm] for s in per_size]
    x = np.asarray(sizes) * shift[i]
    axes[0].errorbar(x, [v["rp_seed"] for v in w],
                     yerr=_yerr([v["rp_seed"] for v in w], [v["rp_seed_ci"] for v in w]),
                     fmt="o-", color=c, capsize=3, label=f"{nm}: other seed")
    axes[0].plot(x, [v["rp_seed_paper"] for v in w], "o:", color=c, alpha=0.6, ms=3,
                 label=f"{nm}: other seed, thr. {config.paper_threshold:g}")
    axes[1].errorbar(x, [v["gl_cal"] for v in w],
                     yerr=_yerr([v["gl_cal"] for v in w], [v["gl_cal_ci"] for v in w]),
                     fmt="o-", color=c, capsize=3, label=nm)
    axes[2].errorbar(x, [v["mae_seed"] for v in w],
                     yerr=_yerr([v["mae_seed"] for v in w], [v["mae_seed_ci"] for v in w]),
                     fmt="o-", color=c, capsize=3, label=f"{nm}: other seed")
  if len(names) > 1:
    for ax, k in ((axes[0], "rp_cross"), (axes[2], "mae_cross")):
      ax.errorbar(sizes, [s[k] for s in per_size],
                  yerr=_yerr([s[k] for s in per_size], [s[f"{k}_ci"] for s in per_size]),
                  fmt="s--", color="k", capsize=3, label="across widths")
  fig.suptitle(f"bars: {config.ci_level:.0%} bootstrap intervals over noises and seeds",
               fontsize=8, y=0.995)
  axes[0].set(title="reproducibility (RP score)", ylabel="RP")
  axes[1].set(title="generalizability (GL score)", ylabel="GL")
  axes[2].set(title=f"MAE score (MAE < {config.mae_threshold:g} on [0, 255])",
              ylabel="MAE score")
  for ax in axes:
    _log2_axis(ax, sizes)
    ax.set(xlabel="training set size N", ylim=(-0.03, 1.03))
  axes[0].legend(fontsize=6.5, loc="lower left")
  axes[1].legend(handles=axes[1].get_legend_handles_labels()[0] + _regime_legend(axes[1]),
                 fontsize=7, loc="center right")
  axes[2].legend(fontsize=7, loc="lower left")
  io.save_figure(fig, path)


def rp_theory(path, per_size, names, config):
  """Fig. 6: RP between each model and the ε* generation from the same noise, with
  bootstrap intervals."""
  plt = plotting.pyplot()
  sizes = [s["N"] for s in per_size]
  fig, ax = plt.subplots(figsize=(6.2, 3.9))
  shade_regimes(ax, sizes, [s["regime"] for s in per_size])
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  shift = 2.0 ** (0.06 * (np.arange(len(names)) - (len(names) - 1) / 2))
  for i, nm in enumerate(names):
    c = colors[i % len(colors)]
    w = [s["widths"][nm] for s in per_size]
    x = np.asarray(sizes) * shift[i]
    ax.errorbar(x, [v["rp_theory"] for v in w],
                yerr=_yerr([v["rp_theory"] for v in w], [v["rp_theory_ci"] for v in w]),
                fmt="o-", color=c, capsize=3, label=f"{nm}")
    ax.plot(x, [v["rp_theory_paper"] for v in w], "o:", color=c, alpha=0.6, ms=3,
            label=f"{nm}, thr. {config.paper_threshold:g}")
  _log2_axis(ax, sizes)
  ax.set(xlabel="training set size N", ylabel="RP(model, ε* generation)", ylim=(-0.03, 1.03),
         title=f"trained model vs Theorem 1's ε* map (bars: {config.ci_level:.0%} intervals)")
  ax.legend(handles=ax.get_legend_handles_labels()[0] + _regime_legend(ax), fontsize=7)
  io.save_figure(fig, path)


def _thresholds(ax, threshold, paper_threshold, band, transform=lambda t: t):
  """The calibrated threshold (solid), the paper's (dashed) and the band (shaded)."""
  ax.axvspan(transform(band[0]), transform(band[1]), color="0.85", lw=0, zorder=0,
             label=f"band of the verdicts [{band[0]:.3g}, {band[1]:.3g}]")
  ax.axvline(transform(threshold), color="k", lw=1.3, label=f"calibrated {threshold:.3f}")
  if paper_threshold is not None:
    ax.axvline(transform(paper_threshold), color="gray", ls="--", lw=1.2,
               label=f"paper's (SSCD) {paper_threshold:g}")


def threshold_band(path, thresholds, curves: dict, per_size, threshold: float,
                   paper_threshold: float | None, band, level: float, *,
                   band_key: str = "band", descriptor: str = ""):
  """RP between seeds and GL against the similarity threshold, one curve per N.

  Args:
    thresholds: `[T]`; curves: `{"rp_seed": [S, T], "gl": [S, T]}` point curves;
    per_size: the study's per-N dicts (their `band_key` entries: intervals at
      the band's thresholds, drawn as error bars).
    paper_threshold: marked when given (None: not comparable, e.g. a learned
      descriptor's scale).
    descriptor: named in the titles.
  """
  plt = plotting.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.0))
  cmap = plt.get_cmap("viridis")
  sizes = [s["N"] for s in per_size]
  for ax, k, title in ((axes[0], "rp_seed", "RP between seeds (mean over widths)"),
                       (axes[1], "gl", "GL (all models)")):
    _thresholds(ax, threshold, paper_threshold, band)
    for i, (n, size) in enumerate(zip(sizes, per_size)):
      c = cmap(i / max(len(sizes) - 1, 1))
      ax.plot(thresholds, curves[k][i], "-", color=c, lw=1.4, label=f"N = {n}")
      b = size[band_key]
      if k in b:
        ax.errorbar(b["thresholds"], b[k], yerr=_yerr(b[k], b[f"{k}_ci"]), fmt="none",
                    ecolor=c, capsize=2, lw=0.9)
    ax.set(xlabel=f"{descriptor} similarity threshold t".strip(),
           ylabel=k.split("_")[0].upper() + "(t)",
           title=f"{title}; bars: {level:.0%} intervals", ylim=(-0.03, 1.03),
           xlim=(thresholds[0], thresholds[-1]))
  axes[0].legend(fontsize=7, loc="lower left")
  io.save_figure(fig, path)


def similarity_distributions(path, edges, hists: dict, sizes, threshold: float,
                             paper_threshold: float, band):
  """Per-N histograms of 1 − similarity: between the seeds of one width, and between
  each sample and its most similar training image (log scale: copies sit near 0)."""
  plt = plotting.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.0))
  cmap = plt.get_cmap("viridis")
  mid = np.sqrt(edges[1:] * edges[:-1])
  for ax, k, title, unit in (
      (axes[0], "seed", "same noise, other seed (same width)", "pairs"),
      (axes[1], "train", "sample vs its most similar training image", "samples")):
    _thresholds(ax, threshold, paper_threshold, band, transform=lambda t: 1.0 - t)
    for i, n in enumerate(sizes):
      h = np.asarray(hists[k][i], np.float64)
      if h.sum() > 0:
        ax.step(mid, h / h.sum(), where="mid", color=cmap(i / max(len(sizes) - 1, 1)),
                lw=1.3, label=f"N = {n}")
    ax.set(xscale="log", xlabel="1 − similarity (log scale; left = more similar)",
           ylabel=f"fraction of {unit}", title=title)
  axes[0].legend(fontsize=7, loc="upper right")
  io.save_figure(fig, path)


def sample_grid(path, panels, columns: int):
  """Fig. 1: per panel, rows of generations from the same noises (one per column).

  Args:
    panels: list of `(title, [(row label, [C, H, W, ch]), ...])`; the row
      labels are written once, left of the first panel.
  """
  plt = plotting.pyplot()
  nrows = max(len(rows) for _, rows in panels)
  fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(
      1.8 + 0.5 * columns * len(panels), 0.7 + 0.5 * nrows),
      gridspec_kw=dict(wspace=0.06))
  for p, (ax, (title, rows)) in enumerate(zip(axes[0], panels)):
    img = mosaic([r[1][:columns] for r in rows])
    h = (img.shape[0] + 1) / len(rows)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_yticks([(i + 0.5) * h - 1 for i in range(len(rows))])
    ax.set_yticklabels([r[0] for r in rows] if p == 0 else [], fontsize=7)
    ax.tick_params(length=0)
    ax.set_xticks([])
    ax.set_title(title, fontsize=8)
    for side in ("top", "right", "bottom", "left"):
      ax.spines[side].set_visible(False)
  fig.suptitle("each column: one noise; each row: one generator", fontsize=8, y=0.995)
  io.save_figure(fig, path)


def noise_plane_figure(path, plane, names):
  """Fig. 4: anchor-labelled noise-plane maps, one row per N, ε* then each width."""
  plt = plotting.pyplot()
  rows = plane["rows"]
  axis = plane["axis"]
  ncols = 1 + len(names)
  fig = plt.figure(figsize=(1.4 + 3.0 * ncols, 3.1 * len(rows)))
  gs = fig.add_gridspec(len(rows), ncols + 1, width_ratios=[0.35] + [1] * ncols,
                        wspace=0.35, hspace=0.4)
  d = (axis[1] - axis[0]) / 2
  extent = (axis[0] - d, axis[-1] + d, axis[0] - d, axis[-1] + d)
  for r, row in enumerate(rows):
    maps = row["maps"]
    th = maps["eps*"]
    sub = gs[r, 0].subgridspec(3, 1, hspace=0.4)
    for k, m in enumerate(noise_plane.ANCHOR_MARKERS):
      a = fig.add_subplot(sub[k])
      img = _to_image(th["anchor_images"][k])
      a.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
      a.set_xticks([])
      a.set_yticks([])
      a.set_title(f"{MARKER_GLYPHS[m]} ε{k + 1}", fontsize=7, pad=2)
    for c, name in enumerate(["eps*"] + [f"{nm}/s{_first_seed(maps, nm)}" for nm in names]):
      ax = fig.add_subplot(gs[r, c + 1])
      mp = maps[name]
      ax.imshow(rpr.plane_rgb(mp["labels"], mp["values"]), origin="lower",
                interpolation="nearest", extent=extent)
      for (a, b), m in zip(noise_plane.ANCHOR_COORDS, noise_plane.ANCHOR_MARKERS):
        ax.plot(a, b, m, ms=7, mfc="white", mec="red", mew=1.3)
      title = "ε* (Theorem 1)" if name == "eps*" else name
      if name != "eps*":
        ag = row["agreement"].get(f"eps* vs {name}")
        if ag:
          title += f"\nagrees with ε* on {ag['agreement']:.0%}"
      ax.set_title(f"N = {row['N']}: {title}", fontsize=8)
      ax.set_xlabel("a", fontsize=8)
      ax.set_ylabel("b", fontsize=8)
      ax.tick_params(labelsize=7)
  fig.suptitle("noise plane ε(a, b) = a(ε2 − ε1) + b(ε3 − ε1) + ε1; colour = the anchor "
               "generation matched best (grey ▲ / blue ■ / orange ●),\ndarker = more "
               "similar to it; left: the ε* anchor generations", fontsize=9)
  io.save_figure(fig, path)


def _first_seed(maps, name):
  seeds = sorted(int(k.split("/s")[-1]) for k in maps if k.startswith(name + "/s"))
  return seeds[0]


def sampler_matrix(path, matrices: dict, labels, title: str):
  """Heatmaps of RP between samplers, one panel per key of `matrices` (`[S, S]`)."""
  plt = plotting.pyplot()
  n = len(matrices)
  fig, axes = plt.subplots(1, n, figsize=(3.0 * n + 1.8, 3.4), squeeze=False)
  for p, (ax, (name, mat)) in enumerate(zip(axes[0], matrices.items())):
    mat = np.asarray(mat)
    im = ax.imshow(mat, vmin=0, vmax=1, cmap="viridis")
    for i in range(mat.shape[0]):
      for j in range(mat.shape[1]):
        ax.text(j, i, f"{mat[i, j]:.2f}", ha="center", va="center", fontsize=7,
                color="w" if mat[i, j] < 0.6 else "k")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels if p == 0 else [], fontsize=7)
    ax.set_title(name, fontsize=8)
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="RP")
  fig.suptitle(title, fontsize=9)
  io.save_figure(fig, path)
