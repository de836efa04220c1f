"""Many small models in one vmapped program (seeds × data subsets).

`train_many` stacks M train states along a leading axis and vmaps the pure
step over it inside one `lax.scan`: every model has its own initialization and
noise (its seed) and draws its batches from its own row subset of the dataset
(`indices [M, N_max]`, `count [M]`: subsets of different sizes are padded and
each model samples from its first `count` entries).  The architecture and the
hyperparameters are shared.

Measured on a 2-core CPU (benchmarks/bench_training.py): 8 small MLPs train
1.6× faster vmapped than one after another, 8 small DiTs as fast (0.96×), but
8 small U-Nets slower (0.6×): XLA:CPU runs the batched (grouped) convolutions
poorly.  On a GPU the
vmapped program is the one to use.

With a 1-D mesh (`repro_jax.sharding.make_mesh`, axis "data") the program is
data-parallel as in `train`: each model's batch is split over the devices,
the states and the data are replicated, the gradients summed across devices
(the same numbers as on one device up to the order of that sum).
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from repro_jax import data as data_lib
from repro_jax import sharding as sharding_lib
from repro_jax.networks.training import checkpoint
from repro_jax.networks.training import config as config_lib
from repro_jax.networks.training import loop
from repro_jax.networks.training import step as step_lib


def stack_subsets(subsets: Sequence[np.ndarray]):
  """Pad index arrays of possibly different sizes: `(indices [M, N_max], count [M])`."""
  counts = np.array([len(s) for s in subsets], np.int32)
  if counts.min(initial=1) < 1:
    raise ValueError("every subset needs at least one index.")
  out = np.zeros((len(subsets), counts.max()), np.int32)
  for i, s in enumerate(subsets):
    out[i, :len(s)] = s
    out[i, len(s):] = s[0]  # never sampled (rows are drawn below `count`)
  return out, counts


def model_subsets(cfg, n_total: int, num_models: int, subset_seeds=None, subsets=None):
  """Per-model index arrays: explicit `subsets`, one per `subset_seeds`, or the config's."""
  if subsets is not None and subset_seeds is not None:
    raise ValueError("give either `subsets` or `subset_seeds`, not both.")
  if subsets is not None:
    subsets = [np.asarray(s, np.int32) for s in subsets]
    for s in subsets:
      if s.ndim != 1 or (s.size and (s.min() < 0 or s.max() >= n_total)):
        raise ValueError(f"subset indices must be 1-D in [0, {n_total}); got shape "
                         f"{s.shape}.")
  else:
    seeds = subset_seeds if subset_seeds is not None else [cfg.data.subset_seed] * num_models
    subsets = [data_lib.subset_indices(int(s), n_total, int(cfg.data.num_train))
               for s in seeds]
  if len(subsets) != num_models:
    raise ValueError(f"{len(subsets)} subsets for {num_models} models (one per seed).")
  return subsets


def train_many(cfg, workdir: str | None = None, *, seeds: Sequence[int] = (0, 1),
               subset_seeds: Sequence[int] | None = None,
               subsets: Sequence[np.ndarray] | None = None,
               dataset: data_lib.Dataset | None = None, mesh=None,
               allow_config_change: bool = False):
  """Train `M = len(seeds)` models of one architecture at once.

  Args:
    cfg: training settings (`TrainSettings`); `cfg.train.num_devices` is
      ignored (pass a `mesh`).
    workdir: optional output directory (metrics, stacked checkpoints, resume).
    seeds: one init/noise seed per model.
    subset_seeds: optional, one data-subset seed per model (N = cfg.data.num_train).
    subsets: optional explicit index arrays per model (sizes may differ).
    dataset: optional rows held in memory, used instead of loading `cfg.data`
      (checked against the settings as a loaded one is).
    mesh: optional 1-D mesh with axis "data": every model's batch of
      `cfg.train.batch_size` rows (divisible by the device count) is split
      over it.  None: one device.
    allow_config_change: resume although the `loop.RESUMABLE_CHANGES` fields
      (steps, logging, checkpointing, devices) differ from the checkpoint's.

  Returns:
    `(states, history)`: `TrainState` with leading axis M, per-chunk metrics
    (`loss_per_model` lists the M losses).

  Raises:
    loop.Interrupted: Ctrl-C; with a `workdir` the step reached is saved first.
  """
  config_lib.check_config(cfg)
  num_devices = 1 if mesh is None else mesh.size
  if dataset is None:
    dataset = loop.prepare(cfg, num_devices)
  else:
    config_lib.check_against_data(cfg, dataset, num_devices)
  m = len(seeds)
  if m < 1:
    raise ValueError("train_many needs at least one seed.")
  indices, counts = stack_subsets(model_subsets(cfg, len(dataset), m, subset_seeds,
                                                subsets))
  replicated = None if mesh is None else NamedSharding(mesh, P())
  trainer = step_lib.make_trainer(
      cfg, dataset.data_shape,
      None if mesh is None else NamedSharding(mesh, P(sharding_lib.DATA_AXIS)))
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  mngr = None if workdir is None else checkpoint.manager(workdir,
                                                         cfg.train.keep_checkpoints)
  try:
    start, save_fn, wait_fn, metrics_path = 0, None, None, None

    def abstract(saved_meta, saved):
      loop.check_same_run(saved_meta["config"], cfg, workdir, allow_config_change)
      if saved_meta["num_models"] != m or not np.array_equal(saved["indices"], indices):
        raise ValueError(f"{workdir} holds a different set of models or subsets; use "
                         "a new workdir.")
      return jax.eval_shape(jax.vmap(lambda k: step_lib.init_state(trainer, k)), keys)

    restored = (None if mngr is None else
                checkpoint.restore(mngr, abstract, replicated, set_aside=True))
    if restored is None:  # host-side init, model by model (no compile), then stacked
      states = jax.tree.map(lambda *a: jnp.stack(a),
                            *[step_lib.init_state(trainer, k) for k in keys])
      if replicated is not None:
        states = jax.device_put(states, replicated)
    else:
      start, states = restored.step, restored.state
      logging.info("Resumed %d models from step %d in %s", m, start, workdir)
    if mngr is not None:
      meta = loop.run_meta(cfg, dataset, seeds, stacked=True)
      save_fn = lambda step, st: checkpoint.save(mngr, step, st, indices, counts, meta)
      wait_fn = mngr.wait_until_finished
      metrics_path = os.path.join(workdir, loop.METRICS_FILE)
      loop.write_config(workdir, cfg, replace=restored is None)
      data_lib.save_indices(workdir, indices)  # [M, N_max]; counts in the checkpoint
      loop.truncate_metrics(metrics_path, start)
      loop.already_trained(cfg, workdir, start)
    chunk = step_lib.jit_chunk(trainer, many=True, state_sharding=replicated,
                               loop=config_lib.step_loop(cfg))
    return loop.run_loop(
        chunk, states, loop.data_arrays(dataset, indices, counts, replicated), start=start,
        num_steps=int(cfg.train.num_steps), log_every=int(cfg.train.log_every),
        checkpoint_every=int(cfg.train.checkpoint_every),
        batch_size=int(cfg.train.batch_size) * m, save_fn=save_fn, wait_fn=wait_fn,
        metrics_path=metrics_path)
  finally:
    if mngr is not None:
      mngr.wait_until_finished()
      mngr.close()
