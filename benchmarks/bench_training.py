"""Training throughput and achieved FLOP rate; many vmapped models vs sequential.

  python -m benchmarks.bench_training            # U-Net 8×8, 32×32, MLP, DiT 8×8; M = 8
  python -m benchmarks.bench_training --quick    # smaller: fewer steps, no 32×32
  python -m benchmarks.bench_training --only-conv-impl   # just the vmapped-U-Net rows

For each network one optimizer step (forward, backward, Adam, EMA) is timed
over a chunk of steps, either one jitted `lax.scan` or a Python loop over a
jitted step (the U-Net's default on CPU); throughput is batch × steps/s.  The
U-Net 8×8 also runs with autodiff's convolution gradients (`conv_impl="xla"`,
which XLA:CPU runs much slower inside a while loop, jax-ml/jax#12868) instead
of the canonical ones (`repro_jax.networks.models.conv`).  The
flops of one step come from XLA's `cost_analysis()` of the compiled step, and
the achieved rate is reported as a fraction of this machine's float32 matmul
rate (`jnp.dot` of two 4096² matrices) timed just before each row (the
machine's speed drifts).  The many-models
part trains M small models (different seeds and data subsets) in one vmapped
program (`repro_jax.networks.training.many_chunk`) against the same M models trained
one after another with the single-model program.  The convolution part trains
M small U-Nets on 4×4×3 images (the molrg_networks study's image view) in one
vmapped scan with `conv_impl="canonical"` and with `"im2col"`: under `vmap`
over per-model kernels XLA's convolution becomes a grouped convolution, which
XLA:CPU runs far below its matmul rate, while im2col's patches × kernel matrix
becomes a batched matmul; each row's rate is a fraction of the matmul rate
timed just before it, and `speedup_vs_canonical` is im2col's steps/s over
canonical's.  Writes benchmarks/results/training.json (training_quick.json
with --quick; training_conv_impl.json with --only-conv-impl).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from repro_jax.networks import training
from repro_jax import settings as settings_lib
from repro_jax.networks.training import config as config_lib
from repro_jax.networks.training import step as step_lib


NETWORKS = {
    "unet_8x8": dict(shape=(8, 8, 1), batch=64, model=dict(
        name="unet", width=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
        norm_groups=8)),
    "unet_32x32": dict(shape=(32, 32, 3), batch=64, model=dict(
        name="unet", width=32, ch_mult=(1, 2, 2), num_res_blocks=1,
        attn_resolutions=(8,), norm_groups=8)),
    "mlp_48": dict(shape=(48,), batch=256, model=dict(
        name="mlp", hidden=256, depth=3, emb_dim=64)),
    "dit_8x8": dict(shape=(8, 8, 1), batch=64, model=dict(
        name="dit", width=64, depth=3, patch_size=2, num_heads=4)),
}


def _config(model: dict, batch: int):
  return settings_lib.override(training.variant("cpu"),
                               {"model": model, "train": {"batch_size": batch}})


def _data(shape, n, key=0):
  x = jax.random.normal(jax.random.key(key), (n,) + shape, jnp.float32)
  return step_lib.DataArrays(x, None, jnp.arange(n, dtype=jnp.int32), jnp.int32(n))


def _flops(trainer, state, data, many: bool = False) -> float | None:
  step = lambda s, d: step_lib.train_step(trainer, s, d)
  if many:
    step = jax.vmap(step, in_axes=(0, step_lib.DataArrays(None, None, 0, 0)))
  compiled = jax.jit(step).lower(state, data).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def _runner(trainer, steps: int, loop: str, many: bool = False):
  """`steps` steps without donation (timing reuses the inputs)."""
  if loop == "scan":
    fn = step_lib.many_chunk if many else step_lib.train_chunk
    return jax.jit(lambda s, d: fn(trainer, s, d, steps))
  one = lambda s, d: step_lib.train_step(trainer, s, d)
  if many:
    one = jax.vmap(one, in_axes=(0, step_lib.DataArrays(None, None, 0, 0)))
  one = jax.jit(one)

  def run(state, data):
    for _ in range(steps):
      state, metrics = one(state, data)
    return state, metrics
  return run


def bench_network(name, spec, steps, repeats, matmul_rate, loop, conv_impl=None):
  model = spec["model"] if conv_impl is None else {**spec["model"], "conv_impl": conv_impl}
  cfg = _config(model, spec["batch"])
  trainer = training.make_trainer(cfg, spec["shape"])
  data = _data(spec["shape"], 512)
  state = step_lib.init_state(trainer, jax.random.key(0))
  chunk = _runner(trainer, steps, loop)
  t0 = time.perf_counter()
  jax.block_until_ready(chunk(state, data))
  compile_s = time.perf_counter() - t0
  seconds = common.time_call(chunk, state, data, repeats=repeats, warmup=0) / steps
  flops = _flops(trainer, state, data)
  row = dict(network=name, loop=loop, data_shape=list(spec["shape"]), batch=spec["batch"],
             matmul_gflops=matmul_rate,
             params=int(trainer.layout.size), step_ms=1e3 * seconds,
             images_per_sec=spec["batch"] / seconds, compile_and_first_run_s=compile_s,
             flops_per_step=flops)
  if conv_impl is not None:
    row["conv_impl"] = conv_impl
  if flops:
    row["gflops_achieved"] = flops / seconds / 1e9
    row["fraction_of_matmul"] = row["gflops_achieved"] / matmul_rate
  return row


def _many_inputs(trainer, shape, num_models, n_sub=64):
  """M initial states, the shared data and M disjoint subsets of `n_sub` rows."""
  data = _data(shape, n_sub * num_models)
  subsets = [np.arange(i * n_sub, (i + 1) * n_sub) for i in range(num_models)]
  indices, counts = training.stack_subsets(subsets)
  many_data = step_lib.DataArrays(data.x, None, jnp.asarray(indices), jnp.asarray(counts))
  states = [step_lib.init_state(trainer, jax.random.key(i)) for i in range(num_models)]
  return data, subsets, many_data, states


def bench_many(name, spec, num_models, steps, repeats, loop=None):
  """M models in one vmapped program vs the same M models one after another."""
  cfg = _config(spec["model"], spec["batch"])
  loop = loop or config_lib.step_loop(cfg)
  trainer = training.make_trainer(cfg, spec["shape"])
  n_sub = 64
  data, subsets, many_data, states = _many_inputs(trainer, spec["shape"], num_models, n_sub)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
  many = _runner(trainer, steps, loop, many=True)
  one = _runner(trainer, steps, loop)
  singles = [step_lib.DataArrays(data.x, None, jnp.asarray(s, jnp.int32), jnp.int32(n_sub))
             for s in subsets]

  def sequential():
    return [one(s, d) for s, d in zip(states, singles)]

  t_many = common.time_call(many, stacked, many_data, repeats=repeats)
  t_seq = common.time_call(sequential, repeats=repeats)
  return dict(network=name, loop=loop, num_models=num_models, steps=steps,
              batch=spec["batch"],
              vmapped_s=t_many, sequential_s=t_seq, speedup=t_seq / t_many,
              vmapped_images_per_sec=num_models * steps * spec["batch"] / t_many,
              sequential_images_per_sec=num_models * steps * spec["batch"] / t_seq)


def bench_many_conv(name, spec, num_models, steps, repeats, matmul_rate, conv_impl,
                    loop="scan", work_flops=None):
  """M U-Nets in one vmapped program with convolutions `conv_impl`: step rate.

  `flops_per_step` is XLA's count for this program; the achieved rate divides
  `work_flops` (default: that count) by the step time.
  """
  cfg = _config({**spec["model"], "conv_impl": conv_impl}, spec["batch"])
  trainer = training.make_trainer(cfg, spec["shape"])
  _, _, many_data, states = _many_inputs(trainer, spec["shape"], num_models)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
  many = _runner(trainer, steps, loop, many=True)
  t0 = time.perf_counter()
  jax.block_until_ready(many(stacked, many_data))
  compile_s = time.perf_counter() - t0
  seconds = common.time_call(many, stacked, many_data, repeats=repeats, warmup=0) / steps
  flops = _flops(trainer, stacked, many_data, many=True)
  row = dict(network=name, loop=loop, conv_impl=conv_impl, num_models=num_models,
             data_shape=list(spec["shape"]), batch=spec["batch"], steps=steps,
             matmul_gflops=matmul_rate, params_per_model=int(trainer.layout.size),
             step_ms=1e3 * seconds,
             images_per_sec=num_models * spec["batch"] / seconds,
             compile_and_first_run_s=compile_s, flops_per_step=flops)
  work = work_flops or flops
  if work:
    row["work_flops_per_step"] = work
    row["gflops_achieved"] = work / seconds / 1e9
    row["fraction_of_matmul"] = row["gflops_achieved"] / matmul_rate
  return row


# The molrg_networks study's U-Net on its 4×4×3 image view (`conv_impl` set per row).
UNET_4X4X3 = dict(shape=(4, 4, 3), batch=32, model=dict(
    name="unet", width=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
    norm_groups=4))


def conv_impl_rows(quick: bool, matmul: float | None = None) -> list[dict]:
  """M = 8 vmapped U-Nets 4×4×3, canonical then im2col convolutions (scan).

  Both rows' achieved rates count the canonical program's flops: XLA counts a
  convolution's products with the zero padding out, im2col's matmul in (about
  1.6× more on these 4×4 and 2×2 grids), so its own count would flatter it.
  """
  rows = []
  for impl in ("canonical", "im2col"):
    rate = matmul if matmul is not None and not rows else common.matmul_gflops(
        4096, repeats=3)
    work = rows[0]["flops_per_step"] if rows else None
    rows.append(bench_many_conv("unet_4x4x3_w8", UNET_4X4X3, 8, 5 if quick else 20,
                                2 if quick else 3, rate, impl, work_flops=work))
    r = rows[-1]
    print(f"{r['network']:13s} scan/{impl:9s} M={r['num_models']}  {r['step_ms']:8.1f} "
          f"ms/step  {r['images_per_sec']:8.0f} img/s  "
          f"{r.get('gflops_achieved', float('nan')):6.2f} GFLOP/s  "
          f"{100 * r.get('fraction_of_matmul', float('nan')):5.1f}% of matmul")
  speedup = rows[0]["step_ms"] / rows[1]["step_ms"]
  rows[1]["speedup_vs_canonical"] = speedup
  print(f"{'':13s} im2col/canonical steps/s: {speedup:.2f}×")
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
  parser.add_argument("--only-conv-impl", action="store_true",
                      help="only the vmapped U-Nets, canonical vs im2col convolutions")
  args = parser.parse_args()
  quick = args.quick
  matmul = common.matmul_gflops(4096, repeats=3)
  print(f"float32 matmul: {matmul:.1f} GFLOP/s")
  if args.only_conv_impl:
    path = common.save("training_conv_impl" + ("_quick" if quick else ""),
                       dict(machine=common.machine(), matmul_gflops=matmul,
                            many_models_conv_impl=conv_impl_rows(quick, matmul)))
    print(f"wrote {path}")
    return
  # (network, step loop, U-Net convolution gradients): both loops of each, plus the
  # U-Net 8×8 with autodiff's convolution gradients to show the XLA:CPU while-loop
  # slowdown that the canonical ones avoid.
  runs = [("unet_8x8", "python", None), ("unet_8x8", "scan", None),
          ("unet_8x8", "python", "xla"), ("unet_8x8", "scan", "xla"),
          ("mlp_48", "scan", None), ("mlp_48", "python", None), ("dit_8x8", "scan", None),
          ("dit_8x8", "python", None)] + (
              [] if quick else [("unet_32x32", "python", None), ("unet_32x32", "scan", None)])
  rows = []
  for name, loop, grads in runs:
    spec = NETWORKS[name]
    slow = grads == "xla" and loop == "scan"
    n = {"unet_32x32": 3, "unet_8x8": 3 if slow else 10}.get(name, 20)
    rate = matmul if not rows else common.matmul_gflops(4096, repeats=3)
    rows.append(bench_network(name, spec, n if not quick else min(n, 3),
                              2 if quick else 3, rate, loop, grads))
    r = rows[-1]
    label = loop + ("/xla" if grads else "")
    print(f"{name:11s} {label:10s} P={r['params']:>8d}  B={r['batch']:>3d}  "
          f"{r['step_ms']:8.1f} ms/step  "
          f"{r['images_per_sec']:8.0f} img/s  {r.get('gflops_achieved', float('nan')):6.2f} "
          f"GFLOP/s  {100 * r.get('fraction_of_matmul', float('nan')):5.1f}% of matmul")
  many_rows = []
  small_unet = dict(shape=(8, 8, 1), batch=32, model=dict(
      name="unet", width=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,),
      norm_groups=4))
  small_mlp = dict(shape=(48,), batch=64, model=dict(name="mlp", hidden=64, depth=2,
                                                     emb_dim=16))
  small_dit = dict(shape=(8, 8, 1), batch=32, model=dict(
      name="dit", width=16, depth=2, patch_size=2, num_heads=2, emb_dim=8))
  # The U-Nets in the step loop "auto" picks (python) and in the scan the zoo uses.
  cases = [("mlp_48_small", small_mlp, None), ("dit_8x8_w16", small_dit, None)] + (
      [] if quick else [("unet_8x8_w8", small_unet, None), ("unet_8x8_w8", small_unet, "scan")])
  for name, spec, loop in cases:
    many_rows.append(bench_many(name, spec, 8, 20 if quick else 50, 2 if quick else 3, loop))
    r = many_rows[-1]
    print(f"{name:13s} {r['loop']:6s} M={r['num_models']} vmapped {r['vmapped_s']:.3f} s  sequential "
          f"{r['sequential_s']:.3f} s  speedup {r['speedup']:.2f}×")
  conv_rows = conv_impl_rows(quick)
  path = common.save("training_quick" if quick else "training",
                     dict(machine=common.machine(), matmul_gflops=matmul, networks=rows,
                          many_models=many_rows, many_models_conv_impl=conv_rows))
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
