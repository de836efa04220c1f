"""Tiny CIFAR-10 directories in the real `cifar-10-batches-py` format, for tests."""

import pathlib
import pickle

import numpy as np


def write_cifar_batch(path, images_hwc, labels, protocol=2):
  """One batch in the format of `cifar-10-batches-py` (bytes keys, uint8 rows)."""
  rows = images_hwc.transpose(0, 3, 1, 2).reshape(len(images_hwc), 3072)
  batch = {b"batch_label": b"training batch 1 of 5", b"labels": list(labels),
           b"data": rows.astype(np.uint8),
           b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
  with open(path, "wb") as f:
    pickle.dump(batch, f, protocol=protocol)


def write_cifar_dir(path, num_images: int = 64, seed: int = 0) -> pathlib.Path:
  """A directory with `data_batch_1` … `data_batch_5` (the `num_images` split
  over them, in order) and `test_batch`, of smooth random images."""
  path = pathlib.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(seed)
  # Low-frequency images (an 8×8 field upsampled), so they look like images
  # rather than white noise, with every class present.
  coarse = rng.uniform(0, 255, size=(num_images, 8, 8, 3))
  images = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2).astype(np.uint8)
  labels = np.arange(num_images) % 10
  for i, rows in enumerate(np.array_split(np.arange(num_images), 5)):
    write_cifar_batch(path / f"data_batch_{i + 1}", images[rows], labels[rows])
  write_cifar_batch(path / "test_batch", images[: max(1, num_images // 4)],
                    labels[: max(1, num_images // 4)])
  return path
