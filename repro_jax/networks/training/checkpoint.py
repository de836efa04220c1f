"""Orbax checkpoints of a run: train state, data-subset indices, config.

One `CheckpointManager` per run under `workdir/checkpoints`, keeping the last
`keep` steps.  Each step holds three items:

- `state`: the `TrainState` pytree (one model, or M stacked models);
- `data`: `{'indices': [N] or [M, N], 'count': [] or [M]}`;
- `meta`: JSON with the config, the data shape, the number of models and the
  SHA-256 `checksum` of `state` and `data` as saved, and of the rest of `meta`.

A state with a NaN or inf is never saved (`validation.DivergedError`), so the
manager's rotation only ever removes finite checkpoints in favour of newer
finite ones.  `restore` verifies the checksums and, when the latest step is
damaged (unreadable, truncated, or its bytes changed), reports it by step
number and falls back to the previous intact step (docs/theory.md §0.5).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging as std_logging
import os
import shutil
import sys
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from repro_jax import validation

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "checkpoints_damaged"


class CheckpointError(ValueError):
  """A checkpoint that cannot be used: the asked-for step is damaged, or none is intact."""


class Restored(NamedTuple):
  """A verified checkpoint: its step, metadata, data subset and state, and the
  newer steps that were found damaged (`[(step, reason)]`)."""
  step: int
  meta: dict
  data: dict
  state: Any
  damaged: list


def manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  """The run's CheckpointManager (created on first use)."""
  directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  options = ocp.CheckpointManagerOptions(max_to_keep=int(keep), create=True)
  return ocp.CheckpointManager(directory, options=options)


def _host(x) -> np.ndarray:
  """A host copy of a (replicated) array, also when it spans several processes."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return np.asarray(x)


def checksum(tree) -> str:
  """SHA-256 of a pytree's leaves (paths, dtypes, shapes and bytes), in order."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = np.ascontiguousarray(_host(leaf))
    h.update(f"{jax.tree_util.keystr(path)}:{a.dtype.str}{a.shape};".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _meta_checksum(meta: dict) -> str:
  body = {k: v for k, v in meta.items() if k != "checksum"}
  return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def non_finite_leaves(tree) -> list[str]:
  """Paths of the floating leaves of `tree` that hold a NaN or inf."""
  bad = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    a = _host(leaf)
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
      bad.append(jax.tree_util.keystr(path))
  return bad


def save(mngr: ocp.CheckpointManager, step: int, state, indices, count,
         meta: dict[str, Any]) -> None:
  """Save (asynchronously) the state, the data subset and the metadata at `step`.

  Raises:
    validation.DivergedError: the state holds a NaN or inf (nothing is written).
  """
  data = {"indices": np.asarray(indices, np.int32), "count": np.asarray(count, np.int32)}
  host = jax.tree.map(_host, state)
  bad = non_finite_leaves(host)
  if bad:
    raise validation.DivergedError(
        f"refusing to save checkpoint step {step}: {', '.join(bad)} hold NaN or inf.")
  meta = dict(meta, checksum={"state": checksum(host), "data": checksum(data),
                              "meta": _meta_checksum(meta)})
  mngr.save(int(step), args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.StandardSave(data),
      meta=ocp.args.JsonSave(meta)))


def restore_meta(mngr: ocp.CheckpointManager, step: int | None = None):
  """`(step, meta, data)` of the latest (or given) checkpoint, or None if there is none.

  Reads only the metadata and the data subset, unverified; `restore` is the
  checked way to resume or load.
  """
  step = mngr.latest_step() if step is None else int(step)
  if step is None:
    return None
  out = mngr.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore(), data=ocp.args.StandardRestore()))
  data = {k: np.asarray(v) for k, v in out.data.items()}
  return step, out.meta, data


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract_state,
                  sharding=None):
  """Restore the state at `step` into the structure of `abstract_state` (unverified).

  Args:
    abstract_state: pytree of arrays or ShapeDtypeStructs with the target layout.
    sharding: optional sharding for every leaf (e.g. replicated over a mesh).
  """
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def to_struct(a):
    return jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding)
  target = jax.tree.map(to_struct, abstract_state)
  out = mngr.restore(int(step), args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target)))
  return out.state


def _reason(e: BaseException) -> str:
  """One short line for why a checkpoint could not be read."""
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  text = lines[0].split(" See full TensorStore details")[0] if lines else ""
  if len(text) > 160:
    text = text[:157] + "..."
  kind = "" if type(e) is Exception else f"{type(e).__name__}: "
  return f"{kind}{text}" if text else type(e).__name__


class _OrbaxReadTasks(std_logging.Filter):
  def filter(self, record):
    text = record.getMessage()
    return not ("never retrieved" in text
                and any(w in text for w in ("orbax", "OCDBT", "TensorStore")))


def _quiet_failed_reads() -> None:
  """Silence what a failed restore leaves behind (installed once, before restoring).

  TensorStore reads of a damaged file fail inside orbax's coroutines; the
  reads still in flight then report "Event loop is closed" (at any moment,
  from other threads), the pending coroutines "Exception ignored" when
  collected and their tasks "Task exception was never retrieved", each with a
  traceback around the one-line report.  Only those are dropped; other errors
  reach the previous hook and the asyncio log.
  """
  previous = sys.unraisablehook
  if getattr(previous, "quiet_failed_reads", False):
    return
  std_logging.getLogger("asyncio").addFilter(_OrbaxReadTasks())

  def hook(unraisable):
    text = f"{unraisable.exc_value} {unraisable.object!r}"
    if ("Event loop is closed" in text or "reading array index" in text
        or "_read_array_index" in text):
      return
    previous(unraisable)
  hook.quiet_failed_reads = True
  sys.unraisablehook = hook


def _read_meta(mngr, step: int):
  _, meta, data = restore_meta(mngr, step)
  missing = [k for k in ("config", "data_shape", "num_models") if k not in meta]
  if missing:
    raise ValueError(f"metadata lacks {', '.join(missing)}")
  expected = meta.get("checksum", {}).get("meta")
  if expected is not None and _meta_checksum(meta) != expected:
    raise ValueError("the metadata do not match their checksum (bytes changed)")
  return meta, data


def _verify(meta: dict, name: str, tree) -> None:
  expected = meta.get("checksum", {}).get(name)
  if expected is not None and checksum(tree) != expected:
    raise ValueError(f"the {name} does not match its checksum (bytes changed)")


def restore(mngr: ocp.CheckpointManager, abstract_fn: Callable[[dict, dict], Any],
            sharding=None, *, step: int | None = None,
            set_aside: bool = False) -> Restored | None:
  """The latest intact checkpoint (or `step`), verified against its checksums.

  A damaged step (unreadable or truncated files, or bytes that no longer match
  the checksum) is logged by step number and the previous step is tried.

  Args:
    abstract_fn: `(meta, data) -> abstract state` for a readable step; errors
      it raises (e.g. a refused config) propagate unchanged.
    step: restore exactly this step (no fallback).
    set_aside: move the damaged steps newer than the restored one to
      `workdir/checkpoints_damaged/` so that training can save those steps again.

  Returns:
    `Restored`, or None when the directory holds no checkpoint.

  Raises:
    CheckpointError: `step` is damaged, or every step is.
  """
  directory = str(mngr.directory)
  _quiet_failed_reads()
  steps = sorted(mngr.all_steps(), reverse=True) if step is None else [int(step)]
  damaged = []
  for s in steps:
    try:
      meta, data = _read_meta(mngr, s)
      _verify(meta, "data", data)
    except Exception as e:  # noqa: BLE001  (orbax / TensorStore raise many kinds)
      damaged.append((s, _reason(e)))
    else:
      target = abstract_fn(meta, data)
      try:
        state = restore_state(mngr, s, target, sharding)
        _verify(meta, "state", state)
      except Exception as e:  # noqa: BLE001
        damaged.append((s, _reason(e)))
      else:
        if damaged and set_aside:
          _set_aside(mngr, [d for d, _ in damaged])
        if "checksum" not in meta:
          logging.info("checkpoint step %d in %s has no checksum (written by an older "
                       "version): not verified.", s, directory)
        return Restored(s, meta, data, state, damaged)
    gc.collect()   # the failed read's coroutines, while the hook is quiet
    if step is not None:
      raise CheckpointError(f"checkpoint step {s} in {directory} is damaged "
                            f"({damaged[-1][1]}).")
    logging.warning("checkpoint step %d in %s is damaged (%s); trying the previous step.",
                    s, directory, damaged[-1][1])
  if damaged:
    raise CheckpointError(
        f"no intact checkpoint in {directory}: step(s) "
        f"{', '.join(str(d) for d, _ in damaged)} are damaged ({damaged[0][1]}); "
        "remove the directory or use a new workdir.")
  return None


def _set_aside(mngr: ocp.CheckpointManager, steps) -> None:
  """Move damaged steps out of the manager's directory (kept for inspection)."""
  directory = os.path.abspath(str(mngr.directory))
  if jax.process_index() == 0:
    target = os.path.join(os.path.dirname(directory), DAMAGED_DIR)
    os.makedirs(target, exist_ok=True)
    for s in steps:
      dest, i = os.path.join(target, str(s)), 1
      while os.path.exists(dest):
        dest, i = os.path.join(target, f"{s}.{i}"), i + 1
      shutil.move(os.path.join(directory, str(s)), dest)
      logging.warning("moved damaged checkpoint step %d to %s", s, dest)
  mngr.reload()
