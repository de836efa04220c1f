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
    ("experiments.theory_checks", ["--config=configs/nope.py:smoke"], "no such config file"),
    ("experiments.train", ["--config", "nope/train.py:smoke"], "no such config file"),
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


def test_entry_points_run_from_any_directory(tmp_path):
  """Outside the repository the default configs and `configs/<name>.py` paths are
  the bundled files; a `configs/<name>.py` of the working directory comes first."""
  r = _run("experiments.theory_checks", "--print_config", cwd=tmp_path)
  assert r.returncode == 0 and "tol_identity" in r.stdout, r.stderr[-2000:]
  in_repo = _run("experiments.theory_checks", "--config=configs/theory_checks.py:cpu",
                 "--print_config")
  assert r.stdout == in_repo.stdout
  r = _run("experiments.theory_checks", "--config=configs/theory_checks.py:smoke",
           "--config.seed=3", "--print_config", cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "seed: 3" in r.stdout and "num_data: 300" in r.stdout
  r = _run("experiments.train", "--config", "configs/train.py:smoke", "--workdir=w",
           "--print_config", cwd=tmp_path)
  assert r.returncode == 0 and "model:" in r.stdout, r.stderr[-2000:]
  r = _run("experiments.sample", "--help", cwd=tmp_path)
  assert r.returncode == 0 and "--checkpoint" in r.stdout, r.stderr[-2000:]
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "theory_checks.py").write_text(
      "import ml_collections\n"
      "def get_config(variant='cpu'):\n"
      "  return ml_collections.ConfigDict({'mine': variant})\n")
  r = _run("experiments.theory_checks", "--config=configs/theory_checks.py:here",
           "--print_config", cwd=tmp_path)
  assert r.returncode == 0 and "mine: here" in r.stdout, r.stderr[-2000:]
  assert not (tmp_path / "w").exists() and not (tmp_path / "results").exists()


def _run_patched(patch, argv, cwd=ROOT):
  """An entry point (`argv[0]` names it) run with the library call replaced by
  `patch` (Python source run first), as a user would meet it."""
  name = argv[0]
  main = (f"_cli.main_for({name!r})" if name != "reproduce" else
          "from experiments import reproduce; _cli.run(reproduce.main)")
  code = "\n".join(["import sys", "from repro_jax.networks import training",
                    "from repro_jax.studies import runner", patch,
                    f"sys.argv = {list(argv)!r}", "from experiments import _cli", main])
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("error, where", [
    ("training.Interrupted(30, 20)", "interrupted at training step 30 (last checkpoint: step 20)"),
    ("KeyboardInterrupt()", "interrupted"),
])
def test_ctrl_c_in_the_main_job_is_one_line_and_130(tmp_path, error, where):
  patch = (f"def run_studies(*args, **kwargs):\n  raise {error}\n"
           "runner.run_studies = run_studies")
  r = _run_patched(patch, ["reproduce", "--only=theory_checks",
                           f"--results_dir={tmp_path}"])
  assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert r.stderr.strip().splitlines()[-1] == (
      f"experiments.reproduce: {where}; the studies that finished are in {tmp_path} "
      "(rerun the same command to go on)")


def test_a_study_entry_point_writes_where_the_main_job_would(tmp_path):
  """Without --workdir: results/<study> for the cpu variant, and never results/ for
  another (a smoke run must not replace the committed reference); Ctrl-C is one
  line and status 130, as in the main job."""
  patch = ("def run_study(name, settings, workdir, **kwargs):\n"
           "  if settings.seed == 7:\n    raise training.Interrupted(5, None)\n"
           "runner.run_study = run_study")
  r = _run_patched(patch, ["theory_checks", "--config=configs/theory_checks.py:smoke"],
                   cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  assert r.stdout.split()[1] == f"{tmp_path}/workdirs/results-smoke/theory_checks/"
  assert not (tmp_path / "results").exists()
  r = _run_patched(patch, ["theory_checks"], cwd=tmp_path)
  assert r.returncode == 0 and r.stdout.split()[1] == f"{tmp_path}/results/theory_checks/"
  r = _run_patched(patch, ["theory_checks", "--config=configs/theory_checks.py:smoke",
                           "--config.seed=7", "--workdir=w"], cwd=tmp_path)
  assert r.returncode == 130 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert r.stderr.strip().splitlines()[-1] == (
      "experiments.theory_checks: interrupted at training step 5 (no checkpoint saved); "
      f"{tmp_path}/w unchanged (rerun the same command to run it again)")


def test_errors_and_interruptions_name_the_same_command(monkeypatch, capsys):
  from experiments import _cli
  monkeypatch.setattr(sys, "argv", ["/somewhere/experiments/theory_checks.py", "--x"])
  assert _cli._command() == "experiments.theory_checks"
  for say, status in ((_cli.fail, 2), (_cli.interrupted, 130)):
    with pytest.raises(SystemExit) as e:
      say("m")
    assert e.value.code == status
    assert capsys.readouterr().err.startswith("experiments.theory_checks: ")
