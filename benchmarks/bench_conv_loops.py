"""Why a `lax.scan` over U-Net training steps is slow on XLA:CPU: the convolution gradients.

  python -m benchmarks.bench_conv_loops            # the 3×3 convolutions of the cpu U-Net
  python -m benchmarks.bench_conv_loops --quick    # two shapes, fewer repeats

For each 3×3 stride-1 convolution of the cpu U-Net (batch 64, 8×8 and 4×4,
32–128 channels) three pieces of a training step are timed, each alone
(one jitted call) and inside a `lax.scan` of 10 iterations (per iteration):

- `fwd`: `y = conv(x, w)`, NHWC input, HWIO kernel;
- `dx`: the input gradient, as `jax.vjp` writes it (a convolution whose kernel
  is flipped with its I/O dimensions exchanged by the dimension numbers), and
  the same convolution written on an explicitly transposed kernel
  (`conv(g, flip(w).swapaxes(2, 3))`, canonical NHWC/HWIO);
- `dw`: the kernel gradient, as `jax.vjp` writes it (the batch dimension
  contracted as a feature dimension, set by the dimension numbers), and the
  same contraction as a canonical convolution of explicitly transposed
  operands (`x` as `[C, H+2, W+2, B]`, the output gradient as kernel
  `[H, W, B, O]`, VALID).

Rates are reported against this machine's float32 matmul rate measured in the
same run.  Writes benchmarks/results/conv_loops.json.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import common

_DN = ("NHWC", "HWIO", "NHWC")
_LOOP = 10
# (C_in, C_out, H = W) of the cpu U-Net's 3×3 convolutions (width 32, ch_mult 1-2).
SHAPES = ((32, 32, 8), (64, 32, 8), (96, 32, 8), (32, 64, 4), (64, 64, 4), (128, 64, 4))


def conv(x, w, padding="SAME"):
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)


def dx_autodiff(w, g, x):
  return jax.vjp(lambda x: conv(x, w), x)[1](g)[0]


def dx_canonical(w, g, x):
  del x
  return conv(g, jnp.flip(w, (0, 1)).swapaxes(2, 3))


def dw_autodiff(w, g, x):
  return jax.vjp(lambda w: conv(x, w), w)[1](g)[0]


def dw_canonical(w, g, x):
  kh, kw = w.shape[:2]
  xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  out = conv(jnp.transpose(xp, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)), "VALID")
  return jnp.transpose(out, (1, 2, 0, 3))


def fwd(w, g, x):
  del g
  return conv(x, w)


def _in_scan(piece):
  """`piece` inside a `lax.scan` of `_LOOP` iterations, each depending on the last
  (every operand moves with the carry, so XLA cannot hoist the piece out of the loop)."""
  def run(w, g, x):
    def body(carry, _):
      return carry + 1e-6 * jnp.mean(piece(w + carry, g + carry, x + carry)), None
    return lax.scan(body, jnp.zeros((), g.dtype), None, length=_LOOP)[0]
  return run


def measure(c_in, c_out, hw, batch, repeats) -> list[dict]:
  k = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k[0], (batch, hw, hw, c_in))
  w = 0.1 * jax.random.normal(k[1], (3, 3, c_in, c_out))
  g = jax.random.normal(k[2], (batch, hw, hw, c_out))
  flops = 2.0 * batch * hw * hw * 9 * c_in * c_out      # each piece is one such contraction
  rows = []
  for name, piece in (("fwd", fwd), ("dx autodiff", dx_autodiff), ("dx canonical", dx_canonical),
                      ("dw autodiff", dw_autodiff), ("dw canonical", dw_canonical)):
    alone = common.time_call(jax.jit(piece), w, g, x, repeats=repeats)
    looped = common.time_call(jax.jit(_in_scan(piece)), w, g, x, repeats=max(1, repeats // 2))
    looped /= _LOOP
    rows.append(dict(shape=[c_in, c_out, hw], piece=name, alone_ms=1e3 * alone,
                     in_scan_ms=1e3 * looped, scan_slowdown=looped / alone,
                     alone_gflops=flops / alone / 1e9, in_scan_gflops=flops / looped / 1e9))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  shapes, repeats = (SHAPES[:1] + SHAPES[4:5], 3) if args.quick else (SHAPES, 7)
  # The canonical forms compute the same numbers.
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 16))
  w = jax.random.normal(jax.random.key(2), (3, 3, 16, 8))
  g = jax.random.normal(jax.random.key(3), (4, 8, 8, 8))
  for a, b in ((dx_autodiff, dx_canonical), (dw_autodiff, dw_canonical)):
    err = float(jnp.max(jnp.abs(a(w, g, x) - b(w, g, x))) / jnp.max(jnp.abs(a(w, g, x))))
    assert err < 1e-5, (a.__name__, err)
  rate = common.matmul_gflops()
  rows = []
  for c_in, c_out, hw in shapes:
    for r in measure(c_in, c_out, hw, 64, repeats):
      r["alone_of_matmul"] = r["alone_gflops"] / rate
      r["in_scan_of_matmul"] = r["in_scan_gflops"] / rate
      rows.append(r)
      print(f"{c_in:4d}→{c_out:<4d} {hw}×{hw}  {r['piece']:13s} alone {r['alone_ms']:7.2f} ms "
            f"({r['alone_of_matmul']:4.0%} of matmul)   in scan {r['in_scan_ms']:7.2f} ms "
            f"({r['scan_slowdown']:5.1f}×)", flush=True)
  path = common.save("conv_loops_quick" if args.quick else "conv_loops",
                     dict(machine=common.machine(), matmul_gflops=rate, batch=64, rows=rows))
  print(f"matmul {rate:.0f} GFLOP/s; wrote {path}")


if __name__ == "__main__":
  main()
