"""`python -m experiments.sample` and its library side `sample_from_data`."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from repro_jax import data as data_lib
from repro_jax.diffusion import denoiser
from repro_jax import samplers
from repro_jax.diffusion import schedules

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run_cli(*args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env["XLA_FLAGS"] = ""  # one CPU device is enough
  return subprocess.run([sys.executable, "-m", "experiments.sample", *args], cwd=_ROOT,
                        env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def images(tmp_path):
  rng = np.random.default_rng(0)
  data = rng.normal(size=(6, 4, 4)).astype(np.float32)
  noise = rng.normal(size=(3, 4, 4)).astype(np.float32)
  np.save(tmp_path / "data.npy", data)
  np.save(tmp_path / "noise.npy", noise)
  return tmp_path, data, noise


def test_cli_matches_python_api_and_writes_png(images):
  tmp, data, noise = images
  out = tmp / "out" / "s.npz"
  r = _run_cli("--data", str(tmp / "data.npy"), "--noise", str(tmp / "noise.npy"),
               "--sigmas", "10,1,0.1,0", "--sampler", "heun", "--out", str(out),
               "--trajectory")
  assert r.returncode == 0, r.stderr
  with np.load(out) as f:
    samples, xs, x0_hats = f["samples"], f["xs"], f["x0_hats"]
    np.testing.assert_array_equal(f["sigmas"], [10, 1, 0.1, 0])
  assert samples.shape == (3, 4, 4) and xs.shape == (4, 3, 4, 4) and x0_hats.shape == (3, 3, 4, 4)
  api = samplers.sample_from_data(data, noise, sigmas="10,1,0.1,0", sampler="heun")
  np.testing.assert_allclose(samples, api.samples, rtol=1e-5, atol=1e-5)
  # Direct use of the canonical interface agrees too.
  direct = samplers.sample(denoiser.empirical(data), noise, [10, 1, 0.1, 0], sampler="heun")
  np.testing.assert_allclose(samples, direct.samples, rtol=1e-5, atol=1e-5)
  # The empirical denoiser memorizes: every sample is a training image.
  d = np.linalg.norm((samples[:, None] - data[None]).reshape(3, 6, -1), axis=-1).min(1)
  assert d.max() < 1e-4
  assert (tmp / "out" / "s.png").stat().st_size > 0
  assert not [p for p in (tmp / "out").iterdir() if p.name.endswith(".tmp")]


def test_cli_bad_flags_fail_clearly(images):
  tmp, _, _ = images
  base = ["--data", str(tmp / "data.npy"), "--out", str(tmp / "o.npz")]
  np.save(tmp / "bad.npy", np.zeros((3, 5), np.float32))
  cases = [  # each case starts a Python: the rest is checked through the API below
      (["--sampler", "nope"], "Unknown sampler 'nope'"),
      (["--sigmas", "1,2,0"], "strictly decreasing"),
      (["--noise", str(tmp / "bad.npy")], "`noise` must have shape"),
  ]
  for extra, match in cases:
    r = _run_cli(*base, *extra)
    assert r.returncode != 0 and match in r.stderr, (extra, r.stderr[-500:])
  assert not (tmp / "o.npz").exists()


def test_sample_from_data_seed_schedule_and_npz_input(tmp_path, x64):
  data = np.random.default_rng(1).normal(size=(5, 3))
  np.savez(tmp_path / "d.npz", other=np.zeros((2, 2)), x=data)
  np.testing.assert_array_equal(data_lib.read_array(tmp_path / "d.npz"), data)
  kw = dict(seed=4, num_samples=7, schedule="ddpm", steps=6, spacing="trailing",
            sampler="gradient_estimation", gamma=2.0)
  res = samplers.sample_to_files(tmp_path / "d.npz", tmp_path / "o.npz", **kw)
  with np.load(tmp_path / "o.npz") as f:
    np.testing.assert_array_equal(f["samples"], res.samples)
    noise = f["noise"]
  assert noise.shape == (7, 3) and not (tmp_path / "o.png").exists()
  np.testing.assert_array_equal(noise, samplers.resolve_noise(data, seed=4, num_samples=7))
  g = schedules.sigma_grid(schedules.get_schedule("ddpm"), 6, "trailing")
  ref = samplers.sample(denoiser.empirical(data), noise, g, sampler="gradient_estimation")
  np.testing.assert_allclose(res.samples, ref.samples, rtol=1e-12, atol=1e-12)
  # Batching gives the same deterministic samples.
  kw.pop("num_samples")
  batched = samplers.sample_from_data(data, noise, batch_size=3, return_trajectory=True, **kw)
  np.testing.assert_allclose(batched.samples, res.samples, rtol=1e-12, atol=1e-12)
  assert batched.xs.shape == (7, 7, 3) and batched.x0_hats.shape == (6, 7, 3)


def test_sample_from_data_stochastic_is_seeded():
  data = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
  run = lambda seed: np.asarray(samplers.sample_from_data(
      data, seed=seed, num_samples=4, steps=5, sampler="ddpm").samples)
  np.testing.assert_array_equal(run(0), run(0))
  assert np.abs(run(0) - run(1)).max() > 1e-3


def test_sample_from_data_bad_inputs():
  data = np.zeros((4, 3), np.float32)
  with pytest.raises(ValueError, match="`noise` must have shape"):
    samplers.sample_from_data(data, np.zeros((2, 4), np.float32))
  with pytest.raises(ValueError, match="`num_samples`"):
    samplers.sample_from_data(data, num_samples=0)
  with pytest.raises(ValueError, match="`data`"):
    samplers.sample_from_data(np.zeros((4,)))
  with pytest.raises(ValueError, match="`steps`"):
    samplers.sample_from_data(data, steps=0)
  with pytest.raises(ValueError, match="Unknown grid spacing"):
    samplers.sample_from_data(data, spacing="nope")
  with pytest.raises(ValueError, match="no option"):
    samplers.sample_from_data(data, sampler="heun", gamma=2.0)
  with pytest.raises(ValueError, match="`out`"):
    samplers.sample_to_files(data, "o.txt")
  with pytest.raises(FileNotFoundError, match="`data` file not found"):
    data_lib.read_array("/nonexistent/data.npy")
  with pytest.raises(ValueError, match="`batch_size`"):
    samplers.sample_from_data(data, batch_size=0)
  with pytest.raises(ValueError, match="Unknown schedule"):
    samplers.sample_from_data(data, schedule="nope")
  with pytest.raises(ValueError, match="`gamma`"):
    samplers.sample_from_data(data, sampler="gradient_estimation", gamma=-1.0)
  with pytest.raises(ValueError, match="`eta`"):
    samplers.sample_from_data(data, sampler="ddim", eta=2.0)
  with pytest.raises(ValueError, match="`sigmas`"):
    samplers.sample_from_data(data, sigmas="1,a")
  with pytest.raises(ValueError, match="`num_samples`"):
    samplers.sample_from_data(data, np.zeros((3, 3), np.float32), num_samples=2)
  with pytest.raises(ValueError, match="`mu`"):
    samplers.sample_from_data(data, sampler="ddpm", mu=1.0)


def test_save_image_grid_cols_puts_one_set_per_row(tmp_path):
  """`cols=B` draws sets of B images one per row; the default grid is square."""
  import matplotlib.image
  imgs = np.random.default_rng(0).uniform(-1, 1, size=(24, 8, 8, 1))
  samplers.save_image_grid(tmp_path / "rows.png", imgs, cols=8)
  samplers.save_image_grid(tmp_path / "square.png", imgs)
  h, w = matplotlib.image.imread(tmp_path / "rows.png").shape[:2]
  assert w / h == pytest.approx((8 * 9 + 1) / (3 * 9 + 1), rel=0.1)    # 3 rows of 8
  h, w = matplotlib.image.imread(tmp_path / "square.png").shape[:2]
  assert w / h == pytest.approx(1.0, rel=0.1)                          # 5 × 5
  for bad in (0, -1, 2.5, True):
    with pytest.raises(ValueError, match="`cols`"):
      samplers.save_image_grid(tmp_path / "bad.png", imgs, cols=bad)
