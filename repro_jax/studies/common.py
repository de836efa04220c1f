"""Shared plumbing of the studies: config loading, fingerprints, progress, reports."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import pathlib
import time

from absl import logging
import ml_collections

from repro_jax import io

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


def load_config(path, variant: str = "cpu") -> ml_collections.ConfigDict:
  """Call `get_config(variant)` of a config file (as `config_flags` does)."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"config file {path} does not exist.")
  spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)


def config_to_dict(config) -> dict:
  return json.loads(config.to_json()) if hasattr(config, "to_json") else dict(config)


def _module_file(name: str) -> pathlib.Path | None:
  """`repro_jax.a.b` → its source file (module or package `__init__`)."""
  rel = pathlib.Path(*name.split(".")[1:])
  for cand in (PACKAGE_DIR / rel.with_suffix(".py"), PACKAGE_DIR / rel / "__init__.py"):
    if cand.exists():
      return cand
  return None


def _imports(path: pathlib.Path) -> set[str]:
  """`repro_jax` modules a source file imports (absolute imports only)."""
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names if a.name.startswith("repro_jax")}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("repro_jax"):
      names.add(node.module)
      names |= {f"{node.module}.{a.name}" for a in node.names}   # `from pkg import module`
  return names


def source_files(study: str) -> list[pathlib.Path]:
  """The study's module and every `repro_jax` file it imports, transitively
  (the registry `studies/__init__.py` excepted)."""
  seen: dict[pathlib.Path, None] = {}
  todo = [f"repro_jax.studies.{study}", "repro_jax.studies.common"]
  while todo:
    name = todo.pop()
    parts = name.split(".")
    for k in range(2, len(parts) + 1):          # a module implies its packages
      f = _module_file(".".join(parts[:k]))
      if f is not None and f not in seen:
        seen[f] = None
        todo.extend(_imports(f))
  # The registry lists the studies; adding one changes no study's results.
  return sorted(f for f in seen if f != PACKAGE_DIR / "studies" / "__init__.py")


def code_fingerprint(study: str) -> str:
  """Hash of the sources the study runs: its module and its `repro_jax` imports."""
  h = hashlib.sha256()
  for f in source_files(study):
    h.update(str(f.relative_to(PACKAGE_DIR)).encode())
    h.update(f.read_bytes())
  return h.hexdigest()[:16]


def fingerprint(study: str, config) -> str:
  h = hashlib.sha256()
  h.update(code_fingerprint(study).encode())
  h.update(json.dumps(config_to_dict(config), sort_keys=True).encode())
  return h.hexdigest()[:16]


def is_up_to_date(workdir, study: str, config) -> bool:
  manifest = pathlib.Path(workdir) / "manifest.json"
  if not manifest.exists() or not (pathlib.Path(workdir) / "report.md").exists():
    return False
  try:
    return io.load_json(manifest).get("fingerprint") == fingerprint(study, config)
  except (OSError, ValueError):
    return False


def write_manifest(workdir, study: str, config, seconds: float) -> None:
  io.save_json(pathlib.Path(workdir) / "manifest.json", {
      "study": study,
      "fingerprint": fingerprint(study, config),
      "seconds": round(seconds, 1),
      "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
  })


def start(workdir, config) -> pathlib.Path:
  """Create the workdir and record the config the run uses."""
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  io.save_json(workdir / "config.json", config_to_dict(config))
  return workdir


class Progress:
  """Log `name: i/n (elapsed, ETA)` lines for a loop of known length."""

  def __init__(self, name: str, total: int):
    self.name, self.total, self.t0, self.done = name, max(int(total), 1), time.time(), 0

  def step(self, what: str = "") -> None:
    self.done += 1
    el = time.time() - self.t0
    eta = el / self.done * (self.total - self.done)
    logging.info("%s: %d/%d %s(%.0fs elapsed, ETA %.0fs)", self.name, self.done,
                 self.total, f"{what} " if what else "", el, eta)


def verdict(ok: bool, yes: str = "reproduced", no: str = "differs") -> str:
  return f"**{yes}**" if ok else f"**{no}**"
