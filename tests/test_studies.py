"""The main-job plumbing and the theory-check study at smoke size."""

import dataclasses
import json
import pathlib
import re

import numpy as np
import pytest

from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax.studies import STUDIES
from repro_jax.studies import common
from repro_jax.studies import runner
from repro_jax.studies import verdicts

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_has_settings_config_and_entrypoint(name):
  assert (ROOT / "configs" / f"{name}.py").exists(), name
  assert (ROOT / "experiments" / f"{name}.py").exists(), name
  module = runner.study_module(name)
  for attr in ("Settings", "VARIANTS", "settings", "measure", "verdicts", "render"):
    assert hasattr(module, attr), (name, attr)
  assert "cpu" in module.VARIANTS and "smoke" in module.VARIANTS
  for variant in module.VARIANTS:
    s = runner.study_settings(name, variant)
    assert dataclasses.is_dataclass(s) and s.__dataclass_params__.frozen
    # The typed settings survive their JSON record and the ConfigDict of configs/.
    assert settings_lib.parse(module.Settings, json.loads(settings_lib.to_json(s))) == s
    assert settings_lib.parse(module.Settings, settings_lib.to_config(s)) == s
  with pytest.raises(ValueError, match="variant"):
    runner.study_settings(name, "bogus")


def test_only_process_zero_writes_results(tmp_path, monkeypatch):
  # Multi-host: the other processes compute the same study into a scratch
  # directory that is removed, and never touch the results directory.
  monkeypatch.setattr(runner.jax, "process_index", lambda: 1)
  monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path / "scratch"))
  (tmp_path / "scratch").mkdir()
  metrics = runner.run_study("theory_checks", runner.study_settings("theory_checks", "smoke"),
                             tmp_path / "results" / "theory_checks", variant="smoke")
  assert metrics["verdicts"] and not (tmp_path / "results").exists()
  assert not list((tmp_path / "scratch").iterdir())


def _fake_run_study(calls, stop_at=None):
  def run_study(name, settings, workdir, **kwargs):
    calls.append(name)
    if name == stop_at:
      raise KeyboardInterrupt
    return {"verdicts": []}
  return run_study


def test_processes_follow_process_zero_on_what_is_up_to_date(tmp_path, monkeypatch):
  # Multi-host: this process finds the study up to date, process 0 does not;
  # all must run it (a process that skipped it would leave the others waiting
  # in its collectives).
  calls, sent = [], []
  monkeypatch.setattr(runner.common, "is_up_to_date", lambda *a: True)
  monkeypatch.setattr(runner, "run_study", _fake_run_study(calls))
  assert runner.run_studies(["theory_checks"], variant="smoke",
                            results_dir=tmp_path) == {"theory_checks": "skipped"}
  monkeypatch.setattr(runner.jax, "process_count", lambda: 2)
  monkeypatch.setattr("jax.experimental.multihost_utils.broadcast_one_to_all",
                      lambda x: sent.append(bool(x)) or np.asarray(False))
  assert runner.run_studies(["theory_checks"], variant="smoke",
                            results_dir=tmp_path) == {"theory_checks": "ran"}
  assert calls == ["theory_checks"] and sent == [True]


def test_a_stopped_job_prints_what_finished(tmp_path, monkeypatch, capsys):
  calls = []
  monkeypatch.setattr(runner, "run_study", _fake_run_study(calls, stop_at="pca_equivalence"))
  with pytest.raises(KeyboardInterrupt):
    runner.run_studies(["theory_checks", "pca_equivalence", "subspace_clustering"],
                       variant="smoke", results_dir=tmp_path)
  assert calls == ["theory_checks", "pca_equivalence"]
  out = capsys.readouterr().out
  assert re.search(r"\ntheory_checks +ran ", out) and re.search(r"\npca_equivalence +stopped ", out)
  assert "subspace_clustering  " not in out and "report: not rebuilt" in out
  assert not (tmp_path / "README.md").exists()


def test_last_run_reads_the_manifest(tmp_path):
  wd = tmp_path / "theory_checks"
  assert common.last_run(wd) == (None, {})
  io.write_text(wd / "manifest.json", '{"seconds": 4')
  assert common.last_run(wd) == (None, {})
  io.save_json(wd / "manifest.json", {"seconds": 41.0, "environment": {"cpu": "X"}})
  assert common.last_run(wd) == (41.0, {"cpu": "X"})
  line = [l for l in runner.listing("smoke", tmp_path).splitlines()
          if l.startswith("theory_checks ")]
  assert line[0].endswith(" 41s")


def test_select():
  assert runner.select(None) == list(STUDIES)
  assert runner.select(" theory_checks ") == ["theory_checks"]
  with pytest.raises(ValueError, match="unknown study"):
    runner.select("theory_checks,nope")


def test_theory_checks_smoke_and_skip(tmp_path):
  status = runner.run_studies(["theory_checks"], variant="smoke", results_dir=tmp_path)
  assert status == {"theory_checks": "ran"}
  study_dir = tmp_path / "theory_checks"
  metrics = json.loads((study_dir / "metrics.json").read_text())
  assert metrics["all_passed"], [r for r in metrics["checks"] if not r["passed"]]
  worst = {r["check"]: r["worst"] for r in metrics["checks"]}
  assert worst["½∇dist² = x − D* (float64, rel.)"] < 1e-10
  assert worst["empirical D* vs NumPy float64 (rel.)"] < 1e-10
  # Verdicts are data, one per check, in the schema.
  vs = verdicts.from_dicts(metrics["verdicts"])
  assert len(vs) == len(metrics["checks"]) and {v.verdict for v in vs} == {"reproduced"}
  for f in ("identities.png", "checks.csv", "report.md", "config.json", "manifest.json"):
    assert (study_dir / f).stat().st_size > 0
  manifest = json.loads((study_dir / "manifest.json").read_text())
  assert manifest["variant"] == "smoke" and manifest["environment"]["jax"]
  assert not list(tmp_path.glob(".theory_checks.*"))          # no partial directory left
  page = (tmp_path / "README.md").read_text()
  assert "](theory_checks/identities.png)" in page
  assert page.count("| [`theory_checks`](#theory_checks) |") == len(vs)
  # Unchanged code and settings: skipped; changed settings rerun.
  assert runner.run_studies(["theory_checks"], variant="smoke",
                            results_dir=tmp_path) == {"theory_checks": "skipped"}
  s = runner.study_settings("theory_checks", "smoke")
  assert common.is_up_to_date(study_dir, "theory_checks", s)
  assert not common.is_up_to_date(study_dir, "theory_checks",
                                  settings_lib.override(s, {"seed": 1}))


def test_killed_run_is_cleaned_and_never_mixed(tmp_path, monkeypatch):
  """A run that dies leaves the previous results intact; the next run cleans up."""
  s = runner.study_settings("theory_checks", "smoke")
  runner.run_study("theory_checks", s, tmp_path / "theory_checks")
  before = (tmp_path / "theory_checks" / "metrics.json").read_bytes()
  io.write_text(tmp_path / "theory_checks" / ".stray.json.tmp", "half")
  module = runner.study_module("theory_checks")

  def boom(*args):
    raise RuntimeError("killed")
  monkeypatch.setattr(module, "render", boom)
  with pytest.raises(RuntimeError):
    runner.run_study("theory_checks", settings_lib.override(s, {"seed": 3}),
                     tmp_path / "theory_checks")
  assert (tmp_path / "theory_checks" / "metrics.json").read_bytes() == before
  assert (tmp_path / ".theory_checks.partial").exists()
  monkeypatch.undo()
  runner.run_study("theory_checks", s, tmp_path / "theory_checks")
  assert not (tmp_path / ".theory_checks.partial").exists()
  assert not list((tmp_path / "theory_checks").glob(".*.tmp"))


def test_verdict_schema():
  v = verdicts.judge(False, claim="c", criterion="x ≥ 1", measured={"x": 0.5, "ci": (0.4, 0.6)},
                     source="s", partly=True)
  assert v.to_dict() == {"claim": "c", "verdict": "partly", "criterion": "x ≥ 1",
                         "measured": {"x": 0.5, "ci": [0.4, 0.6]}, "source": "s"}
  with pytest.raises(ValueError, match="verdict must be"):
    verdicts.Verdict(claim="c", verdict="differs", criterion="k", measured={}, source="s")
  assert "| c | **partly** | x ≥ 1 | x = 0.5; ci = [0.4, 0.6] |" in verdicts.table([v])


def test_results_page_lists_missing(tmp_path):
  (tmp_path / "theory_checks").mkdir()
  io.write_text(tmp_path / "theory_checks" / "report.md", "## T\n![a](a.png) [web](https://x.y)\n")
  io.save_json(tmp_path / "theory_checks" / "metrics.json", {"verdicts": [
      dict(claim="c", verdict="reproduced", criterion="k", measured={}, source="s")]})
  page = runner.build_results_page(tmp_path).read_text()
  assert "![a](theory_checks/a.png)" in page and "(https://x.y)" in page
  assert "| c | **reproduced** | k |" in page
  for name in STUDIES:
    if name != "theory_checks":
      assert f"`{name}`" in page


def test_atomic_writers(tmp_path):
  io.save_json(tmp_path / "a" / "m.json", {"x": 1.5, "nan": float("nan")})
  assert json.loads((tmp_path / "a" / "m.json").read_text())["x"] == 1.5
  io.save_csv(tmp_path / "t.csv", [dict(a=1, b=2.5)])
  assert (tmp_path / "t.csv").read_text().splitlines() == ["a,b", "1,2.5"]
  assert not list(tmp_path.rglob("*.tmp"))
  # Same mode as a file made by open() under the current umask, not mkstemp's 0600.
  (tmp_path / "plain.txt").write_text("x")
  want = (tmp_path / "plain.txt").stat().st_mode & 0o777
  assert (tmp_path / "t.csv").stat().st_mode & 0o777 == want


def test_fingerprint_follows_imports():
  files = {f.relative_to(common.PACKAGE_DIR).as_posix()
           for f in common.source_files("theory_checks")}
  assert {"studies/theory_checks.py", "closed_form/denoisers.py", "closed_form/streaming.py",
          "closed_form/geometry.py", "settings.py"} <= files
  assert "samplers/api.py" not in files and "studies/__init__.py" not in files


def test_variants_never_mix_and_smoke_stays_out_of_results(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert runner.default_results_dir("cpu") == pathlib.Path("results")
  assert runner.default_results_dir("smoke") == pathlib.Path("workdirs/results-smoke")
  runner.run_studies(["theory_checks"], variant="smoke")
  assert (tmp_path / "workdirs/results-smoke/theory_checks/metrics.json").exists()
  assert not (tmp_path / "results").exists()
  out = capsys.readouterr().out
  assert "theory_checks" in out and "no reference" in out and "total" in out
  page = (tmp_path / "workdirs/results-smoke/README.md").read_text()
  assert "Variant: **smoke**" in page
  with pytest.raises(ValueError, match="holds a 'smoke' run"):
    runner.run_studies(["theory_checks"], variant="paper",
                       results_dir="workdirs/results-smoke")
  # A forced rerun is compared with the run it replaces.
  runner.run_studies(["theory_checks"], variant="smoke", force=True)
  assert "matches (key numbers within" in capsys.readouterr().out
  assert "up to date" in runner.listing("smoke")


def test_reference_comparison():
  from repro_jax.studies import reference
  v = dict(claim="c", verdict="reproduced", criterion="k", source="s", measured={"rp": 0.9})
  ref = {"verdicts": [v], "seconds": 3.0, "x": [1.0, 2.0]}
  same = {"verdicts": [dict(v, measured={"rp": 0.91})], "seconds": 9.0, "x": [1.0, 2.2]}
  c = reference.compare(ref, same)
  assert c.matches and c.max_key_diff == pytest.approx(0.01 / 0.91)
  assert c.max_diff == pytest.approx(0.2 / 2.2) and c.where == "verdicts[0].rp"
  flipped = {"verdicts": [dict(v, verdict="not reproduced")], "x": [1.0, 2.0]}
  assert not reference.compare(ref, flipped).matches
  far = {"verdicts": [dict(v, measured={"rp": 0.5})], "x": [1.0, 2.0]}
  assert reference.compare(ref, far).text().startswith("key numbers differ")
  assert reference.compare(None, ref).text() == "no reference"
  # A key number that turns NaN (written "nan" in metrics.json) or goes missing
  # is a difference, not a match; NaN on both sides is the same number.
  for measured in ({"rp": "nan"}, {"rp": float("nan")}, {}, {"rp": 0.9, "gl": 1.0}):
    other = {"verdicts": [dict(v, measured=measured)], "x": [1.0, 2.0]}
    assert not reference.compare(ref, other).key_numbers_match, measured
  nan_ref = {"verdicts": [dict(v, measured={"rp": "nan"})]}
  assert reference.compare(nan_ref, {"verdicts": [dict(v, measured={"rp": float("nan")})]}).matches
