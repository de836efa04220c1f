"""The training loop: data, mesh, checkpoints, metrics and logging around the step.

`train(cfg, workdir)` runs one model data-parallel over a 1-D mesh; it
resumes from the latest checkpoint in `workdir` and then continues bit-for-bit
as an uninterrupted run would (same chunk boundaries, keys from
`fold_in(key, step)`).  Between log points the steps run inside one jitted
`lax.scan` (or, for the U-Net on a CPU, a loop over one jitted step: see
`config.step_loop`); between chunks the loop logs loss, steps/s and ETA,
appends a JSON line to `workdir/metrics.jsonl` and saves a checkpoint every
`checkpoint_every` steps.  Ctrl-C stops at the end of the chunk in flight,
saves that step and raises `Interrupted` (a KeyboardInterrupt) once the save
is written, also when that chunk was the last; a resumed run first drops the
metrics records past its checkpoint.  On several processes (multi-host) Ctrl-C
stops a process at once and saves nothing (a save is collective, and a signal
may reach one process only): the run resumes from its last periodic checkpoint.

A resumed run keeps the config of its checkpoint: a changed field is refused
with the list of changes, unless `allow_config_change` lets one of
`RESUMABLE_CHANGES` (steps, logging, checkpointing, devices) change; then
`config.json` still records the run as started and the change is appended to
`config_changes.jsonl`.  A non-finite loss or parameter stops the run
(`validation.DivergedError`) before anything is saved from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from repro_jax import data as data_lib
from repro_jax.data import settings as data_settings
from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax import sharding as sharding_lib
from repro_jax import validation
from repro_jax.networks.training import checkpoint
from repro_jax.networks.training import config as config_lib
from repro_jax.networks.training import step as step_lib

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"
# What a resumed run may change (with `allow_config_change`): when it stops,
# how often it logs and checkpoints, and how the same steps are executed.  Any
# other field changes what the state means or how it continues (the seed and
# the data subset live in the checkpoint, the optimizer and batch define the
# trajectory), so the run would no longer be the run its config.json records.
RESUMABLE_CHANGES = ("train.num_steps", "train.log_every", "train.checkpoint_every",
                     "train.keep_checkpoints", "train.num_devices", "train.step_loop",
                     "distributed")


def _is_lead() -> bool:
  return jax.process_index() == 0


def write_config(workdir: str, cfg, *, replace: bool = True) -> None:
  """`workdir/config.json`, the record of the run as started, written atomically by
  process 0; `replace=False` (a resumed run) keeps an existing record."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not _is_lead() or (not replace and os.path.exists(path)):
    return
  io.write_text(path, config_lib.to_json(cfg))


def _fmt_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Interrupted(KeyboardInterrupt):
  """Training stopped by Ctrl-C after `step` steps; `saved` is the latest
  checkpointed step (equal to `step` when the stop was saved), or None."""

  def __init__(self, step: int, saved: int | None):
    super().__init__(f"interrupted at step {step}")
    self.step, self.saved = int(step), saved


@contextlib.contextmanager
def _stop_on_sigint(enabled: bool = True):
  """Yield an Event that the first Ctrl-C (SIGINT) sets instead of raising.

  The loop then stops at the end of the chunk in flight (a jitted chunk cannot
  be cut short, and its input state is donated to it) and saves that step; a
  second Ctrl-C raises KeyboardInterrupt at once.  Only if `enabled`, in the
  main thread, with Python's default handler installed; otherwise nothing
  changes (Ctrl-C raises KeyboardInterrupt as usual).
  """
  stop = threading.Event()
  if (not enabled or threading.current_thread() is not threading.main_thread()
      or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
    yield stop
    return

  def handler(signum, frame):
    if stop.is_set():
      raise KeyboardInterrupt
    stop.set()
    logging.warning("Ctrl-C: stopping after the steps in flight, then saving a checkpoint "
                    "(Ctrl-C again stops at once).")
  signal.signal(signal.SIGINT, handler)
  try:
    yield stop
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _alive(state) -> bool:
  """Whether no buffer of `state` was donated to (consumed by) a later chunk."""
  return not any(getattr(a, "is_deleted", lambda: False)() for a in jax.tree.leaves(state))


def run_loop(chunk: Callable, state, data, *, start: int, num_steps: int,
             log_every: int, checkpoint_every: int, batch_size: int,
             save_fn: Callable | None = None, wait_fn: Callable | None = None,
             metrics_path: str | None = None):
  """Run chunks of `log_every` steps (aligned to multiples of it) up to `num_steps`.

  Ctrl-C (SIGINT) stops the run at the end of the chunk in flight (the last
  one included), saves that step with `save_fn`, waits for the save
  (`wait_fn`) and raises `Interrupted`.  A KeyboardInterrupt raised inside the
  loop (a second Ctrl-C, or one from a caller's code) saves the last finished
  chunk's state if the chunk in flight has not consumed it, then raises
  `Interrupted` too.  A step is handed to `save_fn` once at most, also when
  Ctrl-C interrupts that call.  With several processes (`jax.process_count()
  > 1`) Ctrl-C is not caught and nothing is saved on it: each process would act
  on its own signal, and a save is a collective that the others would not join.

  Args:
    chunk: jitted `(state, data, n) -> (state, {'loss': [n] or [n, M], ...})`.
    save_fn: `save_fn(step, state)`, called every `checkpoint_every` steps, at the
      end, and on Ctrl-C (one process only).
    wait_fn: `wait_fn()` waits for the saves in flight (before `Interrupted`).
    metrics_path: JSON-lines file to append one record per chunk to.

  Returns:
    `(state, history)` with one dict per chunk.

  Raises:
    Interrupted: on Ctrl-C, with the step reached and the last checkpointed step.
  """
  history, step, t_begin, first = [], int(start), time.time(), True
  saved = int(start) if start else None
  handed = saved     # the last step handed to save_fn (its call may have been cut short)
  one_process = jax.process_count() == 1
  writer = open(metrics_path, "a") if metrics_path and _is_lead() else None

  def save(at: int) -> None:
    nonlocal saved, handed
    handed = at
    save_fn(at, state)
    saved = at

  def stop_here(at_once: bool):
    if (save_fn is not None and one_process and step > (handed or 0)
        and (not at_once or (_alive(state) and bool(_finite(state))))):
      save(step)
    if wait_fn is not None:
      wait_fn()
    logging.warning("Interrupted at step %d; %s.", step,
                    "no checkpoint saved" if saved is None else f"last checkpoint: step {saved}")
    return Interrupted(step, saved)

  try:
    with _stop_on_sigint(enabled=one_process) as stop:
      try:
        while step < num_steps and not stop.is_set():
          n = min(log_every - step % log_every, num_steps - step)
          t0 = time.time()
          new_state, metrics = chunk(state, data, n)
          losses = np.asarray(metrics["loss"], np.float64)  # waits for the chunk
          dt = max(time.time() - t0, 1e-9)
          check_finite(losses, new_state, start=step, saved=saved)
          rate = n / dt
          record = {"step": step + n, "loss": float(losses.mean()),
                    "loss_last": float(losses[-1].mean()),
                    "grad_norm": float(np.mean(metrics["grad_norm"])),
                    "steps_per_sec": rate, "images_per_sec": rate * batch_size,
                    "elapsed_sec": time.time() - t_begin,
                    "eta_sec": (num_steps - step - n) / rate,
                    "includes_compile": first}
          first = False
          if losses.ndim == 2:
            record["loss_per_model"] = losses.mean(axis=0).tolist()
          history.append(record)
          if writer is not None:
            writer.write(json.dumps(record) + "\n")
            writer.flush()
          # (step, state) always name the same finished chunk: the state saved on
          # an interrupt is never labelled with another step.
          step, state = step + n, new_state
          logging.info("step %d/%d  loss %.5f  %.1f steps/s  %.0f img/s  ETA %s", step,
                       num_steps, record["loss"], rate, rate * batch_size,
                       _fmt_eta(record["eta_sec"]))
          if save_fn is not None and (step % checkpoint_every == 0 or step == num_steps):
            save(step)
      except KeyboardInterrupt as e:
        raise stop_here(at_once=True) from e
      if stop.is_set():   # also after the last chunk: a caller's next run must not start
        raise stop_here(at_once=False)
  finally:
    if writer is not None:
      writer.close()
  return state, history


def truncate_metrics(path: str, step: int) -> int:
  """Keep only the records of one line of training up to `step` in `path`, atomically.

  A resumed run continues from its checkpoint at `step`; the records written
  past it (chunks after the last checkpoint, or a checkpoint set aside as
  damaged) would otherwise appear twice.  A record whose step is not above the
  previous one starts a rerun of those steps, so the records it supersedes are
  dropped as well, and so are lines that do not parse (cut short by a crash).

  Returns:
    The number of lines dropped.
  """
  if not _is_lead() or not os.path.exists(path):
    return 0
  with open(path) as f:
    lines = f.read().splitlines()
  kept = []   # [(step, line)], steps strictly increasing
  for line in lines:
    try:
      s = int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
      continue
    while kept and kept[-1][0] >= s:
      kept.pop()
    kept.append((s, line))
  kept = [line for s, line in kept if s <= step]
  if len(kept) < len(lines):
    io.write_text(path, "".join(line + "\n" for line in kept))
    logging.info("Dropped %d record(s) past step %d from %s.", len(lines) - len(kept), step,
                 path)
  return len(lines) - len(kept)


@jax.jit
def _finite(state) -> jax.Array:
  """Whether the parameters and their EMA hold only finite values."""
  return jnp.all(jnp.isfinite(state.params)) & jnp.all(jnp.isfinite(state.ema))


def check_finite(losses: np.ndarray, state, *, start: int, saved: int | None) -> None:
  """Stop (`DivergedError`, naming the step) once a loss or a parameter is not finite.

  Args:
    losses: the chunk's losses `[n]` or `[n, M]`; row i is step `start + i + 1`.
    state: the state after the chunk.
    saved: the last checkpointed step (named in the message), or None.
  """
  where = validation.first_non_finite(losses)
  if where is not None:
    model = f" (model {where[1]})" if losses.ndim == 2 else ""
    what = f"loss {losses[where]} at step {start + where[0] + 1}{model}"
  elif not bool(_finite(state)):
    what = f"parameters after step {start + len(losses)}"
  else:
    return
  kept = (f"the last checkpoint, step {saved}, is kept" if saved is not None
          else "no checkpoint was written")
  raise validation.DivergedError(
      f"training diverged: non-finite {what}; stopped without saving it ({kept}). "
      "Lower config.optim.learning_rate or check the data.")


def data_arrays(dataset: data_lib.Dataset, indices, count, sharding=None):
  put = (lambda a: jax.device_put(a, sharding)) if sharding is not None else jnp.asarray
  labels = None if dataset.labels is None else put(dataset.labels)
  return step_lib.DataArrays(put(dataset.x), labels, put(np.asarray(indices, np.int32)),
                             put(np.asarray(count, np.int32)))


def run_meta(cfg, dataset, seeds, *, stacked: bool) -> dict:
  """Checkpoint metadata; `stacked`: states carry a leading model axis (train_many)."""
  return {"config": json.loads(config_lib.to_json(cfg)),
          "data_shape": list(dataset.data_shape), "num_models": len(seeds),
          "stacked": bool(stacked), "seeds": [int(s) for s in seeds]}


def _flat(tree: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_diff(saved_config: dict, cfg) -> dict[str, tuple]:
  """`{dotted field: (saved, current)}` for every field that differs.

  The saved config is read with today's defaults, so a field added to
  `TrainSettings` since the checkpoint was written is no difference; nor is
  where a named data set lies (`data.settings.without_locations`).
  """
  try:
    saved_config = settings_lib.to_dict(data_settings.without_locations(
        settings_lib.parse(type(cfg), saved_config)))
  except ValueError:
    pass
  old = _flat(saved_config)
  new = _flat(settings_lib.to_dict(data_settings.without_locations(cfg)))
  missing = "(absent)"
  return {k: (old.get(k, missing), new.get(k, missing)) for k in sorted(set(old) | set(new))
          if old.get(k, missing) != new.get(k, missing)}


def check_same_run(saved_config: dict, cfg, workdir: str,
                   allow_change: bool = False) -> dict[str, tuple]:
  """A resumed run keeps the config of its checkpoint (docs/theory.md §0.5).

  Args:
    allow_change: accept changes of the `RESUMABLE_CHANGES` fields.

  Returns:
    The accepted changes, `{dotted field: (old, new)}`.

  Raises:
    ValueError: listing the changed fields (`name: old → new`) when any field
      changed without `allow_change`, or one outside `RESUMABLE_CHANGES`.
  """
  changes = config_diff(saved_config, cfg)
  if not changes:
    return {}
  text = "; ".join(f"{k}: {json.dumps(a)} → {json.dumps(b)}" for k, (a, b) in changes.items())
  unsafe = [k for k in changes if k not in RESUMABLE_CHANGES]
  if unsafe and allow_change:
    raise ValueError(f"cannot change {', '.join(unsafe)} when resuming {workdir} ({text}); "
                     f"only {', '.join(RESUMABLE_CHANGES)} may change: use a new workdir.")
  if not allow_change:
    hint = ("" if unsafe else ", pass --allow_config_change (allow_config_change=True) to "
            "record the change")
    raise ValueError(f"{workdir} holds a run with another config ({text}); resume with the "
                     f"same config{hint}, or use a new workdir.")
  return changes


def record_changes(workdir: str, step: int, changes: dict) -> None:
  """Append the accepted config changes to `workdir/config_changes.jsonl`."""
  logging.warning("Resuming %s at step %d with changed config: %s", workdir, step,
                  ", ".join(f"{k} {a} → {b}" for k, (a, b) in changes.items()))
  if _is_lead():
    line = {"step": int(step), "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "changes": {k: [a, b] for k, (a, b) in changes.items()}}
    with open(os.path.join(workdir, CHANGES_FILE), "a") as f:
      f.write(json.dumps(line) + "\n")


def prepare(cfg, num_devices: int):
  """Load the full dataset of a checked config and validate the two together."""
  dataset = data_lib.load_dataset(cfg.data)
  config_lib.check_against_data(cfg, dataset, num_devices)
  return dataset


def _start(cfg, workdir, mngr, trainer, dataset, sharding, allow_change=False):
  """`(state, step, indices)`: fresh, or restored from the latest checkpoint."""
  init = lambda k: step_lib.init_state(trainer, k)
  key = jax.random.key(int(cfg.seed))
  changes = {}

  def abstract(saved_meta, saved):
    changes.clear()
    changes.update(check_same_run(saved_meta["config"], cfg, workdir, allow_change))
    indices = saved["indices"]
    if indices.max(initial=0) >= len(dataset):
      raise ValueError(f"checkpoint indices reach {int(indices.max())} but the dataset "
                       f"has {len(dataset)} rows: was it trained on other data?")
    return jax.eval_shape(init, key)

  restored = checkpoint.restore(mngr, abstract, sharding, set_aside=True)
  if restored is None:
    indices = data_lib.subset_indices(int(cfg.data.subset_seed), len(dataset),
                                      int(cfg.data.num_train))
    state, start = jax.device_put(init(key), sharding), 0
  else:
    start, state, indices = restored.step, restored.state, restored.data["indices"]
    logging.info("Resumed from step %d in %s", start, workdir)
    if changes:
      record_changes(workdir, start, changes)
  if _is_lead():
    data_lib.save_indices(workdir, indices)
  truncate_metrics(os.path.join(workdir, METRICS_FILE), start)
  return state, start, indices


def already_trained(cfg, workdir: str, start: int) -> bool:
  """Whether the run resumed at `start` has no step left to train (then logged)."""
  if start < int(cfg.train.num_steps):
    return False
  logging.info("Already trained to step %d in %s (config.train.num_steps = %d); nothing "
               "to do.", start, workdir, cfg.train.num_steps)
  return True


def train(cfg, workdir: str, *, mesh=None, allow_config_change: bool = False):
  """Train one model as configured, resuming from `workdir` if it holds checkpoints.

  Args:
    cfg: `TrainSettings` (parsed from the training config by the entry point).
    workdir: output directory (config.json, data_indices.npy, metrics.jsonl,
      checkpoints/, and config_changes.jsonl once a resume changed the config).
    mesh: 1-D mesh with axis "data"; default `cfg.train.num_devices` devices.
    allow_config_change: resume although `RESUMABLE_CHANGES` fields differ from
      the checkpoint's config; config.json keeps the original run and the
      change is appended to config_changes.jsonl.  Without it any change is
      refused with the list of changed fields.

  Returns:
    `(state, history)`: the final `TrainState` and the per-chunk metrics
    (empty when the checkpoint is already at `cfg.train.num_steps`).

  Raises:
    Interrupted: Ctrl-C; the step reached is saved first (rerun to resume).
  """
  config_lib.check_config(cfg)
  if mesh is None:
    mesh = sharding_lib.make_mesh(config_lib.num_devices(cfg, jax.device_count()))
  dataset = prepare(cfg, mesh.size)
  replicated = NamedSharding(mesh, P())
  trainer = step_lib.make_trainer(cfg, dataset.data_shape,
                                  NamedSharding(mesh, P(sharding_lib.DATA_AXIS)))
  mngr = checkpoint.manager(workdir, cfg.train.keep_checkpoints)
  try:
    state, start, indices = _start(cfg, workdir, mngr, trainer, dataset, replicated,
                                   allow_config_change)
    write_config(workdir, cfg, replace=start == 0)
    data = data_arrays(dataset, indices, len(indices), replicated)
    meta = run_meta(cfg, dataset, [cfg.seed], stacked=False)
    chunk = step_lib.jit_chunk(trainer, state_sharding=replicated,
                               loop=config_lib.step_loop(cfg))
    if not already_trained(cfg, workdir, start):
      logging.info("Training %s on %s (N = %d, shape %s) for %d steps on %d device(s).",
                   cfg.model.name, cfg.data.name, len(indices), dataset.data_shape,
                   cfg.train.num_steps, mesh.size)
    state, history = run_loop(
        chunk, state, data, start=start, num_steps=int(cfg.train.num_steps),
        log_every=int(cfg.train.log_every),
        checkpoint_every=int(cfg.train.checkpoint_every),
        batch_size=int(cfg.train.batch_size),
        save_fn=lambda step, st: checkpoint.save(mngr, step, st, indices, len(indices),
                                                 meta),
        wait_fn=mngr.wait_until_finished,
        metrics_path=os.path.join(workdir, METRICS_FILE))
  finally:
    mngr.wait_until_finished()
    mngr.close()
  return state, history
