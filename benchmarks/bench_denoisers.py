"""Empirical denoiser throughput against this machine's matmul rate.

  python -m benchmarks.bench_denoisers            # N ∈ {1024, 8192, 50000}, D = 3072, B = 256
  python -m benchmarks.bench_denoisers --quick    # smaller sizes

The denoiser does 4·B·N·D flops (one matmul for the distances, one for the
weighted sum); its rate is reported as a fraction of a float32 `jnp.dot` of
two 4096² matrices on the same machine (median of ratios taken round by round,
see `bench`), beside the rate of the same chunked matmuls without the
log-sum-exp, and against a naive NumPy version (full [B, N] distance matrix,
no streaming).
Peak memory at the largest N is the high-water mark of one call in a fresh
subprocess, so earlier runs do not pollute it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from benchmarks import common
import repro_jax
from repro_jax.closed_form import streaming


def naive_numpy(x, data, sigma):
  d2 = (x**2).sum(1)[:, None] - 2 * x @ data.T + (data**2).sum(1)[None]
  logits = -d2 / (2 * sigma**2)
  w = np.exp(logits - logits.max(1, keepdims=True))
  return (w / w.sum(1, keepdims=True)) @ data


def chunked_matmuls(x, data, chunk):
  """The denoiser's two matmuls per chunk, `Σ_c (x y_cᵀ) y_c`, and nothing else:
  the ceiling of the streaming loop on this machine (ragged tail dropped)."""
  blocks = data[:data.shape[0] // chunk * chunk].reshape(-1, chunk, data.shape[1])

  def body(i, acc):
    y = blocks[i]
    return acc + (x @ y.T) @ y

  return lax.fori_loop(0, blocks.shape[0], body, jnp.zeros_like(x))


def bench(n, d, b, chunks, rounds, repeats):
  """Rows for one N, one per chunk size.

  The host's speed drifts (shared machines, frequency scaling), by up to ±25 %
  from minute to minute here.  So each round times the 4096² matmul, then the
  denoiser at every chunk size, then the same chunked matmuls without the
  log-sum-exp, back to back; the ratio to the matmul is taken within each round
  and its median over the rounds is reported, which cancels slow drift.  The
  best time of each over all rounds is reported too.
  """
  rng = np.random.default_rng(0)
  data_np = rng.normal(size=(n, d)).astype(np.float32)
  x_np = rng.normal(size=(b, d)).astype(np.float32)
  data, x = jnp.asarray(data_np), jnp.asarray(x_np)
  flops = 4 * b * n * d
  c0 = streaming.DEFAULT_CHUNK
  fns = {c: jax.jit(lambda q, c=c: repro_jax.empirical_denoiser(q, data, 0.5, chunk_size=c))
         for c in chunks}
  fns["matmuls"] = jax.jit(lambda q: chunked_matmuls(q, data, c0))
  work = {c: flops for c in chunks} | {"matmuls": 4 * b * (n // c0 * c0) * d}
  mm, rate = [], {k: [] for k in fns}
  for r in range(rounds):
    mm.append(common.matmul_gflops(repeats=repeats))
    for k, f in fns.items():
      rate[k].append(work[k] / common.time_call(f, x, repeats=repeats, warmup=int(r == 0)) / 1e9)
  mm = np.asarray(mm)
  paired = {k: float(np.median(np.asarray(v) / mm)) for k, v in rate.items()}
  t_np = common.time_call(lambda: naive_numpy(x_np, data_np, 0.5), repeats=repeats, warmup=0)
  rows = []
  for c in chunks:
    g = max(rate[c])
    rows.append(dict(N=n, D=d, B=b, chunk=c, seconds=flops / g / 1e9, gflops=g,
                     fraction_of_matmul=paired[c], matmul_gflops=float(mm.max()),
                     matmuls_only_gflops=max(rate["matmuls"]),
                     matmuls_only_fraction=paired["matmuls"],
                     numpy_seconds=t_np, speedup_vs_numpy=t_np * g * 1e9 / flops))
  return rows


def peak_memory(n, d, b, chunk):
  """Memory (GB) of a fresh process: resident after building the data, and the
  peak during one denoiser call (Linux: the high-water mark is reset first)."""
  code = f"""
import jax, jax.numpy as jnp, repro_jax
def status(key):
  for line in open('/proc/self/status'):
    if line.startswith(key):
      return int(line.split()[1])
data = jax.random.normal(jax.random.PRNGKey(0), ({n}, {d}), jnp.float32)
x = jax.random.normal(jax.random.PRNGKey(1), ({b}, {d}), jnp.float32)
f = lambda q: repro_jax.empirical_denoiser(q, data, 0.5, chunk_size={chunk!r})
jax.block_until_ready(f(x))                      # compile outside the measurement
base = status('VmRSS:')
open('/proc/self/clear_refs', 'w').write('5')    # reset VmHWM to the current RSS
jax.block_until_ready(f(x))
print(base, status('VmHWM:'))
"""
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  base, peak = (int(v) for v in out.stdout.split()[-2:])
  return dict(data_gb=n * d * 4 / 1e9, rss_before_gb=base / 1e6, peak_rss_gb=peak / 1e6,
              peak_minus_before_gb=(peak - base) / 1e6)


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--sizes", default=None, help="comma-separated N values")
  p.add_argument("--dim", type=int, default=3072)
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--chunks", default="1024,2048,4096", help="chunk sizes to compare")
  p.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
  p.add_argument("--repeats", type=int, default=2, help="calls per round")
  args = p.parse_args()
  sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
      [1024, 4096] if args.quick else [1024, 8192, 50_000])
  chunks = [int(c) for c in args.chunks.split(",")]
  dim = 512 if args.quick else args.dim
  print(f"{jax.devices()[0]}; {args.rounds} rounds per N", flush=True)
  rows = []
  for n in sizes:
    for row in bench(n, dim, args.batch, chunks, args.rounds, args.repeats):
      rows.append(row)
      print(f"N={n:6d} D={dim} B={args.batch} chunk={row['chunk']:5d}: "
            f"{row['seconds']*1e3:8.1f} ms {row['gflops']:7.1f} GFLOP/s = "
            f"{100 * row['fraction_of_matmul']:5.1f}% of matmul (the chunked matmuls alone: "
            f"{100 * row['matmuls_only_fraction']:.0f}%); naive NumPy "
            f"{row['numpy_seconds']:.3f} s ({row['speedup_vs_numpy']:.1f}x slower)", flush=True)
  # A conservative second figure: against the fastest matmul of the whole run.
  peak = max(r["matmul_gflops"] for r in rows)
  for r in rows:
    r["fraction_of_run_peak_matmul"] = r["gflops"] / peak
  print(f"fastest matmul (jnp.dot 4096²) of the run: {peak:.1f} GFLOP/s; best denoiser rates "
        "against it: " + ", ".join(f"N={r['N']}/{r['chunk']}: "
                                   f"{100 * r['fraction_of_run_peak_matmul']:.0f}%"
                                   for r in rows))
  mem = peak_memory(max(sizes), dim, args.batch, streaming.DEFAULT_CHUNK)
  print(f"peak memory at N={max(sizes)}: data {mem['data_gb']:.2f} GB, process peak "
        f"{mem['peak_rss_gb']:.2f} GB (+{mem['peak_minus_before_gb']:.2f} GB during the call)")
  path = common.save("denoisers" + ("_quick" if args.quick else ""),
                     dict(machine=common.machine(), rounds=args.rounds, rows=rows, memory=mem))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
