"""Subspace clustering: the trained K > 1 mixture denoiser vs K-subspaces.

Low-dim talk, "Equivalence to subspace clustering" (docs/theory.md §4.7):
training `x_θ = α/(α²+β²) Σ_k w_k(θ; x_t) U_k U_kᵀ x_t` (`U_k [D, r]`,
`[U_1 … U_K]` orthonormal) on a MoLRG sample `x_i [D]` is the
subspace-clustering problem `max (1/N) Σ_k Σ_{i∈C_k} ‖U_kᵀ x_i‖²`, and the
samples needed grow linearly with the intrinsic dimension r, not with the
ambient D.  Noise convention: `x_t = α x0 + β ε` with `α = s(t)`,
`β = s(t) σ(t)` of the schedule (docs/theory.md §0.1).

For each (K, D) the whole (seed, N, r) grid is trained by one
`lowrank.train_grid` call and clustered by one `clustering.k_subspaces_grid`
call, on the same data.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import io
from repro_jax import plotting
from repro_jax import settings as settings_lib
from repro_jax.lowrank import clustering
from repro_jax.lowrank import model as lowrank
from repro_jax.lowrank import molrg_grid
from repro_jax.studies import _clustering_hard
from repro_jax.studies import verdicts as verdicts_lib
from repro_jax.studies.pca_equivalence import fit_boundary
from repro_jax.studies.pca_equivalence import load_rows
from repro_jax.studies.pca_equivalence import overall
from repro_jax.studies.pca_equivalence import train_config

SOURCE = "low-dim talk [L], \"Equivalence to subspace clustering\"; docs/theory.md §4.7"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Train:
  """The mixture denoiser's optimizer (fields of `lowrank.TrainConfig`): Monte
  Carlo t and ε, ε drawn in the model's coordinates, seeded initialization."""
  objective: str = "mc"
  noise_space: str = "model"
  noise_per_point: int = 2
  steps: int = 200
  learning_rate: float = 0.1
  optimizer: str = "sgd"
  momentum: float = 0.9
  schedule: str = "vp"
  t_min: float = 0.01
  t_max: float = 0.1
  init: str = "seeded"
  restarts: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """The panels, the optimizers and the criteria (declared before measuring)."""
  seed: int = 0
  ks: tuple[int, ...] = (2, 3)                 # K of the phase diagrams
  dims: tuple[int, ...] = (48, 96)             # D: the talk's 48, and twice it
  ranks: tuple[int, ...] = (2, 4, 6, 8)        # r (every component)
  ns: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)   # N per component
  num_seeds: int = 3
  threshold: float = 0.5           # success: min_π max_k ‖P_k − P_g,π(k)‖_F below this
  train: Train = Train()
  # Random initializations (K = ks[0], D = dims[0], N ∈ random_ns): how often
  # plain training from a random start finds the clustering solution.
  random_ns: tuple[int, ...] = (10, 12)
  random_restarts: int = 4
  # Two solutions on the same data whose clustering objectives differ by less
  # than this (relative) are not ranked against each other.
  concordance_tolerance: float = 1e-3
  # K-subspaces baseline.
  kss_iters: int = 15
  kss_restarts: int = 4
  # Criteria.
  boundary_level: float = 0.5      # the boundary N*(r): smallest N with recovery rate ≥ this
  min_boundary_slope: float = 0.5  # linear in r: the fitted slope of N*(r) in
  max_boundary_slope: float = 2.0  # [min, max] in every (K, D) panel
  max_boundary_shift: float = 1.0  # not with D: doubling D moves N* by ≤ this (samples)
  # Training = clustering: trained and K-subspaces bases agree (distance
  # < threshold) in at least this fraction of the N > r cells of every panel.
  min_agreement: float = 0.95
  # Outside the theorem's set-up (`_clustering_hard`): K = 2, one rank, x = U a + ν e.
  # Three sweeps on the same N grid (N per component; the minority's with unequal sizes):
  # noise ν at every D of noise_dims; principal angle θ between U_0 and U_1 (ν = 0);
  # size ratios majority : minority (ν = sizes_noise; the minority's N runs up to
  # max(hard_ns) / ratio).  Empty hard_ns skips them.
  hard_rank: int = 4
  hard_ns: tuple[int, ...] = (2, 4, 8, 16, 32)
  hard_seeds: int = 3
  noise_dims: tuple[int, ...] = (48, 96)
  noises: tuple[float, ...] = (0.0, 0.05, 0.1)
  angles: tuple[float, ...] = (90.0, 60.0, 45.0, 30.0, 15.0)
  size_ratios: tuple[int, ...] = (1, 2, 4)
  sizes_noise: float = 0.05
  spectral_neighbours: int = 5     # TSC affinity: nearest neighbours kept per point
  bootstrap_resamples: int = 2000  # seed bootstrap
  ci_level: float = 0.95
  # Criteria outside the theorem.  Perturbation law: measured / predicted rms
  # distance within 1 ± max_perturbation_error where N ≥ perturbation_min_n · r
  # and the prediction ≤ perturbation_regime (first order needs a small error).
  max_perturbation_error: float = 0.3
  perturbation_min_n: float = 4.0
  perturbation_regime: float = 0.4
  # Angles: trained label accuracy ≥ K-subspaces' − accuracy_margin (CI lower
  # end) at every θ ≥ min_angle.
  accuracy_margin: float = 0.05
  min_angle: float = 30.0

  def __post_init__(self):
    if self.hard_ns and 2 * self.hard_rank > min(self.noise_dims):
      raise ValueError(f"two orthogonal rank-{self.hard_rank} subspaces need D ≥ "
                       f"{2 * self.hard_rank}; noise_dims = {self.noise_dims}.")
    if self.hard_ns and (min(self.size_ratios) < 1):
      raise ValueError(f"size_ratios must be >= 1; got {self.size_ratios}.")


VARIANTS = ("cpu", "smoke", "paper")
_VARIANTS = {
    "cpu": {},
    "smoke": dict(ks=(2,), dims=(12,), ranks=(1, 2), ns=(1, 2, 3, 4), num_seeds=2,
                  train=dict(steps=120),
                  random_ns=(),          # the random-start panel runs at cpu scale only
                  kss_iters=6, kss_restarts=2,
                  hard_rank=2, hard_ns=(2, 4, 8, 16), hard_seeds=2, noise_dims=(12,),
                  noises=(0.0, 0.05), angles=(90.0, 45.0), size_ratios=(1, 2),
                  bootstrap_resamples=200),
    "paper": dict(ranks=(2, 4, 6, 8, 10, 12), ns=tuple(range(1, 19)), num_seeds=10,
                  train=dict(steps=1000, noise_per_point=8, restarts=4),
                  random_ns=(12, 18), random_restarts=16, kss_iters=30, kss_restarts=10,
                  hard_ns=(2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128), hard_seeds=10,
                  noise_dims=(48, 96, 192), noises=(0.0, 0.02, 0.05, 0.1, 0.15, 0.2),
                  angles=(90.0, 75.0, 60.0, 45.0, 30.0, 15.0), size_ratios=(1, 2, 4, 8)),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default, under a minute), `smoke` (seconds) or `paper` (r ≤ 12,
  N ≤ 18, 10 seeds, longer training)."""
  if variant not in _VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  return settings_lib.override(Settings(), _VARIANTS[variant])


@jax.jit
def _cell_metrics(bases, kss_bases, truth, data, mask, labels):
  """Per-cell distances, accuracies and objectives (vmapped over cells).

  Shapes: bases, kss_bases, truth `[C, K, D, R]`; data `[C, N_max, D]`;
  mask, labels `[C, N_max]`.
  """
  k = truth.shape[1]

  def one(b, kb, tr, x, m, lab):
    flat = jnp.transpose(b, (1, 0, 2)).reshape(b.shape[1], -1)           # [D, K R]
    active = jnp.transpose(tr, (1, 0, 2)).reshape(tr.shape[1], -1)
    gram = flat.T @ flat
    want = jnp.diag(jnp.sum(jnp.square(active), 0) > 0.5).astype(gram.dtype)
    return dict(
        orthonormality=jnp.max(jnp.abs(gram - want)),
        dist_trained=clustering.max_matched_distance(b, tr),
        dist_kss=clustering.max_matched_distance(kb, tr),
        dist_trained_kss=clustering.max_matched_distance(b, kb),
        acc_trained=clustering.label_accuracy(clustering.assign(x, b), lab, m, k),
        acc_kss=clustering.label_accuracy(clustering.assign(x, kb), lab, m, k),
        obj_trained=clustering.clustering_objective(x, m, b),
        obj_kss=clustering.clustering_objective(x, m, kb),
        obj_truth=clustering.clustering_objective(x, m, tr))
  return jax.vmap(one)(bases, kss_bases, truth, data, mask, labels)


def run_panel(s: Settings, key, k, d):
  """One (K, D) phase diagram: train, cluster, measure.  Returns rows, timings."""
  grid = molrg_grid.molrg_grid(key, range(s.num_seeds), s.ns, s.ranks,
                               dim=d, num_components=k)
  cell_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, 1), i))(
      jnp.arange(grid.n.shape[0]))
  cfg = train_config(s.train, k)
  t0 = time.time()
  res = lowrank.train_grid(cell_keys, grid.data, grid.mask, grid.rank_mask, cfg)
  jax.block_until_ready(res.bases)
  t_train = time.time() - t0
  t0 = time.time()
  kss = clustering.k_subspaces_grid(cell_keys, grid.data, grid.mask, grid.rank_mask, k,
                                    iters=s.kss_iters, restarts=s.kss_restarts)
  jax.block_until_ready(kss.bases)
  t_kss = time.time() - t0
  met = jax.device_get(_cell_metrics(res.bases, kss.bases, grid.truth, grid.data,
                                     grid.mask, grid.labels))
  final_loss = np.asarray(res.restart_losses).min(-1)
  rows = []
  for i in range(grid.n.shape[0]):
    rows.append(dict(K=k, D=d, seed=int(grid.seed[i]), n=int(grid.n[i]), r=int(grid.r[i]),
                     loss=float(final_loss[i]),
                     **{name: float(v[i]) for name, v in met.items()}))
  return rows, grid, dict(train=t_train, kss=t_kss), res


def random_init_panel(s: Settings, key, k, d, grid, seeded_loss):
  """Plain training from random starts on the cells with N ∈ `random_ns`."""
  cfg = train_config(s.train, k, init="random", restarts=1)
  cells = np.nonzero(np.isin(np.asarray(grid.n), s.random_ns))[0]
  idx = jnp.asarray(np.repeat(cells, s.random_restarts))
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, 7), i))(
      jnp.arange(idx.shape[0]))
  t0 = time.time()
  res = lowrank.train_grid(keys, grid.data[idx], grid.mask[idx], grid.rank_mask[idx], cfg)
  dist = jax.vmap(clustering.max_matched_distance)(res.bases, grid.truth[idx])
  obj = jax.vmap(clustering.clustering_objective)(grid.data[idx], grid.mask[idx], res.bases)
  jax.block_until_ready(dist)
  idx = np.asarray(idx)
  return dict(dist=np.asarray(dist), loss=np.asarray(res.restart_losses[:, 0]),
              objective=np.asarray(obj), n=np.asarray(grid.n)[idx],
              r=np.asarray(grid.r)[idx], cell=idx,
              seeded_loss=np.asarray(seeded_loss["loss"])[idx],
              seeded_objective=np.asarray(seeded_loss["objective"])[idx],
              seconds=time.time() - t0)


# The columns of random_init.csv (one row per random start).
_RANDOM_COLUMNS = ("cell", "n", "r", "dist", "loss", "objective", "seeded_loss",
                   "seeded_objective")


def _random_summary(s: Settings, random_init, panels):
  """Success of random starts, and whether the loss orders solutions as the
  clustering objective does."""
  ri = random_init
  th = s.threshold
  ri_ok = ri["dist"] < th
  big = ri["n"] > ri["r"]
  ri_fail = ~ri_ok & big
  random_summary = dict(
      K=panels[0][0], D=panels[0][1], runs=int(ri_ok.size), ns=list(s.random_ns),
      success_rate_n_gt_r=float(ri_ok[big].mean()) if big.any() else None,
      success_rate_by_r={int(r): float(ri_ok[big & (ri["r"] == r)].mean())
                         for r in np.unique(ri["r"][big])},
      failures_with_higher_loss=(float(np.mean(ri["loss"][ri_fail] > ri["seeded_loss"][ri_fail]))
                                 if ri_fail.any() else None))
  # Each cell's random runs plus its seeded run, compared pairwise.
  cells = np.concatenate([ri["cell"], np.unique(ri["cell"])])
  first = np.unique(ri["cell"], return_index=True)[1]
  conc, pairs = concordance(
      cells, np.concatenate([ri["loss"], ri["seeded_loss"][first]]),
      np.concatenate([ri["objective"], ri["seeded_objective"][first]]),
      tol=s.concordance_tolerance)
  random_summary.update(loss_objective_concordance=conc, pairs=pairs)
  return random_summary


def concordance(cell, loss, objective, tol=1e-3):
  """Fraction of same-cell pairs of solutions whose training losses are ordered
  as their clustering objectives are (lower loss ⇔ higher objective); pairs
  whose objectives differ by less than `tol` (relative) are skipped.

  Args:
    cell, loss, objective: `[M]`, one entry per solution.

  Returns `(fraction or None when no pair counts, number of pairs)`.
  """
  agree = total = 0
  for c in np.unique(cell):
    i = np.nonzero(cell == c)[0]
    for a in range(len(i)):
      for b in range(a + 1, len(i)):
        do = objective[i[a]] - objective[i[b]]
        if abs(do) <= tol * max(abs(objective[i[a]]), abs(objective[i[b]])):
          continue
        total += 1
        agree += (loss[i[a]] - loss[i[b]]) * do < 0
  return (agree / total if total else None), total


def measure_hard(s: Settings, key, ctx):
  """The three sweeps outside the theorem (`_clustering_hard.run_sweep`): rows
  with a `sweep` column, and seconds per sweep and method."""
  train_cfg = lambda **kw: train_config(s.train, 2, **kw)
  d0 = s.noise_dims[0]
  jobs = [("noise", dict(dim=d, noises=s.noises, angles=(90.0,), sizes=None))
          for d in s.noise_dims]
  jobs.append(("angle", dict(dim=d0, noises=(0.0,), angles=s.angles, sizes=None)))
  jobs += [("sizes", dict(dim=d0, noises=(s.sizes_noise,), angles=(90.0,),
                          sizes=(ratio, 1))) for ratio in s.size_ratios]
  progress = ctx.progress(len(s.noise_dims))
  return _clustering_hard.run_sweeps(s, jax.random.fold_in(key, 1000), train_cfg, jobs,
                                     progress)


def measure(s: Settings, ctx) -> dict:
  """Run every (K, D) panel; writes cells.csv (and random_init.csv), returns the
  per-panel aggregates."""
  t_start = time.time()
  key = jax.random.PRNGKey(s.seed)
  panels = [(k, d) for k in s.ks for d in s.dims]
  progress = ctx.progress(len(panels))
  rows, timings, random_init = [], {}, None
  ns, rs = np.asarray(s.ns), np.asarray(s.ranks)
  for j, (k, d) in enumerate(panels):
    pkey = jax.random.fold_in(key, 100 * k + d)
    panel_rows, grid, tim, res = run_panel(s, pkey, k, d)
    rows += panel_rows
    timings[f"K={k},D={d}"] = tim
    if j == 0 and s.random_ns:
      random_init = random_init_panel(
          s, pkey, k, d, grid,
          dict(loss=[x["loss"] for x in panel_rows],
               objective=[x["obj_trained"] for x in panel_rows]))
      timings["random_init"] = random_init["seconds"]
    progress.step(f"K={k} D={d}: train {tim['train']:.1f}s, K-subspaces {tim['kss']:.1f}s")
  io.save_csv(ctx.workdir / "cells.csv", rows)
  if random_init is not None:
    io.save_csv(ctx.workdir / "random_init.csv",
                [{c: random_init[c][i] for c in _RANDOM_COLUMNS}
                 for i in range(len(random_init["cell"]))])

  th = s.threshold
  summary = []
  for k, d in panels:
    sel = [x for x in rows if x["K"] == k and x["D"] == d]
    succ = np.array([x["dist_trained"] < th for x in sel], float).reshape(
        s.num_seeds, len(ns), len(rs))
    rate = succ.mean(0)
    n_star, slope, intercept = fit_boundary(ns, rs, rate, s.boundary_level)
    above = [x for x in sel if x["n"] > x["r"]]
    summary.append(dict(
        K=k, D=d, cells=len(sel), rate=rate.tolist(), n_star=n_star.tolist(),
        slope=slope, intercept=intercept,
        success_n_ge_r=float(np.mean([x["dist_trained"] < th for x in sel if x["n"] >= x["r"]])),
        success_n_lt_r=float(np.mean([x["dist_trained"] < th for x in sel if x["n"] < x["r"]])),
        kss_success_n_ge_r=float(np.mean([x["dist_kss"] < th for x in sel if x["n"] >= x["r"]])),
        agreement_n_gt_r=float(np.mean([x["dist_trained_kss"] < th for x in above])),
        median_dist_trained_kss_n_gt_r=float(np.median([x["dist_trained_kss"] for x in above])),
        max_dist_trained_kss_n_gt_r=float(np.max([x["dist_trained_kss"] for x in above])),
        acc_trained_n_gt_r=float(np.mean([x["acc_trained"] for x in above])),
        acc_kss_n_gt_r=float(np.mean([x["acc_kss"] for x in above])),
        min_acc_trained_n_gt_r=float(np.min([x["acc_trained"] for x in above])),
        max_joint_orthonormality_error=float(np.max([x["orthonormality"] for x in sel])),
        train_seconds=timings[f"K={k},D={d}"]["train"],
        kss_seconds=timings[f"K={k},D={d}"]["kss"]))

  random_summary = None if random_init is None else _random_summary(s, random_init, panels)

  hard = None
  if s.hard_ns:
    hard_rows, hard_seconds = measure_hard(s, key, ctx)
    io.save_csv(ctx.workdir / "hard.csv", hard_rows)
    hard = _clustering_hard.summarize(s, hard_rows)
    timings["hard"] = hard_seconds

  by_d = {}
  for p in summary:
    by_d.setdefault(p["K"], {})[p["D"]] = p
  d_shift = []
  for k, per in by_d.items():
    ds = sorted(per)
    for a, b in zip(ds, ds[1:]):
      na, nb = np.array(per[a]["n_star"]), np.array(per[b]["n_star"])
      d_shift.append(float(np.nanmax(np.abs(na - nb))))
  return dict(
      panels=summary, random_init=random_summary, hard=hard, timings=timings,
      max_boundary_shift_between_dims=max(d_shift) if d_shift else None,
      train_config=dataclasses.asdict(train_config(s.train, s.ks[0])),
      seconds=time.time() - t_start)


def verdicts(s: Settings, m: dict) -> list[verdicts_lib.Verdict]:
  """Linear in r, not in D, and the same subspaces as K-subspaces."""
  panels = m["panels"]
  name = lambda p: f"K={p['K']}, D={p['D']}"
  slopes = [float(p["slope"]) for p in panels]
  shift = m["max_boundary_shift_between_dims"]
  shift_claim = "The samples needed do not grow with the ambient dimension D."
  shift_criterion = (f"doubling D moves the boundary N*(r) by at most "
                     f"{s.max_boundary_shift:g} sample(s) per component, for every K and r")
  if shift is None:    # one D only
    not_with_d = verdicts_lib.Verdict(
        claim=shift_claim, verdict="not tested", criterion=shift_criterion + " (one D only)",
        measured=dict(max_boundary_shift_between_dims=None), source=SOURCE)
  else:
    not_with_d = verdicts_lib.judge(
        shift <= s.max_boundary_shift, claim=shift_claim, criterion=shift_criterion,
        measured=dict(max_boundary_shift_between_dims=shift), source=SOURCE)
  hard = [] if m.get("hard") is None else _clustering_hard.verdicts(s, m["hard"], SOURCE)
  return [
      verdicts_lib.judge(
          all(np.isfinite(a) and s.min_boundary_slope <= a <= s.max_boundary_slope
              for a in slopes),
          claim="The samples needed to recover the K subspaces grow linearly with the "
                "intrinsic dimension r.",
          criterion=f"the fitted boundary N* = a r + b (smallest N per component with "
                    f"recovery rate ≥ {s.boundary_level:g}) has a finite slope a in "
                    f"[{s.min_boundary_slope:g}, {s.max_boundary_slope:g}] in every (K, D) panel",
          measured={f"slope ({name(p)})": a for p, a in zip(panels, slopes)},
          source=SOURCE),
      not_with_d,
      verdicts_lib.judge(
          all(p["agreement_n_gt_r"] >= s.min_agreement for p in panels),
          claim="Training the K > 1 mixture denoiser is subspace clustering: it finds the "
                "subspaces K-subspaces finds.",
          criterion=f"trained and K-subspaces bases within best-matched max_k "
                    f"‖P_k − P'_k‖_F < {s.threshold:g} in ≥ {s.min_agreement:.0%} of the "
                    f"N > r cells of every (K, D) panel",
          measured={f"agreement ({name(p)})": p["agreement_n_gt_r"] for p in panels},
          source=SOURCE),
  ] + hard


def render(s: Settings, metrics: dict, workdir) -> None:
  """sc_phase.png, sc_agreement.png and report.md from the metrics, cells.csv
  and random_init.csv."""
  workdir = pathlib.Path(workdir)
  # metrics.json writes a nan as "nan".
  panels = [dict(p, slope=float(p["slope"]), intercept=float(p["intercept"]),
                 n_star=[float(v) for v in p["n_star"]]) for p in metrics["panels"]]
  metrics = dict(metrics, panels=panels)
  rows = load_rows(workdir / "cells.csv")
  ri = None
  if (workdir / "random_init.csv").exists():
    runs = load_rows(workdir / "random_init.csv")
    ri = {c: np.array([x[c] for x in runs]) for c in _RANDOM_COLUMNS}
  _figures(workdir, s, rows, panels, np.asarray(s.ns), np.asarray(s.ranks), ri)
  if metrics.get("hard") is not None:
    _clustering_hard.figure(s, load_rows(workdir / "hard.csv"), metrics["hard"],
                            workdir / "sc_hard.png")
  _report(workdir, s, metrics)


def _figures(workdir, s, rows, summary, ns, rs, ri):
  plt = plotting.pyplot()
  ks, dims = list(s.ks), list(s.dims)
  fig, axes = plt.subplots(len(ks), len(dims), figsize=(4.8 * len(dims) + 1, 3.8 * len(ks)),
                           squeeze=False, layout="constrained")
  edges = lambda c: np.concatenate([[c[0] - (c[1] - c[0]) / 2 if len(c) > 1 else c[0] - 0.5],
                                    (c[1:] + c[:-1]) / 2,
                                    [c[-1] + (c[-1] - c[-2]) / 2 if len(c) > 1 else c[-1] + 0.5]])
  for p in summary:
    ax = axes[ks.index(p["K"]), dims.index(p["D"])]
    im = ax.pcolormesh(edges(ns.astype(float)), edges(rs.astype(float)), np.array(p["rate"]).T,
                       cmap="magma", vmin=0, vmax=1)
    ax.plot(rs, rs, "c-", lw=1.5, label="N = r")
    if np.isfinite(p["slope"]):
      ax.plot(p["intercept"] + p["slope"] * rs, rs, "w--", lw=1,
              label=f"fit N* = {p['slope']:.2f} r {round(p['intercept'], 1) + 0.0:+.1f}")
    ax.set(xlabel="N per component", ylabel="r", yticks=rs, title=f"K = {p['K']}, D = {p['D']}")
    ax.legend(fontsize=7, loc="upper left")
  fig.colorbar(im, ax=axes, label=f"recovery rate (distance < {s.threshold})")
  fig.suptitle("trained mixture denoiser: recovery from N = r per component, for every K and D")
  io.save_figure(fig, workdir / "sc_phase.png")

  fig, ax = plt.subplots(1, 3, figsize=(16, 4.4), layout="constrained")
  x = np.array([r["dist_kss"] for r in rows])
  y = np.array([r["dist_trained"] for r in rows])
  above = np.array([r["n"] >= r["r"] for r in rows])
  ax[0].scatter(x[above], y[above], s=8, alpha=0.5, label="N ≥ r")
  ax[0].scatter(x[~above], y[~above], s=8, alpha=0.5, label="N < r")
  lim = max(x.max(), y.max()) * 1.05 + 0.05
  ax[0].plot([0, lim], [0, lim], "k:", lw=1)
  ax[0].set(xlabel="K-subspaces: distance to truth", ylabel="trained: distance to truth",
            title="same subspaces as K-subspaces")
  ax[0].text(0.35, 0.04, f"N ≥ r: all {above.sum()} cells at the origin\n(trained ≤ {y[above].max():.3f}, "
             f"K-subspaces ≤ {x[above].max():.3f})", transform=ax[0].transAxes, fontsize=7)
  ax[0].legend(fontsize=8)
  for k in ks:
    sel = [r for r in rows if r["K"] == k]
    rel = np.array([r["n"] - r["r"] for r in sel])
    grid = np.unique(rel)
    for key, style, name in (("acc_trained", "o-", "trained"), ("acc_kss", "x--", "K-subspaces")):
      v = np.array([r[key] for r in sel])
      ax[1].plot(grid, [v[rel == g].mean() for g in grid], style, ms=3,
                 label=f"{name}, K = {k}")
  ax[1].axvline(0, color="gray", lw=1)
  ax[1].set(xlabel="N − r (per component)", ylabel="cluster-assignment accuracy",
            title="labels agree with the true components")
  ax[1].legend(fontsize=7)
  if ri is None:
    ax[2].set_axis_off()
    io.save_figure(fig, workdir / "sc_agreement.png")
    return
  ok = ri["dist"] < s.threshold
  dobj = ri["objective"] / ri["seeded_objective"] - 1
  dloss = ri["loss"] - ri["seeded_loss"]
  ax[2].scatter(dobj[ok], dloss[ok], s=10, alpha=0.6, label="random init: recovered")
  ax[2].scatter(dobj[~ok], dloss[~ok], s=10, alpha=0.6,
                label="random init: stuck (mixed subspaces)")
  ax[2].axhline(0, color="gray", lw=1)
  ax[2].axvline(0, color="gray", lw=1)
  ax[2].set(xlabel="clustering objective, relative to the seeded run's",
            ylabel="training loss − seeded run's",
            title=f"K = {ks[0]}, D = {dims[0]}: lower loss ⇔ higher objective")
  ax[2].legend(fontsize=7)
  io.save_figure(fig, workdir / "sc_agreement.png")


def _report(workdir, s, m):
  table = io.markdown_table([
      {"K": p["K"], "D": p["D"], "fitted N* slope": p["slope"],
       "intercept": p["intercept"],
       "success N ≥ r (trained)": p["success_n_ge_r"],
       "success N < r (trained)": p["success_n_lt_r"],
       "success N ≥ r (K-subsp.)": p["kss_success_n_ge_r"],
       "agree w/ K-subsp. (N > r)": p["agreement_n_gt_r"],
       "median ‖trained − K-subsp.‖ (N > r)": p["median_dist_trained_kss_n_gt_r"],
       "acc. trained / K-subsp. (N > r)": f"{p['acc_trained_n_gt_r']:.3f} / {p['acc_kss_n_gt_r']:.3f}",
       "train s": p["train_seconds"], "K-subsp. s": p["kss_seconds"]}
      for p in m["panels"]], fmt="{:.3g}")
  n_star = io.markdown_table([
      {"K": p["K"], "D": p["D"],
       **{f"r={r}": n for r, n in zip(s.ranks, p["n_star"])}} for p in m["panels"]],
      fmt="{:.0f}")
  ri = m["random_init"]
  tc = m["train_config"]
  fmt = lambda v, f="{:.2f}": "n/a" if v is None else f.format(v)
  panels = m["panels"]
  shift = m["max_boundary_shift_between_dims"]
  agree = [p["agreement_n_gt_r"] for p in panels]
  verdict_text = (
      f"in the N > r cells the trained mixture denoiser and K-subspaces find the same "
      f"subspaces in {min(agree):.0%}–{max(agree):.0%} of the cells per panel (median distance "
      f"≤ {max(p['median_dist_trained_kss_n_gt_r'] for p in panels):.3f}), with label accuracy "
      f"≥ {min(p['min_acc_trained_n_gt_r'] for p in panels):.3f}; the fitted boundaries are "
      + ", ".join(f"N* = {p['slope']:.2f} r {round(p['intercept'], 1) + 0.0:+.1f} (K = {p['K']}, "
                  f"D = {p['D']})" for p in panels)
      + "; " + ("only one D was run." if shift is None else
                f"doubling D moves N* by at most {shift:.0f} sample(s) per component."))
  random_text = "" if ri is None else f"""**Random initialization** (K = {ri['K']}, D = {ri['D']}, N ∈ {ri['ns']}, {ri['runs']} runs):
plain training from Haar-random bases recovers the subspaces in only
{fmt(ri['success_rate_n_gt_r'], '{:.0%}')} of the runs with N > r (by r:
{', '.join(f"r={r}: {v:.0%}" for r, v in ri['success_rate_by_r'].items())}); the others stop in local minima where each U_k mixes
directions of several true subspaces. In {fmt(ri['failures_with_higher_loss'], '{:.0%}')} of those
failures the final training loss is higher than that of the seeded run on the same
data, and over {ri['pairs']} pairs of solutions on the same data (random and seeded runs)
the training loss orders {fmt(ri['loss_objective_concordance'], '{:.0%}')} of them as the
clustering objective does (lower loss ⇔ higher objective; right panel above): the
training loss ranks solutions as the clustering objective does (the equivalence) and
inherits its non-convexity, which is why the phase diagrams use seeded starts, as
K-subspaces does.

"""
  hard_text = "" if m.get("hard") is None else _clustering_hard.report_section(s, m["hard"]) + "\n"
  text = f"""## Subspace clustering with the K > 1 mixture denoiser (low-dim talk; docs/theory.md §4.7)

**Claim.** Training `x_θ(x_t, t) = α/(α²+β²) Σ_k w_k(θ; x_t) U_k U_kᵀ x_t`
(MoLRG posterior weights, `[U_1 … U_K]` orthonormal) is equivalent to subspace
clustering, `max (1/N) Σ_k Σ_{{i∈C_k}} ‖U_kᵀ x_i‖²`; the number of samples
needed to recover the subspaces grows linearly with the intrinsic dimension r
and not with the ambient dimension D.

**Set-up.** MoLRG with K ∈ {list(s.ks)} mutually orthogonal components of equal
rank r ∈ {list(s.ranks)}, N ∈ {list(s.ns)} points per component (balanced),
D ∈ {list(s.dims)}, {s.num_seeds} seeds; each (K, D) panel is one jitted `vmap`
over its {m['panels'][0]['cells']} cells. Training: x0 loss over t ∈ [{tc['t_min']}, {tc['t_max']}]
({tc['schedule'].upper()}), ε sampled ({tc['noise_per_point']} antithetic draws per point and
step, drawn in the model's coordinates `[U_1…U_K]ᵀε ~ N(0, I)`), {tc['steps']} Nesterov-SGD
steps on the Riemannian gradient, each followed by a **polar retraction** of `[U_1 … U_K]`
(Newton–Schulz); initialization by neighbourhood seeding (an anchor point and its
r − 1 most coherent neighbours per subspace, then a joint polar factor), best of
{tc['restarts']} by final training loss. Baseline: K-subspaces (assign to argmax_k
‖U_kᵀx‖², refit each U_k by the cluster's top-r singular vectors; {s.kss_iters}
iterations with block-power refits, best of {s.kss_restarts} seeded restarts). Recovery: best-matched
`max_k ‖U_kU_kᵀ − U_g,kU_g,kᵀ‖_F < {s.threshold}`; label accuracy under the best
permutation.

![phase diagrams](sc_phase.png)

{table}
Smallest N per component with recovery rate ≥ {s.boundary_level:g} (the boundary N*):

{n_star}
![agreement](sc_agreement.png)

{random_text}{hard_text}{verdicts_lib.table(m['verdicts'])}
**Verdict.** {overall(m['verdicts'])}: {verdict_text}
"""
  io.write_text(workdir / "report.md", text)
