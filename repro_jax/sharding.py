"""One device mesh for the whole code base.

All data parallelism goes through a 1-D mesh whose axis is called `"data"`:
the rows of a training set (closed-form denoisers) or of a batch (training)
are split over it, parameters are replicated.  The same code runs on one CPU,
on 8 fake CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=8`),
on a GPU box or on a TPU pod (call `maybe_initialize_distributed(True)` first
on every host).
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh

DATA_AXIS = "data"


def maybe_initialize_distributed(enabled: bool) -> None:
  """Call `jax.distributed.initialize()` once for multi-host runs."""
  if enabled:
    jax.distributed.initialize()


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over the first `num_devices` devices (all by default)."""
  devices = jax.devices()
  n = len(devices) if num_devices is None else int(num_devices)
  if not 1 <= n <= len(devices):
    raise ValueError(f"num_devices={num_devices} but {len(devices)} devices exist.")
  # Auto axes: shardings are given explicitly (NamedSharding, shard_map specs)
  # and XLA inserts the transfers between them.
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices[:n])

