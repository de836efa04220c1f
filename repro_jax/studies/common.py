"""Shared plumbing of the studies: the study protocol, fingerprints, manifests, progress.

A study is a module under `repro_jax.studies` with

    Settings                      # frozen dataclass: every setting, criteria included
    VARIANTS                      # e.g. ("cpu", "smoke", "paper"); "cpu" is the default
    settings(variant) -> Settings
    measure(s, ctx) -> dict       # the numbers (JSON-able); raw artefacts go to ctx.workdir
    verdicts(s, metrics) -> list[Verdict]
    render(s, metrics, workdir)   # figures and report.md, from metrics.json's content

and optionally `data_fields(s) -> {dotted field: data set}` for local data paths
its settings hold outside a `DataSettings` (those are found by `data_fields`
below); the runner (`repro_jax.studies.runner.run_study`) owns the rest: the
settings record (`config.json`), the mesh, the progress lines, `metrics.json`
with its `verdicts`, the manifest, and the atomic replacement of the study's
directory.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import pathlib
import platform
import time
from typing import NamedTuple
import dataclasses

from absl import logging
import jax

from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax.data.settings import DataSettings

PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


# Data sets read from a local path the user gives (nothing is downloaded):
# name -> (what the path is, the flag of `experiments.reproduce` that sets it,
# files the directory must hold).
LOCAL_DATA = {"cifar10": ("the directory of the CIFAR-10 python batches "
                          "(cifar-10-batches-py)", "--cifar10",
                          tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",))}


def data_fields(study_module, settings) -> dict[str, str]:
  """`{dotted field: data set}` of every local data path the settings need.

  Every `DataSettings` in the settings tree whose `name` is in `LOCAL_DATA`
  needs its `path`; a study adds fields of its own with a `data_fields(s)`
  function.
  """
  found = {}

  def walk(node, prefix):
    if isinstance(node, DataSettings):
      if node.name in LOCAL_DATA:
        found[prefix + "path"] = node.name
    elif dataclasses.is_dataclass(node):
      for f in dataclasses.fields(node):
        walk(getattr(node, f.name), f"{prefix}{f.name}.")

  walk(settings, "")
  extra = getattr(study_module, "data_fields", None)
  if extra is not None:
    found.update(extra(settings))
  return found


def field_value(settings, dotted: str):
  for part in dotted.split("."):
    settings = getattr(settings, part)
  return settings


def _set_data_paths(study_module, settings, path_of):
  """The settings with each local data path field set to `path_of(data set)`
  (left as it is where that is None)."""
  changes = {}
  for dotted, name in data_fields(study_module, settings).items():
    path = path_of(name)
    if path is not None:
      node = changes
      *parents, leaf = dotted.split(".")
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = path
  return settings_lib.override(settings, changes) if changes else settings


def with_data(study_module, settings, paths: dict[str, str]):
  """The settings with every needed local data path set from `paths`
  (`{data set: path}`, made absolute; empty paths are ignored)."""
  return _set_data_paths(
      study_module, settings,
      lambda name: str(pathlib.Path(paths[name]).expanduser().resolve())
      if paths.get(name) else None)


def identity(study_module, settings):
  """The settings that define a study's results: every local data path blanked
  (a data set read from a local path is fixed by its name; where it lies is
  no part of the results, so moving it reruns nothing)."""
  return _set_data_paths(study_module, settings, lambda name: "")


def check_data(name: str, study_module, settings) -> None:
  """Raise `ValueError` (before any work) when a local data path the study
  needs is unset, or names no directory or file."""
  for dotted, data_name in data_fields(study_module, settings).items():
    path = field_value(settings, dotted)
    what, flag, files = LOCAL_DATA[data_name]
    if not path:
      raise ValueError(
          f"{name} needs {data_name}: {what}; pass {flag}=PATH to experiments.reproduce "
          f"(or --config.{dotted}=PATH to experiments.{name}).")
    missing = [f for f in files if not (pathlib.Path(path) / f).is_file()]
    if not pathlib.Path(path).is_dir() or missing:
      raise ValueError(f"{name}: {dotted}={path!r} is not {what}"
                       + (f" (no {', '.join(missing)} in it)." if pathlib.Path(path).is_dir()
                          else " (no such directory)."))


class Context(NamedTuple):
  """What the runner hands a study's `measure`.

  Attributes:
    workdir: the directory the study writes into (fresh; it replaces
      `results/<study>/` only when the study has finished).
    mesh: the one device mesh (axis "data") for sharded work.
    name: the study's name, for progress lines.
  """
  workdir: pathlib.Path
  mesh: jax.sharding.Mesh
  name: str

  def progress(self, total: int) -> "Progress":
    return Progress(self.name, total)


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
  todo = [f"repro_jax.studies.{study}", "repro_jax.studies.common",
          "repro_jax.studies.runner"]
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
    h.update(f.relative_to(PACKAGE_DIR).as_posix().encode())
    h.update(f.read_bytes())
  return h.hexdigest()[:16]


def fingerprint(study: str, settings) -> str:
  """Hash of the code and of the complete effective settings (local data paths
  left out: `identity`)."""
  module = importlib.import_module(f"repro_jax.studies.{study}")
  h = hashlib.sha256()
  h.update(code_fingerprint(study).encode())
  h.update(settings_lib.to_json(identity(module, settings)).encode())
  return h.hexdigest()[:16]


def environment() -> dict:
  """The software and hardware a study ran on (recorded in its manifest)."""
  import jaxlib
  dev = jax.devices()[0]
  return {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "backend": jax.default_backend(), "device_kind": dev.device_kind,
          "device_count": jax.device_count(), "cpu": _cpu_model(),
          "python": platform.python_version()}


def _cpu_model() -> str:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


# What must be the same for a finished run to count as this machine's result.
_ENV_KEYS = ("jax", "jaxlib", "backend", "device_kind", "cpu")


def is_up_to_date(workdir, study: str, settings) -> bool:
  """Whether `workdir` holds a finished run of this code with these settings on
  this software and hardware (a run made elsewhere is redone, not trusted)."""
  workdir = pathlib.Path(workdir)
  manifest = workdir / "manifest.json"
  if not manifest.exists() or not (workdir / "report.md").exists():
    return False
  try:
    mf = io.load_json(manifest)
  except (OSError, ValueError):
    return False
  here, there = environment(), mf.get("environment") or {}
  return (mf.get("fingerprint") == fingerprint(study, settings)
          and all(there.get(k) == here[k] for k in _ENV_KEYS))


def manifest(study: str, settings, seconds: float, variant: str | None = None) -> dict:
  return {"study": study, "variant": variant,
          "fingerprint": fingerprint(study, settings),
          "seconds": round(seconds, 1),
          "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
          "environment": environment()}


def last_run(workdir) -> tuple[float | None, dict]:
  """`(seconds, environment)` of the finished run recorded in `workdir/manifest.json`,
  or `(None, {})` when there is no readable record."""
  try:
    mf = io.load_json(pathlib.Path(workdir) / "manifest.json")
    return float(mf["seconds"]), mf.get("environment") or {}
  except (OSError, ValueError, KeyError, TypeError):
    return None, {}


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
