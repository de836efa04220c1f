"""Orbax checkpoints of a run: train state, data-subset indices, config.

One `CheckpointManager` per run under `workdir/checkpoints`, keeping the last
`keep` steps.  Each step holds three items:

- `state`: the `TrainState` pytree (one model, or M stacked models);
- `data`: `{'indices': [N] or [M, N], 'count': [] or [M]}`;
- `meta`: JSON with the config, the data shape and the number of models.

A state with a NaN or inf is never saved (`validation.DivergedError`), so the
manager's rotation only ever removes finite checkpoints in favour of newer
finite ones (docs/theory.md §0.5).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from repro_jax import validation

CHECKPOINT_DIR = "checkpoints"


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
  bad = non_finite_leaves(state)
  if bad:
    raise validation.DivergedError(
        f"refusing to save checkpoint step {step}: {', '.join(bad)} hold NaN or inf.")
  mngr.save(int(step), args=ocp.args.Composite(
      state=ocp.args.StandardSave(state), data=ocp.args.StandardSave(data),
      meta=ocp.args.JsonSave(meta)))


def restore_meta(mngr: ocp.CheckpointManager, step: int | None = None):
  """`(step, meta, data)` of the latest (or given) checkpoint, or None if there is none."""
  step = mngr.latest_step() if step is None else int(step)
  if step is None:
    return None
  out = mngr.restore(step, args=ocp.args.Composite(
      meta=ocp.args.JsonRestore(), data=ocp.args.StandardRestore()))
  data = {k: np.asarray(v) for k, v in out.data.items()}
  return step, out.meta, data


def restore_state(mngr: ocp.CheckpointManager, step: int, abstract_state,
                  sharding=None):
  """Restore the state at `step` into the structure of `abstract_state`.

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
