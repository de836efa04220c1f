"""Theorem 1 of the reproducibility paper with the empirical optimal denoiser ε*.

Theorem 1 (docs/theory.md §4.3): with the memorizing denoiser ε*
(docs/theory.md §1.2) a deterministic sampler is a map noise → training point
fixed by the data and the kernel.  For each training set (random vectors, a
finite MoLRG sample, 8×8 digits, CIFAR-10 when a path is given) ε* drives
several samplers from the same noises:

1. copies: every deterministic sample is a training point (`d1/d2`, GL score);
2. reproducibility of the theoretical map: each (sampler, grid) is compared with
   a reference map (Heun, `ref_steps` EDM steps) and with each other by
   nearest-training-index agreement and by the similarity RP score; two runs
   of the stochastic DDPM sampler (two keys) give the contrast;
3. invertibility: encode (ODE inversion) then decode, and decode then encode,
   on grids ending at σ_min, against the step count;
4. the noise plane of Fig. 4 (docs/theory.md §4.4): basins of the map
   noise → training index.

Noise convention: VE coordinates `x = x0 + σ ε` on the EDM σ range
`[sigma_min, sigma_max]`; training sets are `[N, D]` float32 in [−1, 1]
(images flattened), noises `[B, D]` standard normal.

Artefacts in the study directory: `sweep.csv`, `rp_pairs.csv`,
`round_trip.csv`, `noise_plane.csv`, `noise_plane.npz` (axes, reference and
panel basin maps `[G, G]`, anchor images) and, when a training set is made of
images, `copies.npz` (the first samples of every run, `[runs, cols, D]`).
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np

from repro_jax import plotting
from repro_jax import data as data_lib
from repro_jax.diffusion import denoiser
from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax.studies import _memorization as memorization
from repro_jax.analysis import metrics
from repro_jax.analysis import noise_plane
from repro_jax import samplers
from repro_jax.diffusion import schedules
from repro_jax.studies import verdicts as verdicts_lib


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """Training sets, samplers, grids and the verdicts' criteria (declared before measuring)."""
  seed: int = 0
  # Training sets (each scaled to [−1, 1]): uniform random vectors, a finite
  # MoLRG sample, scikit-learn's 8×8 digits, and CIFAR-10 when a path is given.
  datasets: tuple[str, ...] = ("random", "molrg", "digits")
  num_train: int = 512
  random_dim: int = 64
  molrg_dim: int = 48
  molrg_components: int = 2
  molrg_rank: int = 4
  cifar10_dir: str = ""      # directory of CIFAR-10 python batches (needed with "cifar10")
  cifar10_num_train: int = 1024
  # Sampling: EDM σ range, the reference map is Heun with `ref_steps` EDM steps.
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  num_noises: int = 500
  steps: tuple[int, ...] = (5, 10, 20, 50, 100)
  table_steps: int = 100     # step count of the copy / RP tables (one of `steps`)
  ref_steps: int = 200
  descriptor: str = "ncc"    # pixel similarity, threshold calibrated per data set
  calibration_noise: float = 0.1
  # Invertibility: encode training points, decode; decode noises, encode.
  round_trip_num: int = 200
  round_trip_steps: tuple[int, ...] = (5, 10, 20, 50, 100)
  round_trip_samplers: tuple[str, ...] = ("ddim", "heun")
  # Noise plane (Fig. 4).
  plane_dataset: str = "digits"
  plane_grid: int = 48
  plane_steps: tuple[int, ...] = (5, 10, 50)
  plane_samplers: tuple[str, ...] = ("ddim", "heun")
  plane_candidates: int = 32  # noises tried as anchors (three reaching distinct points)
  # Criteria.  Copies: a sample is a training point when its distance to the
  # nearest one is a vanishing fraction of the distance to the second nearest
  # (strict bound on max d1/d2), and GL (1 − fraction within the similarity
  # threshold of a training image) stays at most `copy_max_gl`.
  copy_max_ratio: float = 1e-3
  copy_max_gl: float = 0.01
  # Map: every pair of deterministic runs reaches the same training point for at
  # least `det_min_rp` of the noises, every stochastic pair for at most `sto_max_rp`.
  det_min_rp: float = 0.9
  sto_max_rp: float = 0.2
  # Invertibility: Heun's worst data-side round-trip error at the largest step
  # count is below this (strict), besides falling with every step increase.
  round_trip_max_err: float = 1e-3


VARIANTS = ("cpu", "smoke", "paper")
_VARIANTS = {
    "cpu": {},
    # Sizes chosen so that most runs share compiled loops (64 noises = 8×8 plane).
    "smoke": dict(datasets=("digits",), num_train=64, num_noises=64, steps=(5, 40),
                  table_steps=40, ref_steps=80, round_trip_num=64, round_trip_steps=(5, 40),
                  round_trip_samplers=("heun",), plane_grid=8, plane_steps=(5, 40),
                  plane_samplers=("heun",), plane_candidates=64),
    "paper": dict(datasets=("random", "molrg", "digits", "cifar10"), num_train=1024,
                  random_dim=3072, num_noises=10_000, steps=(5, 10, 20, 50, 100, 200),
                  table_steps=200, ref_steps=400, round_trip_num=1000,
                  round_trip_steps=(5, 10, 20, 50, 100, 200), plane_dataset="cifar10",
                  plane_grid=100, plane_steps=(5, 10, 50, 200)),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default), `smoke` (seconds) or `paper` (adds CIFAR-10: set `cifar10_dir`)."""
  if variant not in _VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  return settings_lib.override(Settings(), _VARIANTS[variant])


# (label, sampler, grid spacing, stochastic key index or None)
RUNS = (
    ("DDIM", "ddim", "edm", None),
    ("Heun", "heun", "edm", None),
    ("DPM-Solver++(2M)", "dpm_solver_pp_2m", "edm", None),
    ("Heun, log-linear grid", "heun", "log_linear", None),
    ("DDIM, log-linear grid", "ddim", "log_linear", None),
    ("DDPM (key A)", "ddpm", "edm", 0),
    ("DDPM (key B)", "ddpm", "edm", 1),
)
DETERMINISTIC = tuple(r[0] for r in RUNS if r[3] is None)
PAIRS = (
    ("DDIM", "Heun", "two samplers"),
    ("Heun", "Heun, log-linear grid", "two grids"),
    ("DDIM", "DDIM, log-linear grid", "two grids"),
    ("DPM-Solver++(2M)", "Heun", "two samplers"),
    ("DDPM (key A)", "DDPM (key B)", "stochastic, two keys"),
    ("DDPM (key A)", "Heun", "stochastic vs deterministic"),
)
REFERENCE = "reference (Heun, EDM grid)"
COPY_ROWS = (REFERENCE,) + tuple(r[0] for r in RUNS)   # rows of copies.png
COPY_COLS = 10                                          # noises shown per row


# Data --------------------------------------------------------------------------------

def load_training_sets(s: Settings, key):
  """`{name: (train [N, D] float32 in [−1, 1], image_shape or None)}`."""
  sets = {}
  n = int(s.num_train)
  for i, name in enumerate(s.datasets):
    k = jax.random.fold_in(key, i)
    if name == "random":
      x = np.asarray(jax.random.uniform(k, (n, s.random_dim), minval=-1.0, maxval=1.0))
      sets[name] = (x.astype(np.float32), None)
    elif name == "molrg":
      x, _, _ = data_lib.molrg(s.molrg_dim, s.molrg_components, s.molrg_rank,
                               n, int(s.seed))
      sets[name] = ((x / np.abs(x).max()).astype(np.float32), None)
    elif name == "digits":
      x, _ = data_lib.load_digits()
      idx = data_lib.subset_indices(k, x.shape[0], min(n, x.shape[0]))
      sets[name] = (x[idx].reshape(len(idx), -1), x.shape[1:])
    elif name == "cifar10":
      x, _ = data_lib.load_cifar10(s.cifar10_dir)
      idx = data_lib.subset_indices(k, x.shape[0], int(s.cifar10_num_train))
      sets[name] = (x[idx].reshape(len(idx), -1), x.shape[1:])
    else:
      raise ValueError(f"unknown data set {name!r}; choose random, molrg, digits, cifar10.")
  return sets


def data_fields(s: Settings) -> dict[str, str]:
  """The local data path the settings need: `cifar10_dir` when CIFAR-10 is used."""
  uses = "cifar10" in s.datasets or s.plane_dataset == "cifar10"
  return {"cifar10_dir": "cifar10"} if uses else {}


# Sampling ----------------------------------------------------------------------------

def _grid(s, steps, spacing, final="zero"):
  return schedules.sigma_grid(schedules.get_schedule("edm"), int(steps), spacing, final=final,
                              sigma_min=s.sigma_min, sigma_max=s.sigma_max)


def _sample(den, z, s, steps, sampler, spacing, key_index, key):
  k = None if key_index is None else jax.random.fold_in(key, 1000 + key_index)
  return samplers.sample_batched(den, z, _grid(s, steps, spacing), sampler=sampler, key=k).samples


def study_dataset(name, train, s: Settings, key, progress):
  """Copies, agreement and RP for one training set; returns a result dict."""
  den = denoiser.empirical(train)
  d = train.shape[1]
  z = jax.random.normal(jax.random.fold_in(key, 1), (s.num_noises, d))
  cal = metrics.calibrate(jax.random.fold_in(key, 2), train, s.descriptor,
                          noise=s.calibration_noise)
  sim = metrics.get_similarity(s.descriptor, cal.threshold)
  ref = _sample(den, z, s, s.ref_steps, "heun", "edm", None, key)
  ref_stats = memorization.copy_stats(ref, train)
  out = dict(threshold=cal.threshold, calibration_accuracy=cal.accuracy, sweep=[], table=[],
             pairs=[], ref_index=ref_stats.index)
  samples_at_table = {}
  for steps in s.steps:
    for label, sampler, spacing, key_index in RUNS:
      x = _sample(den, z, s, steps, sampler, spacing, key_index, key)
      st = memorization.copy_stats(x, train)
      row = dict(dataset=name, run=label, steps=int(steps),
                 nfe=samplers.num_evaluations(sampler, _grid(s, steps, spacing)),
                 agree_ref=memorization.index_agreement(st.index, ref_stats.index),
                 ratio_median=float(np.median(st.ratio)), ratio_max=float(st.ratio.max()),
                 d1_max=float(st.d1.max()), gl=float(metrics.gl_score(x, train, sim)))
      out["sweep"].append(row)
      if steps == s.table_steps:
        out["table"].append(row)
        samples_at_table[label] = (np.asarray(x), st.index)
    progress.step(f"{name} steps={steps}")
  for a, b, kind in PAIRS:
    (xa, ia), (xb, ib) = samples_at_table[a], samples_at_table[b]
    out["pairs"].append(dict(dataset=name, pair=f"{a} vs {b}", kind=kind,
                             rp_index=memorization.index_agreement(ia, ib),
                             rp_sim=float(metrics.rp_score(xa, xb, sim))))
  out["samples"] = {k: v[0] for k, v in samples_at_table.items()}
  out["samples"][REFERENCE] = np.asarray(ref)
  return out


def study_round_trip(name, train, s: Settings, key):
  """Round-trip errors against the step count for each solver."""
  den = denoiser.empirical(train)
  m = min(int(s.round_trip_num), train.shape[0])
  x0 = train[:m]
  z = jax.random.normal(jax.random.fold_in(key, 3), (m, train.shape[1]))
  rows = []
  for sampler in s.round_trip_samplers:
    for steps in s.round_trip_steps:
      sig = _grid(s, steps, "edm", final="min")
      rt = memorization.round_trip(den, x0, z, sig, sampler=sampler)
      same = memorization.copy_stats(rt.decoded, train).index == np.arange(m)
      rows.append(dict(dataset=name, sampler=sampler, steps=int(steps),
                       nfe=2 * samplers.num_evaluations(sampler, sig),
                       data_err_median=float(np.median(rt.data_error)),
                       data_err_max=float(rt.data_error.max()),
                       noise_err_median=float(np.median(rt.noise_error)),
                       noise_err_max=float(rt.noise_error.max()),
                       same_point=float(same.mean())))
  return rows


def study_plane(train, s: Settings, key):
  """Basin maps on the noise plane for each (sampler, steps), plus the reference."""
  den = denoiser.empirical(train)
  d = train.shape[1]
  cand = jax.random.normal(jax.random.fold_in(key, 4), (s.plane_candidates, d))
  cand_lab = noise_plane.basin_labels(
      _sample(den, cand, s, s.ref_steps, "heun", "edm", None, key), train)
  _, first = np.unique(cand_lab, return_index=True)
  pick = np.sort(first)[:3]
  if len(pick) < 3:
    raise ValueError("fewer than three distinct training points among the anchor "
                     "candidates; raise `plane_candidates`.")
  anchors = cand[pick]
  a_axis = b_axis = noise_plane.plane_axis(s.plane_grid)
  eps = noise_plane.plane_noises(anchors, a_axis, b_axis)
  g = int(s.plane_grid)
  ref = noise_plane.basin_labels(
      _sample(den, eps, s, s.ref_steps, "heun", "edm", None, key), train).reshape(g, g)
  panels = []
  for sampler in s.plane_samplers:
    for steps in s.plane_steps:
      lab = noise_plane.basin_labels(
          _sample(den, eps, s, steps, sampler, "edm", None, key), train).reshape(g, g)
      panels.append(dict(sampler=sampler, steps=int(steps), labels=lab,
                         agree_ref=float(np.mean(lab == ref)),
                         boundary=noise_plane.boundary_fraction(lab),
                         basins=int(len(np.unique(lab)))))
  anchor_idx = [int(i) for i in cand_lab[pick]]
  on_anchor = float(np.isin(ref, anchor_idx).mean())
  return dict(a=a_axis, b=b_axis, ref=ref, panels=panels, anchor_labels=anchor_idx,
              ref_boundary=noise_plane.boundary_fraction(ref),
              ref_basins=int(len(np.unique(ref))), ref_on_anchor=on_anchor)


# Measure ------------------------------------------------------------------------------

def measure(s: Settings, ctx) -> dict:
  """Run every part; writes the CSV tables and the arrays the figures need.

  Returns the metrics: per-data-set sizes and thresholds, the copy / RP tables,
  the step sweep, round trips, noise-plane statistics and `summary`, the
  numbers the verdicts are computed from.
  """
  t0 = time.time()
  key = jax.random.PRNGKey(s.seed)
  sets = load_training_sets(s, key)
  progress = ctx.progress(len(sets) * (len(s.steps) + 1) + 1)
  results, round_trips = {}, []
  for i, (name, (train, _)) in enumerate(sets.items()):
    k = jax.random.fold_in(key, 100 + i)
    results[name] = study_dataset(name, train, s, k, progress)
    round_trips += study_round_trip(name, train, s, k)
    progress.step(f"{name} round trip")
  plane_name = s.plane_dataset if s.plane_dataset in sets else next(
      n for n in ("digits", *sets) if n in sets)
  plane = study_plane(sets[plane_name][0], s, jax.random.fold_in(key, 7))
  progress.step("noise plane")

  workdir = pathlib.Path(ctx.workdir)
  sweep = [r for res in results.values() for r in res["sweep"]]
  pairs = [r for res in results.values() for r in res["pairs"]]
  io.save_csv(workdir / "sweep.csv", sweep)
  io.save_csv(workdir / "rp_pairs.csv", pairs)
  io.save_csv(workdir / "round_trip.csv", round_trips)
  io.save_csv(workdir / "noise_plane.csv", [
      {k: v for k, v in p.items() if k != "labels"} for p in plane["panels"]])
  _save_figure_arrays(workdir, results, plane, sets, plane_name, s)
  summary = _summarize(results, round_trips, plane, s)
  return dict(
      datasets={n: dict(num_train=int(t.shape[0]), dim=int(t.shape[1]),
                        threshold=results[n]["threshold"],
                        calibration_accuracy=results[n]["calibration_accuracy"])
                for n, (t, _) in sets.items()},
      table=[r for res in results.values() for r in res["table"]], pairs=pairs,
      round_trip=round_trips, sweep=sweep, plane_dataset=plane_name,
      plane={k: v for k, v in plane.items() if k not in ("panels", "ref", "a", "b")}
      | {"panels": [{k: v for k, v in p.items() if k != "labels"} for p in plane["panels"]]},
      summary=summary, seconds=time.time() - t0)


def _save_figure_arrays(workdir, results, plane, sets, plane_name, s: Settings) -> None:
  """noise_plane.npz (basin maps, and the anchor images of an image set) and
  copies.npz (the first samples of every run on the first image set)."""
  arrays = dict(a=plane["a"], b=plane["b"], ref=plane["ref"],
                labels=np.stack([p["labels"] for p in plane["panels"]]))
  _, shape = sets[plane_name]
  if shape is not None:
    train = sets[plane_name][0]
    arrays["anchor_images"] = train[plane["anchor_labels"]].reshape(-1, *shape)
  io.save_npz(workdir / "noise_plane.npz", **arrays)
  img = next((n for n, (_, sh) in sets.items() if sh is not None), None)
  if img is not None:
    cols = min(COPY_COLS, s.num_noises)
    smp = results[img]["samples"]
    io.save_npz(workdir / "copies.npz", dataset=np.asarray(img), shape=np.asarray(sets[img][1]),
                samples=np.stack([np.asarray(smp[label][:cols]) for label in COPY_ROWS]))


def _agree(results, run, steps) -> float:
  """Agreement with the reference of one run at one step count, worst data set."""
  return min(r["agree_ref"] for res in results.values() for r in res["sweep"]
             if r["run"] == run and r["steps"] == steps)


def _summarize(results, round_trips, plane, s: Settings) -> dict:
  """The numbers the verdicts are computed from."""
  table = [r for res in results.values() for r in res["table"]]
  det = [r for r in table if r["run"] in DETERMINISTIC]
  pairs = [r for res in results.values() for r in res["pairs"]]
  det_pairs = [p for p in pairs if not p["kind"].startswith("stochastic")]
  sto_pairs = [p for p in pairs if p["kind"].startswith("stochastic")]
  largest = max(s.round_trip_steps)
  heun_rt = [r for r in round_trips if r["sampler"] == "heun"]
  by_steps = {}
  for r in heun_rt:
    by_steps.setdefault(r["steps"], []).append(r["data_err_median"])
  med = [float(np.max(by_steps[k])) for k in sorted(by_steps)]
  panels = plane["panels"]
  agree_last = {p["sampler"]: p["agree_ref"] for p in panels
                if p["steps"] == max(s.plane_steps)}
  agree_first = {p["sampler"]: p["agree_ref"] for p in panels
                 if p["steps"] == min(s.plane_steps)}
  return dict(
      det_ratio_max=max(r["ratio_max"] for r in det),
      det_gl_max=max(r["gl"] for r in det),
      ddpm_ratio_max=max(r["ratio_max"] for r in table if r["run"] not in DETERMINISTIC),
      det_rp_index_min=min(p["rp_index"] for p in det_pairs),
      det_rp_sim_min=min(p["rp_sim"] for p in det_pairs),
      sto_rp_index_max=max(p["rp_index"] for p in sto_pairs),
      second_order_rp_min=min(p["rp_index"] for p in det_pairs if "DDIM" not in p["pair"]),
      sto_rp_sim_max=max(p["rp_sim"] for p in sto_pairs),
      det_converging=bool(all(_agree(results, r, max(s.steps))
                              >= _agree(results, r, min(s.steps)) for r in DETERMINISTIC)),
      heun_rt_worst_median_by_steps=med,
      heun_rt_decreasing=bool(all(b < a for a, b in zip(med, med[1:]))),
      heun_rt_at_largest=max(r["data_err_max"] for r in heun_rt if r["steps"] == largest),
      heun_rt_same_point=min(r["same_point"] for r in heun_rt if r["steps"] == largest),
      plane_agree_first=agree_first, plane_agree_last=agree_last,
      table_steps=int(s.table_steps))


# Verdicts -----------------------------------------------------------------------------

_SOURCE = "reproducibility paper §3.2 (Theorem 1); docs/theory.md §4.3"


def verdicts(s: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  """Copies, the map's reproducibility, invertibility, the noise plane."""
  sm = metrics["summary"]
  first, last = min(s.plane_steps), max(s.plane_steps)
  out = [
      verdicts_lib.judge(
          sm["det_ratio_max"] < s.copy_max_ratio and sm["det_gl_max"] <= s.copy_max_gl,
          claim="With ε* every deterministic sampler returns a training point "
                "(pure memorization, GL = 0).",
          criterion=f"max d1/d2 < {s.copy_max_ratio:g} and GL ≤ {s.copy_max_gl:g} for every "
                    f"deterministic run at {s.table_steps} steps, every data set",
          measured=dict(det_ratio_max=sm["det_ratio_max"], det_gl_max=sm["det_gl_max"]),
          source=_SOURCE),
      verdicts_lib.judge(
          sm["det_rp_index_min"] >= s.det_min_rp
          and sm["sto_rp_index_max"] <= s.sto_max_rp and sm["det_converging"],
          claim="The map noise → training point is fixed by the data: deterministic samplers "
                "and grids started from the same noise reach the same point, a stochastic "
                "sampler does not.",
          criterion=f"RP (index) ≥ {s.det_min_rp:g} for every deterministic pair and "
                    f"≤ {s.sto_max_rp:g} for every stochastic pair at {s.table_steps} "
                    "steps; agreement with the reference not lower at the most steps than at "
                    "the fewest",
          measured=dict(det_rp_index_min=sm["det_rp_index_min"],
                        sto_rp_index_max=sm["sto_rp_index_max"],
                        det_converging=sm["det_converging"]),
          source=_SOURCE),
      verdicts_lib.judge(
          sm["heun_rt_decreasing"] and sm["heun_rt_at_largest"] < s.round_trip_max_err,
          claim="The ε* ODE is invertible: encoding a training point and decoding it returns "
                "the point.",
          criterion="Heun's worst-data-set median data-side round-trip error falls with every "
                    f"step increase and the worst error at {max(s.round_trip_steps)} steps is "
                    f"< {s.round_trip_max_err:g}",
          measured=dict(heun_rt_worst_median_by_steps=sm["heun_rt_worst_median_by_steps"],
                        heun_rt_at_largest=sm["heun_rt_at_largest"]),
          source=_SOURCE),
      verdicts_lib.judge(
          all(sm["plane_agree_last"][k] >= sm["plane_agree_first"][k]
              for k in sm["plane_agree_last"]),
          claim="On the noise plane (Fig. 4) nearby noises reach the same image, and "
                "different samplers draw the same basins once they resolve the ODE.",
          criterion=f"agreement with the reference plane at {last} steps ≥ at {first} steps, "
                    "every sampler",
          measured={f"{k}, {n} steps": sm[f"plane_agree_{w}"][k]
                    for k in sm["plane_agree_last"] for n, w in ((first, "first"),
                                                                 (last, "last"))},
          source="reproducibility paper Fig. 4; docs/theory.md §4.4"),
  ]
  return out


# Render -------------------------------------------------------------------------------

def render(s: Settings, metrics: dict, workdir) -> None:
  """rp_vs_steps.png, round_trip.png, noise_plane.png, copies.png (image sets) and
  report.md, from the metrics and the arrays `measure` saved."""
  workdir = pathlib.Path(workdir)
  with np.load(workdir / "noise_plane.npz") as f:
    arrays = {k: f[k] for k in f.files}
  plane = dict(metrics["plane"], a=arrays["a"], b=arrays["b"], ref=arrays["ref"],
               panels=[dict(p, labels=lab) for p, lab in zip(metrics["plane"]["panels"],
                                                             arrays["labels"])])
  _figures(workdir, metrics, plane, arrays.get("anchor_images"), s)
  _report(workdir, metrics, plane, s)


def _step_ticks(ax, steps):
  import matplotlib.ticker as mticker
  ax.xaxis.set_major_locator(mticker.FixedLocator(list(steps)))
  ax.xaxis.set_major_formatter(mticker.FixedFormatter([str(k) for k in steps]))
  ax.xaxis.set_minor_locator(mticker.NullLocator())


def _anchor_images(fig, ax, images, anchor_labels):
  """The three training images `[3, H, W, C]` the anchors reach, in the slot of `ax`."""
  box = ax.get_position()
  ax.axis("off")
  w = box.width / 3
  for k, (im, idx, m) in enumerate(zip(images, anchor_labels, noise_plane.ANCHOR_MARKERS)):
    sub = fig.add_axes((box.x0 + k * w + 0.1 * w, box.y0 + 0.25 * box.height,
                        0.8 * w, 0.5 * box.height))
    sub.imshow(np.clip((im + 1) / 2, 0, 1).squeeze(),
               cmap="gray" if im.shape[-1] == 1 else None, vmin=0, vmax=1)
    sub.set_xticks([])
    sub.set_yticks([])
    sub.set_title(f"{ {'^': '▲', 's': '■', 'o': '●'}[m]} #{idx}", fontsize=8)


def _figures(workdir, metrics, plane, anchor_images, s: Settings):
  plt = plotting.pyplot()
  datasets = metrics["datasets"]
  names = list(datasets)
  round_trips = metrics["round_trip"]
  plane_name = metrics["plane_dataset"]
  # 1. Agreement with the reference map against the step count.
  fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False,
                           sharey=True)
  for ax, name in zip(axes[0], names):
    sweep = [r for r in metrics["sweep"] if r["dataset"] == name]
    for label in DETERMINISTIC + ("DDPM (key A)",):
      rows = [r for r in sweep if r["run"] == label]
      style = ("x:" if label not in DETERMINISTIC else
               "s--" if "log-linear" in label else "o-")
      ax.semilogx([r["steps"] for r in rows], [r["agree_ref"] for r in rows], style,
                  label=label, ms=4)
    ax.set(title=f"{name} (N={datasets[name]['num_train']}, D={datasets[name]['dim']})",
           xlabel="sampling steps", ylim=(-0.03, 1.03))
    _step_ticks(ax, s.steps)
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel("fraction reaching the reference's training point")
  axes[0, -1].legend(fontsize=7, loc="center right")
  fig.suptitle(f"Same noises, ε*: each sampler vs the reference map "
               f"(Heun, {s.ref_steps} EDM steps)", y=1.03)
  io.save_figure(fig, workdir / "rp_vs_steps.png")

  # 2. Round trip.
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  colors = dict(zip(names, ("C0", "C1", "C2", "C3")))
  for sampler, ls in zip(s.round_trip_samplers, ("o--", "s-", "^:")):
    for name in names:
      rows = [r for r in round_trips if r["sampler"] == sampler and r["dataset"] == name]
      st = [r["steps"] for r in rows]
      for ax, key in zip(axes, ("data_err_median", "noise_err_median")):
        ax.loglog(st, [r[key] for r in rows], ls, color=colors[name],
                  label=f"{sampler}, {name}", ms=4)
  axes[0].set(xlabel="steps (each direction)", ylabel="median ‖decode(encode(y)) − y‖ / ‖y‖",
              title="training point → latent → training point")
  axes[1].set(xlabel="steps (each direction)", ylabel="median ‖encode(decode(z)) − z‖ / ‖z‖",
              title="noise → sample → noise")
  for ax in axes:
    ax.grid(alpha=0.3, which="both")
    _step_ticks(ax, s.round_trip_steps)
  axes[1].legend(fontsize=7)
  fig.suptitle(f"Invertibility of the ε* ODE (EDM grid ending at σ_min = {s.sigma_min})",
               y=1.02)
  io.save_figure(fig, workdir / "round_trip.png")

  # 3. Noise plane.
  panels = plane["panels"]
  samplers_ = list(s.plane_samplers)
  ncol = len(s.plane_steps) + 1
  palette = noise_plane.basin_palette([plane["ref"]] + [p["labels"] for p in panels])
  fig, axes = plt.subplots(len(samplers_), ncol, figsize=(3.1 * ncol, 3.5 * len(samplers_)),
                           squeeze=False)
  fig.subplots_adjust(hspace=0.5, wspace=0.3)
  for i, sampler in enumerate(samplers_):
    for j, steps in enumerate(s.plane_steps):
      p = next(q for q in panels if q["sampler"] == sampler and q["steps"] == steps)
      noise_plane.plot_basins(axes[i, j], p["labels"], palette, plane["a"], plane["b"],
                              anchor_labels=plane["anchor_labels"],
                              title=f"{sampler}, {steps} steps\n"
                                    f"{100 * p['agree_ref']:.0f}% = reference, "
                                    f"{p['basins']} basins")
    if i == 0:
      noise_plane.plot_basins(axes[i, -1], plane["ref"], palette, plane["a"], plane["b"],
                              anchor_labels=plane["anchor_labels"],
                              title=f"reference: heun, {s.ref_steps} steps\n"
                                    f"{plane['ref_basins']} basins")
    else:
      axes[i, -1].axis("off")
  if len(samplers_) > 1 and anchor_images is not None:
    _anchor_images(fig, axes[1, -1], anchor_images, plane["anchor_labels"])
  fig.suptitle(f"Noise plane ε(a, b) = a(ε2 − ε1) + b(ε3 − ε1) + ε1 → training index "
               f"reached ({plane_name}, ε*); colour = training point, same in every panel")
  io.save_figure(fig, workdir / "noise_plane.png")

  # 4. Samples are training copies (images only).
  if (workdir / "copies.npz").exists():
    with np.load(workdir / "copies.npz") as f:
      img, shape, smp = str(f["dataset"]), tuple(int(k) for k in f["shape"]), f["samples"]
    cols = smp.shape[1]
    fig, axes = plt.subplots(len(COPY_ROWS), cols,
                             figsize=(0.9 * cols + 2.2, 0.95 * len(COPY_ROWS)), squeeze=False)
    for i, label in enumerate(COPY_ROWS):
      for j in range(cols):
        im = smp[i, j].reshape(shape)
        axes[i, j].imshow(np.clip((im + 1) / 2, 0, 1).squeeze(),
                          cmap="gray" if shape[-1] == 1 else None, vmin=0, vmax=1)
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
      axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(top=0.92)
    fig.suptitle(f"{img}: same {cols} noises, {s.table_steps} steps; every sample is a "
                 f"training image", fontsize=9)
    io.save_figure(fig, workdir / "copies.png")


# Report -------------------------------------------------------------------------------

def _report(workdir, metrics, plane, s: Settings):
  datasets = metrics["datasets"]
  names = list(datasets)
  sm = metrics["summary"]
  round_trips = metrics["round_trip"]
  plane_name = metrics["plane_dataset"]
  verdict = [f"**{v['verdict']}**" for v in metrics["verdicts"]]   # in `verdicts` order

  def row_of(rows, name, **match):
    return next(r for r in rows if r["dataset"] == name
                and all(r[k] == v for k, v in match.items()))

  copy_rows = []
  for label, sampler, spacing, _ in RUNS:
    row = {"run": label, "grid": spacing}
    for name in names:
      r = row_of(metrics["table"], name, run=label)
      row["NFE"] = r["nfe"]
      row[f"{name}: max d1/d2"] = r["ratio_max"]
      row[f"{name}: GL"] = r["gl"]
      row[f"{name}: = ref"] = r["agree_ref"]
    copy_rows.append(row)
  pair_rows = []
  for a, b, kind in PAIRS:
    row = {"pair": f"{a} vs {b}", "kind": kind}
    for name in names:
      p = row_of(metrics["pairs"], name, pair=f"{a} vs {b}")
      row[f"{name}: RP (index)"] = p["rp_index"]
      row[f"{name}: RP (sim.)"] = p["rp_sim"]
    pair_rows.append(row)
  rt_rows = [dict(dataset=r["dataset"], sampler=r["sampler"], steps=r["steps"],
                  **{"data-side median": r["data_err_median"],
                     "data-side max": r["data_err_max"],
                     "noise-side median": r["noise_err_median"],
                     "back on same point": r["same_point"]})
             for r in round_trips if r["steps"] in (min(s.round_trip_steps),
                                                    max(s.round_trip_steps))]
  plane_rows = [dict(sampler=p["sampler"], steps=p["steps"], **{
      "= reference": p["agree_ref"], "basins": p["basins"],
      "boundary fraction": p["boundary"]}) for p in plane["panels"]]
  data_desc = ", ".join(
      f"{n} (N = {d['num_train']}, D = {d['dim']}, similarity threshold "
      f"{d['threshold']:.2f})" for n, d in datasets.items())
  fmt = lambda v: f"{v:.3g}"
  img_fig = "\n![copies](copies.png)\n" if (workdir / "copies.npz").exists() else ""
  text = f"""## Memorization: Theorem 1 with the optimal denoiser ε* (reproducibility paper §3.2, Fig. 4)

**Claim.** With the empirical optimal denoiser ε* (docs/theory.md §1.2, §4.3) every
deterministic sampler maps a noise to a training point (pure memorization,
GL = 0); the map noise → image is fixed by the data and the kernel, so
different deterministic samplers and schedules started from the same noise
reach the same image (RP ≈ 1) while a stochastic sampler does not; the map is
invertible (encode, then decode, returns the point); on the noise plane of
Fig. 4 nearby noises reach the same image.

**Set-up.** Training sets, each scaled to [−1, 1]: {data_desc}.
{s.num_noises} standard-normal noises per set; EDM σ range
[{s.sigma_min}, {s.sigma_max}] with EDM (ρ = 7) or log-linear (geometric)
spacing, then a final denoising step to σ = 0. The *reference map* is Heun with
{s.ref_steps} EDM steps. "= ref" is the fraction of noises whose sample is the
same training point as the reference's; RP (index) the fraction of noises whose two
samples are the same training point; RP (sim.) the paper's RP score with the pixel
NCC similarity and a threshold calibrated per data set (`metrics.calibrate`: distinct
training images vs copies with noise {s.calibration_noise}); GL = 1 − P(max
similarity to the training set > threshold). d1/d2 is the distance to the nearest over
the second-nearest training point, computed exactly. Tables use {s.table_steps} steps.

![agreement with the reference map](rp_vs_steps.png)
{img_fig}
{io.markdown_table(copy_rows, fmt="{:.3g}")}
**Verdict (copies).** {verdict[0]} (criterion: max
d1/d2 < {s.copy_max_ratio:g} and GL ≤ {s.copy_max_gl:g} for every deterministic run): the largest
d1/d2 over every deterministic sample is {fmt(sm['det_ratio_max'])} and the largest GL is
{fmt(sm['det_gl_max'])}; the final denoising step at σ_min returns a training point
exactly (float32). DDPM samples are copies too (max d1/d2 {fmt(sm['ddpm_ratio_max'])}):
with ε* even the stochastic sampler only memorizes.

{io.markdown_table(pair_rows, fmt="{:.3g}")}
**Verdict (reproducibility of the map).** {verdict[1]}
(criterion: every deterministic pair ≥ {s.det_min_rp:g}, every stochastic pair ≤
{s.sto_max_rp:g}, agreement with the reference not decreasing with steps): at
{s.table_steps} steps the lowest RP (index)
between two deterministic runs is {fmt(sm['det_rp_index_min'])} (similarity RP ≥
{fmt(sm['det_rp_sim_min'])}); between second-order runs (Heun on two grids, DPM-Solver++ vs
Heun) it is {fmt(sm['second_order_rp_min'])}; the stochastic pairs reach at most
{fmt(sm['sto_rp_index_max'])}. Disagreement between deterministic samplers is
discretization error, not a different map: it shrinks as the step count grows (figure),
fastest for the second-order solvers, slowest for first-order DDIM; with few steps every
sampler still outputs training copies, but near basin boundaries of *different* training
points.

![round trip](round_trip.png)

{io.markdown_table(rt_rows, fmt="{:.2e}")}
**Verdict (invertibility).** {verdict[2]} (criterion:
Heun's error falls with every step-count increase and is < {s.round_trip_max_err:g} at the
largest): with
Heun the worst-data-set median data-side round-trip error falls monotonically with the
step count ({', '.join(fmt(v) for v in sm['heun_rt_worst_median_by_steps'])}), is
{fmt(sm['heun_rt_at_largest'])} at worst at {max(s.round_trip_steps)} steps, and
{100 * sm['heun_rt_same_point']:.0f}% (worst data set) of the encoded training points
decode back to themselves. Between positive noise levels the ODE is invertible (noise
side too, right panel); the encoding is unique only up to the grid's σ_min: at σ = 0 the
map collapses each basin onto one training point, so the inverse of a training point is
one representative noise of its basin.

![noise plane](noise_plane.png)

{io.markdown_table(plane_rows, fmt="{:.3g}")}
**Verdict (noise plane).** {verdict[3]} (criterion:
agreement with the reference map does not fall as the step count grows): the
reference plane ({plane_name}) splits into {plane['ref_basins']} basins with a boundary
fraction of {plane['ref_boundary']:.3f} (nearby noises reach the same training point:
local Lipschitzness of the encoding); {100 * plane['ref_on_anchor']:.0f}% of the plane
reaches one of the three anchor points. Agreement with the reference grows with the
step count ({', '.join(f"{k}: {100 * sm['plane_agree_first'][k]:.0f}% → "
                       f"{100 * sm['plane_agree_last'][k]:.0f}%" for k in sm['plane_agree_last'])}),
so different samplers draw the same map once they resolve the ODE. Unlike the paper's
Fig. 4 (three trained networks, SSCD similarity to three anchor images) the map here is
ε*'s own, labelled by the training index reached.

### Verdicts

{verdicts_lib.table(metrics["verdicts"])}
*Not reproduced here:* Fig. 6 (RP between trained networks and the ε* map) needs trained
models.  CIFAR-10 is in the `paper` variant (`--cifar10=PATH`).
"""
  io.write_text(pathlib.Path(workdir) / "report.md", text)
