"""Benchmark: a whole (seed, N, r) grid in one vmapped program vs a Python loop.

The loop trains each cell with `lowrank.train_one` (one `jit` per cell, on the
cell's own unpadded shapes `[N, D]`, `[D, r]`, so every new (N, r) compiles);
the grid pads every cell to `[N_max, D]`, `[D, R_max]` and trains all of them
with one `lowrank.train_grid` call (one compilation).  Both are timed cold
(compilation included, what a study pays) and warm (compiled programs reused).

  python benchmarks/bench_lowrank_grid.py                 # default grid
  python benchmarks/bench_lowrank_grid.py --ranks 2,4 --ns 2,4,8 --seeds 1
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import io
from repro_jax.lowrank import model as lowrank
from repro_jax.lowrank import molrg_grid


def _ints(text):
  return tuple(int(v) for v in text.split(","))


def _pca_dist(u, y, r):
  p = np.linalg.svd(np.asarray(y, np.float64).T, full_matrices=True)[0][:, :r]
  u = np.asarray(u, np.float64)[:, :r]
  return float(np.linalg.norm(u @ u.T - p @ p.T))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--dim", type=int, default=48)
  ap.add_argument("--ranks", type=_ints, default=(2, 4, 6, 8))
  ap.add_argument("--ns", type=_ints, default=(2, 4, 6, 8, 10, 12, 14, 16))
  ap.add_argument("--seeds", type=int, default=2)
  ap.add_argument("--steps", type=int, default=200)
  ap.add_argument("--out", default="benchmarks/results/lowrank_grid.json")
  args = ap.parse_args(argv)

  # The pca_equivalence optimizer, in float32 (damping 1e-6: float32's floor).
  cfg = lowrank.TrainConfig(objective="expected", steps=args.steps, t_max=0.5,
                            learning_rate=0.5, precondition=True,
                            precondition_damping=1e-6, max_grad_norm=0.3)
  grid = molrg_grid.molrg_grid(jax.random.PRNGKey(0), range(args.seeds), args.ns, args.ranks,
                            dim=args.dim)
  jax.block_until_ready(grid.data)
  cells = grid.n.shape[0]
  keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.PRNGKey(1), s))(grid.seed)

  def run_grid():
    t0 = time.perf_counter()
    res = lowrank.train_grid(keys, grid.data, grid.mask, grid.rank_mask, cfg)
    jax.block_until_ready(res.bases)
    return time.perf_counter() - t0, res

  def run_loop():
    t0 = time.perf_counter()
    out = []
    for i in range(cells):
      n, r = int(grid.n[i]), int(grid.r[i])
      res = lowrank.train_one(keys[i], grid.data[i, :n], jnp.ones((n,)), jnp.ones((r,)), cfg)
      out.append(jax.block_until_ready(res.bases[0]))
    return time.perf_counter() - t0, out

  grid_cold, res = run_grid()
  grid_warm, _ = run_grid()
  loop_cold, loop_bases = run_loop()
  loop_warm, _ = run_loop()

  above = [i for i in range(cells) if int(grid.n[i]) >= int(grid.r[i])]
  err_grid = [_pca_dist(res.bases[i, 0], grid.data[i, :int(grid.n[i])], int(grid.r[i]))
              for i in above]
  err_loop = [_pca_dist(loop_bases[i], grid.data[i, :int(grid.n[i])], int(grid.r[i]))
              for i in above]
  shapes = len({(int(n), int(r)) for n, r in zip(grid.n, grid.r)})
  result = dict(
      cells=cells, distinct_shapes=shapes, dim=args.dim, ranks=list(args.ranks),
      ns=list(args.ns), seeds=args.seeds, steps=args.steps,
      grid_cold_s=grid_cold, grid_warm_s=grid_warm, loop_cold_s=loop_cold,
      loop_warm_s=loop_warm, speedup_cold=loop_cold / grid_cold,
      speedup_warm=loop_warm / grid_warm,
      dist_to_pca_n_ge_r=dict(
          grid_median=float(np.median(err_grid)), grid_max=max(err_grid),
          loop_median=float(np.median(err_loop)), loop_max=max(err_loop)),
      backend=jax.default_backend(), devices=jax.device_count(),
      machine=platform.processor() or platform.machine(), jax=jax.__version__)
  rows = [dict(method="vmapped grid (1 jit)", cold_s=grid_cold, warm_s=grid_warm),
          dict(method=f"Python loop ({shapes} jits)", cold_s=loop_cold, warm_s=loop_warm),
          dict(method="speed-up", cold_s=loop_cold / grid_cold, warm_s=loop_warm / grid_warm)]
  print(f"{cells} cells (D={args.dim}, r∈{list(args.ranks)}, N∈{list(args.ns)}, "
        f"{args.seeds} seeds, {args.steps} steps, backend {jax.default_backend()})")
  print(io.markdown_table(rows, fmt="{:.2f}"))
  print(f"‖U⋆U⋆ᵀ − PCA‖_F over N ≥ r (median / max): grid {np.median(err_grid):.1e} / "
        f"{max(err_grid):.1e}, loop {np.median(err_loop):.1e} / {max(err_loop):.1e}")
  io.save_json(pathlib.Path(args.out), result)
  print(f"wrote {args.out}")
  return result


if __name__ == "__main__":
  main()
