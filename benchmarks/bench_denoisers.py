"""Empirical denoiser throughput against this machine's matmul rate.

  python -m benchmarks.bench_denoisers            # N ∈ {1024, 8192, 50000}, D = 3072, B = 256
  python -m benchmarks.bench_denoisers --quick    # smaller sizes

The denoiser does 4·B·N·D flops (one matmul for the distances, one for the
weighted sum); its rate is reported as a fraction of a float32 `jnp.dot` of
two 4096² matrices on the same machine, and against a naive NumPy version
(full [B, N] distance matrix, no streaming).  Peak memory at the largest N is
measured in a fresh subprocess (ru_maxrss) so earlier runs do not pollute it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
import repro_jax


def naive_numpy(x, data, sigma):
  d2 = (x**2).sum(1)[:, None] - 2 * x @ data.T + (data**2).sum(1)[None]
  logits = -d2 / (2 * sigma**2)
  w = np.exp(logits - logits.max(1, keepdims=True))
  return (w / w.sum(1, keepdims=True)) @ data


def bench(n, d, b, chunk, repeats, with_numpy):
  rng = np.random.default_rng(0)
  data_np = rng.normal(size=(n, d)).astype(np.float32)
  x_np = rng.normal(size=(b, d)).astype(np.float32)
  data, x = jnp.asarray(data_np), jnp.asarray(x_np)
  f = lambda q: repro_jax.empirical_denoiser(q, data, 0.5, chunk_size=chunk)
  t = common.time_call(f, x, repeats=repeats)
  row = dict(N=n, D=d, B=b, chunk=chunk, seconds=t, gflops=4 * b * n * d / t / 1e9)
  if with_numpy:
    t0 = common.time_call(lambda: naive_numpy(x_np, data_np, 0.5), repeats=max(1, repeats // 2),
                          warmup=0)
    row["numpy_seconds"] = t0
    row["speedup_vs_numpy"] = t0 / t
  return row


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
  p.add_argument("--repeats", type=int, default=3)
  args = p.parse_args()
  sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else (
      [1024, 4096] if args.quick else [1024, 8192, 50_000])
  chunks = [int(c) for c in args.chunks.split(",")]
  dim = 512 if args.quick else args.dim
  mm = common.matmul_gflops()
  print(f"float32 matmul (jnp.dot 4096²): {mm:.1f} GFLOP/s on {jax.devices()[0]}")
  rows = []
  for n in sizes:
    for i, c in enumerate(chunks):
      row = bench(n, dim, args.batch, c, args.repeats, with_numpy=(i == 0))
      # The matmul rate is re-measured beside each row, so that a shared or
      # throttled machine affects both numbers of the ratio alike.
      row["matmul_gflops"] = max(common.matmul_gflops(repeats=3), 1e-9)
      row["fraction_of_matmul"] = row["gflops"] / row["matmul_gflops"]
      rows.append(row)
      extra = (f"  numpy {row['numpy_seconds']:.3f}s ({row['speedup_vs_numpy']:.1f}x slower)"
               if "numpy_seconds" in row else "")
      print(f"N={n:6d} D={dim} B={args.batch} chunk={c:5d}: {row['seconds']*1e3:8.1f} ms "
            f"{row['gflops']:7.1f} GFLOP/s = {100*row['fraction_of_matmul']:5.1f}% of matmul{extra}",
            flush=True)
  mem = peak_memory(max(sizes), dim, args.batch, 2048)
  print(f"peak memory at N={max(sizes)}: data {mem['data_gb']:.2f} GB, process peak "
        f"{mem['peak_rss_gb']:.2f} GB (+{mem['peak_minus_before_gb']:.2f} GB during the call)")
  path = common.save("denoisers" + ("_quick" if args.quick else ""),
                     dict(machine=common.machine(), matmul_gflops=mm, rows=rows, memory=mem))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
