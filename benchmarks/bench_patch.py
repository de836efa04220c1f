"""ELS machine throughput at digits scale against this machine's matmul rate.

  python -m benchmarks.bench_patch            # N = 1797 digits 8×8×1, B = 256, windows 3/5/7
  python -m benchmarks.bench_patch --quick    # N = 256 training images

The ELS machine (`closed_form.patch`, centre mode, zero-padding boundary)
compares each of the `B·P` query windows (`P = H·W`) with all `N·P` training
windows: `2·B·P·N·P·(K + C)` flops, `K = M²·C` features of the maximal window
M (one matmul for the distances, one for the centre-pixel values), and one
exponential per logit.  Rows:

- `M = w`: compiled for one window, so every executed flop is useful;
- `M = 7 (traced)`: one compilation for all three windows, as inside a
  sampler with a `WindowSchedule`; offsets outside the window are masked, so
  the executed flops are those of `K = 49` and the useful ones those of `w²`;
- `matmuls only`: the same two chunked matmuls without the log-sum-exp, the
  ceiling of this structure on this machine.

Rates are fractions of a float32 `jnp.dot` of two 4096² matrices timed in
the same rounds (median of per-round ratios, as `bench_denoisers`).  A naive
NumPy version that materialises all `[B·P, N·P]` logits runs where they fit
(`--naive_images` training images) and checks the values.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

from benchmarks import common
from repro_jax.closed_form import patch
from repro_jax.closed_form import patch_streaming
from repro_jax.data.sources import load_digits


def flops(b, npos, n, k, c):
  return 2 * b * npos * n * npos * (k + c)


def naive_numpy(x, data, sigma, window):
  """All logits at once: zero-padded windows, the boundary classes, softmax."""
  b, h, w, c = x.shape
  r = (window - 1) // 2

  def windows(imgs):
    p = np.pad(imgs, ((0, 0), (r, r), (r, r), (0, 0)))
    return np.stack([p[:, i:i + window, j:j + window].reshape(len(imgs), -1)
                     for i in range(h) for j in range(w)], 1)               # [n, P, w²C]

  i, j = np.arange(h), np.arange(w)
  row = np.minimum(i, r) * (h + 1) + np.minimum(h - 1 - i, r)
  col = np.minimum(j, r) * (w + 1) + np.minimum(w - 1 - j, r)
  code = (row[:, None] * (w + 1) ** 2 + col[None, :]).reshape(-1)
  q = windows(x).reshape(b * h * w, -1)
  y = windows(data).reshape(len(data) * h * w, -1)
  d = (q * q).sum(1)[:, None] - 2 * q @ y.T + (y * y).sum(1)[None]
  d[np.tile(code, b)[:, None] != np.tile(code, len(data))[None, :]] = np.inf
  logit = -d / (2 * sigma**2)
  p = np.exp(logit - logit.max(1, keepdims=True))
  return ((p / p.sum(1, keepdims=True)) @ data.reshape(-1, c)).reshape(x.shape)


def chunked_matmuls(q, ypatch, values, b_tile, cols):
  """The kernel's matmuls alone: `Σ_blocks (q yᵀ) v` over row tiles and column
  blocks of the same sizes (ragged tail dropped)."""
  blocks = ypatch[:ypatch.shape[0] // cols * cols].reshape(-1, cols, ypatch.shape[1])
  vals = values[:blocks.shape[0] * cols].reshape(blocks.shape[0], cols, -1)
  tiles = q.reshape(-1, b_tile, q.shape[1])

  def tile(qt):
    return lax.fori_loop(0, blocks.shape[0], lambda i, acc: acc + (qt @ blocks[i].T) @ vals[i],
                         jnp.zeros((qt.shape[0], vals.shape[2]), qt.dtype))
  return lax.map(tile, tiles)


def main():
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--windows", default="3,5,7")
  p.add_argument("--sigma", type=float, default=0.5)
  p.add_argument("--chunks", default="", help="training images per block to compare "
                 "(at the largest window; default: the automatic choice only)")
  p.add_argument("--naive_images", type=int, default=128)
  p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
  p.add_argument("--repeats", type=int, default=1, help="calls per round")
  args = p.parse_args()
  images, _ = load_digits()
  data_np = images[:256] if args.quick else images
  data = jnp.asarray(data_np, jnp.float32)
  n, h, w, c = data.shape
  npos = h * w
  rng = np.random.default_rng(0)
  x_np = (images[rng.integers(0, len(images), args.batch)]
          + args.sigma * rng.normal(size=(args.batch, h, w, c))).astype(np.float32)
  x = jnp.asarray(x_np)
  wins = [int(v) for v in args.windows.split(",")]
  m_max = max(wins)
  print(f"{jax.devices()[0]}; N={n} {h}x{w}x{c}, B={args.batch}, {args.rounds} rounds", flush=True)

  def els(m, chunk=None):
    return jax.jit(lambda q, win: patch.patch_denoiser(
        q, data, args.sigma, window=win, max_window=m, equivariant=True, chunk_size=chunk))

  cases = {}   # name -> (fn, window, executed flops, useful flops)
  for win in wins:
    cases[f"ELS w={win} M={win}"] = (els(win), win, flops(args.batch, npos, n, win * win * c, c),
                                     flops(args.batch, npos, n, win * win * c, c))
  traced = els(m_max)
  for win in wins:
    cases[f"ELS w={win} M={m_max} (traced)"] = (
        traced, win, flops(args.batch, npos, n, m_max * m_max * c, c),
        flops(args.batch, npos, n, win * win * c, c))
  for chunk in [int(v) for v in args.chunks.split(",") if v]:
    cases[f"ELS w={m_max} M={m_max} chunk={chunk}"] = (
        els(m_max, chunk), m_max, *[flops(args.batch, npos, n, m_max * m_max * c, c)] * 2)
  b_tile, chunk = patch_streaming.tiles(args.batch, npos, True, n)
  ex = patch._extractor(h, w, m_max, "zeros")
  ypatch = ex(data).reshape(n * npos, -1)
  values = data.reshape(n * npos, c)
  q = ex(x).reshape(args.batch * npos, -1)
  mm = jax.jit(lambda q: chunked_matmuls(q, ypatch, values, b_tile * npos, chunk * npos))
  cases[f"matmuls only M={m_max}"] = (lambda _x, _w: mm(q), m_max,
                               *[flops(args.batch, npos, n // chunk * chunk, m_max**2 * c, c)] * 2)

  mm_rates, rates = [], {k: [] for k in cases}
  for r in range(args.rounds):
    mm_rates.append(common.matmul_gflops(repeats=3))
    for name, (fn, win, fl, _) in cases.items():
      t = common.time_call(fn, x, win, repeats=args.repeats, warmup=int(r == 0))
      rates[name].append(fl / t / 1e9)
  mm_rates = np.asarray(mm_rates)
  rows = []
  for name, (fn, win, fl, useful) in cases.items():
    g = np.asarray(rates[name])
    rows.append(dict(case=name, window=win, seconds=fl / g.max() / 1e9, gflops=float(g.max()),
                     fraction_of_matmul=float(np.median(g / mm_rates)),
                     useful_gflops=float(g.max() * useful / fl),
                     useful_fraction_of_matmul=float(np.median(g / mm_rates) * useful / fl)))
    rw = rows[-1]
    print(f"{name:26s}: {rw['seconds']:7.3f} s {rw['gflops']:6.1f} GFLOP/s = "
          f"{100 * rw['fraction_of_matmul']:5.1f}% of matmul (useful: "
          f"{100 * rw['useful_fraction_of_matmul']:5.1f}%)", flush=True)
  print(f"matmul (jnp.dot 4096²): median {np.median(mm_rates):.1f}, max {mm_rates.max():.1f} "
        "GFLOP/s", flush=True)

  # The naive version where its logits fit: N' training images.
  nn = min(args.naive_images, n)
  sub, sub_np = data[:nn], data_np[:nn].astype(np.float32)
  win = m_max
  f = jax.jit(lambda q: patch.patch_denoiser(q, sub, args.sigma, window=win, max_window=win,
                                             equivariant=True))
  t_ours = common.time_call(f, x, repeats=3)
  t0 = time.perf_counter()
  ref = naive_numpy(x_np, sub_np, args.sigma, win)
  t_np = time.perf_counter() - t0
  err = float(np.max(np.abs(np.asarray(f(x)) - ref)))
  logits_gb = args.batch * npos * nn * npos * 4 / 1e9
  print(f"naive NumPy, N={nn}, w={win} ({logits_gb:.2f} GB of logits): {t_np:.2f} s, streamed "
        f"{t_ours:.3f} s ({t_np / t_ours:.1f}x faster), max |difference| {err:.1e}")
  path = common.save("patch" + ("_quick" if args.quick else ""), dict(
      machine=common.machine(), n=n, image=[h, w, c], batch=args.batch, sigma=args.sigma,
      rounds=args.rounds, b_tile=b_tile, chunk=chunk,
      matmul_gflops=dict(median=float(np.median(mm_rates)), max=float(mm_rates.max())),
      rows=rows, naive=dict(n=nn, window=win, logits_gb=logits_gb, numpy_seconds=t_np,
                            streamed_seconds=t_ours, max_abs_difference=err)))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
