"""Trained networks as canonical denoisers: from parameters in memory or a checkpoint.

Every function returns a `repro_jax.diffusion.denoiser.Denoiser`,
`denoise(x [B, *data_shape], σ [B]) -> x0` in VE coordinates (`x = x0 + σ ε`),
wrapped by the trainer's parameterization (`Parameterization.denoiser`: the
eps / x0 head through Tweedie, or EDM's preconditioning).

- `network_denoiser(trainer, params [P])`: one model;
- `stacked_denoiser(trainer, params [M, P])`: M models of one architecture as
  one denoiser on a model-major batch `[M·B, ...]` (`denoiser.stack`);
- `load_denoiser(workdir, ...)`: the model of a checkpoint (`train` /
  `train_many`), its metadata in `info`.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import settings as settings_lib
from repro_jax.diffusion import denoiser as denoiser_lib
from repro_jax.networks.training import checkpoint
from repro_jax.networks.training import step as step_lib
from repro_jax.networks.training.settings import TrainSettings


def network_denoiser(trainer: step_lib.Trainer, params, labels=None) -> denoiser_lib.Denoiser:
  """The canonical denoiser of ONE model with flat parameters `params [P]`.

  `labels`: class labels `[B]` (or a scalar) for a class-conditional model;
  None / −1 = unconditional.
  """
  lab = None if labels is None else jnp.asarray(labels, jnp.int32)

  def net(x, c):
    batch_labels = None if lab is None else jnp.broadcast_to(lab, x.shape[:1])
    return step_lib.net_fn(trainer, params, batch_labels)(x, c)

  return trainer.param.denoiser(net).replace(data_shape=tuple(trainer.data_shape))


def stacked_denoiser(trainer: step_lib.Trainer, params) -> denoiser_lib.Denoiser:
  """M models of one architecture, `params [M, P]`, as one denoiser.

  The batch is model-major: rows `[m·B, (m+1)·B)` of `x [M·B, ...]` go
  through model m (`num_models = M`; `samplers.sample_batched` feeds every
  model the same noises and returns `[M, B, ...]`).  The networks are
  vmapped, the parameterization's wrap is applied once to the whole batch.
  """
  return denoiser_lib.stack(lambda p: step_lib.net_fn(trainer, p), params,
                            wrap=trainer.param.denoiser, name="network",
                            data_shape=trainer.data_shape)


def load_denoiser(workdir: str, *, use_ema: bool = True, step: int | None = None,
                  model_index: int | None = None, labels=None) -> denoiser_lib.Denoiser:
  """The canonical denoiser of a checkpointed model, its metadata in `info`.

  Args:
    workdir: a directory written by `train` / `train_many`.
    use_ema: use the EMA parameters (default) instead of the raw ones.
    step: checkpoint step (default: the latest).
    model_index: which model of a `train_many` run (required there).
    labels: class labels `[B]` (or a scalar) for class-conditional models;
      None / −1 = unconditional.

  Returns:
    A `Denoiser` named "network" (`network_denoiser`) whose `info` holds
    `config` (`TrainSettings`), `data_shape`, `step`, `indices` (the training
    rows), `num_models`, `seeds`, `parameterization`.
  """
  if not os.path.isdir(os.path.join(workdir, checkpoint.CHECKPOINT_DIR)):
    raise FileNotFoundError(f"no checkpoints under {workdir!r} (expected "
                            f"{checkpoint.CHECKPOINT_DIR}/ written by train).")
  mngr = checkpoint.manager(workdir)
  built = {}

  def abstract(meta, _):
    cfg = settings_lib.parse(TrainSettings, meta["config"])
    num_models, stacked = int(meta["num_models"]), bool(meta.get("stacked", False))
    if stacked and model_index is None:
      raise ValueError(f"{workdir} holds {num_models} models: pass model_index.")
    trainer = step_lib.make_trainer(cfg, tuple(meta["data_shape"]))
    built.update(cfg=cfg, num_models=num_models, stacked=stacked, trainer=trainer)
    init = lambda k: step_lib.init_state(trainer, k)
    if stacked:
      return jax.eval_shape(jax.vmap(init), jnp.stack([jax.random.key(0)] * num_models))
    return jax.eval_shape(init, jax.random.key(0))

  try:  # the latest intact step (or `step`), verified against its checksum
    restored = checkpoint.restore(mngr, abstract, step=step)
    if restored is None:
      raise FileNotFoundError(f"no checkpoint in {workdir}/{checkpoint.CHECKPOINT_DIR}.")
  finally:
    mngr.close()
  step, meta, data, state = restored.step, restored.meta, restored.data, restored.state
  cfg, trainer = built["cfg"], built["trainer"]
  num_models, stacked = built["num_models"], built["stacked"]
  seeds = meta.get("seeds", [0])
  params = state.ema if use_ema else state.params
  indices = data["indices"]
  if stacked:
    if not 0 <= model_index < num_models:
      raise ValueError(f"model_index={model_index} not in [0, {num_models}).")
    params = params[model_index]
    indices = indices[model_index, :int(data["count"][model_index])]
  info = {"config": cfg, "data_shape": tuple(meta["data_shape"]), "step": int(step),
          "indices": np.asarray(indices), "num_models": num_models, "seeds": seeds,
          "parameterization": trainer.param}
  return network_denoiser(trainer, params, labels).replace(info=info)
