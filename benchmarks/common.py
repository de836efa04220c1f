"""Helpers shared by the benchmarks: timing and this machine's matmul rate."""

from __future__ import annotations

import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp

from repro_jax import io

RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"


def time_call(fn, *args, repeats: int = 5, warmup: int = 1) -> float:
  """Best wall time (s) of `fn(*args)` over `repeats`, after `warmup` calls."""
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    best = min(best, time.perf_counter() - t0)
  return best


def matmul_gflops(n: int = 4096, dtype=jnp.float32, repeats: int = 5) -> float:
  """Measured `jnp.dot` rate for two n×n matrices, GFLOP/s (2n³ flops)."""
  a = jnp.ones((n, n), dtype)
  b = jnp.ones((n, n), dtype)
  f = jax.jit(jnp.dot)
  return 2 * n**3 / time_call(f, a, b, repeats=repeats) / 1e9


def machine() -> dict:
  return dict(platform=platform.platform(), cpu_count=os.cpu_count(),
              backend=jax.default_backend(),
              devices=[str(d) for d in jax.devices()], jax=jax.__version__)


def save(name: str, payload: dict) -> pathlib.Path:
  path = RESULTS_DIR / f"{name}.json"
  io.save_json(path, payload)
  return path
