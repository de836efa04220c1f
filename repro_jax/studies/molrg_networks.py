"""Phase transition with a network: memorization → generalization on a MoLRG.

Low-dim talk, "Phase transition from memorization to generalization" (THEORY.md
§4): denoisers trained on N samples of a mixture of K = 2 low-rank Gaussians in
D = 48 memorize (their samples copy training points) for small N and
generalize (new samples on the union of subspaces) for large N, with the
boundary along `N ∝ r`.  Measured by `L_score` against the exact MoLRG score
and by the samples of the learned model (THEORY.md §5).

The whole (rank, seed, N) grid of one architecture is ONE `train_many` call:
the rows of every (rank, seed) data block sit in one array and each model
draws from the first N rows of its own block (subsets nest in N).  Evaluation
runs every model at once: a "stacked" denoiser maps `x [B, M, ...]` through
the M networks (vmapped), so one compiled Heun loop samples the whole grid.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax.closed_form import denoisers
from repro_jax import io
from repro_jax import samplers
from repro_jax.diffusion import schedules
from repro_jax.analysis import score_metrics
from repro_jax.networks import training
from repro_jax.studies import _molrg_networks_report as report_lib
from repro_jax.studies import common
from repro_jax.networks.training import step as step_lib

TRAIN_CONFIG = common.PACKAGE_DIR.parent / "configs" / "train.py"


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

def train_config(arch, data_path: str):
  """A `configs/train.py` config for one architecture block of the study config."""
  cfg = common.load_config(TRAIN_CONFIG, "cpu")
  cfg.data.update(name="array", path=data_path, num_train=-1)
  cfg.model.name = arch.model
  for key in ("hidden", "depth", "emb_dim", "width", "ch_mult", "num_res_blocks",
              "attn_resolutions", "norm_groups"):
    if key in arch:
      cfg.model[key] = arch[key]
  cfg.diffusion.update(parameterization=arch.parameterization, schedule=arch.schedule,
                       sigma_data=float(arch.sigma_data), p_mean=float(arch.p_mean),
                       p_std=float(arch.p_std))
  cfg.optim.update(learning_rate=float(arch.learning_rate),
                   warmup_steps=int(arch.warmup_steps))
  steps = int(arch.num_steps)
  log_every = min(int(arch.log_every), steps)
  cfg.train.update(batch_size=int(arch.batch_size), num_steps=steps, log_every=log_every,
                   checkpoint_every=log_every * max(steps // log_every, 1),
                   ema_decay=float(arch.ema_decay), num_devices=1)
  return cfg


def model_denoiser(trainer, params):
  """Canonical `denoise(x [B, *data_shape], σ [B]) -> x0` of flat `params [P]`."""
  return trainer.param.denoiser(step_lib.net_fn(trainer, params))


def train_grid(arch, grid: GridData, cells: Cells, image_shape=None, seed: int = 0):
  """Train every cell in one `train_many` call → `(trainer, ema [M, P], history)`."""
  x = grid.x if image_shape is None else grid.x.reshape((-1,) + tuple(image_shape))
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "grid.npy")
    np.save(path, x)
    cfg = train_config(arch, path)
    states, history = training.train_many(
        cfg, seeds=[1000 * seed + i for i in range(len(cells))],
        subsets=cell_subsets(grid, cells))
  trainer = step_lib.make_trainer(cfg, x.shape[1:])
  return trainer, states.ema, history


# Evaluation ---------------------------------------------------------------------

def stacked(make_denoiser, params):
  """M models as one canonical denoiser on `x [B, M, *data_shape]`.

  `make_denoiser(p)` builds model m's canonical denoiser from `params[m]` (any
  pytree with a leading axis M: network weights `[M, P]`, MoLRG bases
  `[M, K, D, R]`); model m denoises `x[:, m]`, so any sampler runs the M
  models in lockstep on one σ grid.
  """
  def denoise(x, sigma):
    return jax.vmap(lambda p, xm: make_denoiser(p)(xm, sigma), in_axes=(0, 1),
                    out_axes=1)(params, x)
  return denoise


def network_factory(trainer):
  return lambda p: model_denoiser(trainer, p)


def molrg_factory(data_shape):
  """`bases [K, D, R] -> ` the exact MoLRG posterior mean on `[B, *data_shape]`."""
  def make(bases):
    def denoise(x, sigma):
      flat = x.reshape(x.shape[0], -1)
      return denoisers.molrg_denoiser(flat, bases, jnp.ones_like(sigma),
                                      sigma).reshape(x.shape)
    return denoise
  return make


def evaluate(make_denoiser, params, data_shape, grid: GridData, cells: Cells, ev, key):
  """Samples, sample labels and score errors of M models (networks or closed forms).

  Args:
    make_denoiser: `p -> denoise(x [B, *data_shape], σ [B]) -> x0` of one model.
    params: pytree with leading axis M, one entry per cell.
    data_shape: per-example shape.
    grid, cells: the data and the M cells.
    ev: the study config's `eval` block.
    key: PRNG key (the same key gives every model the same noise).

  Returns:
    `(labels, score)`: `SampleLabels` with fields `[M, B]` / `[M]` and
    `ScoreError` with fields `[M]` / `[M, S]`, as NumPy.
  """
  m, b = len(cells), int(ev.num_samples)
  k_noise, k_score = jax.random.split(key)
  sig = schedules.edm_sigmas(int(ev.steps), float(ev.sigma_min), float(ev.sigma_max))
  noise = jnp.broadcast_to(jax.random.normal(k_noise, (b, 1) + tuple(data_shape)),
                           (b, m) + tuple(data_shape))
  out = samplers.sample(stacked(make_denoiser, params), noise, sig,
                        sampler=ev.sampler).samples
  samples = jnp.swapaxes(out, 0, 1).reshape(m, b, -1)                   # [M, B, D]
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

def cell_rows(arch: str, cells: Cells, labels, score, ref_labels=None):
  """One dict per model: cell, score error, sample fractions, regime."""
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
                                           float(labels.frac_new[i])))
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


def boundary(ns, ranks, frac):
  """Crossings `N*(r)` of `frac [len(ns), len(ranks)]` through ½, the power-law
  exponent of `N* ∝ r^a` (log-log least squares) and the proportional constant
  `c` of `N* = c r` (geometric mean of `N*/r`)."""
  n_star = np.array([score_metrics.crossing(ns, frac[:, j]) for j in range(len(ranks))])
  ok = np.isfinite(n_star)
  r = np.asarray(ranks, float)
  expo = float(np.polyfit(np.log(r[ok]), np.log(n_star[ok]), 1)[0]) if ok.sum() >= 2 \
      else float("nan")
  c = float(np.exp(np.mean(np.log(n_star[ok] / r[ok])))) if ok.any() else float("nan")
  return n_star, expo, c


def summarize(rows, ranks, ns, config) -> dict:
  """Phase-diagram matrices, boundaries and the checks of the claim."""
  mats = {f: grid_means(rows, ranks, ns, f)
          for f in ("frac_new", "frac_copy", "frac_on_support", "l_score_rel", "l_score")}
  n_gen, expo_gen, c_gen = boundary(ns, ranks, mats["frac_new"])
  n_mem, expo_mem, c_mem = boundary(ns, ranks, 1.0 - mats["frac_copy"])
  lo, hi = config.exponent_range
  checks = dict(
      memorizes_at_smallest_n=bool(np.all(mats["frac_copy"][0] >= 0.5)),
      generalizes_at_largest_n=bool(np.all(mats["frac_new"][-1] >= 0.5)),
      boundary_grows_with_r=bool(np.all(np.isfinite(n_gen)) and np.all(np.diff(n_gen) >= 0)
                                 and n_gen[-1] > n_gen[0]),
      exponent_near_one=bool(lo <= expo_gen <= hi),
      score_error_falls_with_n=bool(np.all(mats["l_score_rel"][-1] < mats["l_score_rel"][0])))
  return dict(matrices={k: v.tolist() for k, v in mats.items()},
              n_star_generalize=n_gen.tolist(), exponent_generalize=expo_gen,
              c_generalize=c_gen, n_star_memorize=n_mem.tolist(),
              exponent_memorize=expo_mem, c_memorize=c_mem, checks=checks,
              reproduced=bool(all(checks.values())))


def run(config, workdir) -> dict:
  """Train, sample and measure the grid; write metrics.json, cells.csv, figures,
  report.md."""
  workdir = common.start(workdir, config)
  t_start = time.time()
  key = jax.random.key(int(config.seed))
  ranks, ns = [int(r) for r in config.ranks], [int(n) for n in config.ns]
  unet_pairs = [tuple(int(v) for v in c) for c in config.unet.cells] \
      if config.unet.enabled else []
  grid = make_grid_data(sorted(set(ranks) | {r for r, _ in unet_pairs}),
                        int(config.num_seeds), max(ns + [n for _, n in unet_pairs]),
                        dim=int(config.dim), num_components=int(config.num_components),
                        seed=int(config.seed))
  progress = common.Progress("molrg_networks", 3 + 2 * bool(unet_pairs))
  timings = {}

  cells = make_cells(grid, [(r, n) for r in ranks for n in ns], int(config.num_seeds))
  t0 = time.time()
  trainer, ema, history = train_grid(config.mlp, grid, cells, seed=int(config.seed))
  timings["mlp_train"] = time.time() - t0
  progress.step(f"trained {len(cells)} MLPs")
  t0 = time.time()
  k_eval = jax.random.fold_in(key, 1)
  labels, score = evaluate(network_factory(trainer), ema, trainer.data_shape, grid, cells,
                           config.eval, k_eval)
  timings["mlp_eval"] = time.time() - t0
  progress.step("sampled and scored the MLPs")
  flat = (int(config.dim),)
  ref_labels, ref_score = evaluate(molrg_factory(flat), jnp.asarray(grid.bases[cells.block]),
                                   flat, grid, cells, config.eval, k_eval)
  progress.step("exact MoLRG reference")
  rows = cell_rows("mlp", cells, labels, score, ref_labels)
  profiles = dict(mlp=dict(sigmas=np.asarray(score.sigmas[0]).tolist(),
                           rel=np.asarray(score.rel_per_sigma).tolist()))
  examples = _example_labels(cells, labels, ref_labels, ranks, ns)

  unet_rows = []
  if unet_pairs:
    ucells = make_cells(grid, unet_pairs, int(config.unet.num_seeds))
    t0 = time.time()
    utrainer, uema, _ = train_grid(config.unet, grid, ucells,
                                   image_shape=tuple(config.image_shape),
                                   seed=int(config.seed))
    timings["unet_train"] = time.time() - t0
    progress.step(f"trained {len(ucells)} U-Nets")
    t0 = time.time()
    ulabels, uscore = evaluate(network_factory(utrainer), uema, utrainer.data_shape, grid,
                               ucells, config.eval, k_eval)
    timings["unet_eval"] = time.time() - t0
    unet_rows = cell_rows("unet", ucells, ulabels, uscore)
    profiles["unet"] = dict(rel=np.asarray(uscore.rel_per_sigma).tolist())
    progress.step("sampled and scored the U-Nets")

  summary = summarize(rows, ranks, ns, config)
  summary["score_order_every_sigma"] = _score_order(rows, profiles["mlp"]["rel"], ranks, ns)
  summary["reference"] = dict(
      max_l_score_rel=float(np.max(ref_score.l_score_rel)),
      min_frac_new=float(np.min(ref_labels.frac_new)),
      max_frac_copy=float(np.max(ref_labels.frac_copy)))
  summary["unet"] = _unet_summary(unet_rows, rows)
  io.save_csv(workdir / "cells.csv", rows + unet_rows)
  seconds = time.time() - t_start
  metrics = dict(summary, timings=timings, seconds=seconds,
                 final_train_loss=history[-1]["loss"] if history else None,
                 profiles=profiles, examples=examples, cells=rows + unet_rows)
  io.save_json(workdir / "metrics.json", metrics)
  report_lib.phase_figure(workdir / "phase_diagram.png", config, ranks, ns, summary)
  report_lib.detail_figure(workdir / "details.png", config, profiles, examples, rows, unet_rows)
  report_lib.report(workdir, config, summary, rows, unet_rows, timings, len(cells))
  logging.info("molrg_networks: %s in %.0fs", "reproduced" if summary["reproduced"]
               else "differs", seconds)
  return metrics


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
