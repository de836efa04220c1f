"""Reproducibility across architectures, kernels and samplers (paper Fig. 3,
Table 1, App. A) and between models trained on disjoint halves of the data
(Kadkhodaie et al., ICLR 2024).

Claims: C-repro across models (docs/theory.md §4.1) and the disjoint-halves
test of generalization (docs/theory.md §6).

1. **The cross-model matrix.**  Every *member* (an architecture, a width and a
   training kernel) is trained with `len(matrix_seeds)` seeds at each N of
   `matrix_sizes` (a memorization N and a generalization N; nested subsets,
   the same images for every member), and sampled with every sampler of
   `samplers` from the same fixed noises.  An *entry* is a (member, sampler);
   the matrix holds RP and MAE score between every two entries (mean over the
   pairs of their models of different seeds: the diagonal is RP between seeds),
   each with a bootstrap confidence interval over noises and seeds.
2. **Disjoint halves.**  The data are split in two disjoint halves (one fixed
   permutation); a member is trained on nested subsets of each half, at every
   N of `halves_sizes`; RP between a half-A and a half-B model (necessarily
   different training images) is set against RP between two seeds of the same
   half, and GL, against N.

Every sampler runs on the EDM ρ-grid clipped to the σ range that all members
were trained on, with DDPM's x0 clipping (`clip_x0`) on every model.  Images
are `[H, W, C]` in [−1, 1]; noises are standard normal `z [B, H, W, C]`, every
sampler starts from `σ_max · z` on canonical (VE) denoisers, `x_σ = x0 + σ ε`.

`measure` writes noises.npy, matrix.npz (RP/MAE matrices and their intervals
per N) and halves.csv; `render` draws matrix.png, matrix_mae.png and
halves.png and writes report.md from metrics.json and matrix.npz.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time

import jax
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import plotting
from repro_jax import settings as settings_lib
from repro_jax.analysis import bootstrap
from repro_jax.analysis import metrics as metrics_lib
from repro_jax.analysis import reproducibility as rpr
from repro_jax.diffusion import schedules
from repro_jax.networks import model_zoo
from repro_jax.networks.models import PARAMETERIZATIONS
from repro_jax.networks.training.settings import WIDTH_FIELD
from repro_jax.studies import _convergence
from repro_jax.studies import _zoo_figures as plots
from repro_jax.studies import _zoo_study
from repro_jax.studies import verdicts as verdicts_lib

VARIANTS = _zoo_study.ZOO_VARIANTS

# (label, model, width, parameterization, schedule): `model` a `models.MODELS`
# name, `width` its `WIDTH_FIELD`; the other training settings are the zoo's.
Member = tuple[str, str, int, str, str]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings(_zoo_study.ZooStudySettings):
  """The members, the matrix and halves grids, the samplers and the criteria."""
  members: tuple[tuple[str, str, int, str, str], ...] = (
      ("MLP EDM", "mlp", 128, "edm", "vp"),
      ("MLP VP-eps", "mlp", 128, "eps", "vp"),
      ("MLP VP-v", "mlp", 128, "v", "vp"),
      ("DiT EDM", "dit", 32, "edm", "vp"))
  matrix_sizes: tuple[int, ...] = (16, 1797)   # a memorization N, a generalization N
  matrix_seeds: tuple[int, ...] = (0, 1, 2)
  # (label, registry name, steps) of deterministic samplers on the EDM ρ-grid.
  samplers: tuple[tuple[str, str, int], ...] = (("Heun", "heun", 18), ("DDIM", "ddim", 50))
  clip_x0: bool = True
  # Disjoint halves: members[halves_member] on nested subsets of each half.
  halves_member: int = 0
  halves_sizes: tuple[int, ...] = (16, 128, 898)
  halves_seeds: tuple[int, ...] = (0, 1, 2)
  # Convergence (memorization regime): members[i] for i in convergence_members at
  # N = convergence_size, the first of them also at every onset_sizes N, each
  # observed at every step count of convergence_steps (one run, `ensure_stages`).
  convergence_members: tuple[int, ...] = (0, 3)
  convergence_size: int = 16
  convergence_steps: tuple[int, ...] = (250, 500, 1000, 2000, 4000, 8000)
  onset_sizes: tuple[int, ...] = (8, 16, 32, 64)
  onset_gl: float = 0.5              # a model memorizes once its GL falls to this
  # Criteria (declared before measuring).
  min_rp_pairs: float = 0.6      # paper App. A: every pair of models above 0.6
  halves_max_rp_memorization: float = 0.1   # halves at the smallest N: different images
  halves_min_ratio: float = 0.8  # at the largest N: RP(halves) ≥ ratio × RP(same half)
  # Converged memorization (paper: RP → 1): at the last stage, RP between seeds,
  # across members and to ε* ≥ min_rp_converged with CI lower bounds above
  # min_rp_converged_lo; a plateau if the last two stages differ by < plateau_tol.
  min_rp_converged: float = 0.9
  min_rp_converged_lo: float = 0.8
  plateau_tol: float = 0.05

  def __post_init__(self):
    if not self.members or not self.samplers:
      raise ValueError("members and samplers must not be empty.")
    labels = [m[0] for m in self.members]
    if len(set(labels)) != len(labels):
      raise ValueError(f"member labels must be distinct; got {labels}.")
    for m in self.members:
      if m[1] not in WIDTH_FIELD or m[2] < 1 or m[3] not in PARAMETERIZATIONS:
        raise ValueError(f"a member is (label, model in {sorted(WIDTH_FIELD)}, width >= 1, "
                         f"parameterization in {PARAMETERIZATIONS}, schedule); got {m}.")
    if len(self.matrix_seeds) < 2 or len(self.halves_seeds) < 1:
      raise ValueError("matrix_seeds needs at least 2 seeds (the diagonal is RP between "
                       "seeds) and halves_seeds at least 1.")
    if not 0 <= self.halves_member < len(self.members):
      raise ValueError(f"halves_member must index members (0..{len(self.members) - 1}); "
                       f"got {self.halves_member}.")
    if (not self.convergence_members or not self.convergence_steps
        or any(not 0 <= i < len(self.members) for i in self.convergence_members)):
      raise ValueError("convergence_members must index members and convergence_steps be "
                       "non-empty.")
    if not 0 < self.ci_level < 1 or self.bootstrap_resamples < 10:
      raise ValueError("ci_level must lie in (0, 1) and bootstrap_resamples be >= 10.")


_SMOKE_MEMBERS = (("MLP EDM", "mlp", 16, "edm", "vp"), ("MLP VP-eps", "mlp", 16, "eps", "vp"),
                  ("DiT EDM", "dit", 8, "edm", "vp"))
_VARIANT_CHANGES = {
    "cpu": {},
    "cpu_full": dict(members=Settings().members + (("U-Net EDM", "unet", 16, "edm", "vp"),),
                     matrix_sizes=(16, 64, 1797), halves_sizes=(16, 64, 256, 512, 898),
                     convergence_steps=(250, 500, 1000, 2000, 4000, 8000, 16000, 32000),
                     onset_sizes=(8, 16, 32, 64, 128)),
    "smoke": dict(members=_SMOKE_MEMBERS, matrix_sizes=(8, 32), halves_sizes=(8, 32),
                  halves_seeds=(0,), samplers=(("Heun", "heun", 4), ("DDIM", "ddim", 6)),
                  bootstrap_resamples=50, convergence_members=(0, 2), convergence_size=8,
                  convergence_steps=(5, 10, 20), onset_sizes=(8, 16)),
    # The paper's CIFAR-10 models: U-Nets and a DiT, ε-prediction on VP, EDM and v.
    "paper": dict(members=(("U-Net VP-eps", "unet", 128, "eps", "vp"),
                           ("U-Net EDM", "unet", 128, "edm", "vp"),
                           ("U-Net VP-v", "unet", 128, "v", "vp"),
                           ("DiT VP-eps", "dit", 256, "eps", "vp")),
                  matrix_sizes=(64, 32768), halves_sizes=(64, 256, 1024, 4096, 16384, 25000),
                  convergence_size=64, onset_sizes=(64, 128, 256, 512, 1024),
                  convergence_steps=(2500, 5000, 10_000, 20_000, 40_000, 80_000, 160_000)),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default), `cpu_full`, `smoke` (seconds) or `paper` (CIFAR-10)."""
  changes = _zoo_study.shared_changes(variant)
  zoo = changes.pop("zoo")
  return settings_lib.override(Settings(zoo=zoo), dict(changes, **_VARIANT_CHANGES[variant]))


def _member_zoo(config: Settings, member: Member, sizes) -> model_zoo.ZooSettings:
  return settings_lib.override(config.zoo, dict(model=member[1], sizes=tuple(sizes)),
                               where="zoo")


def member_config(config: Settings, member: Member):
  """The complete training settings of a member (`TrainSettings`)."""
  return model_zoo.train_config(
      _member_zoo(config, member, config.matrix_sizes), member[2],
      overrides={"diffusion": dict(parameterization=member[3], schedule=member[4])})


def training_jobs(config: Settings) -> list[tuple[str, object, int]]:
  """`(what, TrainSettings, number of models)` of every group the study trains."""
  jobs = [(f"{m[0]}: ×{len(config.matrix_sizes)} sizes ×{len(config.matrix_seeds)} seeds",
           member_config(config, m), len(config.matrix_sizes) * len(config.matrix_seeds))
          for m in config.members]
  hm = config.members[int(config.halves_member)]
  for h in "AB":
    jobs.append((f"{hm[0]}, half {h}: ×{len(config.halves_sizes)} sizes "
                 f"×{len(config.halves_seeds)} seeds", member_config(config, hm),
                 len(config.halves_sizes) * len(config.halves_seeds)))
  last = max(int(s) for s in config.convergence_steps)
  for k, i in enumerate(config.convergence_members):
    m = config.members[int(i)]
    sizes = len(set(config.onset_sizes) | {config.convergence_size}) if k == 0 else 1
    cfg = settings_lib.override(member_config(config, m), {"train": {"num_steps": last}})
    jobs.append((f"{m[0]}, convergence: ×{sizes} sizes ×{len(config.matrix_seeds)} seeds",
                 cfg, sizes * len(config.matrix_seeds)))
  return jobs


def halves(n_total: int, sizes, seed: int) -> tuple[dict, dict]:
  """Nested subsets of two disjoint halves of `n_total` rows: `({N: [N]}, {N: [N]})`."""
  perm = data_lib.subset_indices(int(seed), int(n_total), int(n_total))
  half = int(n_total) // 2
  if max(sizes) > half:
    raise ValueError(f"halves_sizes must be <= {half} (half of {n_total} rows); got "
                     f"{max(sizes)}.")
  a, b = perm[:half], perm[half:2 * half]
  return ({int(n): a[:int(n)] for n in sizes}, {int(n): b[:int(n)] for n in sizes})


def sigma_range(config: Settings) -> tuple[float, float]:
  """The σ range every member was trained on (EDM: any σ; VP/sub-VP: its schedule's)."""
  lo, hi = float(config.sigma_min), float(config.sigma_max)
  for m in config.members:
    if m[3] != "edm":
      sched = schedules.get_schedule(m[4])
      lo, hi = max(lo, float(sched.sigma_min)), min(hi, float(sched.sigma_max))
  return lo, hi


def check(config: Settings, n_total: int) -> None:
  """Refuse grids the data cannot hold, before any work."""
  if max(config.matrix_sizes) > n_total:
    raise ValueError(f"matrix_sizes must be <= {n_total} (the data's rows); got "
                     f"{max(config.matrix_sizes)}.")
  halves(n_total, config.halves_sizes, config.zoo.subset_seed)
  lo, hi = sigma_range(config)
  if not lo < hi:
    raise ValueError(f"the members share no σ range ([{lo:g}, {hi:g}]).")


def _sample(den, noise, config: Settings, samplers=None):
  """`{sampler label: [M, B, ...]}` (`[B, ...]` for a single denoiser) of `den`
  with each of `samplers` (default: all of `config.samplers`) on the shared σ
  range, x0 clipped if `config.clip_x0`."""
  lo, hi = sigma_range(config)
  wrap = rpr.clipped if config.clip_x0 else (lambda d: d)
  out = {}
  for label, name, steps in (config.samplers if samplers is None else samplers):
    out[label] = _zoo_study.sample(wrap(den), noise, rpr.sigma_grid(steps, lo, hi),
                                   sampler=name, chunk=int(config.chunk))
  return out


def _per_noise(samples, sim: metrics_lib.Similarity, mae_threshold: float):
  """`(similarity hits [K, K, B], MAE hits [K, K, B])` of K sample sets `[K, B, ...]`."""
  pv = rpr.pair_values(samples, {"cal": sim})
  return pv["sim_cal"] > sim.threshold, pv["mae"] < mae_threshold


def _pair_cells(hits, cell_of, counts, res, level: float, model_of=None):
  """Mean over pairs of distinct models of every two cells, with its interval.

  Args:
    hits: per-noise values `[K, K, B]`.
    cell_of: `[K]` the cell (matrix row/column) of each sample set.
    counts: `[R, K]` how often each sample set is drawn in each replicate.
    res: the draws (`bootstrap.Resample`; its noises are used).
    model_of: `[K]` the trained model behind each sample set (default: each its
      own); pairs of one model (e.g. under two samplers) are left out.

  Returns:
    `(value, lo, hi)`, each `[C, C]`.
  """
  cell_of = np.asarray(cell_of)
  model_of = np.arange(len(cell_of)) if model_of is None else np.asarray(model_of)
  other_model = model_of[:, None] != model_of[None]
  c = int(cell_of.max()) + 1
  means = bootstrap.noise_means(hits, res)                               # [R, K, K]
  out = np.full((3, c, c), np.nan)
  for e in range(c):
    for f in range(c):
      mask = bootstrap.pair_mask(cell_of == e, cell_of == f) & other_model
      if not mask.any():
        continue
      est = bootstrap.estimate(bootstrap.point_pair(hits, mask),
                               bootstrap.pair_mean(means, mask, counts, counts), level)
      out[:, e, f] = est.value, est.lo, est.hi
  return out[0], out[1], out[2]


def matrix_scores(stack, entry_of, model_of, member_of_model, sim, config: Settings,
                  key) -> dict:
  """RP and MAE score between every two entries, with bootstrap intervals.

  Args:
    stack: samples `[K, B, ...]` of every (entry, seed) from the same noises.
    entry_of: `[K]` the entry (member, sampler) of each sample set.
    model_of: `[K]` the trained model behind each sample set (one model
      appears once per sampler).
    member_of_model: `[num models]` the member of each trained model: its
      seeds are exchangeable, so the bootstrap redraws trained models within
      their member (every sampler of a model follows it) and the noises jointly.
    key: PRNG key of the draws.

  Returns:
    `{"rp", "rp_lo", "rp_hi", "mae", "mae_lo", "mae_hi"}`, each `[E, E]`: the
    mean over pairs of sample sets of two different trained models (the
    diagonal: between seeds; one member under two samplers: other seeds only)
    of the per-noise hit rate, and its percentile interval.
  """
  rp_hits, mae_hits = _per_noise(stack, sim, float(config.mae_threshold))
  res = bootstrap.draw(key, stack.shape[1], np.asarray(member_of_model),
                       int(config.bootstrap_resamples))
  counts = res.models[:, np.asarray(model_of)]                           # [R, K]
  out = {}
  for name, hits in (("rp", rp_hits), ("mae", mae_hits)):
    out[name], out[f"{name}_lo"], out[f"{name}_hi"] = _pair_cells(
        hits, entry_of, counts, res, float(config.ci_level), model_of)
  return out


def measure(config: Settings, ctx) -> dict:
  """Train (or restore) every member and both halves, sample, score."""
  ds = data_lib.load_dataset(config.zoo.train.data)
  check(config, len(ds))
  members = config.members
  progress = ctx.progress(2 + 2 * len(members) + 3)
  t0 = time.time()
  key = jax.random.key(config.seed)
  ds, sims, cal, noise, _, _ = _zoo_study.setup(config, ctx.workdir, jax.random.fold_in(key, 0))
  sim = sims["cal"]
  progress.step("calibration")
  # 1. The cross-model matrix.
  entries = [(m[0], lab) for m in members for lab, _, _ in config.samplers]
  samples = {}                       # (member label, sampler) → [M, B, ...]
  groups = {}
  subsets = model_zoo.nested_subsets(len(ds), config.matrix_sizes, config.zoo.subset_seed)
  for m in members:
    g = model_zoo.ensure_group(
        member_config(config, m), config.zoo.dir, f"{m[1]}{m[2]}_{m[3]}",
        sizes=config.matrix_sizes, seeds=config.matrix_seeds, subsets=subsets,
        data_shape=ds.data_shape)
    groups[m[0]] = g
    progress.step(f"trained {m[0]}")
    for lab, x in _sample(g.denoise, noise, config).items():
      samples[(m[0], lab)] = x
    progress.step(f"sampled {m[0]}")
  t_train = sum(float(g.info.get("train_seconds", 0.0)) for g in groups.values())
  matrices = {}
  for n in config.matrix_sizes:
    stack, entry_of, model_of, member_of_model = [], [], [], []
    first = {}                       # (member index, seed) → trained model index
    for e, (ml, lab) in enumerate(entries):
      mi = [m[0] for m in members].index(ml)
      g = groups[ml]
      for i in np.flatnonzero(g.sizes == int(n)):
        if (mi, int(g.seeds[i])) not in first:
          first[(mi, int(g.seeds[i]))] = len(member_of_model)
          member_of_model.append(mi)
        stack.append(samples[(ml, lab)][i])
        entry_of.append(e)
        model_of.append(first[(mi, int(g.seeds[i]))])
    matrices[int(n)] = matrix_scores(np.stack(stack), entry_of, model_of, member_of_model,
                                     sim, config, jax.random.fold_in(key, int(n)))
  progress.step("matrix")
  # 2. Disjoint halves.
  hm = members[int(config.halves_member)]
  sub_a, sub_b = halves(len(ds), config.halves_sizes, config.zoo.subset_seed)
  half_groups = [model_zoo.ensure_group(
      member_config(config, hm), config.zoo.dir, f"{hm[1]}{hm[2]}_{hm[3]}_half{h}",
      sizes=config.halves_sizes,
      seeds=config.halves_seeds, subsets=sub, data_shape=ds.data_shape)
      for h, sub in (("A", sub_a), ("B", sub_b))]
  t_train += sum(float(g.info.get("train_seconds", 0.0)) for g in half_groups)
  ref = config.samplers[0][0]
  hx = [_sample(g.denoise, noise, config, config.samplers[:1])[ref] for g in half_groups]
  half_rows = halves_scores(half_groups, hx, (sub_a, sub_b), ds, sim, config,
                            jax.random.fold_in(key, 1))
  progress.step("halves")
  # 3. Convergence in the memorization regime, memorization onset against N.
  conv = _convergence.measure(
      config, ds, sim, lambda den: _sample(den, noise, config, config.samplers[:1])[ref],
      member_config, jax.random.fold_in(key, 2))
  io.save_csv(ctx.workdir / "convergence.csv", conv["rows"])
  io.save_csv(ctx.workdir / "onset.csv", conv["onset"])
  progress.step("convergence")
  io.save_npz(ctx.workdir / "matrix.npz", sizes=np.asarray(config.matrix_sizes),
              **{f"{k}_N{n}": v for n, mat in matrices.items() for k, v in mat.items()})
  io.save_csv(ctx.workdir / "halves.csv", half_rows)
  summary = summarize(matrices, entries, half_rows, conv, config)
  return dict(threshold=cal.threshold, calibration_accuracy=cal.accuracy,
              entries=[list(e) for e in entries], num_noises=int(config.num_noises),
              sigma_range=list(sigma_range(config)),
              groups={g.name: dict(workdir=g.workdir, **g.info)
                      for g in list(groups.values()) + half_groups},
              matrix={str(n): {k: np.round(v, 4).tolist() for k, v in mat.items()}
                      for n, mat in matrices.items()},
              half_rows=half_rows, convergence=conv, summary=summary, train_seconds=t_train,
              seconds=time.time() - t0)


def halves_scores(groups, samples, subsets, ds, sim, config: Settings, key) -> list[dict]:
  """Per N: RP between the halves, RP between seeds of one half and GL, with intervals.

  Args:
    groups: the two halves' groups (same sizes and seeds).
    samples: their samples `[M, B, ...]` (one sampler).
    subsets: `(half A {N: [N]}, half B {N: [N]})`.
    sim: the calibrated similarity.
    key: PRNG key of the draws (seeds redrawn within each half, noises jointly).
  """
  rows = []
  level = float(config.ci_level)
  for n in config.halves_sizes:
    n = int(n)
    idx = [np.flatnonzero(g.sizes == n) for g in groups]
    stack = np.concatenate([x[i] for x, i in zip(samples, idx)])
    half_of = np.concatenate([np.full(len(i), h) for h, i in enumerate(idx)])
    hits, _ = _per_noise(stack, sim, float(config.mae_threshold))
    k_rp, k_gl = jax.random.split(jax.random.fold_in(key, n))
    res = bootstrap.draw(k_rp, stack.shape[1], half_of,
                         int(config.bootstrap_resamples))
    rp, lo, hi = _pair_cells(hits, half_of, res.models, res, level)
    same = bootstrap.pair_mask(np.ones(len(half_of), bool), np.ones(len(half_of), bool)) & (
        half_of[:, None] == half_of[None])
    same_est = bootstrap.estimate(
        bootstrap.point_pair(hits, same) if same.any() else np.nan,
        bootstrap.pair_mean(bootstrap.noise_means(hits, res), same, res.models, res.models),
        level)
    max_sim = np.stack([rpr.max_similarities(x, ds.x[subsets[h][n]], {"cal": sim})["cal"]
                        for x, h in zip(stack, half_of)])                        # [K, B]
    gl = bootstrap.gl_estimate(max_sim, sim.threshold, k_gl,
                               strata=half_of, num_resamples=int(config.bootstrap_resamples),
                               level=level)
    rows.append(dict(N=n, rp_halves=float(rp[0, 1]), rp_halves_lo=float(lo[0, 1]),
                     rp_halves_hi=float(hi[0, 1]), rp_same=float(same_est.value),
                     rp_same_lo=float(same_est.lo), rp_same_hi=float(same_est.hi),
                     gl=gl.value, gl_lo=gl.lo, gl_hi=gl.hi))
  return rows

def _worst_pair(mat: dict, entries) -> dict:
  """The off-diagonal pair of entries with the lowest RP, and its interval."""
  rp = np.asarray(mat["rp"], np.float64)
  off = rp + np.diag(np.full(len(rp), np.inf))
  i, j = np.unravel_index(np.argmin(off), off.shape)
  return dict(pair=[" / ".join(entries[i]), " / ".join(entries[j])], rp=float(rp[i, j]),
              rp_ci=[float(mat["rp_lo"][i][j]), float(mat["rp_hi"][i][j])],
              mae=float(mat["mae"][i][j]), rp_seeds=[float(rp[i, i]), float(rp[j, j])])


def summarize(matrices: dict, entries, half_rows, conv, config: Settings) -> dict:
  """Worst pair and diagonal per N; the halves at the smallest and largest N; the
  convergence curves' last stage (lowest RP and its interval) and plateau."""
  per_n = {}
  for n, mat in matrices.items():
    rp = np.asarray(mat["rp"], np.float64)
    per_n[str(n)] = dict(
        worst=_worst_pair(mat, entries),
        rp_offdiag_mean=float(rp[~np.eye(len(rp), dtype=bool)].mean()),
        rp_seeds_min=float(np.min(np.diag(rp))),
        fraction_pairs_above=float(np.mean(rp[~np.eye(len(rp), dtype=bool)]
                                           >= config.min_rp_pairs)))
  h0, h1 = half_rows[0], half_rows[-1]
  last, prev = conv["rows"][-1], conv["rows"][max(len(conv["rows"]) - 2, 0)]
  curves = [k for k in last if k.startswith("rp_") and not k.endswith((" lo", " hi"))]
  weakest = min(curves, key=lambda k: last[k])
  converged = dict(
      step=last["step"], curves={k: [last[k], last[f"{k} lo"], last[f"{k} hi"]] for k in curves},
      weakest=weakest, weakest_rp=last[weakest],
      weakest_ci=[last[f"{weakest} lo"], last[f"{weakest} hi"]],
      largest_change=max(abs(last[k] - prev[k]) for k in curves))
  return dict(per_N=per_n, halves_smallest=h0, halves_largest=h1, converged=converged,
              onset_exponent=conv["exponent"],
              onsets_found=int(sum(np.isfinite(float(o["onset"])) for o in conv["onset"])))


_SOURCE_MATRIX = "reproducibility paper §2, Fig. 3, App. A (Table 1); docs/theory.md §4.1"
_SOURCE_HALVES = "Kadkhodaie et al., ICLR 2024; docs/theory.md §6"
_SOURCE_ONSET = "Bonnaire et al., NeurIPS 2025; docs/theory.md §6"


def verdicts(config: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  """Every pair reproduces at each matrix N; disjoint halves differ when memorizing
  and agree when generalizing."""
  s = metrics["summary"]
  out = []
  sizes = [int(n) for n in config.matrix_sizes]
  for k, n in enumerate(sizes):
    w = s["per_N"][str(n)]["worst"]
    regime = ("memorization" if k == 0 else "generalization" if k == len(sizes) - 1
              else "intermediate")
    out.append(verdicts_lib.judge(
        w["rp"] >= config.min_rp_pairs,
        claim=f"Different architectures, kernels and samplers reproduce each other "
              f"({regime} N = {n}).",
        criterion=f"RP of every pair of (architecture, kernel, sampler) models ≥ "
                  f"{config.min_rp_pairs:g} (the paper's statement for its models)",
        measured=dict(N=n, worst_pair=w["pair"], worst_rp=w["rp"], worst_rp_ci=w["rp_ci"],
                      fraction_pairs_above=s["per_N"][str(n)]["fraction_pairs_above"],
                      rp_seeds_min=s["per_N"][str(n)]["rp_seeds_min"]),
        source=_SOURCE_MATRIX))
  h0, h1 = s["halves_smallest"], s["halves_largest"]
  out.append(verdicts_lib.judge(
      h0["rp_halves_hi"] <= config.halves_max_rp_memorization
      and h1["rp_halves"] >= config.halves_min_ratio * h1["rp_same"]
      and h1["rp_halves_lo"] > h0["rp_halves_hi"],
      partly=h1["rp_halves_lo"] > h0["rp_halves_hi"],
      claim="Models trained on disjoint halves of the data give different samples when "
            "memorizing and the same samples when generalizing.",
      criterion=f"RP between halves: CI upper bound ≤ {config.halves_max_rp_memorization:g} at "
                f"N = {h0['N']}; at N = {h1['N']} ≥ {config.halves_min_ratio:g} × RP between "
                f"seeds of one half, with its CI above the smallest N's (partly: only the "
                f"rise)",
      measured=dict(N_small=h0["N"], rp_halves_small=h0["rp_halves"],
                    rp_halves_small_ci=[h0["rp_halves_lo"], h0["rp_halves_hi"]],
                    N_large=h1["N"], rp_halves_large=h1["rp_halves"],
                    rp_halves_large_ci=[h1["rp_halves_lo"], h1["rp_halves_hi"]],
                    rp_same_large=h1["rp_same"],
                    rp_same_large_ci=[h1["rp_same_lo"], h1["rp_same_hi"]]),
      source=_SOURCE_HALVES))
  c = s["converged"]
  plateau = c["largest_change"] < config.plateau_tol
  out.append(verdicts_lib.judge(
      c["weakest_rp"] >= config.min_rp_converged and c["weakest_ci"][0] > config.min_rp_converged_lo,
      partly=plateau,
      claim="Trained long enough, memorizing models reproduce each other, across "
            "architectures, and the empirical denoiser's generations (RP → 1).",
      criterion=f"at N = {config.convergence_size} after {c['step']} steps every RP (between "
                f"seeds, across members, to ε*) ≥ {config.min_rp_converged:g} with its CI lower "
                f"bound > {config.min_rp_converged_lo:g} (partly: the curves have reached a "
                f"plateau below it, last change < {config.plateau_tol:g})",
      measured=dict(step=c["step"], weakest=c["weakest"], weakest_rp=c["weakest_rp"],
                    weakest_ci=c["weakest_ci"], largest_last_change=c["largest_change"],
                    curves=c["curves"]),
      source="reproducibility paper §3.2 (Theorem 1); docs/theory.md §4.3"))
  e = s["onset_exponent"]
  onset_claim = "The training time at which a model starts to memorize grows linearly with N."
  onset_criterion = (f"onset (steps to GL ≤ {config.onset_gl:g}) ∝ N^a fitted over the models "
                     f"with an onset at ≥ 3 N; the {config.ci_level:.0%} CI of a contains 1")
  if e["num_sizes"] < 3:
    out.append(verdicts_lib.Verdict(
        claim=onset_claim, verdict="not tested", criterion=onset_criterion,
        measured=dict(sizes_with_onset=e["num_sizes"], onsets_found=s["onsets_found"]),
        source=_SOURCE_ONSET))
  else:
    out.append(verdicts_lib.judge(
        e["a_lo"] <= 1.0 <= e["a_hi"], claim=onset_claim, criterion=onset_criterion,
        measured=dict(a=e["a"], a_ci=[e["a_lo"], e["a_hi"]], sizes_with_onset=e["num_sizes"],
                      onsets_found=s["onsets_found"]),
        source=_SOURCE_ONSET))
  return out


def render(config: Settings, metrics: dict, workdir) -> None:
  """matrix.png, matrix_mae.png, halves.png and report.md."""
  workdir = pathlib.Path(workdir)
  entries = [" / ".join(e) for e in metrics["entries"]]
  with np.load(workdir / "matrix.npz") as f:
    sizes = [int(n) for n in f["sizes"]]
    mats = {n: {k: f[f"{k}_N{n}"] for k in ("rp", "rp_lo", "rp_hi", "mae", "mae_lo",
                                            "mae_hi")} for n in sizes}
  for kind, path in (("rp", "matrix.png"), ("mae", "matrix_mae.png")):
    _matrix_figure(
        workdir / path, {f"N = {n}": (mats[n][kind], mats[n][f"{kind}_lo"],
                                      mats[n][f"{kind}_hi"]) for n in sizes}, entries,
        f"{'RP' if kind == 'rp' else 'MAE score'} between models from the same noises "
        f"(diagonal: between seeds; {config.ci_level:.0%} bootstrap CI)",
        label="RP" if kind == "rp" else "MAE score", cut=config.min_rp_pairs)
  _halves_figure(workdir / "halves.png", metrics["half_rows"], config)
  _convergence.figure(workdir / "convergence.png", metrics["convergence"], config)
  io.write_text(workdir / "report.md", _report(metrics, mats, config))


def _matrix_figure(path, panels: dict, labels, title: str, *, label: str, cut: float) -> None:
  """Heatmaps, one per `{name: (value, lo, hi)}` (each `[E, E]`), the interval in
  each cell; cells below `cut` are marked with a red frame."""
  plt = plotting.pyplot()
  n, e = len(panels), len(labels)
  size = 1.5 + 0.62 * e
  fig, axes = plt.subplots(1, n, figsize=(size * n + 1.6, size), squeeze=False)
  for p, (ax, (name, (val, lo, hi))) in enumerate(zip(axes[0], panels.items())):
    val, lo, hi = (np.asarray(a, np.float64) for a in (val, lo, hi))
    im = ax.imshow(val, vmin=0, vmax=1, cmap="viridis")
    for i in range(e):
      for j in range(e):
        ax.text(j, i, f"{val[i, j]:.2f}\n[{lo[i, j]:.2f},{hi[i, j]:.2f}]", ha="center",
                va="center", fontsize=5.5, color="w" if val[i, j] < 0.6 else "k")
        if val[i, j] < cut:
          ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="tab:red",
                                     lw=1.2))
    ax.set_xticks(range(e))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=6.5)
    ax.set_yticks(range(e))
    ax.set_yticklabels(labels if p == 0 else [], fontsize=6.5)
    ax.set_title(name, fontsize=8)
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=label)
  fig.suptitle(f"{title}; red frame: below {cut:g}", fontsize=8.5)
  io.save_figure(fig, path)


def _halves_figure(path, rows, config: Settings) -> None:
  plt = plotting.pyplot()
  ns = [r["N"] for r in rows]
  col = lambda key: np.array([float(r[key]) for r in rows])   # "nan" from JSON too
  fig, ax = plt.subplots(figsize=(6.4, 3.9))
  for key, style, color, label in (
      ("rp_halves", "o-", "k", "RP between models of disjoint halves"),
      ("rp_same", "s--", "tab:blue", "RP between seeds of one half"),
      ("gl", "^:", "tab:green", "GL")):
    y, lo, hi = col(key), col(f"{key}_lo"), col(f"{key}_hi")
    if np.isnan(y).all():
      continue
    ax.errorbar(ns, y, yerr=np.maximum(np.nan_to_num(np.stack([y - lo, hi - y])), 0),
                fmt=style, color=color, capsize=3, label=label)
  plots._log2_axis(ax, ns)
  ax.set(xlabel="training set size N (per half)", ylabel="score", ylim=(-0.03, 1.03),
         title=f"disjoint halves ({config.members[config.halves_member][0]}, "
               f"{config.ci_level:.0%} CI)")
  ax.legend(fontsize=7)
  io.save_figure(fig, path)


def _onset_text(e: dict, config: Settings) -> str:
  e = _numeric(e)
  if e["num_sizes"] < 2:
    return "too few N with an onset to fit its growth."
  return (f"fitted onset ∝ N^{e['a']:.2f} ({config.ci_level:.0%} CI [{e['a_lo']:.2f}, "
          f"{e['a_hi']:.2f}]) over {e['num_sizes']} N.")


def _numeric(row: dict) -> dict:
  """A row read back from JSON, its non-finite numbers ("nan") as floats again."""
  return {k: float(v) if isinstance(v, str) and v in ("nan", "inf", "-inf") else v
          for k, v in row.items()}


def _matrix_table(mat, entries) -> str:
  rows = []
  for i, e in enumerate(entries):
    row = {"model": e}
    for j in range(len(entries)):
      row[str(j + 1)] = f"{mat['rp'][i][j]:.2f} [{mat['rp_lo'][i][j]:.2f}, {mat['rp_hi'][i][j]:.2f}]"
    rows.append(row)
  return io.markdown_table(rows)


def _report(metrics: dict, mats: dict, config: Settings) -> str:
  s, vs = metrics["summary"], metrics["verdicts"]
  entries = [" / ".join(e) for e in metrics["entries"]]
  lo, hi = metrics["sigma_range"]
  members = ", ".join(f"{m[0]} (`{m[1]}`, width {m[2]}, `{m[3]}` on `{m[4]}`)"
                      for m in config.members)
  tables = "\n".join(f"N = {n} (columns in the order of the rows):\n\n"
                     f"{_matrix_table(mats[n], entries)}" for n in mats)
  hm = config.members[config.halves_member]
  half_rows = [_numeric(r) for r in metrics["half_rows"]]
  h0, h1 = half_rows[0], half_rows[-1]
  notes = []
  for v, n in zip(vs, config.matrix_sizes):
    w = s["per_N"][str(n)]["worst"]
    if v["verdict"] != "reproduced":
      notes.append(f"At N = {n} the weakest pair, {w['pair'][0]} vs {w['pair'][1]}, has RP "
                   f"{w['rp']:.2f} [{w['rp_ci'][0]:.2f}, {w['rp_ci'][1]:.2f}], below "
                   f"{config.min_rp_pairs:g}; {s['per_N'][str(n)]['fraction_pairs_above']:.0%} "
                   f"of the pairs reach it.  Within those two entries the seeds agree at RP "
                   f"{w['rp_seeds'][0]:.2f} and {w['rp_seeds'][1]:.2f}: where a member's own "
                   f"seeds disagree, it is not yet reproducible itself.")
  c = s["converged"]
  if vs[len(config.matrix_sizes) + 1]["verdict"] != "reproduced":
    notes.append(f"Convergence: after {c['step']} steps the weakest curve, {c['weakest']}, is at "
                 f"{c['weakest_rp']:.2f} and moved by up to {c['largest_change']:.2f} over the "
                 f"last doubling of the steps"
                 + (" (no plateau yet: the step budget is too short for it)."
                    if c["largest_change"] >= config.plateau_tol else " (a plateau)."))
  return f"""## Reproducibility across models and between disjoint halves

**Claims.** (1) Diffusion models of different architectures, training kernels
and samplers, trained on the same data, generate the same image from the same
noise: in the paper's App. A every pair of its CIFAR-10 models has RP above
0.6. (2) Two models trained on disjoint halves of the data generate different
images when they memorize (each copies its own half) and the same images when
they generalize (Kadkhodaie et al., 2024).

**Set-up.** Members: {members}; each trained with seeds
{tuple(int(x) for x in config.matrix_seeds)} on the same nested subsets, N ∈
{tuple(int(n) for n in config.matrix_sizes)}, with the zoo's optimizer and step
budget; samplers {', '.join(f"{a} (`{b}`, {c} steps)" for a, b, c in config.samplers)} on
σ ∈ [{lo:.3g}, {hi:.3g}] (the range every member was trained on), x0 clipped to
[−1, 1]: {config.num_noises} shared noises.  Similarity: pixel NCC with the
calibrated threshold {metrics['threshold']:.3f}; MAE score at
{config.mae_threshold:g}/255.  A matrix cell is the mean RP over the pairs of
distinct trained models of its two entries (the diagonal: between seeds; one
member under two samplers: other seeds only, as the same model under two
samplers is `reproducibility_across_samplers`' test), with a {config.ci_level:.0%} bootstrap
interval over noises and seeds ({config.bootstrap_resamples} resamples).
Disjoint halves: {hm[0]} on nested subsets of two disjoint halves, N ∈
{tuple(int(n) for n in config.halves_sizes)}, seeds
{tuple(int(x) for x in config.halves_seeds)}, sampled with
{config.samplers[0][0]}.  Training in this run: {metrics['train_seconds']:.0f} s (0
when every group was restored); total {metrics['seconds']:.0f} s.

![RP matrix](matrix.png)

![MAE matrix](matrix_mae.png)

![disjoint halves](halves.png)

{tables}

{io.markdown_table(half_rows, fmt="{:.2f}")}
**Verdicts.**

{chr(10).join(f"{i + 1}. {v['claim']} **{v['verdict']}**." for i, v in enumerate(vs))}

{' '.join(notes)} Disjoint halves: RP between halves {h0['rp_halves']:.2f}
[{h0['rp_halves_lo']:.2f}, {h0['rp_halves_hi']:.2f}] at N = {h0['N']} and
{h1['rp_halves']:.2f} [{h1['rp_halves_lo']:.2f}, {h1['rp_halves_hi']:.2f}] at N = {h1['N']},
against {h1['rp_same']:.2f} between seeds of one half.

**Convergence in the memorization regime** (N = {config.convergence_size},
{', '.join(metrics['convergence']['members'])}, sampled with {config.samplers[0][0]}
after each of {tuple(int(x) for x in config.convergence_steps)} steps of one run):
after {s['converged']['step']} steps the weakest curve is {s['converged']['weakest']} at
{s['converged']['weakest_rp']:.2f} [{s['converged']['weakest_ci'][0]:.2f},
{s['converged']['weakest_ci'][1]:.2f}]; the largest change over the last doubling of
the steps is {s['converged']['largest_change']:.3f}.  Memorization onset (steps
until GL ≤ {config.onset_gl:g}) of {metrics['convergence']['members'][0]} at N ∈
{tuple(metrics['convergence']['onset_sizes'])}: {s['onsets_found']} of
{len(metrics['convergence']['onset'])} models reach it within the run;
{_onset_text(s['onset_exponent'], config)}

![convergence](convergence.png)

{io.markdown_table([_numeric(r) for r in metrics['convergence']['rows']], fmt="{:.2f}")}
**Differences from the paper.** The paper's models are published CIFAR-10
networks compared with SSCD at 0.6; here they are small networks on 8×8
digits trained on the CPU with one step budget, compared with a calibrated
pixel NCC.  Kadkhodaie et al. train on up to 10⁵ face images; the halves here
hold at most {max(config.halves_sizes)} digits.

{verdicts_lib.table(vs)}"""
