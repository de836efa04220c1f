"""Where the time of one U-Net 8×8 training step goes, by kind of XLA operation.

  python -m benchmarks.profile_training            # 10 profiled steps
  python -m benchmarks.profile_training --quick    # 3

Traces the jitted step of `bench_training`'s U-Net 8×8 (forward, backward,
Adam, EMA) with `jax.profiler` and sums the time of each compiled operation
(XLA:CPU records one trace event per operation) into five kinds, read from the
optimized HLO: convolutions (with whatever XLA fused into them), dots
(attention, dense layers), transposes and layout copies, the `[P]`-vector
updates (Adam, EMA, gradient norm), and the other elementwise operations and
reductions (GroupNorm, SiLU, residuals, softmax, concatenations).  Writes
benchmarks/results/training_profile.json.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import pathlib
import re
import tempfile

import jax

from benchmarks import bench_training
from benchmarks import common
from repro_jax.networks import training
from repro_jax.networks.training import step as step_lib

KINDS = ("convolutions", "dots", "transposes and copies", "optimizer [P] vectors",
         "other elementwise and reductions")


def _instructions(hlo: str) -> dict[str, str]:
  """Instruction name → its line plus the body of the computation it calls."""
  bodies = {m.group(1): m.group(2)
            for m in re.finditer(r"\n%?(\S+) [^\n]*\{\n(.*?)\n\}", hlo, re.S)}
  out = {}
  for line in hlo.splitlines():
    m = re.match(r"\s+(?:ROOT )?%(\S+) = ", line)
    if m:
      called = re.search(r"calls=%([^,\s]+)", line)
      out[m.group(1)] = line + "\n" + (bodies.get(called.group(1), "") if called else "")
  return out


def _kind(name: str, text: str, num_params: int) -> str:
  if "convolution(" in text:
    return "convolutions"
  if f"[{num_params}]" in text.split("\n", 1)[0]:
    return "optimizer [P] vectors"
  if " dot(" in text:
    return "dots"
  if "transpose" in name or "copy" in name:
    return "transposes and copies"
  return "other elementwise and reductions"


def profile(steps: int) -> dict:
  spec = bench_training.NETWORKS["unet_8x8"]
  cfg = bench_training._config(spec["model"], spec["batch"])
  trainer = training.make_trainer(cfg, spec["shape"])
  data = bench_training._data(spec["shape"], 512)
  state = step_lib.init_state(trainer, jax.random.key(0))
  step = jax.jit(lambda s, d: step_lib.train_step(trainer, s, d))
  ops = _instructions(step.lower(state, data).compile().as_text())
  for _ in range(2):
    jax.block_until_ready(step(state, data))
  with tempfile.TemporaryDirectory() as tmp:
    jax.profiler.start_trace(tmp, create_perfetto_trace=True)
    for _ in range(steps):
      jax.block_until_ready(step(state, data))
    jax.profiler.stop_trace()
    trace = next(pathlib.Path(tmp).rglob("*.trace.json.gz"))
    events = json.load(gzip.open(trace))
  events = events["traceEvents"] if isinstance(events, dict) else events
  ms, count = collections.Counter(), collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("name") in ops:
      kind = _kind(e["name"], ops[e["name"]], trainer.layout.size)
      ms[kind] += e["dur"] / 1e3 / steps
      count[kind] += 1 / steps
  total = sum(ms.values())
  return dict(network="unet_8x8", batch=spec["batch"], steps=steps, total_ms=total,
              kinds=[dict(kind=k, ms=ms[k], fraction=ms[k] / total, ops=round(count[k]))
                     for k in KINDS])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  result = profile(3 if args.quick else 10)
  for k in result["kinds"]:
    print(f"{k['ms']:7.1f} ms {k['fraction']:6.1%} {k['ops']:5d} ops  {k['kind']}")
  print(f"{result['total_ms']:7.1f} ms per step in compiled operations")
  path = common.save("training_profile_quick" if args.quick else "training_profile",
                     dict(machine=common.machine(), **result))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
