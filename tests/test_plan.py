"""`--plan`: FLOPs against analytic counts, every study planned without training."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from repro_jax import settings as settings_lib
from repro_jax.networks import model_zoo
from repro_jax.networks import training
from repro_jax.studies import STUDIES
from repro_jax.studies import plan
from repro_jax.studies import runner

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _mlp(hidden=64, depth=2, batch=32):
  return settings_lib.override(training.variant("smoke"), dict(
      model=dict(name="mlp", hidden=hidden, depth=depth, emb_dim=16),
      train=dict(batch_size=batch)))


def test_program_flops_counts_every_scan_step():
  n, steps = 64, 7
  w = jax.ShapeDtypeStruct((n, n), jnp.float32)
  fn = lambda x, w: jax.lax.scan(lambda h, _: (jnp.tanh(h @ w), None), x, None,
                                  length=steps)[0]
  matmuls = steps * 2 * n ** 3
  once = plan.xla_flops(jax.jit(fn).lower(w, w))      # XLA alone: the body once
  assert once < 0.3 * matmuls
  assert matmuls <= plan.program_flops(fn, w, w) <= 1.1 * matmuls


def test_mlp_step_flops_match_forward_and_backward():
  """Dense layers: 2 FLOPs per parameter and row forward, twice that backward."""
  cfg, shape = _mlp(), (16,)
  params = training.make_trainer(cfg, shape).layout.size
  analytic = 6 * params * cfg.train.batch_size
  assert 0.5 * analytic <= plan.step_flops(cfg, shape) <= 1.5 * analytic


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_plans_without_training(name, tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("planning must not train")
  for module, fn in ((training, "train_many"), (training, "train"),
                     (model_zoo, "ensure_group")):
    monkeypatch.setattr(module, fn, refuse)
  monkeypatch.chdir(tmp_path)
  # The cpu variant, except where its low-rank grids take seconds to trace.
  variant = "smoke" if name in ("pca_equivalence", "subspace_clustering") else "cpu"
  items = plan.plan(name, runner.study_settings(name, variant), measure_steps=0)
  assert items and all(it.study == name and it.est_seconds is None for it in items)
  if name in plan.CLOSED_FORM:
    assert [it.num_models for it in items] == [0]
  else:
    # Trained programs, or closed-form kernels costed by their FLOPs (no batch).
    assert all(it.num_models > 0 and it.steps > 0 and (it.params > 0 or
                                                       not it.batch and it.flops > 0)
               for it in items)
    assert all(it.flops == it.num_models * it.steps * it.flops_per_step > 0 for it in items)
  assert not list(tmp_path.iterdir())                   # nothing written


def test_zoo_trained_once_and_times_extrapolated(monkeypatch):
  items = plan.plan_studies(["reproducibility_regimes", "reproducibility_across_samplers"],
                            "smoke", measure_steps=2, results_dir="/nonexistent")
  shared = [it for it in items if it.shared_with]
  assert len(shared) == 2 and {it.shared_with for it in shared} == {"reproducibility_regimes"}
  timed = [it for it in items if not it.shared_with]
  assert all(it.est_seconds > 0 and "timed one model" in it.notes for it in timed)
  text = plan.table(items, "smoke")
  assert text.splitlines()[-1].startswith("total") and "shared" in text


def test_a_target_rate_costs_flops_without_timing(tmp_path):
  """--plan_tflops: estimate = FLOPs / rate exactly, nothing timed, no CPU last-run times."""
  rate = 2e12
  names = ["theory_checks", "reproducibility_regimes"]
  (tmp_path / "theory_checks").mkdir()
  (tmp_path / "theory_checks" / "manifest.json").write_text('{"seconds": 5.0}')
  assert plan.plan_studies(names[:1], "smoke", results_dir=tmp_path)[0].est_seconds == 5.0
  items = plan.plan_studies(names, "smoke", rate=rate, results_dir=tmp_path)
  trained = [it for it in items if it.num_models]
  assert trained and all(it.est_seconds == it.flops / rate and "timed" not in it.notes
                         for it in trained)
  assert items[0].num_models == 0 and items[0].est_seconds is None
  assert "sustained 2 TFLOP/s" in plan.table(items, "smoke", rate=rate)


def test_too_large_networks_use_a_shrunk_version(monkeypatch):
  cfg, shape = _mlp(hidden=64), (16,)
  small_state = 16 * training.make_trainer(plan._shrunk(cfg), shape).layout.size
  monkeypatch.setattr(plan, "_state_limit", lambda: small_state + 64)
  plan.network_rate.cache_clear()
  rate, note = plan.network_rate(cfg, shape, 2)
  plan.network_rate.cache_clear()
  assert rate > 0 and "too large to run here" in note and "MLP h=32" in note


def test_lowrank_grid_is_timed():
  s = runner.study_settings("subspace_clustering", "smoke")
  item = plan.plan("subspace_clustering", s, measure_steps=1)[0]
  assert item.num_models == 2 * 4 * 2 and item.est_seconds > 0 and "timed" in item.notes


def test_plan_flag_exits_zero_without_the_data():
  """The paper variant reads CIFAR-10, but planning needs no --cifar10."""
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  r = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--variant=paper",
                      "--only=theory_checks,memorization_theory", "--plan"], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-2000:]
  lines = r.stdout.splitlines()
  assert "closed form, no training" in r.stdout and lines[-1].startswith("total")
  r = subprocess.run([sys.executable, "-m", "experiments.reproduce", "--plan_tflops=100"],
                     cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert r.returncode == 2 and "--plan_tflops needs --plan" in r.stderr


def test_dit_is_named_and_shrunk_with_heads_that_divide_its_width():
  cfg = settings_lib.override(training.variant("smoke"), dict(
      model=dict(name="dit", width=48, depth=2, patch_size=4, num_heads=16)))
  assert plan.architecture(cfg.model) == "DiT w=48 d=2 p=4"
  small = plan._shrunk(cfg)
  assert (small.model.width, small.model.num_heads, small.model.depth) == (24, 8, 2)
  assert training.make_trainer(small, (8, 8, 1)).layout.size > 0
