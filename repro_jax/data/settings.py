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
  """
  name: str = "digits"
  path: str = ""
  split: str = "train"
  key: str = ""
  value_range: tuple[float, ...] = ()
  num_train: int = -1
  subset_seed: int = 0
  molrg: MolrgData = dataclasses.field(default_factory=MolrgData)
