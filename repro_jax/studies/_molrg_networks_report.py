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


def phase_figure(path, config, ranks, ns, summary):
  """Heatmaps over (r, N): score error, on-support, copies, new; the boundaries."""
  plt = plotting.pyplot()
  half = _level(config)
  from matplotlib import colors
  mats = {k: np.asarray(v, float) for k, v in summary["matrices"].items()}
  panels = [("l_score_rel", "relative L_score (log colour)", "viridis"),
            ("frac_on_support", f"on support: dist/‖x‖ < {config.eval.support_tol:g}",
             "magma"),
            ("frac_copy", f"copies: d1/d2 < {config.eval.copy_ratio:.2g}", "magma"),
            ("frac_new", "new: on support and not a copy", "magma")]
  fig, axes = plt.subplots(1, 4, figsize=(19, 5.0), layout="constrained")
  log_ns, xr = np.log(ns), np.arange(len(ranks))
  to_y = lambda n: np.interp(np.log(n), log_ns, np.arange(len(ns)))
  to_x = lambda r: np.interp(r, ranks, xr)
  n_gen, c = np.asarray(summary["n_star_generalize"], float), float(summary["c_generalize"])
  n_mem = np.asarray(summary["n_star_memorize"], float)
  rf = np.linspace(ranks[0], ranks[-1], 50)
  for ax, (field, title, cmap) in zip(axes, panels):
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
        ax.text(j, i - 0.2, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8,
                color="w" if dark(m[i, j]) else "k")
    ok, okm = np.isfinite(n_gen), np.isfinite(n_mem)
    ax.plot(xr[okm] - 0.15, to_y(n_mem[okm]), "v", color="w", ms=6, mec="k",
            label=f"N*(r): copies fall below {half}")
    ax.plot(xr[ok] + 0.15, to_y(n_gen[ok]), "o", color="c", ms=6, mec="k",
            label=f"N*(r): new samples reach {half}")
    if np.isfinite(c):
      ax.plot(to_x(rf), to_y(np.clip(c * rf, ns[0], ns[-1])), "c--", lw=1.5,
              label=f"fit N* = {c:.1f} r (new ≥ {half})")
    ax.set_xticks(xr, [str(r) for r in ranks])
    ax.set_yticks(np.arange(len(ns)), [str(n) for n in ns])
    ax.set(xlabel="r (rank of each component)", ylabel="N (training samples, total)",
           title=title)
    fig.colorbar(im, ax=ax, shrink=0.85)
  handles, labels = axes[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=9)
  fig.suptitle(f"MLP denoisers on a MoLRG (K = {config.num_components}, D = {config.dim}, "
               f"{config.num_seeds} seed(s) per cell): memorization (bottom) → "
               "generalization (top)", fontsize=12)
  io.save_figure(fig, path)


def detail_figure(path, config, profiles, examples, rows, unet_rows):
  """Score error per σ; copies vs support per sample; U-Net vs MLP cells."""
  plt = plotting.pyplot()
  ncol = 3 if unet_rows else 2
  fig, ax = plt.subplots(1, ncol, figsize=(6.3 * ncol, 4.6), layout="constrained")
  sig = np.asarray(profiles["mlp"]["sigmas"])
  rel = np.asarray(profiles["mlp"]["rel"])
  ranks = sorted({x["r"] for x in rows})
  r_mid = ranks[len(ranks) // 2]
  sel = [i for i, x in enumerate(rows) if x["r"] == r_mid and x["seed"] == 0]
  cmap = plt.cm.viridis(np.linspace(0, 0.9, len(sel)))
  for col, i in zip(cmap, sel):
    ax[0].loglog(sig, rel[i], "o-", ms=3, color=col, label=f"N = {rows[i]['n']}")
  ax[0].set(xlabel="σ", ylabel="E‖s_θ − s*‖ / E‖s*‖",
            title=f"(a) MLP score error per noise level, r = {r_mid}")
  ax[0].legend(fontsize=8, ncol=2)
  for (name, ex), (mk, col) in zip(examples.items(), (("x", "tab:blue"),
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
  if unet_rows:
    x = np.arange(len(unet_rows))
    mlp = {(m["r"], m["n"], m["seed"]): m for m in rows}
    w = 0.2
    for k, (field, lab, col) in enumerate((("frac_copy", "copies", "tab:red"),
                                           ("frac_new", "new", "tab:green"))):
      for j, (arch, vals) in enumerate((
          ("U-Net", [u[field] for u in unet_rows]),
          ("MLP", [mlp.get((u["r"], u["n"], u["seed"]), {}).get(field, np.nan)
                   for u in unet_rows]))):
        pos = x + (2 * k + j - 1.5) * w
        ax[2].bar(pos, vals, w, color=col, alpha=1.0 if j == 0 else 0.4,
                  hatch=None if j == 0 else "//", label=f"{arch} {lab}")
        for p, v in zip(pos, vals):
          ax[2].text(p, v + 0.01, f"{v:.2f}", ha="center", va="bottom", fontsize=6)
    names = [f"r={u['r']}, N={u['n']}\nU-Net: {u['regime'][:5]}.\n"
             f"(on support {u['frac_on_support']:.2f})" for u in unet_rows]
    ax[2].set_xticks(x, names, fontsize=8)
    shape = "×".join(str(v) for v in config.image_shape)
    ax[2].set(ylabel="fraction of samples", ylim=(0, 1.3),
              title=f"(c) U-Net ({shape} view) vs MLP at the same cells")
    ax[2].legend(fontsize=7, ncol=4, loc="upper center")
  io.save_figure(fig, path)


def report(workdir, config, s, rows, unet_rows):
  """report.md: claim, set-up, figures, boundary, U-Net cells, verdicts, all cells."""
  ranks, ns = list(config.ranks), list(config.ns)
  half = _level(config)
  timings, num_models = s["timings"], len(rows)
  n_gen = np.asarray(s["n_star_generalize"], float)
  a = float(s["exponent_generalize"])
  bt = io.markdown_table([
      {"r": r, f"N* (copies < {half})": nm, f"N* (new ≥ {half})": ng, "N*/r (new)": ng / r}
      for r, nm, ng in zip(ranks, np.asarray(s["n_star_memorize"], float), n_gen)],
      fmt="{:.3g}")
  ct = io.markdown_table(
      [{"r": x["r"], "N": x["n"], "seed": x["seed"], "L_score": x["l_score"],
        "L_score rel.": x["l_score_rel"], "on support": x["frac_on_support"],
        "copies": x["frac_copy"], "new": x["frac_new"], "L_gen": x["l_generalize"],
        "regime": x["regime"], "exact: new": x["exact_frac_new"]} for x in rows],
      fmt="{:.3g}")
  m, u = config.mlp, config.unet
  mm, md, mt = m.model, m.diffusion, m.train
  unet_setup = (f"U-Nets (width {u.model.width}, ch_mult {tuple(u.model.ch_mult)}, "
                f"{u.train.num_steps} steps, same parameterization) on the "
                f"{'×'.join(str(v) for v in config.image_shape)} image view, only at "
                f"the cells (r, N) = {[tuple(c) for c in u.cells]}: the CPU budget "
                "does not allow the full U-Net grid (the `paper` variant trains it)."
                if unet_rows else "No U-Net in this variant.")
  ratio = n_gen / np.asarray(ranks, float)
  found = np.isfinite(ratio)
  spread = (f"N*/r stays within [{ratio[found].min():.1f}, {ratio[found].max():.1f}] while r "
            f"grows {ranks[-1] / ranks[0]:.0f}-fold and N* "
            f"{n_gen[found].max() / n_gen[found].min():.1f}-fold." if found.any() else
            "No rank reaches the generalization boundary within the grid of N.")
  lin_lo, lin_hi = config.linear_range
  shape_note = ("The growth is close to linear." if lin_lo <= a <= lin_hi else
                f"The growth is {'steeper' if a > lin_hi else 'shallower'} than linear "
                f"(a = {a:.2f}); with {config.num_seeds} seed(s) and a factor-2 grid in N "
                "this is a coarse test of N ∝ r, not a measurement of the exponent.")
  undertrained = [x for x in unet_rows if x["frac_on_support"] < config.min_on_support]
  unet_note = "".join(
      f" At (r, N) = ({x['r']}, {x['n']}) the U-Net does not memorize either: only "
      f"{x['frac_on_support']:.0%} of its samples reach the support after "
      f"{u.train.num_steps} steps (undertrained, not a third regime)." for x in undertrained)
  ut = ""
  if unet_rows:
    ut = "**U-Net cells** (same data, noise and metrics):\n\n" + io.markdown_table(
        [{"r": x["r"], "N": x["n"], "L_score rel.": x["l_score_rel"],
          "on support": x["frac_on_support"], "copies": x["frac_copy"],
          "new": x["frac_new"], "U-Net regime": x["regime"],
          "MLP regime": next((c["mlp"] for c in s["unet"]["cells"]
                              if (c["r"], c["n"]) == (x["r"], x["n"])), "")}
         for x in unet_rows], fmt="{:.3g}") + (
        f"\nThe U-Net's regime matches the MLP's in {s['unet']['agree']} of "
        f"{s['unet']['total']} cells.{unet_note}\n")
  ok = all(v["verdict"] == "reproduced" for v in s["verdicts"])
  text = f"""## MoLRG phase transition with a network (docs/theory.md §4–§5)

**Claim.** Diffusion models trained on N samples of a mixture of K = 2 low-rank
Gaussians in D = 48 memorize for small N (samples copy training points; the
learned score is far from the true one) and generalize for large N (new samples
on the union of subspaces, small `L_score`), with the transition along a line
N ∝ r (low-dim talk, U-Nets).

**Set-up.** K = {config.num_components}, D = {config.dim}, r ∈ {ranks},
N ∈ {ns} (total, both components), {config.num_seeds} seed(s); one data set per
(r, seed), nested subsets in N.  {num_models} time-conditioned MLPs (hidden
{mm.hidden}, depth {mm.depth}, {md.parameterization}-prediction on the {md.schedule} SDE, batch
{mt.batch_size}, {mt.num_steps} Adam steps, EMA {mt.ema_decay}) trained in ONE vmapped
`train_many` program.  {unet_setup}
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

![phase diagram](phase_diagram.png)

![details](details.png)

Boundary per rank (geometric interpolation between grid points):

{bt}
Fitted: N*(new ≥ {half}) ≈ {float(s['c_generalize']):.1f}·r, power law exponent
a = {a:.2f}; end of memorization N*(copies < {half}) ≈
{float(s['c_memorize']):.1f}·r (a = {float(s['exponent_memorize']):.2f}).  {shape_note}  {spread}
The relative L_score exceeds 1 at small σ for every network: an x0-predicting
net's score error is its x0 error divided by σ², so small x0 errors dominate
there (panel a).  Largest N below smallest N at every σ, for every r:
{'yes' if s.get('score_order_every_sigma') else 'no'}.

{ut}
**Verdict.** **{"reproduced with MLPs" if ok else "not reproduced"}**
({verdicts_lib.summary(s["verdicts"])}).

{verdicts_lib.table(s["verdicts"])}

Differences from the talk: the full grid uses a small MLP, not a U-Net, with
{mt.num_steps} steps on a CPU, {config.num_seeds} seed(s), a factor-2 grid in N; {'the U-Net is checked at a few cells only. ' if unet_rows else ''}The
labels use Euclidean geometry (support distance, d1/d2), not SSCD; N is the total
over both components.  Timings: MLP training {timings.get('mlp_train', 0):.0f} s,
sampling and scoring {timings.get('mlp_eval', 0):.0f} s{'; U-Net training ' + format(timings.get('unet_train', 0), '.0f') + ' s, sampling and scoring ' + format(timings.get('unet_eval', 0), '.0f') + ' s' if unet_rows else ''}.

<details><summary>All MLP cells</summary>

{ct}
</details>
"""
  io.write_text(pathlib.Path(workdir) / "report.md", text)
