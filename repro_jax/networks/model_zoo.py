"""A grid of trained denoisers (dataset sizes × widths × seeds), trained once, reused.

The reproducibility experiments compare many small models that differ only in
their width, their seed and the number `N` of training images.  A *group* is
every model of one width: `len(sizes) · len(seeds)` models trained in ONE
vmapped program by `training.train_many` (subsets of different sizes are
padded), ordered size-major:

    models = [(N, seed) for N in sizes for seed in seeds]        # [M]

Every model of one `N` (all widths, all seeds) sees the same images: the
subsets are `data.subset_indices(subset_seed, n_total, N)`, nested because
they are prefixes of one permutation.  A group lives in
`<zoo_dir>/<name>-<hash>/` (orbax checkpoints of the stacked train states, the
subsets, `zoo_info.json`); the hash covers everything that defines the models,
so a changed config trains a new group instead of resuming a different one,
and a finished group is restored instead of retrained (`ensure_group`).

Sampling: a group's `denoise` is `training.stacked_denoiser(trainer, params)`,
the stacked parameters `[M, P]` as one canonical denoiser over a model-major
batch `[M · B, ...]` (`num_models = M`), so one call of
`samplers.sample_batched` runs every model of a group on the same noises.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import time
from typing import NamedTuple, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax.data import settings as data_settings
from repro_jax.diffusion import denoiser as denoiser_lib
from repro_jax.networks import training
from repro_jax.networks.training import step as step_lib
from repro_jax.networks.training.settings import TrainSettings
from repro_jax.networks.training.settings import WIDTH_FIELD
INFO_FILE = "zoo_info.json"


class Group(NamedTuple):
  """Every model of one architecture/width, stacked along a leading axis `M`."""
  name: str                      # e.g. "mlp128"
  trainer: step_lib.Trainer      # static pieces (graph, layout, parameterization)
  params: jax.Array              # [M, P] EMA parameters
  sizes: np.ndarray              # [M] N of each model
  seeds: np.ndarray              # [M] init/noise seed of each model
  workdir: str
  info: dict                     # train seconds, steps, final losses
  denoise: denoiser_lib.Denoiser  # `training.stacked_denoiser(trainer, params)`, built
                                 # once so that every sampler call reuses its compilation


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZooSettings:
  """A grid of trained models: one group per width, `sizes × seeds` models each.

  Attributes:
    dir: parent directory of the groups (outside results/, e.g. `workdirs/`).
    model: a `models.MODELS` name; its width is the field `WIDTH_FIELD[model]`
      (`model.hidden` of an `"mlp"`, `model.width` of a `"unet"` or a `"dit"`).
    widths, sizes, seeds: the grid; `sizes` are the training-set sizes N.
    subset_seed: one nested subset per N, shared by every model.
    train: the complete training settings of every group (data included); the
      model name and width come from `model` and `widths`.
  """
  dir: str = "workdirs/repro_zoo"
  model: str = "mlp"
  widths: tuple[int, ...] = (128, 256)
  sizes: tuple[int, ...] = (16, 64, 256, 1024, 1797)
  seeds: tuple[int, ...] = (0, 1)
  subset_seed: int = 0
  train: TrainSettings = dataclasses.field(default_factory=TrainSettings)

  def __post_init__(self):
    if self.model not in WIDTH_FIELD:
      raise ValueError(f"zoo.model must be one of {', '.join(WIDTH_FIELD)}; got "
                       f"{self.model!r}.")
    for name in ("widths", "sizes", "seeds"):
      if not getattr(self, name):
        raise ValueError(f"zoo.{name} must not be empty.")
    if min(self.sizes) < 1 or min(self.widths) < 1:
      raise ValueError("zoo.sizes and zoo.widths must be >= 1.")


def train_config(zoo: ZooSettings, width: int, *, overrides=None) -> TrainSettings:
  """The training settings of one group: `zoo.train` with the group's model,
  width and every row available (the subsets are passed explicitly).

  Args:
    zoo: the grid.
    width: the value of the model's `WIDTH_FIELD` (`model.hidden` of an MLP,
      `model.width` of a U-Net or a DiT).
    overrides: extra nested changes (e.g. another parameterization).
  """
  cfg = settings_lib.override(zoo.train, {"model": {"name": zoo.model,
                                                   WIDTH_FIELD[zoo.model]: int(width)}},
                              where="zoo.train")
  if overrides:
    cfg = settings_lib.override(cfg, overrides, where="zoo.train")
  return settings_lib.override(cfg, {"data": {"num_train": -1}}, where="zoo.train")


def nested_subsets(n_total: int, sizes: Sequence[int], seed: int) -> dict[int, np.ndarray]:
  """One training subset per size, `{N: int32 [N]}` (prefixes of one permutation)."""
  return {int(n): data_lib.subset_indices(int(seed), int(n_total), int(n)) for n in sizes}


def model_grid(sizes: Sequence[int], seeds: Sequence[int]):
  """`(sizes [M], seeds [M])` in the group's size-major order."""
  s = np.array([n for n in sizes for _ in seeds], np.int64)
  k = np.array([sd for _ in sizes for sd in seeds], np.int64)
  return s, k


# Model fields added after groups were first trained: left out of the hash while
# they hold their defaults, so every group trained before keeps its directory
# (and is restored, not retrained).  Their defaults must therefore never change.
_LATER_MODEL_FIELDS = ("patch_size", "num_heads", "mlp_ratio", "conv_impl")


def _hashed_settings(cfg: TrainSettings) -> dict:
  """`cfg` as a dict, without the later model fields that hold their defaults."""
  out = settings_lib.to_dict(cfg)
  default = settings_lib.to_dict(type(cfg.model)())
  for name in _LATER_MODEL_FIELDS:
    if out["model"][name] == default[name]:
      del out["model"][name]
  return out


def group_hash(cfg, sizes, seeds, subsets: dict) -> str:
  """Hash of everything that defines a group's models (its directory's suffix);
  not where its data set lies."""
  h = hashlib.sha256()
  h.update(settings_lib.to_json(_hashed_settings(data_settings.without_locations(cfg))).encode())
  h.update(json.dumps([list(map(int, sizes)), list(map(int, seeds))]).encode())
  for n in sizes:
    h.update(np.asarray(subsets[int(n)], np.int32).tobytes())
  return h.hexdigest()[:10]


def _init_seeds(m_sizes, m_seeds) -> list[int]:
  """Distinct init keys across sizes too: the size folded into the seed."""
  return [int(sd) * 1_000_003 + int(n) for n, sd in zip(m_sizes, m_seeds)]


def ensure_group(cfg, zoo_dir, name: str, *, sizes: Sequence[int], seeds: Sequence[int],
                 subsets: dict, data_shape: Sequence[int]) -> Group:
  """Train the group (or finish / restore it from its checkpoints).

  Args:
    cfg: training config of the group (`train_config`).
    zoo_dir: parent directory of the groups (outside results/).
    name: label, e.g. "mlp128".
    sizes, seeds: the grid; model `(N, seed)` trains on `subsets[N]`.
    subsets: `{N: int32 [N]}` row indices into the dataset.
    data_shape: shape of one data point, e.g. `(8, 8, 1)`.
  """
  sizes, seeds = [int(n) for n in sizes], [int(s) for s in seeds]
  workdir = pathlib.Path(zoo_dir) / f"{name}-{group_hash(cfg, sizes, seeds, subsets)}"
  m_sizes, m_seeds = model_grid(sizes, seeds)
  init_seeds = _init_seeds(m_sizes, m_seeds)
  info_path = workdir / INFO_FILE
  t0 = time.time()
  states, history = training.train_many(
      cfg, str(workdir), seeds=init_seeds, subsets=[subsets[int(n)] for n in m_sizes])
  if history:   # trained (at least partly) in this call
    info = io.load_json(info_path) if info_path.exists() else {"train_seconds": 0.0}
    info["train_seconds"] = float(info.get("train_seconds", 0.0)) + time.time() - t0
    info.update(name=name, num_steps=int(cfg.train.num_steps),
                final_loss_per_model=history[-1].get("loss_per_model"),
                steps_per_sec=history[-1]["steps_per_sec"],
                sizes=m_sizes.tolist(), seeds=m_seeds.tolist())
    io.save_json(info_path, info)
    logging.info("zoo: trained %s (%d models) in %.0fs", name, len(m_sizes),
                 info["train_seconds"])
  else:
    info = io.load_json(info_path) if info_path.exists() else {}
    logging.info("zoo: restored %s (%d models) from %s", name, len(m_sizes), workdir)
  trainer = training.make_trainer(cfg, tuple(data_shape))
  params = jnp.asarray(states.ema)
  return Group(name, trainer, params, m_sizes, m_seeds, str(workdir), info,
               training.stacked_denoiser(trainer, params))


def ensure_stages(cfg, zoo_dir, name: str, *, stages: Sequence[int], sizes: Sequence[int],
                  seeds: Sequence[int], subsets: dict, data_shape: Sequence[int]
                  ) -> list[Group]:
  """One group observed along its training: a `Group` per step count of `stages`.

  The models are trained once, to `max(stages)`, in one directory (hashed with
  `cfg` at that step count); the run stops at each stage, keeps the EMA
  parameters of that step in `stage_<step>.npy` (atomically) and resumes, so
  each stage's models are exactly the single run's models at that step (the
  learning rate is constant after warm-up and each step's batch and noise
  depend only on the step).  A rerun reads the kept stages; a run cut short
  resumes from its last checkpoint.

  Args:
    cfg: training settings of the group (`train_config`); its `num_steps` is
      replaced by each stage.
    stages: step counts, e.g. `(250, 500, …, 8000)`.
    Others: as in `ensure_group`.

  Returns:
    One `Group` per stage in ascending order, named `"<name>@<step>"`.
  """
  stages = sorted({int(s) for s in stages})
  if not stages or stages[0] < 1:
    raise ValueError(f"stages must be positive step counts; got {stages}.")
  sizes, seeds = [int(n) for n in sizes], [int(s) for s in seeds]
  final = settings_lib.override(cfg, {"train": {"num_steps": stages[-1]}}, where="zoo.train")
  workdir = pathlib.Path(zoo_dir) / f"{name}-{group_hash(final, sizes, seeds, subsets)}"
  m_sizes, m_seeds = model_grid(sizes, seeds)
  trainer = training.make_trainer(final, tuple(data_shape))
  groups = []
  for step in stages:
    path = workdir / f"stage_{step}.npy"
    if not path.exists():
      t0 = time.time()
      states, _ = training.train_many(
          settings_lib.override(final, {"train": {"num_steps": step}}, where="zoo.train"),
          str(workdir), seeds=_init_seeds(m_sizes, m_seeds),
          subsets=[subsets[int(n)] for n in m_sizes], allow_config_change=True)
      reached = int(np.asarray(states.step).reshape(-1)[0])
      if reached != step:
        raise ValueError(f"{workdir} is trained past step {step} ({reached}) but its "
                         f"{path.name} is missing; remove the directory to retrain it.")
      io.save_npy(path, np.asarray(states.ema))
      logging.info("zoo: %s at step %d (%.0fs)", name, step, time.time() - t0)
    params = jnp.asarray(np.load(path))
    groups.append(Group(f"{name}@{step}", trainer, params, m_sizes, m_seeds, str(workdir),
                        dict(num_steps=step), training.stacked_denoiser(trainer, params)))
  return groups


# Sampling ------------------------------------------------------------------------

def ensure_zoo(zoo: ZooSettings, dataset, *, widths: Sequence[int] | None = None,
               seeds: Sequence[int] | None = None, overrides=None,
               suffix: str = "", progress=None) -> list[Group]:
  """Every group of a zoo, trained if missing, in width order.

  Args:
    zoo: the grid (`ZooSettings`: its `train` holds the complete training
      settings, the data included).
    dataset: the loaded `data.Dataset` (for its size and data shape).
    widths, seeds: override the zoo's (e.g. one width, one seed).
    overrides: nested changes of the training settings (e.g. another parameterization).
    suffix: appended to the group names (e.g. "_vp").
    progress: optional progress logger (`.step(what)`), stepped once per group.
  """
  subsets = nested_subsets(len(dataset), zoo.sizes, zoo.subset_seed)
  groups = []
  for w in (zoo.widths if widths is None else widths):
    cfg = train_config(zoo, w, overrides=overrides)
    groups.append(ensure_group(
        cfg, zoo.dir, f"{zoo.model}{int(w)}{suffix}", sizes=zoo.sizes,
        seeds=zoo.seeds if seeds is None else seeds, subsets=subsets,
        data_shape=dataset.data_shape))
    if progress is not None:
      progress.step(groups[-1].name)
  return groups
