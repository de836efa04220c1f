"""Datasets for the network experiments (offline) and reproducible subsets.

- `load_dataset(cfg) -> Dataset`: by registry name `cfg.name`
  (`digits`, `cifar10`, `array`, `molrg`, `molrg_image`), see `DATASETS`.
- `subset_indices(seed_or_key, n_total, n) -> [n]`: exactly `n` distinct rows
  chosen deterministically by a seed; the training loop saves them with the run
  (`save_indices` / `load_indices`) so every model of an experiment sees the
  same images.
- Readers: `load_digits`, `load_cifar10`, `load_array`, `molrg`, and
  `to_unit_range` (scaling to `[−1, 1]`); `read_array(path, key)` is the one
  reader of `.npy` / `.npz` files (raw arrays: data sets, noises).

What belongs here: readers of data sets from local files or bundled packages
(nothing is downloaded) and the typed `DataSettings`.  May import
`repro_jax.closed_form` (the MoLRG sampler), `repro_jax.io`,
`repro_jax.validation`.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import jax
import numpy as np

from repro_jax import io
from repro_jax import validation
from repro_jax.data.sources import load_array
from repro_jax.data.sources import load_cifar10
from repro_jax.data.sources import load_digits
from repro_jax.data.sources import molrg
from repro_jax.data.sources import read_array
from repro_jax.data.sources import read_labels
from repro_jax.data.sources import to_unit_range

DATASETS = ("digits", "cifar10", "array", "molrg", "molrg_image")
INDICES_FILE = "data_indices.npy"


class Dataset(NamedTuple):
  """A full dataset held in host memory.

  Attributes:
    x: float32 `[N, H, W, C]` images in `[−1, 1]` or `[N, D]` vectors.
    labels: int32 `[N]` or None.
    extras: e.g. the MoLRG `bases [K, D, R]`.
  """
  x: np.ndarray
  labels: np.ndarray | None
  extras: dict[str, Any]

  @property
  def data_shape(self) -> tuple[int, ...]:
    return tuple(self.x.shape[1:])

  def __len__(self) -> int:
    return int(self.x.shape[0])


def _get(cfg, name, default):
  return cfg.get(name, default) if hasattr(cfg, "get") else getattr(cfg, name, default)


def load_dataset(cfg) -> Dataset:
  """Load the full dataset described by a data config (ConfigDict or dict).

  Fields: `name`, `path` (cifar10 directory / array file), `split`, `key`
  (npz entry), `value_range`, and for MoLRG a `molrg` block with `dim`,
  `num_components`, `rank`, `num_points`, `seed`, `image_shape`.
  """
  name = _get(cfg, "name", "digits")
  if name not in DATASETS:
    raise validation.unknown_name("dataset", name, DATASETS)
  dataset = _load(cfg, name)
  check_finite_data(dataset.x, name if name != "array" else _get(cfg, "path", ""))
  return dataset


def check_finite_data(x, source: str) -> None:
  """Training data must be finite: one NaN row makes every loss NaN (docs/theory.md §0.5)."""
  bad = ~np.isfinite(np.asarray(x))
  if bad.any():
    rows = np.nonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0]
    raise ValueError(f"training data {source!r} holds NaN or inf values in {len(rows)} "
                     f"row(s) (first: row {int(rows[0])}); clean the data before training.")


def _load(cfg, name: str) -> Dataset:
  if name == "digits":
    x, labels = load_digits()
    return Dataset(x, labels, {})
  if name == "cifar10":
    x, labels = load_cifar10(_get(cfg, "path", ""), _get(cfg, "split", "train"))
    return Dataset(x, labels, {})
  if name == "array":
    vr = _get(cfg, "value_range", None)
    x, labels = load_array(_get(cfg, "path", ""), _get(cfg, "key", ""),
                           tuple(vr) if vr else None)
    return Dataset(x, labels, {})
  m = _get(cfg, "molrg", None) or {}
  image_shape = tuple(_get(m, "image_shape", (4, 4, 3))) if name == "molrg_image" else None
  x, labels, bases = molrg(int(_get(m, "dim", 48)), int(_get(m, "num_components", 2)),
                           int(_get(m, "rank", 4)), int(_get(m, "num_points", 4096)),
                           int(_get(m, "seed", 0)), image_shape)
  return Dataset(x, labels, {"bases": bases})


def subset_indices(seed_or_key, n_total: int, n: int) -> np.ndarray:
  """`n` distinct indices into `n_total` rows, fixed by an int seed or a PRNG key.

  Returns:
    int32 `[n]`, sorted.  `n = -1` (or `n == n_total`) selects every row.
  """
  n_total, n = int(n_total), int(n)
  if n == -1 or n == n_total:
    return np.arange(n_total, dtype=np.int32)
  if n < 1:
    raise ValueError(f"subset size must be >= 1 (or -1 for all); got {n}.")
  if n > n_total:
    raise ValueError(f"subset of N = {n} requested but the dataset has only "
                     f"{n_total} rows.")
  key = seed_or_key
  if isinstance(seed_or_key, (int, np.integer)):
    key = jax.random.key(int(seed_or_key))
  perm = np.asarray(jax.random.permutation(key, n_total))
  return np.sort(perm[:n]).astype(np.int32)


def save_indices(workdir: str, indices) -> str:
  """Write `indices` to `workdir/data_indices.npy` atomically; returns the path."""
  path = os.path.join(workdir, INDICES_FILE)
  io.save_npy(path, np.asarray(indices, np.int32))
  return path


def load_indices(workdir: str) -> np.ndarray | None:
  path = os.path.join(workdir, INDICES_FILE)
  return np.load(path) if os.path.exists(path) else None


__all__ = ["Dataset", "DATASETS", "load_dataset", "check_finite_data", "subset_indices",
           "save_indices", "load_indices", "load_digits", "load_cifar10", "load_array",
           "read_array", "read_labels", "molrg", "to_unit_range"]
