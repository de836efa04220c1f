"""The prologue shared by the studies that score the model zoo."""

from __future__ import annotations

import pathlib
import time
from typing import NamedTuple

import jax
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax.analysis import metrics
from repro_jax.networks import model_zoo
from repro_jax.analysis import reproducibility as rpr
from repro_jax.studies import common


class ZooStudy(NamedTuple):
  """What a zoo study has once its models exist.

  `noise [B, ...]` are the fixed starting noises; `subsets {N: [N] indices}`
  the nested training subsets; `groups` one `model_zoo.Group` per width.
  """
  workdir: pathlib.Path
  t0: float
  progress: common.Progress
  ds: data_lib.Dataset
  sims: dict[str, metrics.Similarity]
  cal: metrics.Calibration
  noise: np.ndarray
  subsets: dict[int, np.ndarray]
  groups: list[model_zoo.Group]


def begin(name: str, config, workdir, later_steps: int) -> ZooStudy:
  """Record the config, calibrate the similarity, draw the noises and subsets
  (the subsets are saved as `subsets.npz`), then train or restore the zoo.

  Progress is logged over `1 + len(zoo.widths) + later_steps` steps: this
  function takes the calibration and one per width; the study takes the rest.
  """
  workdir = common.start(workdir, config)
  t0 = time.time()
  zoo = config.zoo
  progress = common.Progress(name, 1 + len(zoo.widths) + int(later_steps))
  key = jax.random.key(int(config.seed))
  ds, sims, cal, noise, subsets = rpr.setup(config, workdir, jax.random.fold_in(key, 0))
  io.save_npz(workdir / "subsets.npz", **{f"N{n}": idx for n, idx in subsets.items()})
  progress.step("calibration")
  groups = model_zoo.ensure_zoo(zoo, ds, progress=progress)
  return ZooStudy(workdir, t0, progress, ds, sims, cal, noise, subsets, groups)
