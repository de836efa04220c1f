"""Phase transition with a network: memorization → generalization on a MoLRG.

Low-dim talk, "Phase transition from memorization to generalization"
(docs/theory.md §4): denoisers trained on N samples of a mixture of K = 2
low-rank Gaussians in D = 48 memorize (their samples copy training points) for
small N and generalize (new samples on the union of subspaces) for large N,
with the boundary along `N ∝ r`.  Measured by `L_score` against the exact
MoLRG score and by the samples of the learned model (docs/theory.md §5).

The whole (rank, seed, N) grid of one architecture is ONE `train_many` call:
the rows of every (rank, seed) data block sit in one array `[P·n_max, D]`
(handed to `train_many` in memory) and each model draws from the first N
rows of its own block (subsets nest in N).  Evaluation runs every model at
once: `denoiser.stack` makes the M networks one denoiser on a model-major
batch `[M·B, ...]` (vmapped), so one compiled Heun loop samples the whole grid.  Denoisers are
canonical (VE: `x_σ = x0 + σ ε`, `D(x, σ) ≈ E[x0 | x_σ]`).
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import samplers
from repro_jax import settings as settings_lib
from repro_jax.diffusion import denoiser
from repro_jax.diffusion import schedules
from repro_jax.analysis import score_metrics
from repro_jax.networks import training
from repro_jax.networks.training import settings as train_lib
from repro_jax.studies import _molrg_networks_report as report_lib
from repro_jax.studies import verdicts as verdicts_lib


# Settings -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Arch:
  """The complete training settings of one architecture: the sections of
  `TrainSettings` that define a run (the rows are the study's grid, handed to
  `train_many` in memory, so there is no data section; `train_settings` gives
  the `TrainSettings`)."""
  model: train_lib.ModelSettings = dataclasses.field(default_factory=train_lib.ModelSettings)
  diffusion: train_lib.DiffusionSettings = dataclasses.field(
      default_factory=train_lib.DiffusionSettings)
  optim: train_lib.OptimSettings = dataclasses.field(default_factory=train_lib.OptimSettings)
  train: train_lib.LoopSettings = dataclasses.field(default_factory=train_lib.LoopSettings)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UnetCheck(Arch):
  """The second architecture, trained only at `cells` ((r, N) pairs; every
  cell also has an MLP) with `num_seeds` seeds each."""
  enabled: bool = True
  cells: tuple[tuple[int, int], ...] = ((2, 8), (2, 32), (8, 32), (8, 256))
  num_seeds: int = 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class Eval:
  """Sampling, sample labels and the score error of every model."""
  num_samples: int = 256
  sampler: str = "heun"
  steps: int = 18
  # σ_min = σ_VP(t_min) ≈ 0.01, the smallest level the nets are trained on.
  sigma_min: float = 0.01
  sigma_max: float = 10.0
  # Criteria of the labels: a sample is on the support if dist(x, ∪ span U_k)/‖x‖
  # is below `support_tol`, a copy if d1/d2 (nearest / second-nearest training
  # distance) is below `copy_ratio`, new if on the support and not a copy.
  support_tol: float = 0.2
  copy_ratio: float = 1.0 / 3.0
  score_samples: int = 512
  score_sigma_min: float = 0.01
  score_sigma_max: float = 10.0
  score_sigmas: int = 8


def _arch(cls, *changes):
  """`cls` with the sections of the `cpu` training variant after `changes`."""
  t = training.variant("cpu")
  for c in changes:
    t = settings_lib.override(t, c, where="arch")
  return cls(model=t.model, diffusion=t.diffusion, optim=t.optim, train=t.train)


# Both architectures: checkpoint_every = num_steps (no checkpoints are written;
# the training settings require a multiple of log_every).
_MLP = dict(
    model=dict(name="mlp", hidden=128, depth=2, emb_dim=32, width=16, ch_mult=(1, 2),
               num_res_blocks=1, attn_resolutions=(), norm_groups=8),
    # x0-prediction (the talk's x_θ ≈ E[x0 | x_t]) on the VP SDE: its samples
    # land on the support to ~2% where ε/EDM nets of this size leave 10–50%.
    diffusion=dict(parameterization="x0", schedule="vp", sigma_data=0.5, p_mean=-1.2,
                   p_std=1.2),
    optim=dict(learning_rate=1e-3, warmup_steps=100),
    train=dict(batch_size=64, num_steps=3000, log_every=500, checkpoint_every=3000,
               ema_decay=0.999, num_devices=1))
_UNET = dict(model=dict(name="unet"), optim=dict(learning_rate=2e-3),
             train=dict(num_steps=600, log_every=200, checkpoint_every=600))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """The grid, the two architectures, the evaluation and the criteria."""
  seed: int = 0
  dim: int = 48
  num_components: int = 2
  image_shape: tuple[int, ...] = (4, 4, 3)   # the U-Net's view of a 48-D point
  ranks: tuple[int, ...] = (2, 4, 6, 8)      # r of every component
  ns: tuple[int, ...] = (8, 16, 32, 64, 128, 256)   # N, total over the components
  num_seeds: int = 1
  # Criterion of "N* ∝ r": the fitted log-log exponent of N*(r) lies in this range.
  exponent_range: tuple[float, float] = (0.5, 1.5)
  # Criterion of the regimes: a cell memorizes (generalizes) when at least this
  # fraction of its samples are copies (new); N*(r) is where the fraction crosses it.
  majority: float = 0.5
  # The report calls the growth of N*(r) "close to linear" for an exponent in this range.
  linear_range: tuple[float, float] = (0.8, 1.2)
  # The report calls a U-Net cell undertrained when fewer of its samples reach the support.
  min_on_support: float = 0.5
  mlp: Arch = dataclasses.field(default_factory=lambda: _arch(Arch, _MLP))
  unet: UnetCheck = dataclasses.field(default_factory=lambda: _arch(UnetCheck, _MLP, _UNET))
  eval: Eval = dataclasses.field(default_factory=Eval)


VARIANTS = ("cpu", "smoke", "paper")
_RANKS_PAPER = (2, 4, 6, 8, 10, 12)
_NS_PAPER = (4, 8, 16, 32, 64, 128, 256, 512, 1024)
_VARIANTS = {
    "cpu": {},
    "smoke": dict(
        ranks=(2, 3), ns=(2, 16), dim=12, image_shape=(2, 2, 3),
        mlp=dict(model=dict(hidden=32, emb_dim=8),
                 optim=dict(warmup_steps=10, learning_rate=3e-3),
                 train=dict(num_steps=300, log_every=150, checkpoint_every=300,
                            batch_size=32, ema_decay=0.99)),
        # The second architecture is exercised on the image view, but as an MLP: a
        # U-Net costs ~40 s of XLA:CPU compilation (tests/test_training.py covers it).
        unet=dict(model=dict(name="mlp", hidden=16, emb_dim=8), optim=dict(warmup_steps=1),
                  train=dict(num_steps=20, log_every=20, checkpoint_every=20, batch_size=8),
                  cells=((2, 16),)),
        eval=dict(num_samples=32, steps=4, score_samples=64, score_sigmas=4)),
    "paper": dict(
        ranks=_RANKS_PAPER, ns=_NS_PAPER, num_seeds=3,
        mlp=dict(model=dict(hidden=256, depth=3, emb_dim=64),
                 train=dict(num_steps=20_000, batch_size=256, log_every=1000,
                            checkpoint_every=20_000)),
        unet=dict(model=dict(width=64, ch_mult=(1, 2), attn_resolutions=(2,)),
                  train=dict(num_steps=20_000, batch_size=256, log_every=1000,
                             checkpoint_every=20_000),
                  cells=tuple((r, n) for r in _RANKS_PAPER for n in _NS_PAPER),
                  num_seeds=3),
        eval=dict(num_samples=1024, score_samples=4096, score_sigmas=16)),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default: 24 MLP cells in one vmapped program + a 4-cell U-Net check),
  `smoke` (seconds, for tests) or `paper` (GPU: the full, finer grid, 3 seeds)."""
  if variant not in _VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
  return settings_lib.override(Settings(), _VARIANTS[variant])


def train_settings(arch: Arch) -> training.TrainSettings:
  """The `TrainSettings` of one architecture: the `cpu` training variant with
  the block's sections (its data section is never read: `train_grid` passes
  the rows in memory)."""
  return settings_lib.override(training.variant("cpu"), dict(
      model=arch.model, diffusion=arch.diffusion, optim=arch.optim, train=arch.train))


# Data ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GridData:
  """Data of a (rank, seed) grid, one block of `n_max` rows per pair.

  Attributes:
    x: `[P·n_max, D]` all rows (P = len(ranks) · num_seeds blocks).
    bases: `[P, K, D, R_max]` the true subspaces of each block.
    ranks, seeds: `[P]` of each block.
    n_max: rows per block.
  """
  x: np.ndarray
  bases: np.ndarray
  ranks: np.ndarray
  seeds: np.ndarray
  n_max: int

  def block(self, rank: int, seed: int) -> int:
    return int(np.nonzero((self.ranks == rank) & (self.seeds == seed))[0][0])


def make_grid_data(ranks, num_seeds: int, n_max: int, *, dim: int = 48,
                   num_components: int = 2, seed: int = 0) -> GridData:
  """One MoLRG per (rank, seed) (`data.molrg`: orthogonal bases, uniform weights)."""
  r_max = max(ranks)
  xs, bases, rs, ss = [], [], [], []
  for r in ranks:
    for s in range(num_seeds):
      x, _, b = data_lib.molrg(dim, num_components, int(r), n_max,
                               10_000 * seed + 100 * int(r) + s)
      xs.append(x)
      bases.append(np.pad(b, ((0, 0), (0, 0), (0, r_max - b.shape[2]))))
      rs.append(int(r))
      ss.append(s)
  return GridData(np.concatenate(xs), np.stack(bases), np.array(rs), np.array(ss), n_max)


@dataclasses.dataclass(frozen=True)
class Cells:
  """The M trained models: `rank`, `seed`, `n`, `block` `[M]` each."""
  rank: np.ndarray
  seed: np.ndarray
  n: np.ndarray
  block: np.ndarray

  def __len__(self):
    return len(self.n)


def make_cells(grid: GridData, pairs, num_seeds: int) -> Cells:
  """One model per `(rank, N)` pair and seed (the pairs of a full grid or a few)."""
  cells = [(int(r), s, int(n), grid.block(r, s)) for r, n in pairs
           for s in range(num_seeds)]
  return Cells(*(np.array(c) for c in zip(*cells)))


def cell_subsets(grid: GridData, cells: Cells):
  """Row indices of each model: the first `n` rows of its block."""
  return [grid.n_max * b + np.arange(n, dtype=np.int32) for b, n in zip(cells.block, cells.n)]


# Models -------------------------------------------------------------------------

def train_grid(arch: Arch, grid: GridData, cells: Cells, image_shape=None, seed: int = 0):
  """Train every cell in one `train_many` call → `(trainer, ema [M, P], history)`."""
  x = grid.x if image_shape is None else grid.x.reshape((-1,) + tuple(image_shape))
  cfg = train_settings(arch)
  states, history = training.train_many(
      cfg, seeds=[1000 * seed + i for i in range(len(cells))],
      subsets=cell_subsets(grid, cells), dataset=data_lib.Dataset(x, None, {}))
  trainer = training.make_trainer(cfg, x.shape[1:])
  return trainer, states.ema, history


# Evaluation ---------------------------------------------------------------------

def network_factory(trainer):
  """`params [P] -> ` the canonical denoiser of one network."""
  return functools.partial(training.network_denoiser, trainer)


def molrg_factory(data_shape):
  """`bases [K, D, R] -> ` the exact MoLRG posterior mean on `[B, *data_shape]`."""
  del data_shape   # the closed form flattens `[B, ...]` and reshapes back
  return denoiser.molrg


def evaluate(make_denoiser, params, data_shape, grid: GridData, cells: Cells, ev, key):
  """Samples, sample labels and score errors of M models (networks or closed forms).

  Args:
    make_denoiser: `p -> denoise(x [B, *data_shape], σ [B]) -> x0` of one model.
    params: pytree with leading axis M, one entry per cell.
    data_shape: per-example shape.
    grid, cells: the data and the M cells.
    ev: the study's `Eval` settings.
    key: PRNG key (the same key gives every model the same noise).

  Returns:
    `(labels, score)`: `SampleLabels` with fields `[M, B]` / `[M]` and
    `ScoreError` with fields `[M]` / `[M, S]`, as NumPy.
  """
  m, b = len(cells), int(ev.num_samples)
  k_noise, k_score = jax.random.split(key)
  sig = schedules.edm_sigmas(int(ev.steps), float(ev.sigma_min), float(ev.sigma_max))
  noise = jax.random.normal(k_noise, (b,) + tuple(data_shape))         # shared by the M
  out = samplers.sample_batched(denoiser.stack(make_denoiser, params), noise, sig,
                                sampler=ev.sampler).samples             # [M, B, ...]
  samples = jnp.reshape(out, (m, b, -1))                                # [M, B, D]
  bases = jnp.asarray(grid.bases[cells.block])                          # [M, K, D, R]
  rows = grid.x.reshape(-1, grid.n_max, grid.x.shape[-1])[cells.block]  # [M, n_max, D]
  mask = np.arange(grid.n_max)[None] < cells.n[:, None]
  labels = jax.jit(jax.vmap(lambda s, t, bb, mm: score_metrics.sample_labels(
      s, t, bb, train_mask=mm, support_tol=float(ev.support_tol),
      copy_ratio=float(ev.copy_ratio))))(samples, jnp.asarray(rows), bases,
                                         jnp.asarray(mask))
  score_fn = lambda p, bb: score_metrics.l_score(
      make_denoiser(p), bb, k_score, num_samples=int(ev.score_samples),
      sigma_min=float(ev.score_sigma_min), sigma_max=float(ev.score_sigma_max),
      num_sigmas=int(ev.score_sigmas), data_shape=data_shape)
  score = jax.jit(jax.vmap(score_fn))(params, bases)
  return jax.device_get(labels), jax.device_get(score)


# The study ----------------------------------------------------------------------

def cell_rows(arch: str, cells: Cells, labels, score, ref_labels=None, *, level: float):
  """One dict per model: cell, score error, sample fractions, regime (by `level`)."""
  rows = []
  for i in range(len(cells)):
    row = dict(arch=arch, r=int(cells.rank[i]), seed=int(cells.seed[i]), n=int(cells.n[i]),
               l_score=float(score.l_score[i]), l_score_rel=float(score.l_score_rel[i]),
               frac_on_support=float(labels.frac_on_support[i]),
               frac_copy=float(labels.frac_copy[i]), frac_new=float(labels.frac_new[i]),
               l_generalize=float(np.mean(labels.nn_dist[i])),
               median_support_dist=float(np.median(labels.support_dist[i])),
               median_nn_ratio=float(np.median(labels.nn_ratio[i])),
               regime=score_metrics.regime(float(labels.frac_copy[i]),
                                           float(labels.frac_new[i]), level))
    if ref_labels is not None:
      row.update(exact_frac_copy=float(ref_labels.frac_copy[i]),
                 exact_frac_new=float(ref_labels.frac_new[i]))
    rows.append(row)
  return rows


def grid_means(rows, ranks, ns, field):
  """`[len(ns), len(ranks)]` seed-mean of `field` (nan where a cell is missing)."""
  out = np.full((len(ns), len(ranks)), np.nan)
  for i, n in enumerate(ns):
    for j, r in enumerate(ranks):
      v = [x[field] for x in rows if x["n"] == n and x["r"] == r]
      if v:
        out[i, j] = float(np.mean(v))
  return out


def boundary(ns, ranks, frac, *, level: float):
  """Crossings `N*(r)` of `frac [len(ns), len(ranks)]` through `level`, the
  power-law exponent of `N* ∝ r^a` (log-log least squares) and the
  proportional constant `c` of `N* = c r` (geometric mean of `N*/r`)."""
  n_star = np.array([score_metrics.crossing(ns, frac[:, j], level)
                     for j in range(len(ranks))])
  ok = np.isfinite(n_star)
  r = np.asarray(ranks, float)
  expo = float(np.polyfit(np.log(r[ok]), np.log(n_star[ok]), 1)[0]) if ok.sum() >= 2 \
      else float("nan")
  c = float(np.exp(np.mean(np.log(n_star[ok] / r[ok])))) if ok.any() else float("nan")
  return n_star, expo, c


def summarize(rows, ranks, ns, s: Settings) -> dict:
  """Phase-diagram matrices, boundaries and the checks of the claim (by the
  criteria of `s`)."""
  mats = {f: grid_means(rows, ranks, ns, f)
          for f in ("frac_new", "frac_copy", "frac_on_support", "l_score_rel", "l_score")}
  n_gen, expo_gen, c_gen = boundary(ns, ranks, mats["frac_new"], level=s.majority)
  n_mem, expo_mem, c_mem = boundary(ns, ranks, 1.0 - mats["frac_copy"], level=s.majority)
  lo, hi = s.exponent_range
  checks = dict(
      memorizes_at_smallest_n=bool(np.all(mats["frac_copy"][0] >= s.majority)),
      generalizes_at_largest_n=bool(np.all(mats["frac_new"][-1] >= s.majority)),
      boundary_grows_with_r=bool(np.all(np.isfinite(n_gen)) and np.all(np.diff(n_gen) >= 0)
                                 and n_gen[-1] > n_gen[0]),
      exponent_near_one=bool(lo <= expo_gen <= hi),
      score_error_falls_with_n=bool(np.all(mats["l_score_rel"][-1] < mats["l_score_rel"][0])))
  return dict(matrices={k: v.tolist() for k, v in mats.items()},
              n_star_generalize=n_gen.tolist(), exponent_generalize=expo_gen,
              c_generalize=c_gen, n_star_memorize=n_mem.tolist(),
              exponent_memorize=expo_mem, c_memorize=c_mem, checks=checks,
              reproduced=bool(all(checks.values())))


def measure(s: Settings, ctx) -> dict:
  """Train, sample and measure the grid; writes cells.csv, returns the metrics."""
  t_start = time.time()
  key = jax.random.key(int(s.seed))
  ranks, ns = [int(r) for r in s.ranks], [int(n) for n in s.ns]
  unet_pairs = [tuple(int(v) for v in c) for c in s.unet.cells] if s.unet.enabled else []
  grid = make_grid_data(sorted(set(ranks) | {r for r, _ in unet_pairs}),
                        int(s.num_seeds), max(ns + [n for _, n in unet_pairs]),
                        dim=int(s.dim), num_components=int(s.num_components),
                        seed=int(s.seed))
  progress = ctx.progress(3 + 2 * bool(unet_pairs))
  timings = {}

  cells = make_cells(grid, [(r, n) for r in ranks for n in ns], int(s.num_seeds))
  t0 = time.time()
  trainer, ema, history = train_grid(s.mlp, grid, cells, seed=int(s.seed))
  timings["mlp_train"] = time.time() - t0
  progress.step(f"trained {len(cells)} MLPs")
  t0 = time.time()
  k_eval = jax.random.fold_in(key, 1)
  labels, score = evaluate(network_factory(trainer), ema, trainer.data_shape, grid, cells,
                           s.eval, k_eval)
  timings["mlp_eval"] = time.time() - t0
  progress.step("sampled and scored the MLPs")
  flat = (int(s.dim),)
  ref_labels, ref_score = evaluate(molrg_factory(flat), jnp.asarray(grid.bases[cells.block]),
                                   flat, grid, cells, s.eval, k_eval)
  progress.step("exact MoLRG reference")
  rows = cell_rows("mlp", cells, labels, score, ref_labels, level=s.majority)
  profiles = dict(mlp=dict(sigmas=np.asarray(score.sigmas[0]).tolist(),
                           rel=np.asarray(score.rel_per_sigma).tolist()))
  examples = _example_labels(cells, labels, ref_labels, ranks, ns)

  unet_rows = []
  if unet_pairs:
    ucells = make_cells(grid, unet_pairs, int(s.unet.num_seeds))
    t0 = time.time()
    utrainer, uema, _ = train_grid(s.unet, grid, ucells, image_shape=tuple(s.image_shape),
                                   seed=int(s.seed))
    timings["unet_train"] = time.time() - t0
    progress.step(f"trained {len(ucells)} U-Nets")
    t0 = time.time()
    ulabels, uscore = evaluate(network_factory(utrainer), uema, utrainer.data_shape, grid,
                               ucells, s.eval, k_eval)
    timings["unet_eval"] = time.time() - t0
    unet_rows = cell_rows("unet", ucells, ulabels, uscore, level=s.majority)
    profiles["unet"] = dict(rel=np.asarray(uscore.rel_per_sigma).tolist())
    progress.step("sampled and scored the U-Nets")

  summary = summarize(rows, ranks, ns, s)
  summary["score_order_every_sigma"] = _score_order(rows, profiles["mlp"]["rel"], ranks, ns)
  summary["reference"] = dict(
      max_l_score_rel=float(np.max(ref_score.l_score_rel)),
      min_frac_new=float(np.min(ref_labels.frac_new)),
      max_frac_copy=float(np.max(ref_labels.frac_copy)))
  summary["unet"] = _unet_summary(unet_rows, rows)
  io.save_csv(ctx.workdir / "cells.csv", rows + unet_rows)
  return dict(summary, timings=timings, seconds=time.time() - t_start,
              final_train_loss=history[-1]["loss"] if history else None,
              profiles=profiles, examples=examples, cells=rows + unet_rows)


def _score_order(rows, rel, ranks, ns) -> bool:
  """Whether, for every r and seed, the largest N's relative score error is below
  the smallest N's at every σ."""
  rel = np.asarray(rel)
  idx = {(x["r"], x["seed"], x["n"]): i for i, x in enumerate(rows)}
  return bool(all(np.all(rel[idx[(r, s, ns[-1])]] < rel[idx[(r, s, ns[0])]])
                  for r in ranks for s in {x["seed"] for x in rows}))


def _example_labels(cells, labels, ref_labels, ranks, ns):
  """Per-sample (support distance, d1/d2) at the middle rank (first seed): the
  smallest and largest N, and the exact MoLRG sampler at the largest N."""
  r = ranks[len(ranks) // 2]
  out = {}
  for n, lab, name in ((ns[0], labels, "MLP"), (ns[-1], labels, "MLP"),
                       (ns[-1], ref_labels, "exact MoLRG denoiser")):
    i = int(np.nonzero((cells.rank == r) & (cells.n == n) & (cells.seed == 0))[0][0])
    out[f"{name}, r={r}, N={n}"] = dict(support=np.asarray(lab.support_dist[i]).tolist(),
                                        ratio=np.asarray(lab.nn_ratio[i]).tolist())
  return out


def _unet_summary(unet_rows, mlp_rows) -> dict:
  """U-Net regimes beside the MLP's at the same cells."""
  if not unet_rows:
    return {}
  agree, cells = 0, []
  for u in unet_rows:
    m = [x for x in mlp_rows if (x["r"], x["n"], x["seed"]) == (u["r"], u["n"], u["seed"])]
    mlp_regime = m[0]["regime"] if m else None
    agree += mlp_regime == u["regime"]
    cells.append(dict(r=u["r"], n=u["n"], seed=u["seed"], unet=u["regime"], mlp=mlp_regime))
  return dict(cells=cells, agree=int(agree), total=len(unet_rows))


# Verdicts and report -------------------------------------------------------------

_SOURCE = ("low-dim talk, \"Phase transition from memorization to generalization\" "
           "(docs/theory.md §4–§5)")


def _column(matrix, row):
  return [float(v) for v in np.asarray(matrix, float)[row]]


def verdicts(s: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  """One verdict per check of the claim (`metrics["checks"]`, by the criteria of `s`)."""
  chk, mats = metrics["checks"], metrics["matrices"]
  ranks, ns = list(s.ranks), list(s.ns)
  lo, hi = s.exponent_range
  n_gen = [float(v) for v in metrics["n_star_generalize"]]
  claims = dict(
      memorizes_at_smallest_n=(
          "Trained on few samples, the model memorizes: most of its samples copy "
          "training points, for every rank r.",
          f"fraction of copies (d1/d2 < {s.eval.copy_ratio:.3g}) ≥ {s.majority:g} at "
          f"N = {ns[0]} for every r in {ranks}",
          dict(n=ns[0], frac_copy=_column(mats["frac_copy"], 0))),
      generalizes_at_largest_n=(
          "Trained on many samples, the model generalizes: most of its samples are new "
          "points on the union of subspaces, for every rank r.",
          f"fraction of new samples (on support: dist/‖x‖ < {s.eval.support_tol:g}, not "
          f"a copy) ≥ {s.majority:g} at N = {ns[-1]} for every r in {ranks}",
          dict(n=ns[-1], frac_new=_column(mats["frac_new"], -1))),
      boundary_grows_with_r=(
          "The boundary N*(r) between memorization and generalization grows with r.",
          f"N*(r), where the fraction of new samples reaches {s.majority:g}, exists for "
          f"every r, never falls with r and N*({ranks[-1]}) > N*({ranks[0]})",
          dict(n_star=n_gen)),
      exponent_near_one=(
          "The boundary lies along N ∝ r.",
          f"fitted N* ∝ r^a has a in [{lo:g}, {hi:g}]",
          dict(a=float(metrics["exponent_generalize"]), c=float(metrics["c_generalize"]))),
      score_error_falls_with_n=(
          "The learned score approaches the true MoLRG score as N grows.",
          f"relative L_score at N = {ns[-1]} below N = {ns[0]}'s, for every r",
          dict(l_score_rel_smallest_n=_column(mats["l_score_rel"], 0),
               l_score_rel_largest_n=_column(mats["l_score_rel"], -1))))
  return [verdicts_lib.judge(bool(chk[k]), claim=claim, criterion=criterion,
                             measured=measured, source=_SOURCE)
          for k, (claim, criterion, measured) in claims.items()]


def render(s: Settings, metrics: dict, workdir) -> None:
  """phase_diagram.png, details.png and report.md from the metrics."""
  workdir = pathlib.Path(workdir)
  ranks, ns = list(s.ranks), list(s.ns)
  rows = [c for c in metrics["cells"] if c["arch"] == "mlp"]
  unet_rows = [c for c in metrics["cells"] if c["arch"] == "unet"]
  report_lib.phase_figure(workdir / "phase_diagram.png", s, ranks, ns, metrics)
  report_lib.detail_figure(workdir / "details.png", s, metrics["profiles"],
                           metrics["examples"], rows, unet_rows)
  report_lib.report(workdir, s, metrics, rows, unet_rows)
