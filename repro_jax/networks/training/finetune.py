"""Partial fine-tuning: train a named subset of a pretrained network's parameters.

The parameters that train are chosen with a Flax NNX filter over the model's
parameter paths (`nnx.PathContains("attn")`, `nnx.All(...)`, a predicate
`(path, variable) -> bool`; named ones in `FILTERS`), evaluated on the
abstract model the trainer builds; `param_mask` turns the selected leaves into
a 0/1 mask over the trainer's flat parameter vector `[P]` (`ParamLayout`).

A fine-tuning step is the trainer's own `step.train_step` with the optimizer
wrapped by `masked_optimizer` (frozen gradients zeroed before the clipping
and Adam, frozen updates zeroed after them), followed by one projection of the
frozen entries of the parameters and of their EMA back onto the pretrained
values: the EMA of a constant is that constant only up to rounding, and the
projection makes every frozen parameter bit-identical to the pretrained one.
`finetune_many` runs M such models in one vmapped `lax.scan`, each from its
own pretrained parameters `base [M, P]`, its own key and its own data subset,
with the checkpoints, resume and metrics of `train_many` (orbax, one
`checkpoints/` directory, `metrics.jsonl`, the pretrained parameters' and the
mask's checksums in the metadata).  `repro_jax.networks.finetune_zoo` keeps
such groups beside the zoo's (trained once, restored afterwards).

Noise convention: the trainer's (VE `x = x0 + σ ε` for the canonical
denoisers built from the result).  Shapes: `P` flat parameters, `M` models.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax import lax

from repro_jax.networks import models
from repro_jax.networks.training import checkpoint
from repro_jax.networks.training import config as config_lib
from repro_jax.networks.training import loop
from repro_jax.networks.training import many as many_lib
from repro_jax.networks.training import step as step_lib


def _ends_with_attn(path, variable) -> bool:
  """Any module on the path named `attn` or `*_attn` (DiT blocks' `attn`, the
  U-Net's `down_attn`, `mid_attn`, `up_attn`)."""
  del variable
  return any(isinstance(k, str) and (k == "attn" or k.endswith("_attn")) for k in path)


# Named filters (the settings name one): every attention layer of the DiT and
# of the U-Net, or every parameter (full fine-tuning).
FILTERS: dict[str, Any] = {
    "attention": nnx.All(nnx.Param, _ends_with_attn),
    "all": nnx.Param,
}


def get_filter(name_or_filter):
  """A filter from `FILTERS` by name, or any NNX filter as it is."""
  if isinstance(name_or_filter, str):
    if name_or_filter not in FILTERS:
      raise ValueError(f"unknown parameter filter {name_or_filter!r}; choose one of "
                       f"{', '.join(FILTERS)}.")
    return FILTERS[name_or_filter]
  return name_or_filter


def _key_tuple(path) -> tuple:
  return tuple(getattr(k, "key", getattr(k, "idx", k)) for k in path)


def layout_paths(trainer: step_lib.Trainer) -> list[tuple]:
  """The path of every leaf of the flat layout, in its order (`[(key, ...)]`)."""
  flat = jax.tree_util.tree_flatten_with_path(trainer.param_shapes)[0]
  return [_key_tuple(p) for p, _ in flat]


def selected_paths(trainer: step_lib.Trainer, filt) -> list[tuple]:
  """Paths of the parameter leaves `filt` selects, in the layout's order.

  The filter sees the NNX path and the `nnx.Param` variable of each leaf of
  the abstract model (nothing allocated).

  Raises:
    ValueError: the filter selects no parameter (a filter that names nothing
      would train nothing and silently return the pretrained network).
  """
  model = nnx.eval_shape(lambda: models.build(trainer.model_name, trainer.data_shape,
                                              jax.random.key(0), **trainer.model_options))
  pred = nnx.filterlib.to_predicate(get_filter(filt))
  flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
  chosen = {tuple(p) for p, v in flat if pred(tuple(p), v)}
  paths = layout_paths(trainer)
  unknown = chosen - set(paths)
  if unknown:   # the layout and the NNX state name leaves alike; guard the mapping
    raise ValueError(f"filter selected paths outside the parameter layout: {sorted(unknown)}")
  out = [p for p in paths if p in chosen]
  if not out:
    tops = sorted({str(p[0]) for p in paths})
    raise ValueError(f"the parameter filter {filt!r} selects no parameter of the "
                     f"{trainer.model_name} (top-level modules: {', '.join(tops)}); "
                     "fine-tuning would train nothing.")
  return out


def param_mask(trainer: step_lib.Trainer, filt) -> np.ndarray:
  """`bool [P]`: True on the flat entries of the leaves `filt` selects."""
  chosen = set(selected_paths(trainer, filt))
  parts = [np.full(int(np.prod(shape)), p in chosen, bool)
           for p, shape in zip(layout_paths(trainer), trainer.layout.shapes)]
  return np.concatenate(parts)


class MaskedState(NamedTuple):
  """`masked_optimizer`'s state: the 0/1 mask `[P]` and the wrapped optimizer's."""
  keep: jax.Array
  inner: Any


def masked_optimizer(optimizer: optax.GradientTransformation,
                     mask) -> optax.GradientTransformation:
  """`optimizer` restricted to the entries where `mask [P]` is True.

  The frozen gradients are zeroed before it (so they count in no global norm
  and no Adam moment) and the frozen updates after it (weight decay
  included): a frozen parameter receives an update of exactly ±0.  The mask
  lives in the state (float32 `[P]`), so that a jitted step reads it as data
  rather than embedding a `[P]` constant in its program.
  """
  mask = np.asarray(mask, bool)

  def init(params):
    return MaskedState(jnp.asarray(mask, jnp.float32), optimizer.init(params))

  def update(updates, state, params=None):
    zero = lambda u: u * state.keep.astype(u.dtype)
    updates, inner = optimizer.update(zero(updates), state.inner, params)
    return zero(updates), MaskedState(state.keep, inner)

  return optax.GradientTransformation(init, update)


class FinetuneData(NamedTuple):
  """What a chunk of fine-tuning steps reads besides the state."""
  arrays: step_lib.DataArrays   # indices [M, N_max], count [M]
  base: jax.Array               # [M, P] the pretrained parameters of each model
  mask: jax.Array               # [P] bool, True = trains


def finetune_trainer(trainer: step_lib.Trainer, mask) -> step_lib.Trainer:
  """The trainer with its optimizer restricted to `mask [P]`."""
  return dataclasses.replace(trainer, optimizer=masked_optimizer(trainer.optimizer, mask))


def init_state(trainer: step_lib.Trainer, base, key) -> step_lib.TrainState:
  """A fine-tuning state at step 0: parameters and EMA the pretrained `base [P]`,
  fresh optimizer moments, the training key split from `key` as
  `step.init_state` splits it (so a fine-tuned and a from-scratch model of one
  key see the same batches and noises)."""
  _, k_train = jax.random.split(key)
  base = jnp.asarray(base, jnp.float32)
  return step_lib.TrainState(step=jnp.zeros((), jnp.int32), params=base,
                             opt_state=trainer.optimizer.init(base), ema=jnp.copy(base),
                             key=jax.random.key_data(k_train))


def finetune_step(trainer: step_lib.Trainer, state: step_lib.TrainState, arrays, base, mask):
  """One step of `step.train_step` (with `finetune_trainer`'s optimizer), the frozen
  entries of the parameters and the EMA then set to `base [P]` exactly."""
  new, metrics = step_lib.train_step(trainer, state, arrays)
  params = jnp.where(mask, new.params, base)
  ema = jnp.where(mask, new.ema, base)
  return new._replace(params=params, ema=ema), metrics


def jit_chunk(trainer: step_lib.Trainer, *, loop_kind: str = "scan") -> Callable:
  """`(states [M, ...], FinetuneData, n) -> (states, metrics [n, M])`, states donated;
  `loop_kind` as `step.jit_chunk`'s `loop` ("scan" or "python")."""
  axes = step_lib.DataArrays(None, None, 0, 0)
  vstep = jax.vmap(lambda s, d, b, m: finetune_step(trainer, s, d, b, m),
                   in_axes=(0, axes, 0, None))
  if loop_kind == "scan":
    def chunk(states, data, num_steps):
      return lax.scan(lambda s, _: vstep(s, data.arrays, data.base, data.mask), states,
                      None, length=num_steps)
    return jax.jit(chunk, static_argnums=2, donate_argnums=0)
  if loop_kind != "python":
    raise ValueError(f"Unknown step loop {loop_kind!r}; choose 'scan' or 'python'.")
  one = jax.jit(lambda s, d: vstep(s, d.arrays, d.base, d.mask), donate_argnums=0)

  def py_chunk(states, data, num_steps):
    out = []
    for _ in range(num_steps):
      states, m = one(states, data)
      out.append(m)
    return states, jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *out)
  return py_chunk


def checksum_params(params) -> str:
  """SHA-256 of a parameter array's dtype, shape and bytes (short)."""
  a = np.ascontiguousarray(np.asarray(params, np.float32))
  return hashlib.sha256(f"{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def finetune_many(cfg, workdir: str | None, *, base, mask, seeds: Sequence[int],
                  subsets: Sequence[np.ndarray], dataset=None):
  """Fine-tune `M = len(seeds)` models of one architecture at once.

  Args:
    cfg: training settings (`TrainSettings`) of the architecture, optimizer and
      loop; the fine-tuning runs `cfg.train.num_steps` steps.
    workdir: optional output directory (stacked checkpoints, resume, metrics).
    base: `[M, P]` (or `[P]`, shared) pretrained flat parameters.
    mask: `bool [P]` the entries that train (`param_mask`).
    seeds: one key seed per model (training batches and noises).
    subsets: one row-index array per model (sizes may differ).
    dataset: optional rows in memory instead of loading `cfg.data`.

  Returns:
    `(states, history)` as `train_many`'s; `states.ema [M, P]` equals `base`
    wherever `mask` is False, bit for bit.

  Raises:
    ValueError: bad shapes, an empty mask, or a workdir that holds other models
      (another config, subsets, base parameters or mask).
  """
  config_lib.check_config(cfg)
  if dataset is None:
    dataset = loop.prepare(cfg, 1)
  else:
    config_lib.check_against_data(cfg, dataset, 1)
  m = len(seeds)
  if m < 1:
    raise ValueError("finetune_many needs at least one seed.")
  trainer = step_lib.make_trainer(cfg, dataset.data_shape)
  p = trainer.layout.size
  mask = np.asarray(mask, bool)
  base = np.asarray(base, np.float32)
  if base.ndim == 1:
    base = np.broadcast_to(base, (m, base.shape[0]))
  if mask.shape != (p,) or base.shape != (m, p):
    raise ValueError(f"need mask [P={p}] and base [M={m}, P={p}] (or [P]); got "
                     f"{mask.shape} and {base.shape}.")
  if not mask.any():
    raise ValueError("the mask selects no parameter: fine-tuning would train nothing.")
  if not np.all(np.isfinite(base)):
    raise ValueError("the pretrained parameters hold NaN or inf.")
  indices, counts = many_lib.stack_subsets(many_lib.model_subsets(cfg, len(dataset), m,
                                                                  subsets=subsets))
  ft = finetune_trainer(trainer, mask)
  keys = jnp.stack([jax.random.key(int(s)) for s in seeds])
  ident = {"base": [checksum_params(b) for b in base], "mask": checksum_params(mask)}
  mngr = None if workdir is None else checkpoint.manager(workdir, cfg.train.keep_checkpoints)
  try:
    start, save_fn, wait_fn, metrics_path = 0, None, None, None

    def abstract(saved_meta, saved):
      loop.check_same_run(saved_meta["config"], cfg, workdir)
      if (saved_meta["num_models"] != m or not np.array_equal(saved["indices"], indices)
          or saved_meta.get("finetune") != ident):
        raise ValueError(f"{workdir} holds other fine-tuned models (subsets, pretrained "
                         "parameters or trained entries differ); use a new workdir.")
      return jax.eval_shape(jax.vmap(lambda b, k: init_state(ft, b, k)), base, keys)

    restored = None if mngr is None else checkpoint.restore(mngr, abstract, set_aside=True)
    if restored is None:
      states = jax.tree.map(lambda *a: jnp.stack(a),
                            *[init_state(ft, b, k) for b, k in zip(base, keys)])
    else:
      start, states = restored.step, restored.state
      logging.info("Resumed %d fine-tuned models from step %d in %s", m, start, workdir)
    if mngr is not None:
      meta = dict(loop.run_meta(cfg, dataset, seeds, stacked=True), finetune=ident)
      save_fn = lambda step, st: checkpoint.save(mngr, step, st, indices, counts, meta)
      wait_fn = mngr.wait_until_finished
      metrics_path = os.path.join(workdir, loop.METRICS_FILE)
      loop.write_config(workdir, cfg, replace=restored is None)
      loop.truncate_metrics(metrics_path, start)
      loop.already_trained(cfg, workdir, start)
    data = FinetuneData(loop.data_arrays(dataset, indices, counts), jnp.asarray(base),
                        jnp.asarray(mask))
    return loop.run_loop(
        jit_chunk(ft, loop_kind=config_lib.step_loop(cfg)), states, data, start=start,
        num_steps=int(cfg.train.num_steps), log_every=int(cfg.train.log_every),
        checkpoint_every=int(cfg.train.checkpoint_every),
        batch_size=int(cfg.train.batch_size) * m, save_fn=save_fn, wait_fn=wait_fn,
        metrics_path=metrics_path)
  finally:
    if mngr is not None:
      mngr.wait_until_finished()
      mngr.close()
