"""Reproducibility across samplers and across training kernels (VP vs VE).

Claim: C-repro across samplers and perturbation kernels (docs/theory.md §4.1).

The trained models of `reproducibility_regimes` (restored from `zoo.dir`,
trained if missing) are sampled from the same fixed noises with several
deterministic samplers (DDIM, Heun, DPM-Solver, the gradient-estimation
sampler of the optimization view).  Measured per model and N:

1. RP between every pair of samplers for the same model (and for ε*);
2. RP between the two seeds of one width under each sampler (C-repro holds
   for every sampler);
3. VP vs VE: a group trained with ε-prediction on the VP SDE on the same
   images, against the EDM (VE) models of the same width: RP between kernels,
   between EDM seeds for reference, and of each to ε*.

`measure` writes noises.npy, subsets.npz, samplers.csv, seeds_per_sampler.csv,
kernels.csv and sampler_rp.npz (the RP matrices between samplers `[N, S, S]`,
unrounded, for the figure); `render` draws sampler_rp.png, samplers_vs_N.png
and kernels.png and writes report.md from metrics.json and sampler_rp.npz.
The noises are standard-normal `z [B, H, W, C]`; every sampler starts from
`σ_max · z` on canonical (VE) denoisers, `x_σ = x0 + σ ε`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

from absl import logging
import jax
import numpy as np

from repro_jax import io
from repro_jax import plotting
from repro_jax.networks import model_zoo
from repro_jax.analysis import bootstrap
from repro_jax.analysis import reproducibility as rpr
from repro_jax.studies import _zoo_figures as plots
from repro_jax.diffusion import schedules
from repro_jax import settings as settings_lib
from repro_jax.studies import _zoo_study
from repro_jax.studies import verdicts as verdicts_lib

VARIANTS = _zoo_study.ZOO_VARIANTS


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelDiffusion:
  """The other kernel's parameterization (`TrainSettings.diffusion` fields)."""
  parameterization: str = "eps"
  schedule: str = "vp"
  time_input: str = "t"


@dataclasses.dataclass(frozen=True, kw_only=True)
class KernelSettings:
  """A group trained with another kernel on the same images as the zoo's models."""
  width_index: int = 0              # zoo.widths[i] of the other-kernel group
  seeds: tuple[int, ...] = (0,)
  clip_x0: bool = True              # DDPM's x0 clipping, for both kernels
  diffusion: KernelDiffusion = dataclasses.field(default_factory=KernelDiffusion)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(_zoo_study.ZooStudySettings):
  """The zoo, the samplers, the other kernel and the verdict criteria."""
  # (label, registry name, steps) on the EDM ρ-grid; deterministic options.
  samplers: tuple[tuple[str, str, int], ...] = (
      ("DDIM", "ddim", 50), ("Heun", "heun", 18), ("DPM-Solver-2", "dpm_solver", 18),
      ("grad. est. γ=2", "gradient_estimation", 50))
  reference: int = 1                # index of the sampler used for the kernel comparison
  # VP vs VE: a group trained with another kernel (here ε-prediction on the VP
  # SDE) on the same images, against the zoo's EDM (VE) models.
  kernel: KernelSettings = dataclasses.field(default_factory=KernelSettings)
  # Criteria.
  # The paper reads RP ≈ 1 in these cases (DDPMv4 vs v5; memorizing models):
  # 0.9, as the memorization criterion of reproducibility_regimes.
  min_rp_samplers: float = 0.9      # lowest mean RP between samplers, over N
  min_rp_seeds: float = 0.9         # RP between seeds per sampler at the smallest N
  kernel_rp_ratio: float = 0.8      # reproduced: RP across kernels ≥ this × RP between seeds
  kernel_rp_partly: float = 0.5     # partly: RP across kernels above this


_VARIANT_CHANGES = {
    "cpu": {}, "cpu_full": {},
    "smoke": dict(samplers=(("DDIM", "ddim", 6), ("Heun", "heun", 4),
                            ("DPM-Solver-2", "dpm_solver", 4),
                            ("grad. est. γ=2", "gradient_estimation", 6))),
    # The paper's zoo is already ε-prediction VP: compare with EDM instead.
    "paper": dict(kernel=dict(diffusion=dict(parameterization="edm", schedule="vp",
                                             time_input="t"))),
}


def settings(variant: str = "cpu") -> Settings:
  """The zoo of the same variant of `reproducibility_regimes`, so no model is trained twice."""
  changes = _zoo_study.shared_changes(variant)
  return settings_lib.override(Settings(zoo=changes.pop("zoo")),
                               dict(changes, **_VARIANT_CHANGES[variant]))


def kernel_label(diffusion) -> str:
  """`diffusion`: anything with `parameterization` and `schedule` fields."""
  if diffusion.parameterization == "edm":
    return "VE (EDM)"
  return f"{diffusion.schedule.upper()} {diffusion.parameterization}-pred."


def sample_all(groups, noise, config):
  """`{sampler label: {group name: [M, B, ...]}}` for every configured sampler."""
  out = {}
  for label, name, steps in config.samplers:
    sig = rpr.sigma_grid(steps, config.sigma_min, config.sigma_max)
    out[label] = {}
    for g in groups:
      out[label][g.name] = _zoo_study.sample(g.denoise, noise, sig,
                                                   sampler=name, chunk=int(config.chunk))
  return out


def sampler_scores(groups, samples, theory, sims, config):
  """Rows per model (RP between samplers) and per (width, N, sampler) (RP between seeds)."""
  labels = [s[0] for s in config.samplers]
  model_rows, seed_rows, mats = [], [], {}
  for g in groups:
    for m, (n, seed) in enumerate(zip(g.sizes, g.seeds)):
      stack = np.stack([samples[lab][g.name][m] for lab in labels])    # [S, B, ...]
      ps = rpr.pair_scores(stack, sims, float(config.mae_threshold))
      mats.setdefault(int(n), []).append(ps["rp_cal"])
      row = dict(N=int(n), width=g.name, seed=int(seed),
                 rp_between_samplers=rpr.off_diagonal_mean(ps["rp_cal"], range(len(labels)),
                                                           range(len(labels))),
                 rp_between_samplers_min=float(np.min(ps["rp_cal"])),
                 mae_between_samplers=rpr.off_diagonal_mean(ps["mae"], range(len(labels)),
                                                            range(len(labels))))
      for i, lab in enumerate(labels):
        row[f"rp_ref_vs_{lab}"] = float(ps["rp_cal"][int(config.reference), i])
      model_rows.append(row)
    for n in dict.fromkeys(int(v) for v in g.sizes):
      idx = np.flatnonzero(g.sizes == n)
      if len(idx) < 2:
        continue
      for lab in labels:
        x = samples[lab][g.name]
        pair = rpr.pair_scores(x[idx[:2]], sims, float(config.mae_threshold))
        seed_rows.append(dict(N=n, width=g.name, sampler=lab, rp_seeds=pair["rp_cal"][0, 1],
                              rp_seeds_paper=pair["rp_paper"][0, 1],
                              mae_seeds=pair["mae"][0, 1]))
  theory_mats = {}
  for n, per in theory.items():
    stack = np.stack([per[lab] for lab in labels])
    theory_mats[n] = rpr.pair_scores(stack, sims, float(config.mae_threshold))["rp_cal"]
  mean_mats = {n: np.mean(v, axis=0) for n, v in mats.items()}
  return model_rows, seed_rows, mean_mats, theory_mats


def kernel_scores(groups, other, noise, theory_ref, train_x, sims, config):
  """RP between the other-kernel group and the zoo group of the same width.

  Both are sampled with the reference sampler on a σ grid inside both kernels'
  training ranges, with x0 clipped to [−1, 1] if `config.kernel.clip_x0`.
  `train_x`: `{N: training images [N, ...]}`.
  """
  g = groups[int(config.kernel.width_index)]
  vp_sched = schedules.get_schedule(config.kernel.diffusion.schedule)
  # A grid inside both kernels' trained σ range.
  smin = max(float(config.sigma_min), float(vp_sched.sigma_min))
  smax = min(float(config.sigma_max), float(vp_sched.sigma_max))
  label, name, steps = config.samplers[int(config.reference)]
  sig = rpr.sigma_grid(steps, smin, smax)
  wrap = rpr.clipped if config.kernel.clip_x0 else (lambda d: d)
  x_zoo = _zoo_study.sample(wrap(g.denoise), noise, sig, sampler=name,
                                  chunk=int(config.chunk))
  x_oth = _zoo_study.sample(wrap(other.denoise), noise, sig,
                                  sampler=name, chunk=int(config.chunk))
  rows = []
  for j, (n, seed) in enumerate(zip(other.sizes, other.seeds)):
    n = int(n)
    idx = np.flatnonzero(g.sizes == n)
    stack = np.stack([x_oth[j]] + [x_zoo[i] for i in idx] + [theory_ref[n]])
    ps = rpr.pair_scores(stack, sims, float(config.mae_threshold))
    k = stack.shape[0] - 1
    # Intervals: noises jointly, the zoo's seeds redrawn (one other-kernel model).
    sim_cal = rpr.pair_values(stack[:k], {"cal": sims["cal"]})["sim_cal"]
    key = jax.random.fold_in(jax.random.key(config.seed), 1000 * n + int(seed))
    k_cross, k_seeds = jax.random.split(key)
    cross = bootstrap.rp_estimate(sim_cal[:1, 1:], sims["cal"].threshold, k_cross,
                                  strata=[0], col_strata=np.zeros(k - 1),
                                  num_resamples=int(config.bootstrap_resamples),
                                  level=float(config.ci_level))
    seeds = bootstrap.rp_estimate(sim_cal[1:, 1:], sims["cal"].threshold, k_seeds,
                                  strata=np.zeros(k - 1),
                                  mask=bootstrap.pair_mask(np.ones(k - 1), np.ones(k - 1)),
                                  num_resamples=int(config.bootstrap_resamples),
                                  level=float(config.ci_level))
    rows.append(dict(
        N=n, seed=int(seed),
        rp_kernels=cross.value, rp_kernels_lo=cross.lo, rp_kernels_hi=cross.hi,
        rp_zoo_seeds_lo=seeds.lo, rp_zoo_seeds_hi=seeds.hi,
        rp_kernels_paper=rpr.off_diagonal_mean(ps["rp_paper"], [0], range(1, k)),
        mae_kernels=rpr.off_diagonal_mean(ps["mae"], [0], range(1, k)),
        rp_zoo_seeds=rpr.off_diagonal_mean(ps["rp_cal"], range(1, k), range(1, k)),
        rp_other_theory=float(ps["rp_cal"][0, k]),
        rp_zoo_theory=float(np.mean(ps["rp_cal"][1:k, k])),
        gl_other=rpr.training_scores(x_oth[j], train_x[n], sims)["gl_cal"],
        gl_zoo=float(np.mean([rpr.training_scores(x_zoo[i], train_x[n], sims)["gl_cal"]
                              for i in idx]))))
  return rows, dict(sampler=label, sigma_min=smin, sigma_max=smax, width=g.name)


def measure(config: Settings, ctx) -> dict:
  """Restore (or train) the models, sample with every sampler, score; CSVs and
  sampler_rp.npz."""
  st = _zoo_study.begin(config, ctx, later_steps=4)
  workdir, t0, progress, ds, sims, cal, noise, subsets, groups, _ = st
  zoo = config.zoo
  w_other = zoo.widths[int(config.kernel.width_index)]
  other = model_zoo.ensure_zoo(
      zoo, ds, widths=[w_other], seeds=config.kernel.seeds,
      overrides={"diffusion": settings_lib.to_dict(config.kernel.diffusion)},
      suffix="_" + str(config.kernel.diffusion.parameterization))[0]
  progress.step(other.name)
  t_train = time.time() - t0
  samples = sample_all(groups, noise, config)
  theory = {int(n): {} for n in zoo.sizes}
  th_dens = rpr.empirical_denoisers(ds, subsets)
  for label, name, steps in config.samplers:
    sig = rpr.sigma_grid(steps, config.sigma_min, config.sigma_max)
    per = rpr.theory_generations(th_dens, noise, sig, sampler=name, chunk=int(config.chunk))
    for n, x in per.items():
      theory[int(n)][label] = x
  progress.step("sampling")
  model_rows, seed_rows, mean_mats, theory_mats = sampler_scores(
      groups, samples, theory, sims, config)
  ref_label = config.samplers[int(config.reference)][0]
  kernel_rows, kernel_info = kernel_scores(
      groups, other, noise, {n: theory[n][ref_label] for n in theory},
      {int(n): ds.x[idx] for n, idx in subsets.items()}, sims, config)
  progress.step("scores")
  summary = summarize(model_rows, seed_rows, kernel_rows, theory_mats, groups, config)
  sizes = sorted(mean_mats)
  io.save_npz(workdir / "sampler_rp.npz", sizes=np.array(sizes),
              models=np.stack([mean_mats[n] for n in sizes]),
              theory=np.stack([theory_mats[n] for n in sizes]))
  io.save_csv(workdir / "samplers.csv", model_rows)
  io.save_csv(workdir / "seeds_per_sampler.csv", seed_rows)
  io.save_csv(workdir / "kernels.csv", kernel_rows)
  seconds = time.time() - t0
  out = dict(threshold=cal.threshold, samplers=[list(s) for s in config.samplers],
             widths=[g.name for g in groups],
             sampler_rp_mean={str(n): np.round(m, 4).tolist() for n, m in mean_mats.items()},
             theory_sampler_rp={str(n): np.round(m, 4).tolist() for n, m in theory_mats.items()},
             kernel=dict(kernel_info, other=other.name, other_info=other.info,
                         zoo_kernel=kernel_label(zoo.train.diffusion),
                         other_kernel=kernel_label(config.kernel.diffusion)),
             summary=summary, model_rows=model_rows, seed_rows=seed_rows,
             kernel_rows=kernel_rows, train_seconds=t_train, seconds=seconds)
  progress.step("tables")
  logging.info("across samplers: %s", summary)
  return out


def verdicts(config: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  """Across samplers, per sampler across seeds, across training kernels."""
  s, krows = metrics["summary"], metrics["kernel_rows"]
  k0 = krows[0]
  ok = [bool(r["rp_kernels"] >= config.kernel_rp_ratio * r["rp_zoo_seeds"]) for r in krows]
  src = "reproducibility paper §2, App. A (C-repro); docs/theory.md §4.1"
  kern = metrics["kernel"]
  seeds_small = s["rp_seeds_smallest_N"]
  return [
      verdicts_lib.judge(
          s["rp_between_samplers_min"] > config.min_rp_samplers,
          claim="The same model sampled with different deterministic samplers from the same "
                "noise gives the same image.",
          criterion=f"lowest mean RP between samplers over N > {config.min_rp_samplers:g}",
          measured=dict(rp_between_samplers_min=s["rp_between_samplers_min"],
                        rp_between_samplers_mean=s["rp_between_samplers_mean"]),
          source=src),
      verdicts_lib.judge(
          bool(seeds_small) and min(seeds_small.values()) > config.min_rp_seeds,
          claim="Reproducibility between models holds for every sampler in the memorization "
                "regime.",
          criterion=f"RP between seeds > {config.min_rp_seeds:g} for every sampler at the "
                    "smallest N",
          measured=dict(rp_seeds_smallest_N=seeds_small), source=src),
      verdicts_lib.judge(
          all(ok),
          partly=any(ok) or k0["rp_kernels"] > config.kernel_rp_partly,
          claim=f"Models trained with different perturbation kernels ({kern['other_kernel']} "
                f"vs {kern['zoo_kernel']}) reproduce each other.",
          criterion=f"at every N: RP across kernels ≥ {config.kernel_rp_ratio:g} × RP between "
                    f"seeds (partly: at some N, or RP across kernels > "
                    f"{config.kernel_rp_partly:g} at the smallest N)",
          measured=dict(
              N=[r["N"] for r in krows], holds=ok,
              rp_kernels=[r["rp_kernels"] for r in krows],
              rp_kernels_ci=[[r["rp_kernels_lo"], r["rp_kernels_hi"]] for r in krows],
              rp_zoo_seeds=[r["rp_zoo_seeds"] for r in krows],
              rp_zoo_seeds_ci=[[r["rp_zoo_seeds_lo"], r["rp_zoo_seeds_hi"]] for r in krows]),
          source=src),
  ]


def render(config: Settings, metrics: dict, workdir) -> None:
  """The three figures and report.md, from the metrics and sampler_rp.npz."""
  workdir = pathlib.Path(workdir)
  with np.load(workdir / "sampler_rp.npz") as f:
    sizes = [int(n) for n in f["sizes"]]
    mean_mats = dict(zip(sizes, f["models"]))
    theory_mats = dict(zip(sizes, f["theory"]))
  _figures(workdir, mean_mats, theory_mats, metrics["model_rows"], metrics["seed_rows"],
           metrics["kernel_rows"], metrics["widths"], metrics["kernel"]["other"], config)
  io.write_text(workdir / "report.md", _report(metrics, config))


def summarize(model_rows, seed_rows, kernel_rows, theory_mats, groups, config) -> dict:
  sizes = sorted({r["N"] for r in model_rows})
  by_n = {n: float(np.mean([r["rp_between_samplers"] for r in model_rows if r["N"] == n]))
          for n in sizes}
  labels = [s[0] for s in config.samplers]
  seeds_small = {lab: float(np.mean([r["rp_seeds"] for r in seed_rows
                                     if r["N"] == sizes[0] and r["sampler"] == lab]))
                 for lab in labels} if seed_rows else {}
  seeds_large = {lab: float(np.mean([r["rp_seeds"] for r in seed_rows
                                     if r["N"] == sizes[-1] and r["sampler"] == lab]))
                 for lab in labels} if seed_rows else {}
  th = {n: rpr.off_diagonal_mean(m, range(len(labels)), range(len(labels)))
        for n, m in theory_mats.items()}
  return dict(
      rp_between_samplers_by_N={str(n): v for n, v in by_n.items()},
      rp_between_samplers_min=float(min(by_n.values())),
      rp_between_samplers_mean=float(np.mean(list(by_n.values()))),
      theory_rp_between_samplers_min=float(min(th.values())),
      rp_seeds_smallest_N=seeds_small, rp_seeds_largest_N=seeds_large,
      kernels=[{k: r[k] for k in ("N", "rp_kernels", "rp_zoo_seeds", "rp_other_theory",
                                  "rp_zoo_theory")} for r in kernel_rows])


def _figures(workdir, mean_mats, theory_mats, model_rows, seed_rows, kernel_rows, names,
             other_name, config):
  """`mean_mats`, `theory_mats`: `{N: RP between samplers [S, S]}`; `names`: the
  zoo's groups; `other_name`: the other-kernel group."""
  labels = [s[0] for s in config.samplers]
  sizes = sorted(mean_mats)
  show = list(dict.fromkeys([sizes[0], sizes[len(sizes) // 2], sizes[-1]]))
  mats = {f"trained models, N = {n}": mean_mats[n] for n in show}
  mats[f"ε*, N = {sizes[-1]}"] = theory_mats[sizes[-1]]
  plots.sampler_matrix(workdir / "sampler_rp.png", mats, labels,
                       "RP between samplers from the same noises (same model; mean over "
                       "models of that N)")
  plt = plotting.pyplot()
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  for i, name in enumerate(names):
    ys = [np.mean([r["rp_between_samplers"] for r in model_rows
                   if r["N"] == n and r["width"] == name]) for n in sizes]
    axes[0].plot(sizes, ys, "o-", color=colors[i], label=f"{name}: mean over sampler pairs")
    ys = [np.mean([r["rp_between_samplers_min"] for r in model_rows
                   if r["N"] == n and r["width"] == name]) for n in sizes]
    axes[0].plot(sizes, ys, "o:", color=colors[i], alpha=0.6, label=f"{name}: worst pair")
  axes[0].set(title="same model, different samplers", ylabel="RP")
  styles = ["o-", "s--", "^-.", "v:", "d-"]
  for j, lab in enumerate(labels):
    for i, name in enumerate(names):
      ys = [np.mean([r["rp_seeds"] for r in seed_rows
                     if r["N"] == n and r["width"] == name and r["sampler"] == lab] or [np.nan])
            for n in sizes]
      axes[1].plot(sizes, ys, styles[j % len(styles)], color=colors[i], alpha=0.85,
                   label=f"{name}, {lab}")
  axes[1].set(title="same sampler, other seed (C-repro per sampler)", ylabel="RP")
  for ax in axes:
    plots._log2_axis(ax, sizes)
    ax.set(xlabel="training set size N", ylim=(-0.03, 1.03))
    ax.legend(fontsize=6.5)
  io.save_figure(fig, workdir / "samplers_vs_N.png")
  fig, ax = plt.subplots(figsize=(6.4, 3.9))
  ks = [r["N"] for r in kernel_rows]
  zoo_k = kernel_label(config.zoo.train.diffusion)
  oth_k = kernel_label(config.kernel.diffusion)
  for key, style, color, label in (("rp_kernels", "o-", "k", f"{oth_k} vs {zoo_k} (same width)"),
                                   ("rp_zoo_seeds", "s--", "tab:blue", f"{zoo_k}: seed vs seed")):
    y = np.array([r[key] for r in kernel_rows], np.float64)
    err = np.array([[r[key] - r[f"{key}_lo"] for r in kernel_rows],
                    [r[f"{key}_hi"] - r[key] for r in kernel_rows]], np.float64)
    ax.errorbar(ks, y, yerr=np.maximum(err, 0), fmt=style, color=color, capsize=3,
                label=f"{label} ({config.ci_level:.0%} CI)")
  ax.plot(ks, [r["rp_other_theory"] for r in kernel_rows], "^:", color="tab:red",
          label=f"{oth_k} vs ε*")
  ax.plot(ks, [r["rp_zoo_theory"] for r in kernel_rows], "v:", color="tab:blue",
          label=f"{zoo_k} vs ε*")
  plots._log2_axis(ax, ks)
  ax.set(xlabel="training set size N", ylabel="RP", ylim=(-0.03, 1.03),
         title=f"{other_name}: reproducibility across training kernels")
  ax.legend(fontsize=7)
  io.save_figure(fig, workdir / "kernels.png")


def _report(metrics: dict, config: Settings) -> str:
  s, vs = metrics["summary"], metrics["verdicts"]
  model_rows, seed_rows = metrics["model_rows"], metrics["seed_rows"]
  kernel_rows, kinfo = metrics["kernel_rows"], metrics["kernel"]
  seconds, t_train = metrics["seconds"], metrics["train_seconds"]
  labels = [f"{lab} (`{name}`, {steps} steps)" for lab, name, steps in config.samplers]
  sizes = sorted({r["N"] for r in model_rows})
  table = []
  for n in sizes:
    row = {"N": n, "RP between samplers (mean)": s["rp_between_samplers_by_N"][str(n)]}
    for lab, _, _ in config.samplers:
      v = [r["rp_seeds"] for r in seed_rows if r["N"] == n and r["sampler"] == lab]
      row[f"RP seeds, {lab}"] = float(np.mean(v)) if v else float("nan")
    table.append(row)
  zoo_k = kernel_label(config.zoo.train.diffusion)
  oth_k = kernel_label(config.kernel.diffusion)
  ci = lambda r, k: f"{r[k]:.2f} [{r[k + '_lo']:.2f}, {r[k + '_hi']:.2f}]"
  ktable = [{"N": r["N"], f"RP {oth_k} vs {zoo_k} ({config.ci_level:.0%} CI)": ci(r, "rp_kernels"),
             f"@{config.paper_threshold:g}": r["rp_kernels_paper"],
             "MAE score": r["mae_kernels"], f"RP {zoo_k} seeds": ci(r, "rp_zoo_seeds"),
             f"RP {oth_k} vs ε*": r["rp_other_theory"], f"RP {zoo_k} vs ε*": r["rp_zoo_theory"],
             f"GL {oth_k}": r["gl_other"], f"GL {zoo_k}": r["gl_zoo"]}
            for r in kernel_rows]
  k0, k1 = kernel_rows[0], kernel_rows[-1]
  return f"""## Reproducibility across samplers and training kernels

**Claim** (C-repro, paper §2 and App. A: DDPMv4 vs v5 differ only in the ODE
sampler; "irrespective of … sampling procedures, and perturbation kernels").
From the same noise, the same model sampled with different deterministic
samplers gives the same image, and models trained with different kernels (VP
ε-prediction vs VE/EDM) on the same images reproduce each other.

**Set-up.** The models of `reproducibility_regimes` (same `zoo`, restored
from `{config.zoo.dir}/`), the same {config.num_noises} fixed noises, samplers
{', '.join(labels)} on the EDM ρ-grid σ ∈ [{config.sigma_min:g}, {config.sigma_max:g}];
similarity: NCC with the calibrated threshold {metrics['threshold']:.3f}.  Kernels: a
group `{kinfo['other']}` ({oth_k}, width {kinfo['width']}, seeds
{tuple(int(x) for x in config.kernel.seeds)}, same steps and subsets) against
the zoo's {zoo_k} models of that width, both sampled with {kinfo['sampler']} on
σ ∈ [{kinfo['sigma_min']:.3g}, {kinfo['sigma_max']:.3g}] (inside both kernels' training
range).  Training in this run: {t_train:.0f} s (0 when every group was restored);
total {seconds:.0f} s.

![sampler RP](sampler_rp.png)

![samplers vs N](samplers_vs_N.png)

![kernels](kernels.png)

{io.markdown_table(table, fmt="{:.2f}")}
{io.markdown_table(ktable, fmt="{:.2f}")}
**Verdicts.**

1. Same model, different samplers: **{vs[0]["verdict"]}**. Mean RP over
   sampler pairs is {s['rp_between_samplers_mean']:.2f} (lowest over N
   {s['rp_between_samplers_min']:.2f}); for ε* itself the lowest is
   {s['theory_rp_between_samplers_min']:.2f} (discretization differences alone).
2. C-repro holds for every sampler in the memorization regime (RP between
   seeds at N = {sizes[0]}): **{vs[1]["verdict"]}**
   ({', '.join(f"{k}: {v:.2f}" for k, v in s['rp_seeds_smallest_N'].items())}); at
   N = {sizes[-1]}: {', '.join(f"{k}: {v:.2f}" for k, v in s['rp_seeds_largest_N'].items())}.
3. Across kernels ({oth_k} vs {zoo_k}): **{vs[2]["verdict"]}** (reproduced: RP
   across kernels ≥ {config.kernel_rp_ratio:g} × RP between seeds at every N; it holds at
   N = {', '.join(str(n) for n, h in zip(vs[2]['measured']['N'], vs[2]['measured']['holds'])
                  if h) or 'none'}; partly: at some N, or RP across kernels >
   {config.kernel_rp_partly:g} at the smallest N): RP {k0['rp_kernels']:.2f} at N = {k0['N']} against
   {k0['rp_zoo_seeds']:.2f} between two {zoo_k} seeds; RP to ε*
   {k0['rp_other_theory']:.2f} ({oth_k}) and {k0['rp_zoo_theory']:.2f} ({zoo_k}); GL
   {k0['gl_other']:.2f} and {k0['gl_zoo']:.2f}.  At N = {k1['N']}: RP
   {k1['rp_kernels']:.2f} across kernels, {k1['rp_zoo_seeds']:.2f} between {zoo_k} seeds.
   Lowest RP across kernels: {min(r['rp_kernels'] for r in kernel_rows):.2f} at N =
   {min(kernel_rows, key=lambda r: r['rp_kernels'])['N']}.  With the same step
   budget the {oth_k} models are less converged (their x0 error grows like
   σ·(ε error): without clipping their samples leave [−1, 1] by an order of
   magnitude), which is why both kernels are compared with DDPM's x0 clipping
   (`kernel.clip_x0`; it leaves the {zoo_k} samples unchanged) and why the RP
   across kernels stays below the RP between {zoo_k} seeds.

**Differences from the paper.** The paper compares published CIFAR-10 models
(different architectures, kernels and samplers) with SSCD at 0.6; here the
models are small MLPs on 8×8 digits, compared with a calibrated pixel NCC, and
the samplers' step counts are fixed CPU-sized grids.

{verdicts_lib.table(vs)}"""
