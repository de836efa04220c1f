"""The main-job plumbing and the theory-check study at smoke size."""

import json
import pathlib

import pytest

from repro_jax import io
from repro_jax.studies import STUDIES
from repro_jax.studies import common
from repro_jax.studies import runner

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_study_has_config_and_entrypoint():
  for name, (module, config) in STUDIES.items():
    assert (ROOT / config).exists(), config
    assert (ROOT / "experiments" / f"{name}.py").exists(), name
    assert (ROOT / "repro_jax" / "studies" / f"{module}.py").exists(), module
    for variant in ("cpu", "smoke", "paper"):
      common.load_config(ROOT / config, variant)
    with pytest.raises(ValueError, match="variant"):
      common.load_config(ROOT / config, "bogus")


def test_select():
  assert runner.select(None) == list(STUDIES)
  assert runner.select(" theory_checks ") == ["theory_checks"]
  with pytest.raises(ValueError, match="unknown study"):
    runner.select("theory_checks,nope")


def test_theory_checks_smoke_and_skip(tmp_path, monkeypatch):
  monkeypatch.chdir(ROOT)
  status = runner.run_studies(["theory_checks"], variant="smoke", results_dir=tmp_path)
  assert status == {"theory_checks": "ran"}
  metrics = json.loads((tmp_path / "theory_checks" / "metrics.json").read_text())
  assert metrics["all_passed"], [r for r in metrics["checks"] if not r["passed"]]
  worst = {r["check"]: r["worst"] for r in metrics["checks"]}
  assert worst["½∇dist² = x − D* (float64, rel.)"] < 1e-10
  assert worst["empirical D* vs NumPy float64 (rel.)"] < 1e-10
  for f in ("identities.png", "checks.csv", "report.md", "config.json", "manifest.json"):
    assert (tmp_path / "theory_checks" / f).stat().st_size > 0
  page = (tmp_path / "README.md").read_text()
  assert "](theory_checks/identities.png)" in page
  # Unchanged code and config: skipped; a changed config reruns.
  assert runner.run_studies(["theory_checks"], variant="smoke",
                            results_dir=tmp_path) == {"theory_checks": "skipped"}
  cfg = common.load_config(ROOT / STUDIES["theory_checks"][1], "smoke")
  assert common.is_up_to_date(tmp_path / "theory_checks", "theory_checks", cfg)
  cfg.seed = 1
  assert not common.is_up_to_date(tmp_path / "theory_checks", "theory_checks", cfg)


def test_results_page_lists_missing(tmp_path):
  (tmp_path / "theory_checks").mkdir()
  io.write_text(tmp_path / "theory_checks" / "report.md", "## T\n![a](a.png) [web](https://x.y)\n")
  page = runner.build_results_page(tmp_path).read_text()
  assert "![a](theory_checks/a.png)" in page and "(https://x.y)" in page
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
  assert {"studies/theory_checks.py", "denoisers.py", "_streaming.py", "geometry.py"} <= files
  assert "samplers/api.py" not in files and "studies/__init__.py" not in files
