"""Reproducibility regimes with trained networks (paper Fig. 1, 2, 4, 6).

Claims: C-repro, C-regimes, Theorem 1 and the noise plane (docs/theory.md
§4.1–§4.4).

Models of two or more widths and two seeds are trained on nested subsets of
N = 2^k images (every model of one N on the same images, `model_zoo`), then
sampled from one fixed set of noises with a deterministic sampler.  Measured:

1. RP and MAE scores between every pair of models of one N (same width, other
   seed; other width), with the calibrated similarity and the paper's 0.6;
2. GL of every model against its training set (plus L_generalize and the
   nearest-neighbour distance ratio);
3. RP between each model and the generation of the empirical denoiser ε* from
   the same noise (Theorem 1, Fig. 6);
4. the regime of each N (memorization / transition / generalization) from
   GL and RP-to-ε*;
5. the noise-plane maps of Fig. 4 for ε* and two widths, at a memorizing N and
   at the largest N, with their agreement against chance;
6. for every RP, GL and MAE score, a bootstrap interval over the noises
   (resampled jointly for all models) and the seeds of each width (resampled
   as clusters; `analysis.bootstrap`), the scores against the threshold
   (`analysis.score_curves`) with intervals over a declared band of
   thresholds, and the threshold-free distributions of the per-noise
   similarities (`_regimes_stats`).

`measure` writes noises.npy, subsets.npz, regimes.csv (each score with its
`_lo`, `_hi`) and figures.npz (the arrays the figures draw: calibration
similarities, Fig. 1 image rows, Fig. 4 plane maps, threshold curves and
similarity histograms); the per-noise values go beside the models
(`regimes_per_noise.npz`).  `render` draws calibration.png, regimes.png
(Fig. 2), rp_theory.png (Fig. 6), threshold_band.png,
similarity_distributions.png, samples.png (Fig. 1), noise_plane.png (Fig. 4)
and writes report.md from metrics.json and figures.npz.  Images are `[H, W, C]`
in [−1, 1]; the noises are standard-normal `z [B, H, W, C]`, and every sampler
starts from `σ_max · z` on canonical (VE) denoisers, `x_σ = x0 + σ ε`.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

from absl import logging
import jax
import numpy as np

from repro_jax import io
from repro_jax.analysis import metrics
from repro_jax.analysis import noise_plane
from repro_jax.analysis import reproducibility as rpr
from repro_jax.studies import _zoo_figures as plots
from repro_jax import settings as settings_lib
from repro_jax.studies import _regimes_report as report_lib
from repro_jax.studies import _regimes_stats as stats
from repro_jax.studies import _zoo_study
from repro_jax.studies import verdicts as verdicts_lib

VARIANTS = _zoo_study.ZOO_VARIANTS


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(_zoo_study.ZooStudySettings):
  """The zoo, the sampler, the regime bands, the figures, the statistics and the verdict
  criteria."""
  # Deterministic sampler: Heun on the EDM ρ-grid (2·steps − 1 evaluations).
  sampler: str = "heun"
  steps: int = 18
  # Regime bands, from the measured GL and RP-to-theory.
  band_gl_mem: float = 0.1
  band_rp_theory_mem: float = 0.5
  band_gl_gen: float = 0.9
  # Figures.
  grid_columns: int = 8             # Fig. 1: noises per row
  plane_grid: int = 40              # Fig. 4: points per axis
  plane_size_index: int = 1         # Fig. 4: zoo.sizes[i] of the memorizing row
  # Statistics (repro_jax.analysis.bootstrap; `bootstrap_resamples` and
  # `ci_level` are shared by the zoo studies): percentile intervals over the
  # noises (resampled jointly for all models) and the seeds of each width
  # (resampled as clusters), from draws of `bootstrap_seed`.
  bootstrap_seed: int = 0
  # The thresholds of the calibrated similarity the RP verdicts are also checked
  # over (`band_points` of them, each with its interval), and the grid of the
  # threshold curves (threshold_band.png).
  threshold_band: tuple[float, float] = (0.90, 0.99)
  # The same for the learned descriptor (`learned`): its band is its calibrated
  # threshold ± this (its scale is not NCC's), its curves over [0, 1].
  learned_band_halfwidth: float = 0.05
  band_points: int = 10
  curve_range: tuple[float, float] = (0.5, 1.0)
  curve_points: int = 101
  # Criteria of the verdicts, fixed before measuring; an interval is the
  # `ci_level` bootstrap interval above.
  min_rp_memorization: float = 0.9     # RP between seeds at the smallest N ...
  min_rp_memorization_lo: float = 0.8  # ... and the lower end of its interval
  min_rp_theory: float = 0.5        # RP to ε* at the smallest N ...
  min_rp_theory_drop: float = 0.3   # ... and how much lower it is at the largest N
  min_rp_generalization: float = 0.9     # RP between seeds at the largest N ...
  min_rp_generalization_lo: float = 0.8  # ... and the lower end of its interval
  # The dip (no parameter): the interval of RP between seeds at its interior
  # minimum over N lies wholly below the intervals at the smallest and largest N.
  min_plane_margin: float = 0.25    # map agreement between models above chance
  # "Wider networks memorize up to larger N": GL of the widest ≤ GL of the
  # narrowest + `wider_gl_margin` at ≥ `wider_min_fraction` of the N.
  wider_gl_margin: float = 0.02
  wider_min_fraction: float = 0.8


_VARIANT_CHANGES = {
    "cpu": {}, "cpu_full": dict(plane_grid=64),
    "smoke": dict(steps=6, grid_columns=4, plane_grid=5, plane_size_index=0,
                  bootstrap_resamples=200, band_points=4, curve_points=26),
    "paper": dict(plane_grid=100, plane_size_index=2),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default), `cpu_full` (hours), `smoke` (seconds) or `paper` (CIFAR-10 U-Nets)."""
  changes = _zoo_study.shared_changes(variant)
  return settings_lib.override(Settings(zoo=changes.pop("zoo")),
                               dict(changes, **_VARIANT_CHANGES[variant]))

def _entries(groups, samples, n):
  """(label, width index, seed, samples [B, ...]) of every model trained on N = n."""
  out = []
  for wi, g in enumerate(groups):
    for m in np.flatnonzero(g.sizes == n):
      out.append((f"{g.name}/s{int(g.seeds[m])}", wi, int(g.seeds[m]), samples[g.name][m]))
  return out


# The scores that carry intervals, each `(similarity label or "mae", columns)`:
# RP / MAE to ε*, between seeds of one width, to the other widths; GL.
_PAIR_SCORES = {"rp_theory": ("rp_cal", "theory"), "rp_theory_paper": ("rp_paper", "theory"),
                "mae_theory": ("mae", "theory"), "rp_seed": ("rp_cal", "seed"),
                "rp_seed_paper": ("rp_paper", "seed"), "mae_seed": ("mae", "seed"),
                "rp_width": ("rp_cal", "width"), "mae_width": ("mae", "width")}
_MODEL_SCORES = ("gl_cal", "gl_paper")
SCORES = tuple(_PAIR_SCORES) + _MODEL_SCORES


def _scores(cell, rows, cols: dict, seeds: bool) -> dict:
  """Every score of `SCORES` for the models `rows` (bool `[K + 1]`), as `Scored`."""
  out = {k: cell.pair(name, rows, cols[which], seeds) for k, (name, which) in _PAIR_SCORES.items()}
  out.update({k: cell.model(k, rows, seeds) for k in _MODEL_SCORES})
  return out


def curve_thresholds(config, threshold: float) -> np.ndarray:
  """The thresholds of the point curves: a grid over `curve_range`, plus the
  calibrated and the paper's thresholds and the band's ends."""
  grid = np.linspace(*config.curve_range, int(config.curve_points))
  extra = [threshold, config.paper_threshold, *config.threshold_band]
  return np.unique(np.concatenate([grid, extra]).astype(np.float32)).astype(np.float64)


def band_thresholds(config) -> np.ndarray:
  """The thresholds the verdicts are checked over, `[band_points]`."""
  return np.linspace(*config.threshold_band, int(config.band_points))


def learned_band(config, threshold: float) -> np.ndarray:
  """The learned descriptor's band: its calibrated threshold ± `learned_band_halfwidth`."""
  hw = float(config.learned_band_halfwidth)
  return np.linspace(max(threshold - hw, -1.0), min(threshold + hw, 1.0),
                     int(config.band_points))


def analyze(groups, samples, theory, ds, subsets, sims, config):
  """All scores per N, with bootstrap intervals over noises and seeds.

  Returns:
    `(per-model rows, per-size dicts, figure arrays, per-noise arrays)`: the
    rows carry `<score>`, `<score>_lo`, `<score>_hi`; the per-size dicts (and
    their per-width entries) `<score>` and `<score>_ci = [lo, hi]`; the figure
    arrays the threshold curves and similarity histograms of each N; the
    per-noise arrays `{N: {"sim [K+1, K+1, B]", "mae", "max_sim [K+1, B]"}}`
    (models of that N, ε* last).
  """
  rows, per_size, per_noise = [], [], {}
  num_w = len(groups)
  level = float(config.ci_level)
  key = jax.random.key(int(config.bootstrap_seed))   # the same draws for every N
  thresholds = {label: sim.threshold for label, sim in sims.items()}
  t_curve = curve_thresholds(config, sims["cal"].threshold)
  t_band = band_thresholds(config)
  curves, hists, curves_learned = [], [], []
  learned = "learned" in sims
  if learned:
    t_learned = float(sims["learned"].threshold)
    t_band_learned = learned_band(config, t_learned)
    t_curve_learned = np.unique(np.concatenate([
        np.linspace(0.0, 1.0, int(config.curve_points)), [t_learned], t_band_learned]))
  for n in config.zoo.sizes:
    n = int(n)
    train = ds.x[subsets[n]]
    ent = _entries(groups, samples, n)
    stack = np.stack([e[3] for e in ent] + [theory[n]])         # [K + 1, B, ...]
    k_th = len(ent)
    pv = rpr.pair_values(stack, sims)
    max_sims = [rpr.max_similarities(x, train, sims) for x in stack]
    max_sim = {label: np.stack([m[label] for m in max_sims]) for label in sims}   # [K + 1, B]
    strata = np.array([e[1] for e in ent] + [num_w])
    cell = stats.Cell(pv, max_sim, thresholds, float(config.mae_threshold), strata, key,
                      int(config.bootstrap_resamples), level)
    per_noise[n] = dict(sim=pv["sim_cal"], mae=pv["mae"], max_sim=max_sim["cal"],
                        strata=strata)
    is_th = np.arange(k_th + 1) == k_th
    models = ~is_th
    th_scores = rpr.training_scores(theory[n], train, sims, max_sims=max_sims[k_th])
    th_scores.update(stats.as_fields("gl_cal", cell.model("gl_cal", is_th, seeds=False)))
    th_scores.update(stats.as_fields("gl_paper", cell.model("gl_paper", is_th, seeds=False)))
    size = dict(N=n, labels=[e[0] for e in ent] + ["eps*"],
                rp_cal=cell.pair_matrix("rp_cal"), rp_paper=cell.pair_matrix("rp_paper"),
                mae=cell.pair_matrix("mae"), sim_mean=np.mean(pv["sim_cal"], -1, np.float64),
                rp_cal_ci=cell.pair_matrix_ci("rp_cal"),
                rp_paper_ci=cell.pair_matrix_ci("rp_paper"), mae_ci=cell.pair_matrix_ci("mae"),
                theory=th_scores, widths={})
    seed_scores = []
    for wi in range(num_w):
      mine = strata == wi
      cols = dict(theory=is_th, seed=mine, width=models & ~mine)
      model_rows = []
      for i in np.flatnonzero(mine):
        sc = rpr.training_scores(ent[i][3], train, sims, max_sims=max_sims[i])
        scored = _scores(cell, np.arange(k_th + 1) == i, cols, seeds=False)
        row = dict(N=n, width=groups[wi].name, seed=ent[i][2],
                   sim_theory=float(size["sim_mean"][i, k_th]),
                   max_sim_median=sc["max_sim_median"], l_generalize=sc["l_generalize"],
                   nn_ratio_median=sc["nn_ratio_median"])
        for k, v in scored.items():
          row.update(stats.as_columns(k, v))
        model_rows.append(row)
      rows += model_rows
      scored = _scores(cell, mine, cols, seeds=True)
      seed_scores.append(scored["rp_seed"])
      agg = {}
      for k, v in scored.items():
        agg.update(stats.as_fields(k, v))
      for k in ("sim_theory", "max_sim_median", "l_generalize", "nn_ratio_median"):
        agg[k] = float(np.mean([r[k] for r in model_rows]))
      agg["gl_min"] = float(min(r["gl_cal"] for r in model_rows))
      agg["gl_max"] = float(max(r["gl_cal"] for r in model_rows))
      agg["rp_theory_min"] = float(min(r["rp_theory"] for r in model_rows))
      agg["rp_theory_max"] = float(max(r["rp_theory"] for r in model_rows))
      agg["regime"] = rpr.regime(agg["gl_cal"], agg["rp_theory"], **_band_kw(config))
      size["widths"][groups[wi].name] = agg
    size.update(stats.as_fields("rp_seed", stats.mean_of(seed_scores, level)))
    for k, name in (("rp_cross", "rp_cal"), ("rp_cross_paper", "rp_paper"), ("mae_cross", "mae")):
      size.update(stats.as_fields(k, cell.pair(name, models, models, across=True)))
    gl_all = cell.model("gl_cal", models)
    rpt_all = cell.pair("rp_cal", models, is_th)
    size.update(stats.as_fields("gl", gl_all))
    size.update(stats.as_fields("rp_theory", rpt_all))
    size["regime"] = rpr.regime(size["gl"], size["rp_theory"], **_band_kw(config))
    size["band"] = cell.band("cal", t_band)
    if learned:     # the seed, GL and ε* scores under the second similarity
      per_w = [cell.pair("rp_learned", strata == wi, strata == wi) for wi in range(num_w)]
      size.update(stats.as_fields("rp_seed_learned", stats.mean_of(per_w, level)))
      size.update(stats.as_fields("gl_learned", cell.model("gl_learned", models)))
      size.update(stats.as_fields("rp_theory_learned", cell.pair("rp_learned", models, is_th)))
      size["band_learned"] = cell.band("learned", t_band_learned)
      curves_learned.append(cell.curves("learned", t_curve_learned))
    dist = cell.distributions("cal")
    size["sim_seed_quantiles"] = dist["seed_quantiles"].tolist()
    size["max_sim_quantiles"] = dist["train_quantiles"].tolist()
    curves.append(cell.curves("cal", t_curve))
    hists.append(dist)
    per_size.append(size)
    logging.info("N=%d: regime %s, GL %.2f, RP-to-ε* %.2f, RP between seeds %.2f %s, "
                 "RP across widths %.2f", n, size["regime"], size["gl"], size["rp_theory"],
                 size["rp_seed"], size["rp_seed_ci"], size["rp_cross"])
  arrays = dict(curve_thresholds=t_curve, hist_edges=stats.HIST_EDGES,
                quantile_levels=np.array(stats.QUANTILES),
                **{f"curve_{k}": np.stack([c[k] for c in curves]) for k in curves[0]},
                hist_seed=np.stack([h["seed_hist"] for h in hists]),
                hist_train=np.stack([h["train_hist"] for h in hists]))
  if learned:
    arrays.update(curve_learned_thresholds=t_curve_learned,
                  **{f"curve_learned_{k}": np.stack([c[k] for c in curves_learned])
                     for k in curves_learned[0]})
  return rows, per_size, arrays, per_noise


def _band_kw(config):
  return dict(gl_mem=float(config.band_gl_mem), rp_theory_mem=float(config.band_rp_theory_mem),
              gl_gen=float(config.band_gl_gen))


def noise_plane_maps(groups, theory, th_dens, ds, subsets, noise, sigmas, sims, config):
  """Fig. 4: anchor-labelled plane maps of ε* and of each width (seed 0, and seed 1
  for the agreement numbers) at a memorizing N and at the largest N."""
  sizes = [int(n) for n in config.zoo.sizes]
  n_mem = sizes[int(config.plane_size_index)]
  rows_n = [n_mem] if n_mem == sizes[-1] else [n_mem, sizes[-1]]
  # Anchors: noises whose ε* generations (at the memorizing N) are three
  # different training images, of different classes when labels exist.
  sim = sims["cal"]
  nearest = np.asarray(metrics.max_similarity(theory[n_mem], ds.x[subsets[n_mem]], sim).index)
  cls = None if ds.labels is None else ds.labels[subsets[n_mem]][nearest]
  anchors = rpr.pick_anchors(nearest, cls)
  axis = noise_plane.plane_axis(int(config.plane_grid))
  g = len(axis)
  plane = np.asarray(noise_plane.plane_noises(noise[anchors], axis, axis))
  z = np.concatenate([plane, noise[anchors]])                 # anchors last
  out = dict(axis=axis, anchors=anchors.tolist(), rows=[])
  for n in rows_n:
    maps = {}
    x_th = _zoo_study.sample(th_dens[n], z, sigmas, sampler=config.sampler,
                                   chunk=int(config.chunk))
    maps["eps*"] = (x_th[:-3], x_th[-3:])
    for grp in groups:
      idx = np.flatnonzero(grp.sizes == n)
      # All models of the group (one compiled sampler), then keep those of N = n.
      xs = _zoo_study.sample(grp.denoise, z, sigmas,
                                   sampler=config.sampler, chunk=int(config.chunk))
      for m in idx:
        maps[f"{grp.name}/s{int(grp.seeds[m])}"] = (xs[m, :-3], xs[m, -3:])
    labelled = {}
    for name, (xp, xa) in maps.items():
      lab, val = rpr.anchor_labels(xp, xa, sim)
      labelled[name] = dict(labels=lab.reshape(g, g), values=val.reshape(g, g),
                            anchor_images=xa,
                            boundary=noise_plane.boundary_fraction(lab.reshape(g, g)))
    names = list(labelled)
    agreement = {}
    for i, a in enumerate(names):
      for b in names[i + 1:]:
        agree, chance = rpr.map_agreement(labelled[a]["labels"], labelled[b]["labels"])
        agreement[f"{a} vs {b}"] = dict(agreement=agree, chance=chance)
    out["rows"].append(dict(N=n, maps=labelled, agreement=agreement))
  return out


def measure(config: Settings, ctx) -> dict:
  """Train (or reuse) the zoo, sample, score; writes the CSV table and figures.npz."""
  st = _zoo_study.begin(config, ctx, later_steps=4)
  workdir, t0, progress, ds, sims, cal, noise, subsets, groups, cal_learned = st
  zoo = config.zoo
  t_train = time.time() - t0
  sigmas = rpr.sigma_grid(config.steps, config.sigma_min, config.sigma_max)
  samples = {}
  for g in groups:
    samples[g.name] = _zoo_study.sample(g.denoise, noise, sigmas,
                                              sampler=config.sampler, chunk=int(config.chunk))
  th_dens = rpr.empirical_denoisers(ds, subsets)
  theory = rpr.theory_generations(th_dens, noise, sigmas, sampler=config.sampler,
                                  chunk=int(config.chunk))
  # The generations themselves stay beside the models (too large for results/).
  rpr.save_samples(pathlib.Path(zoo.dir) / "regimes_samples.npz",
                   **samples, **{f"theory_N{n}": x for n, x in theory.items()})
  progress.step("sampling")
  rows, per_size, stat_arrays, per_noise = analyze(groups, samples, theory, ds, subsets, sims,
                                                  config)
  # The per-noise values behind every score and interval (beside the generations).
  io.save_npz(pathlib.Path(zoo.dir) / "regimes_per_noise.npz",
              **{f"N{n}_{k}": v for n, d in per_noise.items() for k, v in d.items()})
  progress.step("scores")
  plane = noise_plane_maps(groups, theory, th_dens, ds, subsets, noise, sigmas, sims, config)
  progress.step("noise plane")
  summary = summarize(per_size, plane, groups, config, cal.threshold)
  seconds = time.time() - t0
  io.save_npz(workdir / "figures.npz",
              **figure_arrays(cal, groups, samples, theory, plane, ds, subsets, sims, config),
              **stat_arrays)
  io.save_csv(workdir / "regimes.csv", rows)
  metrics_out = dict(
      threshold=cal.threshold, calibration_accuracy=cal.accuracy,
      threshold_learned=None if cal_learned is None else cal_learned.threshold,
      calibration_accuracy_learned=None if cal_learned is None else cal_learned.accuracy,
      paper_threshold=float(config.paper_threshold), sampler=config.sampler,
      num_evaluations=int(2 * int(config.steps) - 1), num_noises=int(config.num_noises),
      sizes=[int(n) for n in zoo.sizes], widths=[g.name for g in groups],
      groups={g.name: dict(workdir=g.workdir, **g.info) for g in groups},
      per_size=[_jsonable_size(s) for s in per_size],
      noise_plane=dict(anchors=plane["anchors"], rows=[
          dict(N=r["N"], agreement=r["agreement"],
               boundary={k: v["boundary"] for k, v in r["maps"].items()})
          for r in plane["rows"]]),
      summary=summary, train_seconds=t_train, seconds=seconds)
  progress.step("figure arrays")
  return metrics_out




def verdicts(config: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  """Memorization, Theorem 1, generalization, wider memorizes longer, RP regained,
  the dip, noise plane."""
  out = []
  for j in report_lib.judgements(config, metrics):
    if not j.get("tested", True):
      out.append(verdicts_lib.Verdict(claim=j["claim"], verdict="not tested",
                                      criterion=j["criterion"], measured=j["measured"],
                                      source=j["source"]))
      continue
    out.append(verdicts_lib.judge(all(ok for ok, _ in j["checks"]), claim=j["claim"],
                                  criterion=j["criterion"], measured=j["measured"],
                                  source=j["source"]))
  return out


def render(config: Settings, metrics: dict, workdir) -> None:
  """The seven figures and report.md, from the metrics and figures.npz."""
  workdir = pathlib.Path(workdir)
  with np.load(workdir / "figures.npz") as f:
    arrays = {k: f[k] for k in f.files}
  figures(workdir, metrics, arrays, config)
  io.write_text(workdir / "report.md", report_lib.report_text(metrics, config))


def _mean(values) -> float:
  return float(np.mean(values)) if len(values) else float("nan")


def _jsonable_size(s):
  out = {k: v for k, v in s.items()}
  for k in ("rp_cal", "rp_paper", "mae", "sim_mean", "rp_cal_ci", "rp_paper_ci", "mae_ci"):
    out[k] = np.round(np.asarray(s[k], np.float64), 4).tolist()
  return out


def _band_flags(per_size, index: int, min_rp: float, min_lo: float) -> list[bool]:
  """At each band threshold: RP between seeds at `per_size[index]` ≥ `min_rp` with
  the lower end of its interval > `min_lo`."""
  b = per_size[index]["band"]
  return [bool(v >= min_rp and ci[0] > min_lo) for v, ci in zip(b["rp_seed"], b["rp_seed_ci"])]


def summarize(per_size, plane, groups, config, threshold: float) -> dict:
  """The verdict numbers, computed from the measured scores and their intervals."""
  names = [g.name for g in groups]
  first, last = per_size[0], per_size[-1]
  w = lambda s, name, k: s["widths"][name][k]
  mem_small = all(w(first, nm, "regime") == "memorization" for nm in names)
  gen_large = all(w(last, nm, "gl_cal") > config.band_gl_gen for nm in names)
  rp_seed = [s["rp_seed"] for s in per_size]
  lo, hi = ([s["rp_seed_ci"][j] for s in per_size] for j in (0, 1))
  dip_at, dip_holds = stats.dip(rp_seed, lo, hi)
  band_t = first["band"]["thresholds"]
  dip_band = []
  for j in range(len(band_t)):
    bands = [s["band"] for s in per_size]
    dip_band.append(stats.dip([b["rp_seed"][j] for b in bands], [b["rp_seed_ci"][j][0] for b in bands],
                              [b["rp_seed_ci"][j][1] for b in bands])[1])
  # Where each width leaves memorization: the first N that is not memorization.
  leave = {}
  for nm in names:
    leave[nm] = next((s["N"] for s in per_size if s["widths"][nm]["regime"] != "memorization"),
                     None)
  wider_memorizes_longer = wider_fraction = None
  if len(names) >= 2:
    gl_narrow = [w(s, names[0], "gl_cal") for s in per_size]
    gl_wide = [w(s, names[-1], "gl_cal") for s in per_size]
    wider_fraction = float(np.mean(np.array(gl_wide) <= np.array(gl_narrow)
                                   + config.wider_gl_margin))
    wider_memorizes_longer = bool(wider_fraction >= config.wider_min_fraction)
  plane_rows = []
  for r in plane["rows"]:
    pairs = {k: v for k, v in r["agreement"].items() if "eps*" not in k}
    to_th = {k: v for k, v in r["agreement"].items() if "eps*" in k}
    agree = [v["agreement"] for v in pairs.values()]
    plane_rows.append(dict(
        N=r["N"],
        agree_models=_mean(agree),
        agree_models_range=[float(min(agree)), float(max(agree))] if agree else None,
        chance_models=_mean([v["chance"] for v in pairs.values()]),
        agree_theory=float(np.mean([v["agreement"] for v in to_th.values()])),
        chance_theory=float(np.mean([v["chance"] for v in to_th.values()]))))
  cross = [s["rp_cross"] for s in per_size]
  has_cross = len(names) > 1
  dip_size = per_size[dip_at] if dip_at is not None else None
  return dict(
      memorization_at_smallest_N=mem_small, generalization_at_largest_N=gen_large,
      regimes_smallest_N={nm: w(first, nm, "regime") for nm in names},
      rp_seed_smallest_N=first["rp_seed"], rp_seed_smallest_N_ci=first["rp_seed_ci"],
      rp_seed_largest_N=last["rp_seed"], rp_seed_largest_N_ci=last["rp_seed_ci"],
      rp_seed_min=float(np.nanmin(rp_seed)) if np.isfinite(rp_seed).any() else float("nan"),
      rp_seed_min_N=(int(per_size[int(np.nanargmin(rp_seed))]["N"])
                     if np.isfinite(rp_seed).any() else None),
      dip_N=None if dip_size is None else dip_size["N"],
      rp_seed_dip=None if dip_size is None else dip_size["rp_seed"],
      rp_seed_dip_ci=None if dip_size is None else dip_size["rp_seed_ci"],
      dip_holds=dip_holds, dip_band=dip_band,
      memorization_rp_band=_band_flags(per_size, 0, config.min_rp_memorization,
                                       config.min_rp_memorization_lo),
      generalization_rp_band=_band_flags(per_size, -1, config.min_rp_generalization,
                                         config.min_rp_generalization_lo),
      band_thresholds=band_t,
      threshold_in_band=bool(config.threshold_band[0] <= threshold <= config.threshold_band[1]),
      gl_smallest_N=first["gl"], gl_smallest_N_ci=first["gl_ci"],
      gl_largest_N={nm: w(last, nm, "gl_cal") for nm in names},
      gl_largest_N_ci={nm: w(last, nm, "gl_cal_ci") for nm in names},
      rp_cross_smallest_N=first["rp_cross"], rp_cross_smallest_N_ci=first["rp_cross_ci"],
      rp_cross_largest_N=last["rp_cross"], rp_cross_largest_N_ci=last["rp_cross_ci"],
      rp_cross_min=float(np.nanmin(cross)) if has_cross else float("nan"),
      rp_cross_min_N=int(per_size[int(np.nanargmin(cross))]["N"]) if has_cross else None,
      rp_theory_smallest_N=first["rp_theory"], rp_theory_smallest_N_ci=first["rp_theory_ci"],
      rp_theory_largest_N=last["rp_theory"], rp_theory_largest_N_ci=last["rp_theory_ci"],
      theory_gl_max=float(max(s["theory"]["gl_cal"] for s in per_size)),
      leaves_memorization_at=leave, wider_memorizes_longer=wider_memorizes_longer,
      wider_fraction=wider_fraction,
      gl_narrowest=[w(s, names[0], "gl_cal") for s in per_size],
      gl_narrowest_ci=[w(s, names[0], "gl_cal_ci") for s in per_size],
      gl_widest=[w(s, names[-1], "gl_cal") for s in per_size],
      gl_widest_ci=[w(s, names[-1], "gl_cal_ci") for s in per_size],
      regimes=[dict(N=s["N"], regime=s["regime"]) for s in per_size],
      plane=plane_rows, learned=_learned_summary(per_size))


def _learned_summary(per_size) -> dict | None:
  """The seed, GL and dip numbers under the learned descriptor (None without it)."""
  if "rp_seed_learned" not in per_size[0]:
    return None
  first, last = per_size[0], per_size[-1]
  rp = [s["rp_seed_learned"] for s in per_size]
  lo, hi = ([s["rp_seed_learned_ci"][j] for s in per_size] for j in (0, 1))
  dip_at, dip_holds = stats.dip(rp, lo, hi)
  return dict(
      rp_seed_smallest_N=first["rp_seed_learned"], rp_seed_smallest_N_ci=first["rp_seed_learned_ci"],
      rp_seed_largest_N=last["rp_seed_learned"], rp_seed_largest_N_ci=last["rp_seed_learned_ci"],
      gl_smallest_N=first["gl_learned"], gl_smallest_N_ci=first["gl_learned_ci"],
      gl_largest_N=last["gl_learned"], gl_largest_N_ci=last["gl_learned_ci"],
      dip_N=None if dip_at is None else per_size[dip_at]["N"],
      rp_seed_dip=None if dip_at is None else rp[dip_at],
      rp_seed_dip_ci=None if dip_at is None else [lo[dip_at], hi[dip_at]],
      dip_holds=dip_holds)


def _grid_sizes(sizes) -> list[int]:
  """The N of the Fig. 1 panels: smallest, middle and largest."""
  return list(dict.fromkeys([sizes[0], sizes[len(sizes) // 2], sizes[-1]]))


def figure_arrays(cal, groups, samples, theory, plane, ds, subsets, sims, config) -> dict:
  """What the figures draw beyond metrics.json (saved as figures.npz).

  `cal_*`: calibration similarities; `pair_labels`, `pair_i [B]`: similarities
  of model pairs of the widest group; `grid_sizes`, `grid{p}_labels`,
  `grid{p}_{r} [C, H, W, ch]`: the image rows of Fig. 1 (ε*, each model, the
  nearest training image of the last model); `plane_axis`, `plane{r}_names`,
  `plane{r}_{k}_labels / _values [G, G]`, `plane{r}_{k}_anchors [3, H, W, ch]`:
  the Fig. 4 maps of row r.
  """
  sizes = [int(n) for n in config.zoo.sizes]
  wide = groups[-1]
  xw = samples[wide.name]
  pairs = {}
  for n in dict.fromkeys([sizes[0], sizes[-1]]):
    idx = np.flatnonzero(wide.sizes == n)
    if len(idx) >= 2:
      pairs[f"{wide.name} seed pair, N={n}"] = metrics.paired_similarity(
          xw[idx[0]], xw[idx[1]], sims["cal"])
    pairs[f"{wide.name} vs ε*, N={n}"] = metrics.paired_similarity(
        xw[idx[0]], theory[n], sims["cal"])
  out = dict(cal_distinct=cal.distinct, cal_perturbed=cal.perturbed,
             pair_labels=np.array(list(pairs)),
             **{f"pair_{i}": v for i, v in enumerate(pairs.values())})
  cols = int(config.grid_columns)
  grid = _grid_sizes(sizes)
  out["grid_sizes"] = np.array(grid)
  for p, n in enumerate(grid):
    train = ds.x[subsets[n]]
    rows = [("ε* (Theorem 1)", theory[n][:cols])]
    rows += [(label, x[:cols]) for label, _, _, x in _entries(groups, samples, n)]
    near = np.asarray(metrics.max_similarity(rows[-1][1], train, sims["cal"]).index)
    rows.append((f"nearest training image\nto {rows[-1][0]}", train[near]))
    out[f"grid{p}_labels"] = np.array([label for label, _ in rows])
    out.update({f"grid{p}_{r}": x for r, (_, x) in enumerate(rows)})
  out["plane_axis"] = plane["axis"]
  for r, row in enumerate(plane["rows"]):
    out[f"plane{r}_names"] = np.array(list(row["maps"]))
    for k, m in enumerate(row["maps"].values()):
      out.update({f"plane{r}_{k}_labels": m["labels"], f"plane{r}_{k}_values": m["values"],
                  f"plane{r}_{k}_anchors": m["anchor_images"]})
  return out


def figures(workdir, m: dict, a: dict, config: Settings) -> None:
  """calibration.png, regimes.png (Fig. 2), rp_theory.png (Fig. 6), threshold_band.png,
  similarity_distributions.png, samples.png (Fig. 1), noise_plane.png (Fig. 4) from
  the metrics `m` and figures.npz `a`."""
  workdir = pathlib.Path(workdir)
  names, per_size = m["widths"], m["per_size"]
  cal = metrics.Calibration(threshold=m["threshold"], distinct=a["cal_distinct"],
                            perturbed=a["cal_perturbed"], accuracy=m["calibration_accuracy"])
  pairs = {str(label): a[f"pair_{i}"] for i, label in enumerate(a["pair_labels"])}
  plots.calibration(workdir / "calibration.png", cal, float(config.paper_threshold), pairs,
                    config.similarity)
  plots.regimes(workdir / "regimes.png", per_size, names, config)
  plots.rp_theory(workdir / "rp_theory.png", per_size, names, config)
  sizes = [s["N"] for s in per_size]
  plots.threshold_band(workdir / "threshold_band.png", a["curve_thresholds"],
                       {k: a[f"curve_{k}"] for k in ("rp_seed", "gl")}, per_size,
                       m["threshold"], float(config.paper_threshold), config.threshold_band,
                       float(config.ci_level))
  if "curve_learned_rp_seed" in a:
    lt = float(m["threshold_learned"])
    hw = float(config.learned_band_halfwidth)
    plots.threshold_band(workdir / "threshold_band_learned.png", a["curve_learned_thresholds"],
                         {k: a[f"curve_learned_{k}"] for k in ("rp_seed", "gl")}, per_size, lt,
                         None, (lt - hw, lt + hw), float(config.ci_level),
                         band_key="band_learned", descriptor="learned")
  plots.similarity_distributions(workdir / "similarity_distributions.png", a["hist_edges"],
                                 {"seed": a["hist_seed"], "train": a["hist_train"]}, sizes,
                                 m["threshold"], float(config.paper_threshold),
                                 config.threshold_band)
  panels = []
  for p, n in enumerate(int(n) for n in a["grid_sizes"]):
    labels = [str(label) for label in a[f"grid{p}_labels"]]
    reg = next(s["regime"] for s in per_size if s["N"] == n)
    panels.append((f"N = {n} ({reg})",
                   [(label, a[f"grid{p}_{r}"]) for r, label in enumerate(labels)]))
  plots.sample_grid(workdir / "samples.png", panels, int(config.grid_columns))
  rows = []
  for r, row in enumerate(m["noise_plane"]["rows"]):
    maps = {str(name): dict(labels=a[f"plane{r}_{k}_labels"], values=a[f"plane{r}_{k}_values"],
                            anchor_images=a[f"plane{r}_{k}_anchors"])
            for k, name in enumerate(a[f"plane{r}_names"])}
    rows.append(dict(N=row["N"], maps=maps, agreement=row["agreement"]))
  plots.noise_plane_figure(workdir / "noise_plane.png", dict(axis=a["plane_axis"], rows=rows),
                           names)
