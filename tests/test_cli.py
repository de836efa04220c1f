"""Entry points as a user meets them: one-line errors before any work, --help, --print_config."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(module, *args, cwd=ROOT):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module, args, message", [
    ("experiments.theory_checks", ["--config=configs/theory_checks.py:smoke", "--config.nope=3"],
     "--config.nope: no such config field"),
    ("experiments.theory_checks", ["--config=configs/theory_checks.py:bogus"],
     "unknown variant 'bogus'; choose one of cpu, smoke, paper"),
    ("experiments.theory_checks", ["--config=configs/theory_checks.py:smoke",
                                   "--config.molrg_ranks=abc"], "must be an integer"),
    ("experiments.theory_checks", ["--config=configs/theory_checks.py:smoke",
                                   "--workdir=/proc/nowhere/tc"], "is not a writable directory"),
    ("experiments.train", ["--config=configs/train.py:smoke", "--config.model.nope=1"],
     "--config.model.nope: no such config field"),
    ("experiments.train", ["--config=configs/train.py:huge"], "unknown training variant"),
    ("experiments.sample", ["--data=x.npy", "--out=/proc/nowhere/s.npz"],
     "is not a writable directory"),
    ("experiments.reproduce", ["--only="], "--only: names no study"),
    ("experiments.reproduce", ["--only=,,"], "--only: names no study"),
    ("experiments.reproduce", ["--only=nope"], "unknown study name"),
    ("experiments.reproduce", ["--variant=huge"], "--variant"),
    ("experiments.reproduce", ["--results_dir=/proc/nowhere"], "is not a writable directory"),
])
def test_bad_input_is_one_line(module, args, message, tmp_path):
  if module == "experiments.train":
    args = [*args, f"--workdir={tmp_path / 'w'}"]
  r = _run(module, *args)
  assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
  lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
  assert lines and message in lines[-1], r.stderr[-2000:]
  assert "Traceback" not in r.stderr and len(lines) <= 2, r.stderr[-2000:]
  assert not (tmp_path / "w").exists()


def test_help_exits_zero_and_print_config_lists_fields():
  r = _run("experiments.theory_checks", "--help")
  assert r.returncode == 0 and "--helpfull" in r.stdout
  r = _run("experiments.theory_checks", "--config=configs/theory_checks.py:smoke",
           "--config.seed=3", "--print_config")
  assert r.returncode == 0
  assert "seed: 3" in r.stdout and "tol_identity" in r.stdout and "num_data: 300" in r.stdout
