"""Typed settings of a data source (what `load_dataset` reads)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
class MolrgData:
  """A mixture of low-rank Gaussians: `num_points` vectors in `dim`, `num_components`
  subspaces of rank `rank`; `image_shape` is the image view (`molrg_image`)."""
  dim: int = 48
  num_components: int = 2
  rank: int = 4
  num_points: int = 4096
  seed: int = 0
  image_shape: tuple[int, ...] = (4, 4, 3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DataSettings:
  """Which data set, and which subset of it, a model trains on.

  Attributes:
    name: `digits | cifar10 | array | molrg | molrg_image` (`data.DATASETS`).
    path: CIFAR-10 python-batch directory, or a `.npy` / `.npz` file.
    split: `train` or `test` (CIFAR-10).
    key: entry of an `.npz` file.
    value_range: `(lo, hi)` of float arrays, scaled to `[−1, 1]`; `()`: none.
    num_train: N training rows chosen by `subset_seed` (−1: all).
    subset_seed: seed of the subset.
    molrg: the MoLRG source (`molrg`, `molrg_image`).

  For a data set in `LOCATED` the `path` says only where its files are: it is
  no part of a run's identity (`without_locations`).
  """
  name: str = "digits"
  path: str = ""
  split: str = "train"
  key: str = ""
  value_range: tuple[float, ...] = ()
  num_train: int = -1
  subset_seed: int = 0
  molrg: MolrgData = dataclasses.field(default_factory=MolrgData)


# Data sets fixed by their name, read from wherever the user keeps them: their
# `path` is a location, not content (an `array` file's path is its content).
LOCATED = ("cifar10",)


def without_locations(tree):
  """`tree` (nested frozen dataclasses) with the `path` of every `DataSettings`
  of a `LOCATED` data set blanked: what hashes and resume checks compare, so a
  moved or differently spelled data directory is the same run."""
  if isinstance(tree, DataSettings) and tree.name in LOCATED:
    return dataclasses.replace(tree, path="")
  if not dataclasses.is_dataclass(tree) or isinstance(tree, type):
    return tree
  changes = {}
  for f in dataclasses.fields(tree):
    value = getattr(tree, f.name)
    new = without_locations(value)
    if new is not value:
      changes[f.name] = new
  return dataclasses.replace(tree, **changes) if changes else tree
