"""Figures and report of `closed_form_atlas`, drawn from its metrics.json content."""

from __future__ import annotations

import pathlib

import numpy as np

from repro_jax import io
from repro_jax import plotting
from repro_jax.studies import verdicts as verdicts_lib

_KIND_STYLE = {"train": "-", "held-out": "--", "trajectory": ":"}


def _colors(forms, plt) -> dict:
  cyc = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  return {f: cyc[i % len(cyc)] for i, f in enumerate(forms)}


def _all_forms(metrics: dict, linear: str) -> list[str]:
  seen = []
  for data in ("digits", "molrg"):
    for cells in metrics[data].values():
      for cell in cells.values():
        for kind, k in cell.items():
          if kind != "params":
            seen += [f for f in k["forms"] if f not in seen and f != linear]
  return seen


def _r2_sigma(s, metrics, workdir: pathlib.Path, linear: str, colors, head: str = "r2") -> None:
  """r² against σ per closed form: one row per network, one panel per regime
  (`head`: "r2" the ε head, "r2_x0" the x0 head)."""
  plt = plotting.pyplot()
  sig = np.asarray(metrics["sigmas"])
  sizes = [str(n) for n in s.digits_sizes]
  labels = [m[0] for m in s.digits_members]
  m_sizes = [str(n) for n in s.molrg.sizes]
  rows = [("digits", lab, sizes) for lab in labels] + [
      ("molrg", lab, m_sizes) for lab in metrics["molrg"]]
  fig, axes = plt.subplots(len(rows), 2, figsize=(11, 2.9 * len(rows)), squeeze=False)
  for (data, label, ns), ax_row in zip(rows, axes):
    for n, ax in zip(ns, ax_row):
      cell = metrics[data].get(label, {}).get(n)
      if cell is None:
        ax.set_visible(False)
        continue
      for kind, style in _KIND_STYLE.items():
        if kind not in cell:
          continue
        k = cell[kind]
        for fi, f in enumerate(k["forms"]):
          y = np.asarray(k[head][fi])
          c = "k" if f == linear else colors[f]
          ax.plot(sig, y, style, color=c, lw=1.2 if f != linear else 0.9,
                  label=f if kind == "train" else None)
          if kind == "train":
            ci = np.asarray(k[f"{head}_ci"][fi])
            ax.fill_between(sig, ci[:, 0], ci[:, 1], color=c, alpha=0.12)
      ax.set_xscale("log")
      ax.set_ylim(-0.05, 1.02)
      ax.set_xlabel("σ")
      ax.set_ylabel("pooled r², " + ("ε head (x̂0 − x)" if head == "r2" else "x̂0 head"))
      ax.set_title(f"{data}: {label}, N = {n}", fontsize=9)
      ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=6, loc="lower left")
  fig.suptitle(("ε head" if head == "r2" else "x0 head") + ": closed forms as predictors "
               "of trained denoisers (solid: forward-noised "
               f"training inputs with {s.ci_level:.0%} CI; dashed: held-out; dotted: the "
               "network's own DDIM trajectory; black: linear fit to the network)", fontsize=9)
  fig.tight_layout()
  io.save_figure(fig, workdir / ("r2_sigma.png" if head == "r2" else "r2_sigma_x0.png"),
                 dpi=100)
  plt.close(fig)


def _map_rows(s, metrics, map_label: str) -> list[tuple[str, str, str]]:
  rows = [("digits", map_label, n) for n in sorted(metrics["digits"].get(map_label, {}),
                                                   key=int)]
  rows += [("digits", m[0], str(n)) for m in s.digits_members for n in s.digits_sizes
           if str(n) in metrics["digits"].get(m[0], {})]
  rows += [("molrg", lab, n) for lab, cells in metrics["molrg"].items()
           for n in sorted(cells, key=int)]
  return rows


def _atlas(s, metrics, workdir: pathlib.Path, map_label: str, colors) -> None:
  """Which closed form best predicts each network at each σ (training inputs)."""
  plt = plotting.pyplot()
  from matplotlib.patches import Patch   # noqa: PLC0415  (after the backend is set)
  sig = np.asarray(metrics["sigmas"])
  rows = _map_rows(s, metrics, map_label)
  fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(sig), 0.9 + 0.42 * len(rows)))
  used = []
  for i, (data, label, n) in enumerate(rows):
    k = metrics[data][label][n]["train"]
    for t in range(len(sig)):
      best = k["best"][t]
      r2 = k["r2"][k["forms"].index(best)][t]
      shown = r2 >= s.explained_min_r2
      used += [best] if shown and best not in used else []
      ax.add_patch(plt.Rectangle((t, i), 1, 1, facecolor=colors[best] if shown else "0.85",
                                 alpha=0.75, hatch="///" if k["tied"][t] and shown else None,
                                 edgecolor="w"))
      ax.text(t + 0.5, i + 0.5, f"{r2:.2f}", ha="center", va="center", fontsize=6.5)
  ax.set_xlim(0, len(sig))
  ax.set_ylim(len(rows), 0)
  ax.set_xticks(np.arange(len(sig)) + 0.5, [f"{v:.3g}" for v in sig], fontsize=7, rotation=45)
  ax.set_yticks(np.arange(len(rows)) + 0.5,
                [f"{lab} N={n}" + (" (MoLRG)" if d == "molrg" else "") for d, lab, n in rows],
                fontsize=7)
  ax.set_xlabel("σ (sampler grid)")
  ax.legend(handles=[Patch(color=colors[f], alpha=0.75, label=f) for f in used] +
            [Patch(facecolor="w", edgecolor="k", hatch="///",
                   label="not distinguishable from another (paired CI)"),
             Patch(color="0.85", label=f"no closed form explains it (r² < "
                                       f"{s.explained_min_r2:g})")],
            fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
  ax.set_title("Atlas: the closed form that best predicts each network's x̂0 (colour) and "
               "its pooled ε-head r² (text), forward-noised training inputs", fontsize=9)
  io.save_figure(fig, workdir / "atlas.png", dpi=110)
  plt.close(fig)


def _params(s, metrics, workdir: pathlib.Path, map_label: str) -> None:
  """The parameter fitted to each network at each σ: the patch forms' window
  side, the smoothed score's radius."""
  plt = plotting.pyplot()
  sig = np.asarray(metrics["sigmas"])
  cells = metrics["digits"].get(map_label, {})
  forms = sorted({f for c in cells.values() for f in c["params"]})
  if not forms:
    return
  fig, axes = plt.subplots(1, len(forms), figsize=(4.2 * len(forms), 3.4), squeeze=False)
  for ax, f in zip(axes[0], forms):
    for n in sorted(cells, key=int):
      p = cells[n]["params"].get(f)
      if p:
        ax.plot(sig, p, "o-", ms=3, label=f"N = {n}")
    ax.set_xscale("log")
    ax.set_xlabel("σ")
    if f == "smoothed":
      ax.set_ylabel("fitted radius τ")
      ax.set_yticks(list(s.smoothings))
    else:
      ax.set_ylabel("fitted window side (pixels)")
      ax.set_yticks(list(s.windows))
    ax.set_title(f"{f} ({map_label})", fontsize=9)
    ax.legend(fontsize=7)
  fig.tight_layout()
  io.save_figure(fig, workdir / "params.png", dpi=100)
  plt.close(fig)


def _final(s, metrics, workdir: pathlib.Path, colors) -> None:
  """Median per-image r² and learned-descriptor similarity of final samples, and
  a few samples of the first network beside each closed form's."""
  plt = plotting.pyplot()
  sizes = [n for n in (str(v) for v in s.digits_sizes) if n in metrics["final"]]
  if not sizes:
    return
  fig, axes = plt.subplots(2, len(sizes), figsize=(6.5 * len(sizes), 7), squeeze=False)
  for j, n in enumerate(sizes):
    rows = metrics["final"][n]
    labels = list(rows)
    forms = list(next(iter(rows.values())))
    width = 0.8 / max(len(forms), 1)
    for i, f in enumerate(forms):
      c = "0.4" if f == "other seed" else colors.get(f, "C0")
      for ax, get in ((axes[0, j], lambda cell: cell["r2_median"]),
                      (axes[1, j], lambda cell: {"value": cell["learned"]["mean_sim"][0],
                                                 "ci": cell["learned"]["mean_sim"][1]}
                       if "learned" in cell else None)):
        vals = [get(rows[lab][f]) for lab in labels if f in rows[lab]]
        if not vals or vals[0] is None:
          continue
        x = np.arange(len(vals)) + (i - len(forms) / 2 + 0.5) * width
        v = np.asarray([d["value"] for d in vals])
        ci = np.asarray([d["ci"] for d in vals])
        ax.bar(x, v, width, color=c, label=f if j == 0 else None)
        ax.errorbar(x, v, yerr=np.abs(ci.T - v), fmt="none", color="k", capsize=2, lw=0.8)
    for ax, what in ((axes[0, j], "median per-image r² of final samples"),
                     (axes[1, j], "mean learned-descriptor similarity")):
      ax.set_xticks(np.arange(len(labels)), labels, fontsize=8)
      ax.set_ylabel(what, fontsize=8)
      ax.set_title(f"N = {n}", fontsize=9)
      ax.grid(axis="y", alpha=0.3)
    lo, hi = s.published_r2_band
    axes[0, j].axhspan(lo, hi, color="0.85", zorder=0, label="published band" if j == 0 else None)
    axes[0, j].set_ylim(min(-0.1, axes[0, j].get_ylim()[0]), 1.02)
  axes[0, 0].legend(fontsize=7, ncol=2)
  fig.suptitle("Final samples from shared noises: each closed form run as a sampler against "
               f"the networks ({s.ci_level:.0%} CIs; grey: another seed of the same network)",
               fontsize=9)
  fig.tight_layout()
  io.save_figure(fig, workdir / "final.png", dpi=100)
  plt.close(fig)
  _sample_grid(s, workdir, sizes[-1])


def _sample_grid(s, workdir: pathlib.Path, n: str, show: int = 8) -> None:
  path = workdir / f"final_samples_N{n}.npz"
  if not path.exists():
    return
  plt = plotting.pyplot()
  z = np.load(path)
  rows = [k for k in z.files if k.startswith("net__")][:1] + [
      k for k in z.files if k.startswith("cf__")]
  show = min(show, z["noise"].shape[0])
  fig, axes = plt.subplots(len(rows), show, figsize=(1.1 * show, 1.15 * len(rows)),
                           squeeze=False)
  for i, k in enumerate(rows):
    imgs = np.asarray(z[k], np.float32)
    imgs = imgs[0] if k.startswith("net__") else imgs
    for j in range(show):
      ax = axes[i, j]
      ax.imshow(np.clip(imgs[j, ..., 0], -1, 1), cmap="gray", vmin=-1, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      if j == 0:
        ax.set_ylabel(k.split("__", 1)[1] + (" (seed 0)" if k.startswith("net__") else ""),
                      fontsize=6, rotation=0, ha="right", va="center")
  fig.suptitle(f"Same noises, N = {n}: a network and each closed form", fontsize=8)
  fig.tight_layout()
  io.save_figure(fig, workdir / "final_samples.png", dpi=100)
  plt.close(fig)


def render(s, metrics: dict, workdir: pathlib.Path, *, linear: str, map_label: str) -> None:
  plt = plotting.pyplot()
  colors = _colors(_all_forms(metrics, linear), plt)
  _r2_sigma(s, metrics, workdir, linear, colors)
  _r2_sigma(s, metrics, workdir, linear, colors, head="r2_x0")
  _atlas(s, metrics, workdir, map_label, colors)
  _params(s, metrics, workdir, map_label)
  _final(s, metrics, workdir, colors)
  _report(s, metrics, workdir, linear, map_label)


def _fmt(v, ci) -> str:
  return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _best_table(s, metrics, map_label: str) -> list[dict]:
  """Best closed form and its r² at a few σ, every network, training inputs."""
  sig = metrics["sigmas"]
  show = sorted({0, len(sig) // 3, (2 * len(sig)) // 3, len(sig) - 1})
  rows = []
  for data, label, n in _map_rows(s, metrics, map_label):
    k = metrics[data][label][n]["train"]
    row = {"network": f"{label} ({data})", "N": n}
    for t in show:
      fi = k["forms"].index(k["best"][t])
      tie = f" ≈ {', '.join(k['tied'][t])}" if k["tied"][t] else ""
      row[f"σ={sig[t]:.3g}"] = f"{k['best'][t]}{tie}: {_fmt(k['r2'][fi][t], k['r2_ci'][fi][t])}"
    rows.append(row)
  return rows


def _final_table(s, metrics) -> list[dict]:
  rows = []
  for n, nets in metrics["final"].items():
    for label, forms in nets.items():
      for f, c in forms.items():
        row = {"N": n, "network": label, "against": f,
               "median r² [CI]": _fmt(c["r2_median"]["value"], c["r2_median"]["ci"]),
               "mean r² [CI]": _fmt(c["r2_mean"][0], c["r2_mean"][1])}
        for name in ("ncc", "learned"):
          if name in c:
            row[f"{name}: sim > t [CI]"] = _fmt(*c[name]["share_above"])
        rows.append(row)
  return rows


def _report(s, metrics: dict, workdir: pathlib.Path, linear: str, map_label: str) -> None:
  sig = metrics["sigmas"]
  members = ", ".join(f"{m[0]} (width {m[2]})" for m in s.digits_members)
  text = f"""## Which closed form explains the network? (docs/theory.md §6.6)

**Claim.** A trained denoiser that memorizes is the empirical denoiser ε*
(reproducibility paper, Theorem 1). One that generalizes is not; proposed
closed forms: the Gaussian (Wiener) denoiser of the training set (Li, Dai, Qu
2024), the local and equivariant-local patch machines LS / ELS (Kamb &
Ganguli 2025: median r² 0.94–0.96 against CNNs, 0.75–0.77 against U-Nets with
attention), a patch-posterior composite (Niedoba et al. 2025) and the smoothed
closed-form score (Scarvelis et al. 2023). On MoLRG the posterior mean is
known and the atlas must pick it.

**Set-up.** Networks: {map_label} at N ∈ {{{', '.join(str(n) for n in s.zoo.sizes)}}}
and {members} at N ∈ {{{', '.join(str(n) for n in s.digits_sizes)}}}, seeds
{', '.join(str(v) for v in s.digits_seeds)} (the zoo's models); MoLRG MLPs at
N ∈ {{{', '.join(str(n) for n in s.molrg.sizes)}}}. At each σ of the
{s.steps}-step EDM ρ-grid ({sig[0]:.3g} … {sig[-1]:.3g}) the pooled r² of the ε
head, `1 − Σ_b ‖D_net(x_b) − D_cf(x_b)‖² / Σ_b ‖r_b − mean_b r‖²` with
`r_b = D_net(x_b) − x_b` (the ε prediction times −σ, the field the sampler
integrates), and the same errors over the spread of `D_net(x_b)` itself (the
x0 head: it tends to 1 for any form that returns ≈ x at small σ, and is
ill-conditioned at large σ, where every output is ≈ the data mean, so the
atlas and the verdicts use the ε head), on {s.num_inputs} forward-noised
training points, {s.num_inputs} held-out ones (where N leaves any) and the
states of each network's own DDIM trajectories ({s.traj_noises} shared noises
per seed). The patch windows ({', '.join(str(w) for w in s.windows)}) and the
smoothed score's radius τ ({', '.join(f'{v:g}' for v in s.smoothings)}) are chosen
per σ and network on one half of the inputs and scored on the other.
"{linear}": a per-σ affine least-squares fit to each network on
{s.linear_fit_points} separate inputs, the ceiling of every linear closed form. Final samples: each closed form run as a DDIM sampler from
{s.final_noises} shared noises (patch forms with the window schedule fitted to
{map_label}), compared with every network's by per-image r² and by
the calibrated pixel-NCC and learned-descriptor similarities. CIs:
{s.ci_level:.0%} percentile bootstrap ({s.bootstrap_resamples} replicates) over
seeds (clusters) and inputs; "≈" lists forms whose paired difference to the best
has a CI reaching 0.

![atlas](atlas.png)

![r² against σ, ε head](r2_sigma.png)

![r² against σ, x0 head](r2_sigma_x0.png)

![fitted parameters](params.png)

![final samples](final.png)

![samples](final_samples.png)

**Best closed form (training inputs), pooled ε-head r² [CI]**

{io.markdown_table(_best_table(s, metrics, map_label))}

**Final samples from shared noises**

{io.markdown_table(_final_table(s, metrics))}
{verdicts_lib.table(metrics["verdicts"])}
{_reading(s, metrics, map_label)}
"""
  io.write_text(workdir / "report.md", text)


def _reading(s, metrics: dict, map_label: str) -> str:
  """The verdicts that fail, which closed form explains the generalizing
  networks at each σ, and the final-sample scores beside the published ones."""
  lines = [f"- **{v['verdict']}**: {v['claim']}." for v in metrics["verdicts"]
           if v["verdict"] != "reproduced"]
  sig = metrics["sigmas"]
  n_gen = str(s.digits_sizes[-1])
  for label in [map_label] + [m[0] for m in s.digits_members]:
    k = metrics["digits"].get(label, {}).get(n_gen, {}).get("train")
    if k is None:
      continue
    parts = []
    for t, best in enumerate(k["best"]):
      r2 = k["r2"][k["forms"].index(best)][t]
      if r2 >= s.explained_min_r2:
        parts.append(f"σ = {sig[t]:.3g}: {best} {r2:.3f}")
      else:
        parts.append(f"σ = {sig[t]:.3g}: none (best {best} {r2:.2f})")
    ties = sum(bool(tie) for tie in k["tied"])
    lines.append(f"- {label}, N = {n_gen}, best closed form (pooled ε-head r², training "
                 f"inputs): {'; '.join(parts)} (at {ties} of {len(sig)} σ's another form is "
                 "not distinguishable from the best: at large σ every form is ≈ the data "
                 "mean and r² ≈ 1).")
  final = metrics["final"].get(n_gen, {})
  if final:
    def med(row, f):
      return row[f]["r2_median"]["value"] if f in row else float("nan")
    ours = "; ".join(
        f"{label}: " + ", ".join(f"{f} {med(row, f):.2f}" for f in row)
        for label, row in final.items())
    lines.append(
        "- Final samples from shared noises, median per-image r² against each network "
        f"(N = {n_gen}): {ours}. Published: the ELS machine against CNNs 0.94–0.96 and "
        "against U-Nets with attention 0.75–0.77 (Kamb & Ganguli 2025, median r²); "
        "different networks agree at 0.72–0.90, the patch composite matches networks at "
        "0.55, the empirical and Gaussian denoisers at 0.34 (Niedoba et al. 2025, "
        "copy-detection similarity on CIFAR-10, another scale than r²). The networks here "
        "are MLPs and a patch transformer, none convolutional: the ELS premise "
        "(locality and equivariance built into the architecture) does not hold for them.")
  return "**Reading.**\n" + "\n".join(lines)
