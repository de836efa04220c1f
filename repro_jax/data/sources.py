"""Readers for the datasets the experiments train on (all offline).

Every reader returns `(x, labels)` with `x` float32 in the model's range
(images `[N, H, W, C]` scaled to `[−1, 1]`, MoLRG vectors as drawn) and
`labels` int32 `[N]` or None.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILES = ("test_batch",)
NPZ_KEYS = ("data", "x", "images")   # the entries `read_array` looks for first


def to_unit_range(x, lo: float, hi: float) -> np.ndarray:
  """Affinely map values in `[lo, hi]` to `[−1, 1]` (float32)."""
  if not hi > lo:
    raise ValueError(f"need hi > lo to scale to [-1, 1]; got lo={lo}, hi={hi}.")
  return (2.0 * (np.asarray(x, np.float32) - lo) / (hi - lo) - 1.0).astype(np.float32)


def load_digits():
  """scikit-learn's bundled 8×8 digits: `[1797, 8, 8, 1]` in `[−1, 1]`, labels 0..9."""
  from sklearn.datasets import load_digits as _load  # lazy: sklearn is slow to import
  d = _load()
  x = to_unit_range(d.images.reshape(-1, 8, 8, 1), 0.0, 16.0)
  return x, d.target.astype(np.int32)


def _read_cifar_batch(path: str):
  try:
    with open(path, "rb") as f:
      d = pickle.load(f, encoding="bytes")
  except (pickle.UnpicklingError, EOFError, ValueError) as e:
    raise ValueError(f"{path} is not a CIFAR-10 python-pickle batch ({e}).") from e
  if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
    keys = sorted(d) if isinstance(d, dict) else type(d).__name__
    raise ValueError(f"{path} is not a CIFAR-10 batch: expected a dict with keys "
                     f"b'data' and b'labels'; got {keys}.")
  data = np.asarray(d[b"data"])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
    raise ValueError(f"{path}: b'data' must be uint8 [n, 3072]; got {data.dtype} "
                     f"{data.shape}.")
  labels = np.asarray(d[b"labels"], np.int32)
  if labels.shape != (data.shape[0],):
    raise ValueError(f"{path}: {labels.shape[0]} labels for {data.shape[0]} images.")
  return data, labels


def load_cifar10(path: str, split: str = "train"):
  """CIFAR-10 from the python-pickle batches in directory `path` (no download).

  Reads `data_batch_1..5` (`split="train"`) or `test_batch` (`"test"`); rows
  of `b'data'` are 3072 bytes, channel-first then row-major (R plane, G, B).

  Returns:
    `x [N, 32, 32, 3]` float32 in `[−1, 1]`, `labels [N]` int32.
  """
  if not path:
    raise ValueError("CIFAR-10 needs the directory of its python batches "
                     "(cifar-10-batches-py); none was given.")
  if not os.path.isdir(path):
    raise FileNotFoundError(f"CIFAR-10 directory {path!r} does not exist.")
  names = {"train": CIFAR_TRAIN_FILES, "test": CIFAR_TEST_FILES}.get(split)
  if names is None:
    raise ValueError(f"Unknown CIFAR-10 split {split!r}; choose 'train' or 'test'.")
  files = [os.path.join(path, n) for n in names if os.path.exists(os.path.join(path, n))]
  if not files:
    raise FileNotFoundError(f"no CIFAR-10 batch files {list(names)} in {path!r}.")
  parts = [_read_cifar_batch(f) for f in files]
  data = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts])
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return to_unit_range(images, 0.0, 255.0), labels


def read_array(path, key: str = "", *, name: str = "data") -> np.ndarray:
  """The raw array `[N, ...]` of a `.npy` or `.npz` file, as stored.

  Args:
    path: the file.
    key: the `.npz` entry; default the first of `NPZ_KEYS` present, else the
      first entry that is not `labels`.
    name: what the file holds, for the error messages (`data`, `noise`).

  Raises:
    FileNotFoundError for a missing file; ValueError for any other bad file.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"`{name}` file not found: {path!r}.")
  if not path.endswith((".npy", ".npz")):
    raise ValueError(f"`{name}` must be a .npy or .npz file; got {path!r}.")
  try:
    loaded = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(f"`{name}` file {path!r} could not be read: {e}") from e
  if isinstance(loaded, np.ndarray):
    return loaded
  with loaded as z:
    entries = [k for k in z.files if k != "labels"]
    if key and key not in z.files:
      raise ValueError(f"{path} has no entry {key!r}; entries: {z.files}.")
    if not key and not entries:
      raise ValueError(f"`{name}` file {path!r} holds no data array (entries: {z.files}).")
    key = key or next((k for k in NPZ_KEYS if k in entries), entries[0])
    return np.asarray(z[key])


def read_labels(path) -> np.ndarray | None:
  """The `labels` entry of an `.npz` file as int32 `[N]`, or None."""
  path = os.fspath(path)
  if not path.endswith(".npz"):
    return None
  with np.load(path, allow_pickle=False) as z:
    return z["labels"].astype(np.int32) if "labels" in z.files else None


def load_array(path: str, key: str = "", value_range=None):
  """Images or vectors for training from `.npy` or `.npz` (`read_array`).

  Integer arrays are taken as pixels in `[0, 255]` and scaled to `[−1, 1]`;
  float arrays are scaled from `value_range = (lo, hi)` if given, else kept.
  An `.npz` with a `labels` entry provides labels.

  Returns:
    `(x, labels)`: float32 `[N, D]` or `[N, H, W, C]`, int32 `[N]` or None.
  """
  if not path:
    raise ValueError("data.name='array' needs data.path to a .npy or .npz file.")
  x = read_array(path, key)
  if x.ndim not in (2, 4):
    raise ValueError(f"{path}: expected vectors [N, D] or images [N, H, W, C]; "
                     f"got shape {x.shape}.")
  if np.issubdtype(x.dtype, np.integer):
    x = to_unit_range(x, 0.0, 255.0)
  elif value_range:
    x = to_unit_range(x, *value_range)
  return np.asarray(x, np.float32), read_labels(path)


def molrg(dim: int, num_components: int, rank: int, num_points: int, seed: int,
          image_shape=None):
  """MoLRG samples `Σ_k (1/K) N(0, U_k U_kᵀ)` (orthogonal bases, docs/theory.md §1).

  Returns `(x, labels, bases)`: `x [N, D]` or its image view `[N, *image_shape]`
  (`prod(image_shape) = D`, e.g. 4×4×3 for D = 48), component labels `[N]`,
  bases `[K, D, R]` (for the score / subspace metrics).
  """
  import jax
  from repro_jax.closed_form import denoisers
  k_bases, k_pts = jax.random.split(jax.random.key(seed))
  bases = denoisers.random_molrg_bases(k_bases, dim, num_components, rank)
  x, labels = denoisers.sample_molrg(k_pts, bases, num_points)
  x = np.asarray(x, np.float32)
  if image_shape is not None:
    if int(np.prod(image_shape)) != dim:
      raise ValueError(f"MoLRG image view {tuple(image_shape)} does not hold D = {dim} "
                       "values.")
    x = x.reshape((num_points,) + tuple(image_shape))
  return x, np.asarray(labels, np.int32), np.asarray(bases)
