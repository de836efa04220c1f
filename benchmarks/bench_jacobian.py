"""Matrix-free top-k Jacobian of a network denoiser against k batched jvps.

  python -m benchmarks.bench_jacobian            # U-Net width 16 on 32×32×3 (D = 3072), B = 2
  python -m benchmarks.bench_jacobian --quick    # width 8, k = 8 only, fewer rounds

`repro_jax.analysis.jacobian.top_singular(k, oversample p, power_iters q)`
spends `l (q + 1)` batched jvps and as many vjps (`l = k + p`) of one
linearization of the denoiser, plus Gram–Schmidt passes over `[B, D, l]`
blocks and an SVD of an `l × l` matrix.  Its time is reported as ratios, never
alone:

- to k batched jvps of the same linearization (`vmap` of the linearized
  denoiser over k tangents, forward pass included, as in `top_singular`):
  the headline, the project's goal is <= 3×;
- to one forward pass of the denoiser;
- to the exact Jacobian by D jvps, *estimated* as D/n batches of the largest
  measured n-jvp program (it is not run: D = 3072 jvps take seconds to minutes
  here);
- XLA's flop count (`cost_analysis`) over the time, as a fraction of this
  machine's float32 matmul rate (`jnp.dot` of two 4096² matrices).

The host's speed drifts, so each round times the matmul and then every program
back to back (best of `--repeats` calls each); ratios are taken within a round
and their median over `--rounds` rounds is reported (as `bench_denoisers`).
l jvps and l vjps alone are timed too, to split the top-k time into its parts.

Memory is the compiled program's own account (`memory_analysis()`: temporary,
argument and output bytes) against the `D² · 4` bytes of one dense float32
Jacobian; `--memory-sizes` compiles (without running) the same top-k program
for other image sizes to show that it grows with the activations (∝ D), not
with D², and the exact `jacobian` program for comparison.

The network is a randomly initialised U-Net (`repro_jax.networks.training`,
cost, not accuracy, is measured); its zero-initialised output layers are given
small random weights so that the Jacobian is not the parameterization's
identity.  Its convolutions are the default (`conv_impl="canonical"`, a
`jax.custom_vjp`): `linearize_rows` linearizes in reverse mode and transposes,
so forward-mode autodiff is never asked of it.

The orthonormalizations are Gram–Schmidt passes in XLA (matrix–vector
products) and the final SVD is of an `l × l` factor: a LAPACK QR or SVD of
the tall `[D, l]` blocks runs OpenBLAS threads that compete with XLA's thread
pool for the cores (on the 2-core machine top-16 with q = 0 took 1.64 s that
way, against 0.075 s for 16 jvps).  The power steps are unrolled: in a
`fori_loop` each step ran about 3× slower (q = 1 at 19× the k jvps instead of
6×).  `openblas_num_threads` records the variable if it is set.
Writes benchmarks/results/jacobian.json (jacobian_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from repro_jax import settings as settings_lib
from repro_jax.analysis import jacobian
from repro_jax.networks import training
from repro_jax.networks.training import step as step_lib


def _unet(width: int, shape) -> tuple:
  """(trainer, params [P], model settings) of a random U-Net, no zero weights left.

  Three levels (side, side/2, side/4), attention at the lowest (8×8 for 32×32).
  """
  model = dict(name="unet", width=width, ch_mult=(1, 2, 2), num_res_blocks=1,
               attn_resolutions=(shape[0] // 4,), norm_groups=4)
  cfg = settings_lib.override(training.variant("cpu"), {"model": model})
  trainer = training.make_trainer(cfg, tuple(shape))
  params = step_lib.init_params(trainer, jax.random.key(0))
  noise = 0.02 * jax.random.normal(jax.random.key(1), params.shape, params.dtype)
  return trainer, jnp.where(params == 0, noise, params), model


def _programs(trainer):
  """Functions of `(params, x [B, ...], σ [B], extra)`, the network taken as an argument
  (so that XLA cannot fold its weights)."""
  def denoiser(p):
    return training.network_denoiser(trainer, p)

  def forward(p, x, s):
    return denoiser(p)(x, s)

  def jvps(p, x, s, t):                          # t [B, D, n]: n batched jvps
    _, jvp, _ = jacobian.linearize_rows(denoiser(p), x, s)
    return jax.vmap(jvp, in_axes=2, out_axes=2)(t)

  def vjps(p, x, s, c):                          # c [B, D, n]: n batched vjps
    _, _, vjp = jacobian.linearize_rows(denoiser(p), x, s)
    return jax.vmap(vjp, in_axes=2, out_axes=2)(c)

  def top(k, oversample, power_iters):
    def f(p, x, s, key):
      return jacobian.top_singular(denoiser(p), x, s, key, k, oversample=oversample,
                                   power_iters=power_iters)
    return f

  def exact(chunk):
    return lambda p, x, s: jacobian.jacobian(denoiser(p), x, s, chunk_size=chunk)

  return forward, jvps, vjps, top, exact


def _memory(compiled) -> dict | None:
  m = compiled.memory_analysis()
  if m is None:
    return None
  return dict(temp_bytes=int(m.temp_size_in_bytes), argument_bytes=int(m.argument_size_in_bytes),
              output_bytes=int(m.output_size_in_bytes),
              generated_code_bytes=int(m.generated_code_size_in_bytes))


def _flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def _compile(fn, *args) -> dict:
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return dict(fn=compiled, args=args, compile_s=time.perf_counter() - t0,
              flops=_flops(compiled), memory=_memory(compiled))


def _inputs(shape, batch, sigma, key=2):
  k0, k1 = jax.random.split(jax.random.key(key))
  x0 = 0.5 * jax.random.normal(k0, (batch,) + tuple(shape))
  x = x0 + sigma * jax.random.normal(k1, x0.shape)
  return x, jnp.full((batch,), sigma, jnp.float32)


def memory_scaling(width, sizes, batch, sigma, k, oversample, main_shape, main_memory,
                   exact_memory, chunk) -> list[dict]:
  """Compiled (not run) memory of top-k (q = 0) per image size; the main size's
  from its timed program, with the exact `jacobian` program's beside it."""
  rows = []
  for n in sizes:
    shape = (n, n, 3)
    d = math.prod(shape)
    if shape == tuple(main_shape):
      mem = main_memory
    else:
      trainer, params, _ = _unet(width, shape)
      top = _programs(trainer)[3]
      x, s = _inputs(shape, batch, sigma)
      mem = _compile(top(k, oversample, 0), params, x, s, jax.random.key(3))["memory"]
    row = dict(image=list(shape), D=d, B=batch, k=k, oversample=oversample, power_iters=0,
               topk_memory=mem, dense_jacobian_bytes_per_row=4 * d * d,
               dense_jacobian_bytes=4 * batch * d * d)
    if shape == tuple(main_shape) and exact_memory:
      row["exact_jacobian_memory"] = exact_memory
      row["exact_jacobian_chunk"] = chunk
    if mem:
      row["topk_temp_over_dense"] = mem["temp_bytes"] / row["dense_jacobian_bytes"]
    rows.append(row)
    print(f"memory {n}x{n}x3 (D={d:5d}): top-{k} temp {(mem or {}).get('temp_bytes', 0) / 1e6:7.1f} MB, "
          f"dense Jacobians B·D²·4 = {row['dense_jacobian_bytes'] / 1e6:8.1f} MB"
          + (f"; the exact-jacobian program (jvps in chunks of {chunk}): temp "
             f"{exact_memory['temp_bytes'] / 1e6:.1f} MB + output "
             f"{exact_memory['output_bytes'] / 1e6:.1f} MB" if row.get("exact_jacobian_memory")
             else ""), flush=True)
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true", help="width 8, k = 8, 2 rounds, no 64×64")
  p.add_argument("--width", type=int, default=None, help="U-Net width (default 16; 8 with --quick)")
  p.add_argument("--image", type=int, default=32, help="image side; D = side² · 3")
  p.add_argument("--batch", type=int, default=2, help="points x (rows), each its own Jacobian")
  p.add_argument("--sigma", type=float, default=1.0)
  p.add_argument("--ks", default=None, help="comma-separated k (default 8,16; 8 with --quick)")
  p.add_argument("--oversample", type=int, default=4,
                 help="extra test vectors p (l = k + p); 2l(q + 1)/k jvp-equivalents in all")
  p.add_argument("--power-iters", default="0,1", help="comma-separated q")
  p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 3)")
  p.add_argument("--repeats", type=int, default=2, help="calls per round (best taken)")
  p.add_argument("--memory-sizes", default=None,
                 help="image sides compiled for the memory scaling (default 16,32,64)")
  args = p.parse_args()
  quick = args.quick
  width = args.width or (8 if quick else 16)
  ks = [int(v) for v in (args.ks or ("8" if quick else "8,16")).split(",")]
  qs = [int(v) for v in args.power_iters.split(",")]
  rounds = args.rounds or (2 if quick else 3)
  sizes = [int(v) for v in (args.memory_sizes or ("16,32" if quick else "16,32,64")).split(",")]
  shape = (args.image, args.image, 3)
  d, b, ov = math.prod(shape), args.batch, args.oversample

  trainer, params, model = _unet(width, shape)
  forward, jvps, vjps, top, exact = _programs(trainer)
  x, s = _inputs(shape, b, args.sigma)
  key = jax.random.key(3)
  print(f"{jax.devices()[0]}; U-Net width {width}, {trainer.layout.size} parameters; "
        f"x [{b}, {', '.join(map(str, shape))}] (D = {d}), σ = {args.sigma}; {rounds} rounds",
        flush=True)

  # Every program, compiled once (its memory and flops from the compiled object).
  progs = {"forward": _compile(forward, params, x, s)}
  tangents = lambda n: jax.random.normal(jax.random.key(4), (b, d, n))
  ls = sorted({k + ov for k in ks})
  for n in sorted(set(ks) | set(ls)):
    progs[f"jvps_{n}"] = _compile(jvps, params, x, s, tangents(n))
  for n in ls:
    progs[f"vjps_{n}"] = _compile(vjps, params, x, s, tangents(n))
  for k in ks:
    for q in qs:
      progs[f"top_{k}_q{q}"] = _compile(top(k, ov, q), params, x, s, key)
  print("compiled: " + ", ".join(f"{n} {v['compile_s']:.1f}s" for n, v in progs.items()),
        flush=True)

  mm, best = [], {n: [] for n in progs}
  outputs = {}
  for r in range(rounds):
    mm.append(common.matmul_gflops(repeats=args.repeats))
    for name, prog in progs.items():
      best[name].append(common.time_call(prog["fn"], *prog["args"], repeats=args.repeats,
                                         warmup=int(r == 0)))
      if r == 0 and name.startswith("top_"):
        outputs[name] = prog["fn"](*prog["args"])       # for its singular values
  mm = np.asarray(mm)
  t = {n: np.asarray(v) for n, v in best.items()}                # [rounds] seconds

  def paired(a, b_):        # median over rounds of the within-round ratio a / b
    return float(np.median(t[a] / t[b_]))

  def fraction(name):       # median over rounds of (flops / time) / matmul rate
    f = progs[name]["flops"]
    return float(np.median(f / t[name] / 1e9 / mm)) if f else None

  programs = {n: dict(seconds_best=float(t[n].min()), seconds_median=float(np.median(t[n])),
                      over_forward=paired(n, "forward"), flops=progs[n]["flops"],
                      fraction_of_matmul=fraction(n), memory=progs[n]["memory"],
                      compile_s=progs[n]["compile_s"]) for n in progs}
  n_max = max(set(ks) | set(ls))
  exact_over_forward = d / n_max * programs[f"jvps_{n_max}"]["over_forward"]
  rows = []
  for k in ks:
    l = k + ov
    for q in qs:
      name = f"top_{k}_q{q}"
      res = outputs[name]
      mem = progs[name]["memory"] or {}
      ratio = paired(name, f"jvps_{k}")
      f_top, f_k = progs[name]["flops"], progs[f"jvps_{k}"]["flops"]
      # The parts: (q+1) times (l jvps + l vjps), each program re-running the forward pass.
      parts = (q + 1) * (programs[f"jvps_{l}"]["over_forward"]
                         + programs[f"vjps_{l}"]["over_forward"]) - (2 * q + 1)
      row = dict(
          k=k, oversample=ov, power_iters=q, l=l, B=b, D=d, image=list(shape),
          network_jvps=l * (q + 1), network_vjps=l * (q + 1),
          count_ratio=2 * l * (q + 1) / k,
          ratio_to_k_jvps=ratio, goal_3x_met=bool(ratio <= 3.0),
          ratio_to_forward=programs[name]["over_forward"],
          ratio_k_jvps_to_forward=programs[f"jvps_{k}"]["over_forward"],
          parts_over_forward=parts,
          exact_estimate_over_forward=exact_over_forward,
          speedup_vs_exact_estimate=exact_over_forward / programs[name]["over_forward"],
          flops=f_top, flops_k_jvps=f_k,
          flops_ratio_to_k_jvps=(f_top / f_k) if f_top and f_k else None,
          fraction_of_matmul=programs[name]["fraction_of_matmul"],
          fraction_of_matmul_k_jvps=programs[f"jvps_{k}"]["fraction_of_matmul"],
          memory=progs[name]["memory"], memory_k_jvps=progs[f"jvps_{k}"]["memory"],
          dense_jacobian_bytes=4 * b * d * d,
          temp_over_dense=(mem["temp_bytes"] / (4 * b * d * d)) if mem else None,
          singular_values_row0=np.asarray(res.s[0]).tolist())
      rows.append(row)
      print(f"top-{k:2d} p={ov} q={q}: {l * (q + 1):3d} jvps + {l * (q + 1):3d} vjps; "
            f"{ratio:5.2f}× the time of {k} jvps (goal <= 3×; by count {row['count_ratio']:.1f}×, "
            f"by flops {row['flops_ratio_to_k_jvps'] or float('nan'):.2f}×), "
            f"{row['ratio_to_forward']:6.1f}× a forward pass (parts: {parts:5.1f}×), "
            f"{row['speedup_vs_exact_estimate']:5.0f}× faster than D jvps (est.); "
            f"{100 * (row['fraction_of_matmul'] or float('nan')):4.1f}% of matmul; "
            f"temp {mem.get('temp_bytes', 0) / 1e6:.1f} MB vs dense "
            f"{row['dense_jacobian_bytes'] / 1e6:.1f} MB; s_1..s_k of row 0 "
            f"{row['singular_values_row0'][0]:.3f}..{row['singular_values_row0'][-1]:.3f}",
            flush=True)
  for n in progs:
    if n.startswith(("jvps_", "vjps_")):
      print(f"{n:9s}: {programs[n]['over_forward']:5.1f}× a forward pass, "
            f"{100 * (programs[n]['fraction_of_matmul'] or float('nan')):4.1f}% of matmul")
  print(f"matmul (jnp.dot 4096²): median {np.median(mm):.1f} GFLOP/s over rounds; forward pass "
        f"{100 * (programs['forward']['fraction_of_matmul'] or float('nan')):.1f}% of it", flush=True)
  payload = dict(machine=common.machine(), rounds=rounds, repeats=args.repeats,
                 matmul_gflops=float(np.median(mm)), matmul_gflops_rounds=mm.tolist(),
                 openblas_num_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
                 network=model, params=int(trainer.layout.size), sigma=args.sigma,
                 exact_estimate_jvp_batch=n_max, rows=rows, programs=programs)
  name = "jacobian" + ("_quick" if quick else "")
  common.save(name, payload)                     # the timings are kept if what follows fails
  exact_memory = _compile(exact(n_max), params, x, s)["memory"]      # compiled, never run
  payload["memory_scaling"] = memory_scaling(
      width, sizes, b, args.sigma, ks[0], ov, shape,
      progs[f"top_{ks[0]}_q0"]["memory"] if 0 in qs else None, exact_memory, n_max)
  path = common.save(name, payload)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
