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
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import samplers
from repro_jax import settings as settings_lib
from repro_jax.diffusion import denoiser
from repro_jax.diffusion import schedules
from repro_jax.analysis import bootstrap
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
class GridArch(Arch):
  """An architecture trained over the whole (rank, N) grid, `num_seeds` models
  per cell (seed s uses the s-th data set of each rank, so every architecture
  sees the same data); `image_view`: it sees each point as an `image_shape` image."""
  enabled: bool = True
  num_seeds: int = 3
  image_view: bool = False


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


def _arch(cls, *changes, **fields):
  """`cls(**fields)` with the sections of the `cpu` training variant after `changes`."""
  t = training.variant("cpu")
  for c in changes:
    t = settings_lib.override(t, c, where="arch")
  return cls(model=t.model, diffusion=t.diffusion, optim=t.optim, train=t.train, **fields)


# Every architecture: checkpoint_every = num_steps (no checkpoints are written;
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
# The image-view architectures: one seed per cell at CPU scale (their grids cost
# 5–10× the MLP's per model), batch 32.  The U-Net's convolutions are written
# as patches × matrices (`conv_impl="im2col"`): vmapped over 55 models XLA's
# convolutions become grouped ones, which XLA:CPU runs 1.2–1.45× slower.
_IMAGE_TRAIN = dict(batch_size=32, num_steps=3000, log_every=500, checkpoint_every=3000)
_UNET = dict(model=dict(name="unet", width=8, norm_groups=4, conv_impl="im2col"),
             optim=dict(learning_rate=2e-3), train=_IMAGE_TRAIN)
# 2×2 patches of the 4×4×3 view: 4 tokens of 12 values.
_DIT = dict(model=dict(name="dit", width=32, depth=2, patch_size=2, num_heads=4,
                       mlp_ratio=4.0, emb_dim=32),
            optim=dict(learning_rate=1e-3), train=_IMAGE_TRAIN)
ARCHS = ("mlp", "unet", "dit")
LABELS = {"mlp": "MLP", "unet": "U-Net", "dit": "DiT"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
  """The grid, the three architectures, the evaluation and the criteria."""
  seed: int = 0
  dim: int = 48
  num_components: int = 2
  image_shape: tuple[int, ...] = (4, 4, 3)   # the image view of a 48-D point
  ranks: tuple[int, ...] = (2, 4, 6, 8, 10)  # r of every component
  # N, total over the components: a √2-spaced grid (8·2^(k/2), rounded).
  ns: tuple[int, ...] = (8, 11, 16, 23, 32, 45, 64, 91, 128, 181, 256)
  # Criterion of "N* ∝ r": the bootstrap CI of the exponent a of N* ∝ r^a
  # contains 1 and lies inside this range (it must tell linear from √r and r²).
  exponent_range: tuple[float, float] = (0.5, 1.5)
  # Criterion of the regimes: a cell memorizes (generalizes) when at least this
  # fraction of its samples are copies (new); N*(r) is where the fraction crosses it.
  majority: float = 0.5
  # The report calls a cell undertrained when fewer of its samples reach the support.
  min_on_support: float = 0.5
  # Bootstrap over the shared noises and, per rank, over the seeds (a seed's data
  # set and its models at every N are one cluster).
  bootstrap_resamples: int = 1000
  ci_level: float = 0.95
  mlp: GridArch = dataclasses.field(default_factory=lambda: _arch(GridArch, _MLP))
  unet: GridArch = dataclasses.field(default_factory=lambda: _arch(
      GridArch, _MLP, _UNET, num_seeds=1, image_view=True))
  dit: GridArch = dataclasses.field(default_factory=lambda: _arch(
      GridArch, _MLP, _DIT, num_seeds=1, image_view=True))
  eval: Eval = dataclasses.field(default_factory=Eval)

  def archs(self) -> list[str]:
    """Names of the enabled architectures, in `ARCHS` order."""
    return [a for a in ARCHS if getattr(self, a).enabled]

  @property
  def num_data_sets(self) -> int:
    """Data sets per rank: the most seeds any enabled architecture trains."""
    return max(int(getattr(self, a).num_seeds) for a in self.archs())


VARIANTS = ("cpu", "smoke", "paper")
_RANKS_PAPER = (2, 4, 6, 8, 10, 12)
_NS_PAPER = tuple(int(round(4 * 2 ** (k / 2))) for k in range(17))   # 4 … 1024
_TINY = dict(optim=dict(warmup_steps=1), train=dict(num_steps=20, log_every=20,
                                                    checkpoint_every=20, batch_size=8))
_PAPER_TRAIN = dict(train=dict(num_steps=20_000, batch_size=256, log_every=1000,
                               checkpoint_every=20_000), num_seeds=3)
_VARIANTS = {
    "cpu": {},
    "smoke": dict(
        ranks=(2, 3), ns=(2, 4, 16), dim=12, image_shape=(2, 2, 3), bootstrap_resamples=200,
        mlp=dict(model=dict(hidden=32, emb_dim=8), num_seeds=2,
                 optim=dict(warmup_steps=10, learning_rate=3e-3),
                 train=dict(num_steps=300, log_every=150, checkpoint_every=300,
                            batch_size=32, ema_decay=0.99)),
        # The image-view architectures are exercised on the image view, but as
        # MLPs: a U-Net or DiT costs tens of seconds of XLA:CPU compilation
        # (tests/test_training.py and tests/test_conv.py cover them).
        unet=dict(model=dict(name="mlp", hidden=16, emb_dim=8), **_TINY),
        dit=dict(enabled=False),
        eval=dict(num_samples=32, steps=4, score_samples=64, score_sigmas=4)),
    "paper": dict(
        ranks=_RANKS_PAPER, ns=_NS_PAPER,
        mlp=dict(model=dict(hidden=256, depth=3, emb_dim=64), **_PAPER_TRAIN),
        unet=dict(model=dict(width=64, ch_mult=(1, 2), attn_resolutions=(2,), norm_groups=8,
                             conv_impl="canonical"), **_PAPER_TRAIN),
        dit=dict(model=dict(width=128, depth=4, num_heads=4, emb_dim=64), **_PAPER_TRAIN),
        eval=dict(num_samples=1024, score_samples=4096, score_sigmas=16)),
}


def settings(variant: str = "cpu") -> Settings:
  """`cpu` (default: 165 MLPs, 55 U-Nets and 55 DiTs over a 5-rank × 11-N
  grid), `smoke` (seconds, for tests) or `paper` (GPU: a wider grid, 3 seeds of
  every architecture)."""
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
  power-law exponent of `N* ∝ r^a` (log-log least squares; nan unless every
  rank crosses) and the proportional constant `c` of `N* = c r` (geometric mean
  of `N*/r` over the ranks that cross)."""
  n_star = np.array([score_metrics.crossing(ns, frac[:, j], level)
                     for j in range(len(ranks))])
  ok = np.isfinite(n_star)
  r = np.asarray(ranks, float)
  expo = float(np.polyfit(np.log(r), np.log(n_star), 1)[0]) if ok.all() and len(r) >= 2 \
      else float("nan")
  c = float(np.exp(np.mean(np.log(n_star[ok] / r[ok])))) if ok.any() else float("nan")
  return n_star, expo, c


def cell_fractions(indicator, cells: Cells, ranks, ns, noise_counts, seed_counts):
  """Bootstrap replicates of the fraction of samples with a property, per cell.

  Args:
    indicator: `[M, B]` 0/1 per model and shared noise.
    cells: the M models (rank, seed, n).
    noise_counts: `[R, B]` times each noise is drawn (`bootstrap.Resample.noise`).
    seed_counts: `[R, len(ranks), S]` times each seed is drawn for each rank
      (S ≥ the seeds of `cells`).

  Returns `[R, len(ns), len(ranks)]`: per replicate, the mean over the drawn
  seeds of each cell of the resampled per-model fractions.
  """
  r_pos = np.searchsorted(np.asarray(ranks), cells.rank)
  n_pos = np.searchsorted(np.asarray(ns), cells.n)
  onehot = np.zeros((len(cells), len(ns) * len(ranks)), np.float32)
  onehot[np.arange(len(cells)), n_pos * len(ranks) + r_pos] = 1.0
  means = bootstrap.noise_means(indicator, bootstrap.Resample(noise_counts, None))  # [R, M]
  w = jnp.asarray(seed_counts)[:, r_pos, cells.seed]                                # [R, M]
  num, den = (w * means) @ onehot, w @ onehot
  out = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)
  return np.asarray(out).reshape(-1, len(ns), len(ranks))


def seed_counts(key, num_ranks: int, num_seeds: int, num_resamples: int) -> jax.Array:
  """`[R, num_ranks, num_seeds]`: seeds drawn with replacement, per rank and replicate."""
  idx = jax.random.randint(key, (num_resamples, num_ranks, num_seeds), 0, num_seeds)
  return jax.nn.one_hot(idx, num_seeds).sum(2)


def boundary_estimates(new_reps, copy_reps, new, copy, ranks, ns, *, level: float,
                       ci_level: float) -> dict:
  """Point values and percentile CIs of the boundaries from cell-fraction
  replicates (`[R, len(ns), len(ranks)]`) and the point fractions `new`, `copy`."""
  out = {}
  for name, point, reps in (("generalize", new, new_reps),
                            ("memorize", 1.0 - copy, 1.0 - copy_reps)):
    n_star, expo, c = boundary(ns, ranks, point, level=level)
    rep = [boundary(ns, ranks, f, level=level) for f in reps]
    with warnings.catch_warnings():   # a rank that never crosses: an all-NaN column
      warnings.simplefilter("ignore", RuntimeWarning)
      n_est = bootstrap.estimate(n_star, np.stack([x[0] for x in rep]), ci_level)
      a_est = bootstrap.estimate(expo, np.array([x[1] for x in rep]), ci_level)
    out[name] = dict(n_star=n_star.tolist(), n_star_ci=n_est.ci,
                     n_star_found=np.mean(np.isfinite([x[0] for x in rep]), 0).tolist(),
                     exponent=expo, exponent_ci=a_est.ci, exponent_kept=a_est.kept, c=c)
  return out


def summarize_arch(rows, labels, cells: Cells, ranks, ns, s: Settings, noise_counts,
                   key) -> dict:
  """Phase-diagram matrices with CIs, boundaries with CIs and the checks of
  the claim for one architecture (by the criteria of `s`)."""
  mats = {f: grid_means(rows, ranks, ns, f)
          for f in ("frac_new", "frac_copy", "frac_on_support", "l_score_rel", "l_score")}
  num_seeds = int(np.max(cells.seed)) + 1
  counts = seed_counts(key, len(ranks), num_seeds, noise_counts.shape[0])
  reps = {f: cell_fractions(np.asarray(getattr(labels, f), np.float32), cells, ranks, ns,
                            noise_counts, counts) for f in ("new", "copy")}
  cis = {f"frac_{f}": bootstrap.estimate(mats[f"frac_{f}"], reps[f], s.ci_level).ci
         for f in ("new", "copy")}
  b = boundary_estimates(reps["new"], reps["copy"], mats["frac_new"], mats["frac_copy"],
                         ranks, ns, level=s.majority, ci_level=s.ci_level)
  gen = b["generalize"]
  n_gen, n_ci = np.asarray(gen["n_star"], float), np.asarray(gen["n_star_ci"], float)
  a_lo, a_hi = (float(v) for v in gen["exponent_ci"])
  lo, hi = s.exponent_range
  checks = dict(
      memorizes_at_smallest_n=bool(np.all(mats["frac_copy"][0] >= s.majority)),
      generalizes_at_largest_n=bool(np.all(mats["frac_new"][-1] >= s.majority)),
      boundary_grows_with_r=bool(np.all(np.isfinite(n_gen)) and n_ci[-1, 0] > n_ci[0, 1]),
      exponent_linear=bool(np.isfinite(a_lo) and a_lo <= 1.0 <= a_hi
                           and lo <= a_lo and a_hi <= hi),
      score_error_falls_with_n=bool(np.all(mats["l_score_rel"][-1] < mats["l_score_rel"][0])))
  return dict(matrices={k: v.tolist() for k, v in mats.items()}, matrices_ci=cis,
              boundaries=b, num_seeds=num_seeds, checks=checks,
              reproduced=bool(all(checks.values())))


def measure(s: Settings, ctx) -> dict:
  """Train, sample and measure the grid of every architecture; writes cells.csv,
  returns the metrics."""
  t_start = time.time()
  key = jax.random.key(int(s.seed))
  ranks, ns = [int(r) for r in s.ranks], [int(n) for n in s.ns]
  archs = s.archs()
  grid = make_grid_data(ranks, s.num_data_sets, max(ns), dim=int(s.dim),
                        num_components=int(s.num_components), seed=int(s.seed))
  pairs = [(r, n) for r in ranks for n in ns]
  progress = ctx.progress(2 * len(archs) + 2)
  k_eval, k_boot = jax.random.fold_in(key, 1), jax.random.fold_in(key, 2)
  flat = (int(s.dim),)
  timings, out, rows_all, profiles = {}, {}, [], {}
  ref_cells = make_cells(grid, pairs, s.num_data_sets)
  ref_labels, ref_score = evaluate(molrg_factory(flat), jnp.asarray(grid.bases[ref_cells.block]),
                                   flat, grid, ref_cells, s.eval, k_eval)
  progress.step("exact MoLRG reference")
  # The noises are shared by every model: one draw of them for all architectures.
  noise_counts = bootstrap.draw(k_boot, int(s.eval.num_samples), np.zeros(1),
                                int(s.bootstrap_resamples)).noise
  ref_index = {(int(r), int(n), int(sd)): i for i, (r, n, sd) in
               enumerate(zip(ref_cells.rank, ref_cells.n, ref_cells.seed))}
  examples = {}
  for i, name in enumerate(archs):
    arch = getattr(s, name)
    cells = make_cells(grid, pairs, int(arch.num_seeds))
    shape = tuple(s.image_shape) if arch.image_view else None
    t0 = time.time()
    trainer, ema, history = train_grid(arch, grid, cells, image_shape=shape, seed=int(s.seed))
    timings[f"{name}_train"] = time.time() - t0
    progress.step(f"trained {len(cells)} {LABELS[name]}s")
    t0 = time.time()
    labels, score = evaluate(network_factory(trainer), ema, trainer.data_shape, grid, cells,
                             s.eval, k_eval)
    timings[f"{name}_eval"] = time.time() - t0
    idx = np.array([ref_index[(int(r), int(n), int(sd))]
                    for r, n, sd in zip(cells.rank, cells.n, cells.seed)])
    ref = jax.tree.map(lambda v: np.asarray(v)[idx], ref_labels)   # the same cells, exact
    rows = cell_rows(name, cells, labels, score, ref, level=s.majority)
    out[name] = summarize_arch(rows, labels, cells, ranks, ns, s, noise_counts,
                               jax.random.fold_in(k_boot, 10 + i))
    out[name]["final_train_loss"] = history[-1]["loss"] if history else None
    profiles[name] = dict(sigmas=np.asarray(score.sigmas[0]).tolist(),
                          rel=np.asarray(score.rel_per_sigma).tolist())
    if name == "mlp":
      out[name]["score_order_every_sigma"] = _score_order(rows, profiles[name]["rel"],
                                                          ranks, ns)
      examples = _example_labels(cells, labels, ref_labels, ranks, ns)
    rows_all += rows
    progress.step(f"sampled and scored the {LABELS[name]}s")
  agreement = _agreement(out, ranks, ns, s.majority)
  io.save_csv(ctx.workdir / "cells.csv", rows_all)
  return dict(archs=out, agreement=agreement, timings=timings,
              reference=dict(max_l_score_rel=float(np.max(ref_score.l_score_rel)),
                             min_frac_new=float(np.min(ref_labels.frac_new)),
                             max_frac_copy=float(np.max(ref_labels.frac_copy))),
              seconds=time.time() - t_start, profiles=profiles, examples=examples,
              cells=rows_all)


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


def _regimes(summary, level: float) -> np.ndarray:
  m = summary["matrices"]
  copy, new = np.asarray(m["frac_copy"], float), np.asarray(m["frac_new"], float)
  return np.vectorize(lambda c, n: score_metrics.regime(float(c), float(n), level))(copy, new)


def _agreement(out, ranks, ns, level: float) -> dict:
  """Per architecture other than the MLP: cells (seed means) whose regime
  equals the MLP's, out of all cells."""
  if "mlp" not in out:
    return {}
  ref = _regimes(out["mlp"], level)
  return {a: dict(agree=int(np.sum(_regimes(v, level) == ref)), total=int(ref.size))
          for a, v in out.items() if a != "mlp"}


# Verdicts and report -------------------------------------------------------------

_SOURCE = ("low-dim talk, \"Phase transition from memorization to generalization\" "
           "(docs/theory.md §4–§5)")


def _column(matrix, row):
  return [float(v) for v in np.asarray(matrix, float)[row]]


def verdicts(s: Settings, metrics: dict) -> list[verdicts_lib.Verdict]:
  """One verdict per check of the claim and architecture (`metrics["archs"][a]
  ["checks"]`, by the criteria of `s`)."""
  ranks, ns = list(s.ranks), list(s.ns)
  lo, hi = s.exponent_range
  pct = f"{s.ci_level:.0%}"
  out = []
  for name in s.archs():
    a = metrics["archs"][name]
    mats, cis, gen = a["matrices"], a["matrices_ci"], a["boundaries"]["generalize"]
    who = f"{LABELS[name]} denoisers ({a['num_seeds']} seed(s) per cell)"
    n_ci = gen["n_star_ci"]
    claims = dict(
        memorizes_at_smallest_n=(
            f"{who}, trained on few samples, memorize: most of their samples copy "
            "training points, for every rank r.",
            f"fraction of copies (d1/d2 < {s.eval.copy_ratio:.3g}) ≥ {s.majority:g} at "
            f"N = {ns[0]} for every r in {ranks}",
            dict(n=ns[0], frac_copy=_column(mats["frac_copy"], 0),
                 frac_copy_ci=cis["frac_copy"][0])),
        generalizes_at_largest_n=(
            f"{who}, trained on many samples, generalize: most of their samples are new "
            "points on the union of subspaces, for every rank r.",
            f"fraction of new samples (on support: dist/‖x‖ < {s.eval.support_tol:g}, not "
            f"a copy) ≥ {s.majority:g} at N = {ns[-1]} for every r in {ranks}",
            dict(n=ns[-1], frac_new=_column(mats["frac_new"], -1),
                 frac_new_ci=cis["frac_new"][-1])),
        boundary_grows_with_r=(
            f"For {who}, the boundary N*(r) between memorization and generalization "
            "grows with r.",
            f"N*(r), where the fraction of new samples reaches {s.majority:g}, exists for "
            f"every r and the {pct} CI of N*({ranks[-1]}) lies above that of "
            f"N*({ranks[0]})",
            dict(n_star=[float(v) for v in gen["n_star"]], n_star_ci=n_ci)),
        exponent_linear=(
            f"For {who}, the boundary lies along N ∝ r.",
            f"the {pct} bootstrap CI of the exponent a of N* ∝ r^a (over the shared "
            f"noises and, per rank, the seeds) contains 1 and lies inside "
            f"[{lo:g}, {hi:g}]",
            dict(a=float(gen["exponent"]), a_ci=gen["exponent_ci"],
                 replicates_with_every_n_star=float(gen["exponent_kept"]),
                 c=float(gen["c"]))),
        score_error_falls_with_n=(
            f"The score learned by {who} approaches the true MoLRG score as N grows.",
            f"relative L_score at N = {ns[-1]} below N = {ns[0]}'s, for every r",
            dict(l_score_rel_smallest_n=_column(mats["l_score_rel"], 0),
                 l_score_rel_largest_n=_column(mats["l_score_rel"], -1))))
    out += [verdicts_lib.judge(bool(a["checks"][k]), claim=claim, criterion=criterion,
                               measured=measured, source=_SOURCE)
            for k, (claim, criterion, measured) in claims.items()]
  return out


def render(s: Settings, metrics: dict, workdir) -> None:
  """phase_diagram.png, boundary.png, details.png and report.md from the metrics."""
  workdir = pathlib.Path(workdir)
  report_lib.phase_figure(workdir / "phase_diagram.png", s, metrics)
  report_lib.boundary_figure(workdir / "boundary.png", s, metrics)
  report_lib.detail_figure(workdir / "details.png", s, metrics)
  report_lib.report(workdir, s, metrics)
