"""The pure train step and its chunks of steps.

Everything here is a pure function of pytrees, so it can be jitted, scanned,
vmapped over a leading model axis (`train_many`) and checkpointed by orbax:

    state = TrainState(step [], params, opt_state, ema, key [2] uint32)
    data  = DataArrays(x [N_all, ...], labels [N_all] | None, indices [N], count [])

A step draws its batch rows from `indices[:count]` (with replacement) and its
noise from `fold_in(key, step)` (one RNG call per step), so a run resumed from
a checkpoint continues exactly like an uninterrupted one.  Parameters, Adam
moments and the EMA are flat float32 vectors `[P]` (`models.ParamLayout`).  With a mesh the batch is constrained to
`NamedSharding(mesh, P('data'))` (parameters stay replicated): the same
function runs data-parallel and XLA inserts the gradient all-reduce.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import NamedSharding

from repro_jax.networks import models
from repro_jax.networks.training import config as config_lib


class TrainState(NamedTuple):
  step: jax.Array       # [] int32
  params: jax.Array     # [P] flat float32 (`trainer.layout.unravel` → nested dict)
  opt_state: Any        # over the flat vector
  ema: jax.Array        # [P] exponential moving average of params
  key: jax.Array        # [2] uint32, raw key data (checkpointable)


class DataArrays(NamedTuple):
  x: jax.Array                 # [N_all, ...] full dataset
  labels: jax.Array | None     # [N_all] int32 or None
  indices: jax.Array           # [N] int32 rows of this model's subset
  count: jax.Array             # [] int32: use indices[:count] (padding for train_many)


@dataclasses.dataclass(frozen=True, eq=False)
class Trainer:
  """Static pieces of a training program (closed over by the jitted step)."""
  graphdef: Any
  param_shapes: Any     # nested dict of ShapeDtypeStruct
  layout: models.ParamLayout
  model_name: str
  model_options: dict
  data_shape: tuple
  param: models.Parameterization
  optimizer: optax.GradientTransformation
  batch_size: int
  ema_decay: float
  num_classes: int = 0
  label_dropout: float = 0.0
  batch_sharding: NamedSharding | None = None


def make_trainer(cfg, data_shape, batch_sharding=None) -> Trainer:
  """The static trainer for data points of `data_shape` from a checked config.

  Args:
    cfg: `TrainSettings`, validated by `config.check_config`.
    data_shape: shape of one data point, e.g. `(8, 8, 1)` or `(48,)`.
    batch_sharding: `NamedSharding(mesh, P('data'))` for data parallelism.
  """
  opts = config_lib.model_options(cfg.model)
  graphdef, shapes = models.abstract(cfg.model.name, data_shape, **opts)
  return Trainer(graphdef=graphdef, param_shapes=shapes,
                 layout=models.ParamLayout.of(shapes), model_name=cfg.model.name,
                 model_options=opts,
                 data_shape=tuple(data_shape), param=config_lib.parameterization(cfg),
                 optimizer=config_lib.optimizer(cfg.optim),
                 batch_size=int(cfg.train.batch_size),
                 ema_decay=float(cfg.train.ema_decay),
                 num_classes=int(cfg.model.num_classes),
                 label_dropout=float(cfg.model.label_dropout),
                 batch_sharding=batch_sharding)


def init_params(trainer: Trainer, key):
  """Fresh flat parameters `[P]` from `key` (`models.init_params`)."""
  params = trainer.layout.ravel(models.init_params(trainer.param_shapes, key))
  return jnp.asarray(params)


def init_state(trainer: Trainer, key) -> TrainState:
  """`key` → initial state; the init key and the training key are split from it."""
  k_init, k_train = jax.random.split(key)
  params = init_params(trainer, k_init)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=trainer.optimizer.init(params),
                    ema=jnp.copy(params),
                    key=jax.random.key_data(k_train))


def net_fn(trainer: Trainer, params, labels=None, key=None):
  """`net(x, c)` for flat `params [P]`, labels and dropout key closed over."""
  tree = trainer.layout.unravel(params)
  return lambda x, c: models.apply(trainer.graphdef, tree, x, c, labels, key)


def _draws(trainer: Trainer, data: DataArrays, key):
  """All randomness of a step from ONE normal draw `z [B, D + 3]`.

  Threefry calls each cost seconds of XLA compile time on a CPU, so the step
  makes one: columns `:D` are the noise ε, column `D` the noise level, `D + 1`
  the batch rows (`Φ(z)` uniform), `D + 2` the label dropout.
  """
  d = math.prod(trainer.data_shape)
  z = jax.random.normal(key, (trainer.batch_size, d + 3))
  if trainer.batch_sharding is not None:
    z = lax.with_sharding_constraint(z, trainer.batch_sharding)
  u = jax.scipy.special.ndtr(z[:, d + 1:])
  rows = jnp.minimum(jnp.floor(u[:, 0] * data.count).astype(jnp.int32), data.count - 1)
  idx = data.indices[rows]
  x0 = data.x[idx]
  labels = None
  if trainer.num_classes > 0:
    labels = data.labels[idx]
    if trainer.label_dropout > 0:
      labels = jnp.where(u[:, 1] < trainer.label_dropout, -1, labels)
  eps = z[:, :d].reshape(x0.shape)
  return x0, labels, eps, z[:, d]


def train_step(trainer: Trainer, state: TrainState, data: DataArrays):
  """One optimizer step.  Returns `(new_state, {'loss': [], 'grad_norm': []})`."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
  x0, labels, eps, level = _draws(trainer, data, key)
  drop_key = jax.random.fold_in(key, 1) if trainer.model_options.get("dropout") else None

  def loss_fn(tree):
    net = lambda x, c: models.apply(trainer.graphdef, tree, x, c, labels, drop_key)
    return jnp.mean(trainer.param.loss_given_noise(net, x0, eps, level))

  # Differentiate w.r.t. the nested dict and concatenate the gradient once:
  # the transpose of the flat-vector slices would be one full-size pad per leaf.
  loss, grad_tree = jax.value_and_grad(loss_fn)(trainer.layout.unravel(state.params))
  grads = trainer.layout.ravel(grad_tree)
  updates, opt_state = trainer.optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  n = state.step.astype(jnp.float32)
  decay = jnp.minimum(trainer.ema_decay, (1.0 + n) / (10.0 + n))
  ema = decay * state.ema + (1.0 - decay) * params
  new_state = TrainState(state.step + 1, params, opt_state, ema, state.key)
  return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def train_chunk(trainer: Trainer, state: TrainState, data: DataArrays, num_steps: int):
  """`num_steps` steps in one `lax.scan`; metrics stacked `[num_steps]`."""
  return lax.scan(lambda s, _: train_step(trainer, s, data), state, None,
                  length=num_steps)


def many_chunk(trainer: Trainer, states: TrainState, data: DataArrays, num_steps: int):
  """`train_chunk` for M models at once: states `[M, ...]`, indices `[M, N]`, count `[M]`.

  Metrics are `[num_steps, M]`.
  """
  axes = DataArrays(None, None, 0, 0)
  vstep = jax.vmap(lambda s, d: train_step(trainer, s, d), in_axes=(0, axes))
  return lax.scan(lambda s, _: vstep(s, data), states, None, length=num_steps)


def jit_chunk(trainer: Trainer, *, many: bool = False, state_sharding=None,
              loop: str = "scan"):
  """Chunk of steps `(state, data, num_steps) -> (state, metrics)`, state donated.

  Args:
    many: vmap over a leading model axis (`many_chunk`).
    state_sharding: output sharding of the state (e.g. replicated on a mesh).
    loop: `"scan"` (one jitted `lax.scan` per chunk, no per-step dispatch) or
      `"python"` (a Python loop over one jitted step; XLA:CPU runs autodiff's
      convolution gradients inside a while loop 20-40x slower, jax-ml/jax#12868,
      hence the U-Net's canonical ones, `models.conv`).
  """
  kwargs = {}
  if state_sharding is not None:
    kwargs["out_shardings"] = (state_sharding, state_sharding)
  if loop == "scan":
    fn = many_chunk if many else train_chunk
    return jax.jit(lambda s, d, n: fn(trainer, s, d, n), static_argnums=2,
                   donate_argnums=0, **kwargs)
  if loop != "python":
    raise ValueError(f"Unknown step loop {loop!r}; choose 'scan' or 'python'.")
  one = lambda s, d: train_step(trainer, s, d)
  if many:
    one = jax.vmap(one, in_axes=(0, DataArrays(None, None, 0, 0)))
  step = jax.jit(one, donate_argnums=0, **kwargs)

  def chunk(state, data, num_steps):
    metrics = []
    for _ in range(num_steps):
      state, m = step(state, data)
      metrics.append(m)
    return state, jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *metrics)
  return chunk
