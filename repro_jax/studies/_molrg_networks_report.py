"""Figures and report page of the `molrg_networks` study (from its metrics).

Numbers come from `metrics.json`, where a non-finite float is stored as the
string "nan": every number is read through `float` / `np.asarray(..., float)`.
"""

from __future__ import annotations

import pathlib

import numpy as np

from repro_jax import plotting
from repro_jax import io
from repro_jax.studies import verdicts as verdicts_lib


def _level(config) -> str:
  """The regime criterion as text: ½ at its usual value."""
  return "½" if config.majority == 0.5 else f"{config.majority:g}"


def _labels():
  from repro_jax.studies import molrg_networks
  return molrg_networks.LABELS


def _interval(ci) -> tuple[np.ndarray, np.ndarray]:
  ci = np.asarray(ci, float)
  return ci[..., 0], ci[..., 1]


def phase_figure(path, config, metrics):
  """Heatmaps over (r, N) per architecture: score error, on-support, copies,
  new; the boundary N*(r) with its CI."""
  plt = plotting.pyplot()
  half = _level(config)
  from matplotlib import colors
  ranks, ns, labels = list(config.ranks), list(config.ns), _labels()
  archs = [a for a in config.archs() if a in metrics["archs"]]
  panels = [("l_score_rel", "relative L_score (log colour)", "viridis"),
            ("frac_on_support", f"on support: dist/‖x‖ < {config.eval.support_tol:g}",
             "magma"),
            ("frac_copy", f"copies: d1/d2 < {config.eval.copy_ratio:.2g}", "magma"),
            ("frac_new", "new: on support and not a copy", "magma")]
  fig, axes = plt.subplots(len(archs), 4, figsize=(19, 4.6 * len(archs)),
                           layout="constrained", squeeze=False)
  log_ns, xr = np.log(ns), np.arange(len(ranks))
  to_y = lambda n: np.interp(np.log(n), log_ns, np.arange(len(ns)))
  for row, name in zip(axes, archs):
    summ = metrics["archs"][name]
    mats = {k: np.asarray(v, float) for k, v in summ["matrices"].items()}
    gen = summ["boundaries"]["generalize"]
    n_gen = np.asarray(gen["n_star"], float)
    lo, hi = _interval(gen["n_star_ci"])
    n_mem = np.asarray(summ["boundaries"]["memorize"]["n_star"], float)
    for ax, (field, title, cmap) in zip(row, panels):
      m = mats[field]
      if field == "l_score_rel":
        norm = colors.LogNorm(max(np.nanmin(m), 1e-3), np.nanmax(m))
        dark = lambda v: norm(v) < 0.55
      else:
        norm = colors.Normalize(0, 1)
        dark = lambda v: v < 0.55
      im = ax.imshow(m, origin="lower", aspect="auto", cmap=cmap, norm=norm)
      for i in range(len(ns)):
        for j in range(len(ranks)):
          ax.text(j - 0.22, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                  color="w" if dark(m[i, j]) else "k")
      ok, okm = np.isfinite(n_gen), np.isfinite(n_mem)
      ax.plot(xr[okm] + 0.1, to_y(n_mem[okm]), "v", color="w", ms=6, mec="k",
              label=f"N*(r): copies fall below {half}")
      y, ylo, yhi = to_y(n_gen[ok]), to_y(np.nan_to_num(lo[ok], nan=ns[0])), \
          to_y(np.nan_to_num(hi[ok], nan=ns[-1]))
      ax.errorbar(xr[ok] + 0.3, y, yerr=[y - ylo, yhi - y], fmt="o", color="c", ms=6,
                  mec="k", ecolor="c", capsize=3,
                  label=f"N*(r): new samples reach {half} ({config.ci_level:.0%} CI)")
      ax.set_xticks(xr, [str(r) for r in ranks])
      ax.set_yticks(np.arange(len(ns)), [str(n) for n in ns])
      ax.set(xlabel="r (rank of each component)", ylabel="N (training samples, total)",
             title=f"{labels[name]}: {title}")
      fig.colorbar(im, ax=ax, shrink=0.85)
  handles, leg = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, leg, loc="outside lower center", ncol=2, fontsize=9)
  fig.suptitle(f"Denoisers on a MoLRG (K = {config.num_components}, D = {config.dim}; "
               "seed means per cell): memorization (bottom) → generalization (top)",
               fontsize=12)
  io.save_figure(fig, path)


def _power_fit(ranks, n_star):
  """The study's fit (every rank must cross, as for the exponent), or None."""
  if not np.all(np.isfinite(n_star)) or len(n_star) < 2:
    return None
  return np.polyfit(np.log(np.asarray(ranks, float)), np.log(n_star), 1)


def boundary_figure(path, config, metrics):
  """(a) N*(r) per architecture with CIs and the fitted power laws (log-log);
  (b) the exponent a with its CI against the linear band."""
  plt = plotting.pyplot()
  ranks, labels = np.asarray(config.ranks, float), _labels()
  archs = [a for a in config.archs() if a in metrics["archs"]]
  fig, ax = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
  rf = np.linspace(ranks[0], ranks[-1], 50)
  for k, name in enumerate(archs):
    gen = metrics["archs"][name]["boundaries"]["generalize"]
    n_star = np.asarray(gen["n_star"], float)
    lo, hi = _interval(gen["n_star_ci"])
    col = f"C{k}"
    x = ranks * (1 + 0.02 * (k - 1))
    ok = np.isfinite(n_star)
    ax[0].errorbar(x[ok], n_star[ok], yerr=[n_star[ok] - np.nan_to_num(lo[ok], nan=n_star[ok]),
                                            np.nan_to_num(hi[ok], nan=n_star[ok]) - n_star[ok]],
                   fmt="o", color=col, capsize=3, label=labels[name])
    fit = _power_fit(ranks, n_star)
    if fit is not None:
      ax[0].plot(rf, np.exp(fit[1]) * rf ** fit[0], "-", color=col, lw=1,
                 label=f"{labels[name]} fit: a = {fit[0]:.2f}")
    a, (alo, ahi) = float(gen["exponent"]), (float(v) for v in gen["exponent_ci"])
    if np.isfinite(a):
      ax[1].errorbar([a], [k], xerr=[[a - alo], [ahi - a]], fmt="o", color=col, capsize=4)
      ax[1].text(a, k + 0.15, f"{a:.2f} [{alo:.2f}, {ahi:.2f}]", ha="center", fontsize=9)
    else:
      ax[1].text(1.0, k, "no exponent: some rank never reaches ½ new", ha="center",
                 fontsize=9, color=col)
  allstar = [v for nm in archs for v in metrics["archs"][nm]["boundaries"]["generalize"]
             ["n_star"] if np.isfinite(float(v))]
  if allstar:
    g = float(np.exp(np.mean(np.log(allstar)))) / float(np.exp(np.mean(np.log(ranks))))
    ax[0].plot(rf, g * rf, "k:", lw=1, label="slope 1 (N ∝ r)")
  else:
    ax[0].text(0.5, 0.5, "no rank reaches ½ new samples", transform=ax[0].transAxes,
               ha="center")
  ax[0].set(xscale="log", yscale="log" if allstar else "linear",
            xlabel="r (rank of each component)",
            ylabel="N* (new samples reach ½)",
            title=f"(a) boundary N*(r) with {config.ci_level:.0%} bootstrap CIs")
  ax[0].set_xticks(ranks, [str(int(r)) for r in ranks])
  ax[0].set_xticks([], minor=True)
  ax[0].legend(fontsize=8)
  lo_r, hi_r = config.exponent_range
  ax[1].axvspan(lo_r, hi_r, color="0.9", label=f"accepted band [{lo_r:g}, {hi_r:g}]")
  ax[1].axvline(1.0, color="k", ls="--", lw=1, label="linear (a = 1)")
  ax[1].set_yticks(range(len(archs)), [labels[a] for a in archs])
  ax[1].set(xlabel="exponent a of N* ∝ r^a", ylim=(-0.6, len(archs) - 0.4),
            title="(b) exponent with its CI: \"linear\" needs 1 inside, CI inside the band")
  ax[1].legend(fontsize=8, loc="lower right")
  io.save_figure(fig, path)


def detail_figure(path, config, metrics):
  """Score error per σ (every architecture, middle rank); copies vs support per sample."""
  plt = plotting.pyplot()
  labels = _labels()
  archs = [a for a in config.archs() if a in metrics["profiles"]]
  rows = metrics["cells"]
  fig, ax = plt.subplots(1, 2, figsize=(12.6, 4.6), layout="constrained")
  ranks = sorted({x["r"] for x in rows})
  r_mid = ranks[len(ranks) // 2]
  ns = sorted({x["n"] for x in rows})
  for k, name in enumerate(archs):
    prof = metrics["profiles"][name]
    sig, rel = np.asarray(prof["sigmas"]), np.asarray(prof["rel"])
    arch_rows = [x for x in rows if x["arch"] == name]
    for n, ls in ((ns[0], "--"), (ns[-1], "-")):
      sel = [i for i, x in enumerate(arch_rows) if x["r"] == r_mid and x["n"] == n]
      ax[0].loglog(sig, rel[sel].mean(0), ls, marker="o", ms=3, color=f"C{k}",
                   label=f"{labels[name]}, N = {n}")
  ax[0].set(xlabel="σ", ylabel="E‖s_θ − s*‖ / E‖s*‖",
            title=f"(a) score error per noise level, r = {r_mid} (seed mean)")
  ax[0].legend(fontsize=8, ncol=2)
  for (name, ex), (mk, col) in zip(metrics["examples"].items(), (("x", "tab:blue"),
                                                                 ("o", "tab:orange"),
                                                                 (".", "0.5"))):
    ax[1].scatter(ex["ratio"], np.maximum(ex["support"], 1e-4), s=9, marker=mk, alpha=0.6,
                  color=col, label=name + (" (< 1e-4 drawn at 1e-4)" if mk == "." else ""))
  ax[1].axvline(config.eval.copy_ratio, color="k", ls="--", lw=1)
  ax[1].axhline(config.eval.support_tol, color="k", ls=":", lw=1)
  ax[1].text(0.01, 0.97, "copies", transform=ax[1].transAxes, fontsize=9, va="top")
  ax[1].text(0.99, 0.97, "off support", transform=ax[1].transAxes, fontsize=9, va="top",
             ha="right")
  ax[1].text(0.99, 0.03, "new", transform=ax[1].transAxes, fontsize=9, ha="right")
  ax[1].set(xlabel="d1/d2 (nearest / second-nearest training distance)",
            ylabel="dist(x, ∪ span U_k) / ‖x‖", yscale="log", xlim=(0, 1.02),
            ylim=(5e-5, 2.0), title="(b) every sample of three cells")
  ax[1].legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 0.08))
  io.save_figure(fig, path)


def _fmt_ci(v, ci) -> str:
  v, (lo, hi) = float(v), (float(x) for x in ci)
  if not np.isfinite(v):
    return "not reached"
  return f"{v:.3g} [{lo:.3g}, {hi:.3g}]"


def _arch_setup(config, name, summ, timings) -> dict:
  a = getattr(config, name)
  m, t = a.model, a.train
  size = {"mlp": f"hidden {m.hidden}, depth {m.depth}",
          "unet": f"width {m.width}, ch_mult {tuple(m.ch_mult)}, convolutions {m.conv_impl}",
          "dit": f"width {m.width}, depth {m.depth}, {m.patch_size}×{m.patch_size} patches, "
                 f"{m.num_heads} heads"}.get(m.name, m.name)
  view = "×".join(str(v) for v in config.image_shape) if a.image_view else str(config.dim)
  return {"architecture": _labels()[name], "model": size, "input": view,
          "seeds per cell": summ["num_seeds"],
          "steps × batch": f"{t.num_steps} × {t.batch_size}",
          "lr": a.optim.learning_rate,
          "train s": timings.get(f"{name}_train", 0.0),
          "sample + score s": timings.get(f"{name}_eval", 0.0)}


def report(workdir, config, s):
  """report.md: claim, set-up, figures, boundaries with CIs, verdicts, all cells."""
  ranks, ns = list(config.ranks), list(config.ns)
  half = _level(config)
  labels = _labels()
  archs = [a for a in config.archs() if a in s["archs"]]
  md = config.mlp.diffusion
  setup = io.markdown_table([_arch_setup(config, a, s["archs"][a], s["timings"])
                             for a in archs], fmt="{:.3g}")
  brow = []
  for r_i, r in enumerate(ranks):
    row = {"r": r}
    for a in archs:
      gen = s["archs"][a]["boundaries"]["generalize"]
      row[f"{labels[a]} N* (new ≥ {half})"] = _fmt_ci(gen["n_star"][r_i],
                                                       gen["n_star_ci"][r_i])
    brow.append(row)
  erow = []
  for a in archs:
    b = s["archs"][a]["boundaries"]
    g, m = b["generalize"], b["memorize"]
    erow.append({"architecture": labels[a],
                 f"a (new ≥ {half})": _fmt_ci(g["exponent"], g["exponent_ci"]),
                 "replicates with every N*": g["exponent_kept"],
                 f"a (copies < {half})": _fmt_ci(m["exponent"], m["exponent_ci"]),
                 "N* ≈ c·r, c": g["c"]})
  reading = []
  lo_r, hi_r = config.exponent_range
  for a in archs:
    g = s["archs"][a]["boundaries"]["generalize"]
    e, (elo, ehi) = float(g["exponent"]), (float(v) for v in g["exponent_ci"])
    missing = [r for r, v in zip(ranks, g["n_star"]) if not np.isfinite(float(v))]
    if missing:
      reading.append(f"{labels[a]}: no exponent, the fraction of new samples never reaches "
                     f"{half} for r = {missing} within N ≤ {ns[-1]}.")
    elif elo <= 1.0 <= ehi and lo_r <= elo and ehi <= hi_r:
      reading.append(f"{labels[a]}: a = {e:.2f} [{elo:.2f}, {ehi:.2f}], consistent with "
                     "N* ∝ r.")
    else:
      side = "steeper" if elo > 1.0 else ("shallower" if ehi < 1.0 else "not resolved")
      reading.append(f"{labels[a]}: a = {e:.2f} [{elo:.2f}, {ehi:.2f}]; the CI "
                     + ("excludes 1: the boundary grows " + side + " than linearly in r."
                        if side != "not resolved" else
                        f"holds 1 but reaches outside [{lo_r:g}, {hi_r:g}]: too wide to "
                        "call the growth linear."))
  agree = "; ".join(f"{labels[a]} {v['agree']} of {v['total']}"
                    for a, v in s.get("agreement", {}).items())
  under = []
  for a in archs:
    cells = [x for x in s["cells"] if x["arch"] == a and x["n"] == ns[-1]
             and x["frac_on_support"] < config.min_on_support]
    if cells:
      under.append(f"{labels[a]}: {len(cells)} model(s) at N = {ns[-1]} put fewer than "
                   f"{config.min_on_support:.0%} of their samples on the support "
                   f"(r = {sorted({x['r'] for x in cells})}): undertrained there, neither "
                   "memorizing nor generalizing.")
  few = [labels[a] for a in archs if s["archs"][a]["num_seeds"] < 2]
  seeds_note = (f"{', '.join(few)}: one seed per cell at this scale (the CPU budget), so "
                "their CIs resample the noises only; the `paper` variant trains 3 seeds "
                "of every architecture." if few else "")
  ct = io.markdown_table(
      [{"arch": labels.get(x["arch"], x["arch"]), "r": x["r"], "N": x["n"],
        "seed": x["seed"], "L_score rel.": x["l_score_rel"],
        "on support": x["frac_on_support"], "copies": x["frac_copy"], "new": x["frac_new"],
        "L_gen": x["l_generalize"], "regime": x["regime"],
        "exact: new": x.get("exact_frac_new", float("nan"))} for x in s["cells"]],
      fmt="{:.3g}")
  ok = all(v["verdict"] == "reproduced" for v in s["verdicts"])
  text = f"""## MoLRG phase transition with a network (docs/theory.md §4–§5)

**Claim.** Diffusion models trained on N samples of a mixture of K = 2 low-rank
Gaussians in D = 48 memorize for small N (samples copy training points; the
learned score is far from the true one) and generalize for large N (new samples
on the union of subspaces, small `L_score`), with the transition along a line
N ∝ r (low-dim talk, U-Nets).

**Set-up.** K = {config.num_components}, D = {config.dim}, r ∈ {ranks},
N ∈ {ns} (a √2-spaced grid; total over both components); one data set per
(r, seed), nested subsets in N, the same data for every architecture.  Every
architecture is trained over the whole grid in ONE vmapped `train_many`
program ({md.parameterization}-prediction on the {md.schedule} SDE, Adam, EMA
{config.mlp.train.ema_decay}):

{setup}
{seeds_note}
Samples: {config.eval.num_samples} per model, deterministic Heun
({config.eval.steps} steps, EDM grid σ ∈ [{config.eval.sigma_min}, {config.eval.sigma_max}]),
the same noise for every model.  A sample is *on the support* if
`dist(x, ∪ span U_k)/‖x‖ < {config.eval.support_tol}`, a *copy* if
`d1/d2 < {config.eval.copy_ratio:.3g}` (nearest / second-nearest training distance),
*new* if on the support and not a copy; a cell is M (copies ≥ {half}), G (new ≥ {half}) or
T.  `L_score = E‖s_θ − s_MoLRG‖` with σ log-uniform in
[{config.eval.score_sigma_min}, {config.eval.score_sigma_max}]; "rel." divides by
`E‖s_MoLRG‖` at each σ and averages over σ.  Reference: the exact MoLRG denoiser
with the same sampler gives relative L_score ≤ {s['reference']['max_l_score_rel']:.1e},
≥ {s['reference']['min_frac_new']:.2f} new samples and ≤
{s['reference']['max_frac_copy']:.2f} "copies" (points uniform in r dimensions
have d1/d2 < 1/3 with probability 3^-r: 0.11 at r = 2).

**Confidence intervals.** {config.ci_level:.0%} percentile bootstrap,
{config.bootstrap_resamples} replicates: the shared noises are resampled jointly
for every model, and per rank the seeds are resampled as clusters (a seed's data
set and its models at every N).  In each replicate N*(r) is the crossing of the
seed-mean fraction of new samples through {half} (geometric interpolation
between grid points) and a the log-log least-squares slope over the ranks (a
replicate in which some rank never crosses has no exponent; their share is
reported).

![phase diagram](phase_diagram.png)

![boundary](boundary.png)

![details](details.png)

Boundary per rank, with CIs:

{io.markdown_table(brow)}
Exponent of N* ∝ r^a:

{io.markdown_table(erow, fmt="{:.3g}")}
{' '.join(reading)}  N*(r) is the *first* crossing: where an
undertrained model's fraction of new samples falls again at larger N, the
boundary is still where it first reached {half}.
{' '.join(under)}
Regime of each cell (seed means) equal to the MLP's: {agree or '–'}.
The relative L_score exceeds 1 at small σ for every network: an x0-predicting
net's score error is its x0 error divided by σ², so small x0 errors dominate
there (details, panel a).

**Verdict.** **{"reproduced" if ok else "not reproduced in full"}**
({verdicts_lib.summary(s["verdicts"])}).

{verdicts_lib.table(s["verdicts"])}

Differences from the talk: small networks trained for
{config.mlp.train.num_steps} steps on a CPU; the labels use Euclidean geometry
(support distance, d1/d2), not SSCD; N is the total over both components.

<details><summary>All cells</summary>

{ct}
</details>
"""
  io.write_text(pathlib.Path(workdir) / "report.md", text)
