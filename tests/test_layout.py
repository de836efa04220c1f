"""The package's shape: roles by folder, no configs read by the library, a working wheel."""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "repro_jax"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _package_of(path: pathlib.Path) -> str:
  rel = path.relative_to(ROOT).with_suffix("")
  parts = rel.parts[:-1] if rel.name != "__init__" else rel.parts[:-1]
  return ".".join(parts)


def test_every_package_says_what_belongs_there():
  for init in PACKAGE.rglob("__init__.py"):
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc) > 80, f"{init.relative_to(ROOT)} has no package docstring"


def test_library_reads_no_config_files():
  """Settings reach the library typed; only `repro_jax.settings` knows ml_collections."""
  for path in SOURCES:
    text = path.read_text()
    rel = path.relative_to(ROOT).as_posix()
    assert "spec_from_file_location" not in text, rel
    assert not re.search(r"""["']configs["']|["']configs/""", text), rel
    if rel != "repro_jax/settings.py":
      assert "ml_collections" not in text, rel


def test_private_modules_stay_in_their_package():
  for path in SOURCES:
    here = _package_of(path)
    for node in ast.walk(ast.parse(path.read_text())):
      names = []
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("repro_jax"):
        names = [f"{node.module}.{a.name}" for a in node.names]
      elif isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.startswith("repro_jax")]
      for name in names:
        parts = name.split(".")
        for i, part in enumerate(parts):
          if part.startswith("_") and not part.startswith("__"):
            prefix = parts[:i]        # the package that holds the private module or name
            while not (ROOT.joinpath(*prefix)).is_dir():
              prefix = prefix[:-1]
            owner = ".".join(prefix)
            assert here == owner or here.startswith(owner + "."), (
                f"{path.relative_to(ROOT)} imports private {name}")


@pytest.mark.skipif(os.environ.get("REPRO_JAX_SKIP_INSTALL_TEST") == "1",
                    reason="REPRO_JAX_SKIP_INSTALL_TEST=1")
def test_non_editable_install_runs_a_smoke_study(tmp_path):
  """`pip install .` (no -e) into a separate directory; from outside the repository a
  smoke study runs through the library (which reads no config file) and the entry
  points find their configs in the installed `configs` package."""
  site = tmp_path / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                  "--target", str(site), str(ROOT)], check=True, capture_output=True)
  assert {p.name for p in (site / "configs").glob("*.py")} == {
      p.name for p in (ROOT / "configs").glob("*.py")}
  assert (site / "experiments" / "sample.py").exists()
  work = tmp_path / "elsewhere"
  work.mkdir()
  code = ("import sys, repro_jax\n"
          "assert repro_jax.__file__.startswith(sys.argv[1]), repro_jax.__file__\n"
          "from repro_jax.studies import runner\n"
          "print(runner.run_studies(['theory_checks'], variant='smoke', results_dir='out'))\n")
  env = dict(os.environ, PYTHONPATH=str(site))
  r = subprocess.run([sys.executable, "-c", code, str(site)], cwd=work, env=env,
                     capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "'theory_checks': 'ran'" in r.stdout
  assert (work / "out" / "theory_checks" / "metrics.json").stat().st_size > 0
  assert (work / "out" / "README.md").exists()
  for args in (["--print_config"], ["--config=configs/theory_checks.py:smoke", "--print_config"]):
    r = subprocess.run([sys.executable, "-m", "experiments.theory_checks", *args], cwd=work,
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0 and "tol_identity" in r.stdout, r.stderr[-3000:]
  r = subprocess.run([sys.executable, "-c", "import experiments._cli as c; print(c.CONFIGS_DIR)"],
                     cwd=work, env=env, capture_output=True, text=True)
  assert r.stdout.strip() == str((site / "configs").resolve()), r.stderr[-3000:]


@pytest.mark.parametrize("module", sorted(
    f"{d}.{p.stem}" for d in ("benchmarks", "experiments")
    for p in (ROOT / d).glob("*.py") if p.stem != "__init__"))
def test_benchmarks_and_entry_points_import(module, monkeypatch):
  """Every benchmark and entry point still imports against the library's API."""
  import importlib
  monkeypatch.syspath_prepend(str(ROOT))
  importlib.import_module(module)
