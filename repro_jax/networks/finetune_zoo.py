"""Groups of partially fine-tuned models, kept beside the zoo's groups.

`ensure_finetuned` is `model_zoo.ensure_group` for fine-tuning
(`training.finetune`): every model of a `sizes × seeds` grid starts from its
row of pretrained parameters, trains only the parameters a filter selects, in
ONE vmapped program, in a directory `<zoo_dir>/<name>-<hash>/` whose hash
covers everything that defines the models (the training settings, the grid
and subsets, the pretrained parameters' bytes and the selected paths), so a
finished group is restored instead of retrained and an interrupted one
resumes from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import time
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from absl import logging

from repro_jax import io
from repro_jax.networks import model_zoo
from repro_jax.networks.training import finetune
from repro_jax.networks.training import load as load_lib
from repro_jax.networks.training import step as step_lib


def key_seeds(m_sizes, m_seeds) -> list[int]:
  """The key seed of each model `(N, seed)`: `seed · 1_000_003 + N`, the zoo's
  init seeds, so that a fine-tuned model draws the batches and noises of the
  from-scratch model of the same `(N, seed)`."""
  return [int(sd) * 1_000_003 + int(n) for n, sd in zip(m_sizes, m_seeds)]


def finetune_hash(cfg, sizes, seeds, subsets, base, paths) -> str:
  """Hash of everything that defines a group of fine-tuned models."""
  h = hashlib.sha256(model_zoo.group_hash(cfg, sizes, seeds, subsets).encode())
  for b in np.asarray(base, np.float32):
    h.update(finetune.checksum_params(b).encode())
  h.update(json.dumps([list(map(str, p)) for p in paths]).encode())
  return h.hexdigest()[:10]


def ensure_finetuned(cfg, zoo_dir, name: str, *, base, filt, sizes: Sequence[int],
                     seeds: Sequence[int], subsets: dict, dataset) -> model_zoo.Group:
  """Fine-tune (or finish / restore) a group of models from pretrained parameters.

  The models are `model_zoo.model_grid(sizes, seeds)` (size-major), model
  `(N, seed)` fine-tuned on `subsets[N]` from `base[i]` with the key seed
  `key_seeds`.

  Args:
    cfg: training settings (`model_zoo.train_config`).
    zoo_dir: parent directory of the groups.
    name: label, e.g. "dit32_ft_attention".
    base: `[M, P]` pretrained parameters, one row per model of the grid.
    filt: the trained parameters (a `FILTERS` name or an NNX filter).
    sizes, seeds: the grid; subsets: `{N: int32 [N]}` rows of `dataset`.
    dataset: the loaded `data.Dataset`.

  Returns:
    A `model_zoo.Group` of the fine-tuned EMA parameters (its `info` records the
    selected paths and the trained fraction of the parameters).
  """
  sizes, seeds = [int(n) for n in sizes], [int(s) for s in seeds]
  m_sizes, m_seeds = model_zoo.model_grid(sizes, seeds)
  trainer = step_lib.make_trainer(cfg, dataset.data_shape)
  paths = finetune.selected_paths(trainer, filt)
  mask = finetune.param_mask(trainer, filt)
  base = np.asarray(base, np.float32)
  if base.shape != (len(m_sizes), trainer.layout.size):
    raise ValueError(f"base must be [M={len(m_sizes)}, P={trainer.layout.size}]; got "
                     f"{base.shape}.")
  workdir = pathlib.Path(zoo_dir) / f"{name}-{finetune_hash(cfg, sizes, seeds, subsets, base, paths)}"
  info_path = workdir / model_zoo.INFO_FILE
  t0 = time.time()
  states, history = finetune.finetune_many(
      cfg, str(workdir), base=base, mask=mask,
      seeds=key_seeds(m_sizes, m_seeds),
      subsets=[subsets[int(n)] for n in m_sizes], dataset=dataset)
  if history:
    info = io.load_json(info_path) if info_path.exists() else {"train_seconds": 0.0}
    info["train_seconds"] = float(info.get("train_seconds", 0.0)) + time.time() - t0
    info.update(name=name, num_steps=int(cfg.train.num_steps),
                final_loss_per_model=history[-1].get("loss_per_model"),
                steps_per_sec=history[-1]["steps_per_sec"], sizes=m_sizes.tolist(),
                seeds=m_seeds.tolist(), trained_paths=["/".join(map(str, p)) for p in paths],
                trained_fraction=float(mask.mean()))
    io.save_json(info_path, info)
    logging.info("zoo: fine-tuned %s (%d models) in %.0fs", name, len(m_sizes),
                 info["train_seconds"])
  else:
    info = io.load_json(info_path) if info_path.exists() else {}
    logging.info("zoo: restored %s (%d models) from %s", name, len(m_sizes), workdir)
  params = jnp.asarray(states.ema)
  return model_zoo.Group(name, trainer, params, m_sizes, m_seeds, str(workdir), info,
                         load_lib.stacked_denoiser(trainer, params))
