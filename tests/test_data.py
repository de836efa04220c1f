"""Data readers and subsets: digits, CIFAR-10 from tiny files written in the
real python-pickle format, .npy/.npz arrays, MoLRG vectors and their image
view, deterministic subsets, and clear errors.
"""

import pickle

import numpy as np
import pytest

from repro_jax import data

from cifar_files import write_cifar_batch as _write_cifar_batch


def test_digits():
  x, labels = data.load_digits()
  assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
  assert x.min() == -1.0 and x.max() == 1.0
  assert set(labels.tolist()) == set(range(10))
  ds = data.load_dataset({"name": "digits"})
  assert ds.data_shape == (8, 8, 1) and len(ds) == 1797


def test_cifar10_reader_on_tiny_files(tmp_path):
  rng = np.random.RandomState(0)
  imgs1 = rng.randint(0, 256, (3, 32, 32, 3)).astype(np.uint8)
  imgs2 = rng.randint(0, 256, (2, 32, 32, 3)).astype(np.uint8)
  _write_cifar_batch(tmp_path / "data_batch_1", imgs1, [3, 1, 4])
  _write_cifar_batch(tmp_path / "data_batch_2", imgs2, [1, 5])
  _write_cifar_batch(tmp_path / "test_batch", imgs2[:1], [9], protocol=4)
  x, labels = data.load_cifar10(str(tmp_path))
  assert x.shape == (5, 32, 32, 3) and x.dtype == np.float32
  np.testing.assert_array_equal(labels, [3, 1, 4, 1, 5])
  expect = np.concatenate([imgs1, imgs2]).astype(np.float32) / 127.5 - 1.0
  np.testing.assert_allclose(x, expect, atol=1e-6)
  # Row layout: byte c·1024 + h·32 + w is pixel (h, w) of channel c.
  with open(tmp_path / "data_batch_1", "rb") as f:
    row = pickle.load(f, encoding="bytes")[b"data"][0]
  assert row[1024 + 5 * 32 + 7] == imgs1[0, 5, 7, 1]
  xt, lt = data.load_cifar10(str(tmp_path), "test")
  assert xt.shape == (1, 32, 32, 3) and lt.tolist() == [9]
  ds = data.load_dataset({"name": "cifar10", "path": str(tmp_path)})
  assert len(ds) == 5 and ds.labels is not None


def test_cifar10_errors(tmp_path):
  with pytest.raises(ValueError, match="cifar-10-batches-py"):
    data.load_cifar10("")
  with pytest.raises(FileNotFoundError, match="does not exist"):
    data.load_cifar10(str(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match="no CIFAR-10 batch files"):
    data.load_cifar10(str(tmp_path))
  (tmp_path / "data_batch_1").write_bytes(b"not a pickle at all")
  with pytest.raises(ValueError, match="not a CIFAR-10"):
    data.load_cifar10(str(tmp_path))
  with open(tmp_path / "data_batch_1", "wb") as f:
    pickle.dump({b"pixels": np.zeros((1, 3072), np.uint8)}, f)
  with pytest.raises(ValueError, match="b'data' and b'labels'"):
    data.load_cifar10(str(tmp_path))
  with open(tmp_path / "data_batch_1", "wb") as f:
    pickle.dump({b"data": np.zeros((1, 100), np.uint8), b"labels": [0]}, f)
  with pytest.raises(ValueError, match=r"uint8 \[n, 3072\]"):
    data.load_cifar10(str(tmp_path))
  with pytest.raises(ValueError, match="split"):
    data.load_cifar10(str(tmp_path), "valid")


def test_arrays(tmp_path):
  imgs = np.arange(2 * 4 * 4 * 3).reshape(2, 4, 4, 3).astype(np.uint8)
  np.save(tmp_path / "a.npy", imgs)
  x, labels = data.load_array(str(tmp_path / "a.npy"))
  np.testing.assert_allclose(x, imgs / 127.5 - 1.0, atol=1e-6)
  assert labels is None
  vec = np.linspace(0.0, 1.0, 12).reshape(3, 4)
  np.savez(tmp_path / "v.npz", points=vec, labels=np.array([0, 1, 1]))
  x, labels = data.load_array(str(tmp_path / "v.npz"), value_range=(0.0, 1.0))
  np.testing.assert_allclose(x, 2 * vec - 1, atol=1e-6)
  assert labels.tolist() == [0, 1, 1]
  ds = data.load_dataset({"name": "array", "path": str(tmp_path / "v.npz"),
                          "key": "points"})
  np.testing.assert_allclose(ds.x, vec, atol=1e-6)  # floats kept without a range
  np.save(tmp_path / "bad.npy", np.zeros((2, 3, 4)))
  with pytest.raises(ValueError, match=r"\[N, D\] or images"):
    data.load_array(str(tmp_path / "bad.npy"))
  with pytest.raises(FileNotFoundError):
    data.load_array(str(tmp_path / "nope.npy"))
  with pytest.raises(ValueError, match="no entry"):
    data.load_array(str(tmp_path / "v.npz"), key="images")
  with pytest.raises(ValueError, match="Unknown dataset"):
    data.load_dataset({"name": "mnist"})


def test_molrg_vectors_and_image_view():
  cfg = {"name": "molrg", "molrg": {"dim": 48, "num_components": 2, "rank": 4,
                                    "num_points": 100, "seed": 1}}
  ds = data.load_dataset(cfg)
  bases = ds.extras["bases"]
  assert ds.x.shape == (100, 48) and bases.shape == (2, 48, 4)
  # Every point lies in the subspace of its component.
  for k in range(2):
    xk = ds.x[ds.labels == k]
    resid = xk - xk @ bases[k] @ bases[k].T
    assert np.abs(resid).max() < 1e-4
  img = data.load_dataset(dict(cfg, name="molrg_image"))
  assert img.data_shape == (4, 4, 3)
  np.testing.assert_array_equal(img.x.reshape(100, 48), ds.x)
  with pytest.raises(ValueError, match="image view"):
    data.molrg(48, 2, 4, 10, 0, image_shape=(4, 4, 2))


def test_subset_indices(tmp_path):
  a = data.subset_indices(0, 1797, 64)
  assert a.shape == (64,) and a.dtype == np.int32
  assert len(set(a.tolist())) == 64 and a.min() >= 0 and a.max() < 1797
  np.testing.assert_array_equal(a, np.sort(a))
  np.testing.assert_array_equal(a, data.subset_indices(0, 1797, 64))
  assert not np.array_equal(a, data.subset_indices(1, 1797, 64))
  import jax
  np.testing.assert_array_equal(a, data.subset_indices(jax.random.key(0), 1797, 64))
  np.testing.assert_array_equal(data.subset_indices(5, 10, -1), np.arange(10))
  with pytest.raises(ValueError, match="only 10 rows"):
    data.subset_indices(0, 10, 11)
  data.save_indices(str(tmp_path), a)
  np.testing.assert_array_equal(data.load_indices(str(tmp_path)), a)
  assert data.load_indices(str(tmp_path / "none")) is None


def test_to_unit_range():
  np.testing.assert_allclose(data.to_unit_range([0, 8, 16], 0, 16), [-1, 0, 1])
  with pytest.raises(ValueError, match="hi > lo"):
    data.to_unit_range([0], 1, 1)
