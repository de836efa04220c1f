"""`python -m experiments.train`: config files and overrides, outputs, resume,
a rerun of a finished run, Ctrl-C, bad configs failing with a clear message
before any training, and divergence.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from repro_jax.networks import training
from repro_jax import settings as settings_lib

_ROOT = pathlib.Path(__file__).resolve().parents[1]
_CONFIG = _ROOT / "configs" / "train.py"


def _run(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=_ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


_FAST = ("--config.model.name=mlp", "--config.model.hidden=32", "--config.model.depth=1",
         "--config.model.emb_dim=16", "--config.data.num_train=24")


def test_train_writes_outputs_and_resumes(tmp_path):
  wd = tmp_path / "run"
  r = _run(f"--config={_CONFIG}:smoke", f"--workdir={wd}", *_FAST,
           "--config.train.num_steps=10")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "loss" in r.stderr and "ETA" in r.stderr
  cfg = json.loads((wd / "config.json").read_text())
  assert cfg["model"]["name"] == "mlp" and cfg["data"]["num_train"] == 24
  assert np.load(wd / "data_indices.npy").shape == (24,)
  assert sorted(os.listdir(wd / "checkpoints")) == ["10"]
  r = _run(f"--config={_CONFIG}:smoke", f"--workdir={wd}", *_FAST, "--config.seed=1",
           "--config.train.num_steps=10")
  assert r.returncode != 0 and "another config (seed: 0 → 1)" in r.stderr, r.stderr[-3000:]
  r = _run(f"--config={_CONFIG}:smoke", f"--workdir={wd}", *_FAST,
           "--config.train.num_steps=20", "--allow_config_change")
  assert r.returncode == 0, r.stderr[-3000:]
  assert "Resumed from step 10" in r.stderr
  assert json.loads((wd / "config.json").read_text())["train"]["num_steps"] == 10
  assert "train.num_steps" in (wd / "config_changes.jsonl").read_text()
  steps = [json.loads(l)["step"] for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert steps == [10, 20]
  # The same command again: nothing left to train, and it says so.
  r = _run(f"--config={_CONFIG}:smoke", f"--workdir={wd}", *_FAST,
           "--config.train.num_steps=20", "--allow_config_change")
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"Already trained to step 20 in {wd}" in r.stderr and "Training mlp" not in r.stderr
  assert r.stdout.strip() == (f"already trained to step 20: {wd}/ (checkpoints, "
                              "metrics.jsonl, config.json)")
  assert len((wd / "metrics.jsonl").read_text().splitlines()) == 2
  denoise = training.load_denoiser(str(wd))
  meta = denoise.info
  assert meta["step"] == 20 and meta["config"].model.hidden == 32
  # experiments/sample.py --checkpoint samples the same network as the library.
  z = np.random.default_rng(0).normal(size=(4,) + meta["data_shape"]).astype(np.float32)
  np.save(tmp_path / "z.npy", z)
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  r = subprocess.run([sys.executable, "-m", "experiments.sample", f"--checkpoint={wd}",
                      f"--noise={tmp_path / 'z.npy'}", "--sampler=heun", "--steps=6",
                      f"--out={tmp_path / 's.npz'}"], cwd=_ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  from repro_jax import samplers
  ref = samplers.sample_with(denoise, z[:1], z, sampler="heun", steps=6).samples
  got = np.load(tmp_path / "s.npz")["samples"]
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
  assert np.abs(got).max() > 0
  r = subprocess.run([sys.executable, "-m", "experiments.sample", f"--checkpoint={tmp_path}",
                      f"--out={tmp_path / 'x.npz'}"], cwd=_ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "no checkpoints" in r.stderr


def test_ctrl_c_saves_the_step_and_exits_130(tmp_path):
  """SIGINT once the loop runs: the chunk in flight ends, its step is saved (off the
  checkpoint schedule), and one line says where, without a traceback."""
  wd = tmp_path / "run"
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  p = subprocess.Popen(
      [sys.executable, "-m", "experiments.train", f"--config={_CONFIG}:smoke",
       f"--workdir={wd}", *_FAST, "--config.train.num_steps=1000000",
       "--config.train.checkpoint_every=100000"],
      cwd=_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    seen = []
    for line in p.stderr:   # wait until the step loop runs
      seen.append(line)
      if "step 10/1000000" in line:
        break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
  finally:
    p.kill()
  err = "".join(seen) + err
  assert p.returncode == 130 and "Traceback" not in err, err[-3000:]
  last = err.strip().splitlines()[-1]
  match = re.fullmatch(rf"experiments\.train: interrupted at step (\d+); checkpoint saved in "
                       rf"{re.escape(str(wd))} \(rerun the same command to resume\)", last)
  assert match, last
  step = match.group(1)
  assert os.listdir(wd / "checkpoints") == [step] and out == ""
  steps = [json.loads(l)["step"] for l in (wd / "metrics.jsonl").read_text().splitlines()]
  assert steps[-1] == int(step) and steps == list(range(10, int(step) + 1, 10))


def _sample(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")
  return subprocess.run([sys.executable, "-m", "experiments.sample", *args], cwd=_ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


def test_sample_reports_a_damaged_checkpoint(tmp_path):
  """A truncated latest step: sampling names it and uses the previous one; with
  every step damaged it stops with one line."""
  cfg = settings_lib.parse(training.TrainSettings, {
      "data": {"num_train": 24}, "model": {"name": "mlp", "hidden": 32, "depth": 1, "emb_dim": 16},
      "train": {"batch_size": 16, "num_steps": 20, "log_every": 10, "checkpoint_every": 10,
                "num_devices": 1}})
  wd = tmp_path / "run"
  training.train(cfg, str(wd))

  def truncate(step):
    files = [p for p in (wd / "checkpoints" / str(step) / "state").rglob("*") if p.is_file()]
    big = max(files, key=lambda p: p.stat().st_size)
    big.write_bytes(big.read_bytes()[:100])

  truncate(20)
  r = _sample(f"--checkpoint={wd}", "--num_samples=2", "--steps=3", f"--out={tmp_path / 'a.npz'}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "checkpoint step 20" in r.stderr and "damaged" in r.stderr
  assert json.loads(str(np.load(tmp_path / "a.npz")["meta"]))["checkpoint_step"] == 10
  truncate(10)
  r = _sample(f"--checkpoint={wd}", "--num_samples=2", "--steps=3", f"--out={tmp_path / 'b.npz'}")
  assert r.returncode != 0 and "Traceback" not in r.stderr
  assert "no intact checkpoint" in r.stderr.strip().splitlines()[-1]
  assert not (tmp_path / "b.npz").exists()


@pytest.mark.parametrize("args, message", [
    (("--config.data.name=cifar10",), "needs config.data.path"),
    (("--config.model.width=10",), "do not divide"),
])
def test_bad_config_fails_with_clear_message(tmp_path, args, message):
  r = _run(f"--config={_CONFIG}:smoke", f"--workdir={tmp_path / 'w'}", *args)
  assert r.returncode != 0
  assert message in r.stderr, r.stderr[-2000:]
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("case", ["learning_rate=nan", "learning_rate=inf", "nan_data"])
def test_non_finite_rate_or_data_stop_before_training(tmp_path, case):
  if case == "nan_data":
    x = np.zeros((16, 8, 8, 1), np.float32)
    x[5, 0, 0, 0] = np.inf
    np.save(tmp_path / "x.npy", x)
    args, message = ("--config.data.name=array", f"--config.data.path={tmp_path / 'x.npy'}",
                     "--config.data.num_train=-1"), "NaN or inf values in 1 row(s) (first: row 5)"
  else:
    args, message = (f"--config.optim.{case}",), "config.optim.learning_rate must be a finite"
  r = _run(f"--config={_CONFIG}:smoke", f"--workdir={tmp_path / 'w'}", *_FAST[:-1], *args)
  assert r.returncode != 0
  assert message in r.stderr, r.stderr[-2000:]
  assert not (tmp_path / "w").exists()


def test_diverging_run_stops_with_the_step(tmp_path):
  r = _run(f"--config={_CONFIG}:smoke", f"--workdir={tmp_path / 'w'}", *_FAST,
           "--config.optim.learning_rate=1e30", "--config.optim.warmup_steps=0")
  assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert "training diverged: non-finite loss" in r.stderr.strip().splitlines()[-1]
  assert re.search(r"at step \d+;", r.stderr) and os.listdir(tmp_path / "w" / "checkpoints") == []


def test_config_variants():
  for variant in ("smoke", "cpu", "molrg"):
    training.check_config(training.variant(variant))
  paper = training.variant("paper")
  assert paper.model.width == 128 and paper.data.name == "cifar10"
  with pytest.raises(ValueError, match="needs config.data.path"):
    training.check_config(paper)
  training.check_config(settings_lib.override(paper, {"data": {"path": "/data/c10"}}))
  with pytest.raises(TypeError, match="TrainSettings"):
    training.check_config(settings_lib.to_config(paper))
  with pytest.raises(ValueError, match="unknown field"):
    settings_lib.override(paper, {"model": {"widht": 3}})
