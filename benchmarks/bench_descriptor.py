"""Benchmark: the learned descriptor on the 8×8 digits at its default settings.

Trains `descriptor.DescriptorSettings()` (or `--steps`) on a random split of
the digits (`--train` images), then calibrates its threshold exactly as the
pixel NCC's (`metrics.calibrate`: copies = `perturb(image, noise 0.1,
max_shift)`, non-copies = pairs of distinct images) on the training split and
on the held-out rest, for copies without and with 1-pixel circular shifts.
Reports the training time (compilation included; wall and CPU seconds) and the balanced accuracies,
with the pixel NCC's beside them.

  python -m benchmarks.bench_descriptor
  python -m benchmarks.bench_descriptor --steps 300      # or --quick
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import time

import jax
import numpy as np

from repro_jax import data
from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax.analysis import descriptor
from repro_jax.analysis import metrics


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--train", type=int, default=1400, help="training split size")
  ap.add_argument("--steps", type=int, default=None, help="default: the settings' steps")
  ap.add_argument("--pairs", type=int, default=2000)
  ap.add_argument("--quick", action="store_true", help="100 steps, 500 pairs")
  ap.add_argument("--out", default="benchmarks/results/descriptor.json")
  args = ap.parse_args(argv)
  if args.quick:
    args.steps, args.pairs = args.steps or 100, 500

  s = descriptor.DescriptorSettings()
  if args.steps is not None:
    s = settings_lib.override(s, {"steps": args.steps})
  x, _ = data.load_digits()
  perm = np.random.default_rng(0).permutation(len(x))
  splits = {"train": x[perm[:args.train]], "held_out": x[perm[args.train:]]}

  t0, c0 = time.perf_counter(), time.process_time()
  result = descriptor.train(jax.random.key(s.seed), splits["train"], s)
  seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
  fn = descriptor.LearnedDescriptor(tuple(x.shape[1:]), s, result.params)

  rows = []
  for split, images in splits.items():
    for shift in (0, 1):
      row = dict(split=split, n=len(images), max_shift=shift)
      for name, f in (("learned", fn), ("ncc", None)):
        cal = metrics.calibrate(jax.random.key(0), images, name, num_pairs=args.pairs,
                                noise=0.1, max_shift=shift, fn=f)
        row[f"{name}_accuracy"] = cal.accuracy
        row[f"{name}_threshold"] = cal.threshold
      rows.append(row)
  out = dict(settings=settings_lib.to_dict(s), train_seconds=seconds,
             train_cpu_seconds=cpu_seconds,
             final_loss=float(result.losses[-1]), rows=rows,
             machine=platform.processor() or platform.machine(), jax=jax.__version__,
             devices=jax.device_count())
  print(f"trained {s.steps} steps on {args.train} digits in {seconds:.1f} s "
        f"({cpu_seconds:.1f} s of CPU time; final loss {out['final_loss']:.3f})")
  print(io.markdown_table(rows, fmt="{:.4g}"))
  io.save_json(pathlib.Path(args.out), out)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
