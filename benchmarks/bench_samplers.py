"""Sampler benchmark: per-step overhead of the scanned samplers, and throughput.

    python -m benchmarks.bench_samplers            # B=256, N=8192, D=3072
    python -m benchmarks.bench_samplers --quick    # small sizes, seconds

Measures, with the empirical (memorizing) denoiser over N random points in D:
- this machine's float32 matmul rate (`jnp.dot` of two 4096² matrices);
- the bare denoiser call `D(x, σ)` on a batch of B (jitted, data as argument);
- for each sampler, the time per denoiser evaluation inside the scanned loop
  and its overhead over the bare call (target: ≤ 10 % at the default sizes),
  bare call and sampler timed in alternation, minimum over `--repeats` rounds
  (robust to other processes on a shared CPU); `scan(denoiser)` is the
  denoiser alone in a `lax.scan`, for reference; `own` is the sampler loop's
  own cost per evaluation, timed around a denoiser that costs one multiply,
  and `own/bare` the overhead it implies (an upper bound, free of the noise of
  timing two large, nearly equal numbers);
- samples/s for `--num_samples` samples × `--steps` steps through
  `samplers.sample_from_data` (batches of B, one compilation).
Prints a table and writes JSON to `--out` (atomically).
"""

import argparse
import os
import pathlib
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from repro_jax.diffusion import denoiser
from repro_jax.closed_form import denoisers
from repro_jax import io
from repro_jax import samplers
from repro_jax.diffusion import schedules


def _free_denoiser(x, sigma):
  del sigma
  return 0.5 * x


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--num_data", type=int, default=8192)
  p.add_argument("--dim", type=int, default=3072)
  p.add_argument("--overhead_steps", type=int, default=4,
                 help="grid length T for the per-step overhead runs")
  p.add_argument("--steps", type=int, default=20, help="steps of the throughput run")
  p.add_argument("--num_samples", type=int, default=10000)
  p.add_argument("--samplers", default="ddim,sigma_form,gradient_estimation,ddpm,euler,heun,"
                 "dpm_solver,dpm_solver_pp_2m")
  p.add_argument("--repeats", type=int, default=None,
                 help="alternating rounds (bare call, sampler) per sampler "
                 "(default 3; 10 with --quick)")
  p.add_argument("--quick", action="store_true",
                 help="small sizes (B=64, N=1024, D=256, 2000 samples)")
  p.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results" /
                                      "samplers.json"))
  if "--quick" in sys.argv[1:]:  # small defaults; explicit flags still win
    p.set_defaults(batch=64, num_data=1024, dim=256, num_samples=2000, repeats=10)
  a = p.parse_args()
  if a.repeats is None:
    a.repeats = 3

  rows = []
  gflops = common.matmul_gflops(repeats=3)
  print(f"matmul float32 4096^2: {gflops:.1f} GFLOP/s  ({jax.devices()[0].device_kind}, "
        f"{os.cpu_count()} CPUs)")

  data = jax.random.normal(jax.random.key(2), (a.num_data, a.dim), jnp.float32)
  z = jax.random.normal(jax.random.key(3), (a.batch, a.dim), jnp.float32)
  bare = jax.jit(lambda x, s, d: denoisers.empirical_denoiser(x, d, s))
  sig = jnp.full((a.batch,), 1.0, jnp.float32)
  t_bare = common.time_call(lambda: bare(z, sig, data), repeats=a.repeats)
  flop = 4.0 * a.batch * a.num_data * a.dim  # two matmuls per call
  print(f"bare denoiser call B={a.batch} N={a.num_data} D={a.dim}: {t_bare * 1e3:.1f} ms "
        f"({flop / t_bare / 1e9:.1f} GFLOP/s)")

  den = denoiser.empirical(data)
  grid = schedules.sigma_grid(schedules.get_schedule("edm"), a.overhead_steps, "edm",
                              final="min")
  key = jax.random.key(4)

  # Reference: the denoiser alone, scanned over the same number of steps.
  @jax.jit
  def scanned_bare(x, d):
    step = lambda c, s: (denoisers.empirical_denoiser(c, d, jnp.full((a.batch,), s)), None)
    return jax.lax.scan(step, x, jnp.asarray(grid[:-1], jnp.float32))[0]

  # Bare call and sampler timed in alternation (min over rounds): the CPU is shared.
  print(f"\n{'sampler':22s} {'evals':>5s} {'ms/eval':>9s} {'bare ms':>8s} {'overhead':>9s}"
        f" {'own ms':>8s} {'own/bare':>8s}")
  runs = [("scan(denoiser)", None)] + [(n, n) for n in a.samplers.split(",")]
  for label, name in runs:
    if name is None:
      run, nfe, stochastic = lambda: scanned_bare(z, data), a.overhead_steps, False
    else:
      spec = samplers.get_sampler(name)
      run = lambda: samplers.sample(den, z, grid, sampler=name, key=key).samples
      nfe = samplers.num_evaluations(name, grid)
      stochastic = bool(spec.stochastic(spec.resolve({})))
    jax.block_until_ready(run())
    t_b, t_s = [], []
    for _ in range(a.repeats):
      t_b.append(common.time_call(lambda: bare(z, sig, data), repeats=1, warmup=0))
      t_s.append(common.time_call(run, repeats=1, warmup=0) / nfe)
    per, tb = min(t_s), min(t_b)
    # The sampler's own cost per evaluation, isolated: the same loop around a
    # denoiser that costs one multiply (an upper bound on the overhead).
    own = None
    if name is not None:
      own = common.time_call(lambda: samplers.sample(_free_denoiser, z, grid, sampler=name,
                                                     key=key).samples,
                             repeats=5 * a.repeats) / nfe
    rows.append(dict(sampler=label, evals=nfe, ms_per_eval=per * 1e3, bare_ms=tb * 1e3,
                     overhead=per / tb - 1.0, ms_per_eval_median=float(np.median(t_s)) * 1e3,
                     bare_ms_median=float(np.median(t_b)) * 1e3, stochastic=stochastic,
                     own_ms_per_eval=None if own is None else own * 1e3,
                     own_overhead=None if own is None else own / t_bare))
    own_txt = "" if own is None else f" {own * 1e3:8.2f} {100 * own / t_bare:7.2f}%"
    print(f"{label:22s} {nfe:5d} {per * 1e3:9.1f} {tb * 1e3:8.1f} {100 * (per / tb - 1):8.1f}%"
          + own_txt)

  data_np = np.asarray(data)
  t0 = time.perf_counter()
  res = samplers.sample_from_data(data_np, seed=0, num_samples=min(a.batch, a.num_samples),
                                  steps=a.steps, sampler="ddim", batch_size=a.batch)
  jax.block_until_ready(res.samples)
  t_compile = time.perf_counter() - t0
  t0 = time.perf_counter()
  res = samplers.sample_from_data(data_np, seed=0, num_samples=a.num_samples, steps=a.steps,
                                  sampler="ddim", batch_size=a.batch)
  jax.block_until_ready(res.samples)
  t_total = time.perf_counter() - t0
  sps = a.num_samples / t_total
  print(f"\nthroughput ddim, {a.num_samples} samples x {a.steps} steps (N={a.num_data}, "
        f"D={a.dim}, batches of {a.batch}): {t_total:.1f} s, {sps:.1f} samples/s "
        f"(first batch incl. compile {t_compile:.1f} s)")

  report = dict(
      machine=dict(platform=platform.platform(), cpus=os.cpu_count(),
                   device=jax.devices()[0].device_kind, jax=jax.__version__,
                   matmul_gflops_f32=gflops),
      sizes=dict(batch=a.batch, num_data=a.num_data, dim=a.dim,
                 overhead_steps=a.overhead_steps, steps=a.steps,
                 num_samples=a.num_samples, quick=a.quick),
      bare_denoiser_ms=t_bare * 1e3, bare_denoiser_gflops=flop / t_bare / 1e9,
      samplers=rows,
      throughput=dict(sampler="ddim", seconds=t_total, samples_per_s=sps,
                      first_batch_with_compile_s=t_compile))
  io.save_json(a.out, report)
  print(f"wrote {a.out}")


if __name__ == "__main__":
  main()
