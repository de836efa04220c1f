"""The LOCO edit study (loco_edit): its measures against explicit computations, a smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.diffusion import denoiser
from repro_jax.studies import loco_edit as le
from repro_jax.studies import runner


def test_split_grid_and_region():
  pre, post = le.split_grid([80.0, 10.0, 2.0, 0.5, 0.0], 1.0)
  np.testing.assert_array_equal(pre, [80.0, 10.0, 2.0, 1.0])
  np.testing.assert_array_equal(post, [1.0, 0.5, 0.0])
  s = le.settings("smoke")
  mask = le.region_mask((8, 8, 1), s)
  r0, r1, c0, c1 = s.region
  assert mask.sum() == (r1 - r0) * (c1 - c0) and mask[r0, c0, 0] == 1 and mask[0, 0, 0] == 0
  assert le.region_mask((12,), s, molrg=True).sum() == s.molrg_region


def test_inside_share_and_cosine():
  mask = np.array([1.0, 1.0, 0.0, 0.0])
  d = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 3.0, 4.0]])
  np.testing.assert_allclose(le.inside_share(d, mask), [1.0, 0.5, 0.0])
  np.testing.assert_allclose(le._cos(d[:2], d[1:]), [0.5, 7.0 / 10.0])


def test_linear_denoiser_is_exactly_linear_and_composable(x64):
  """For a Gaussian (linear) denoiser the linearity and composition errors vanish,
  and with the outside's directions projected out the change sits inside Ω."""
  rng = np.random.default_rng(0)
  dim = 16
  a = rng.normal(size=(dim, 5))
  den = denoiser.gaussian(jnp.zeros(dim), jnp.asarray(a @ a.T + 1e-4 * np.eye(dim)))
  s = settings_lib.override(le.settings("smoke"), dict(k=2, null_k=5, oversample=dim,
                                                       molrg_region=4))
  mask = le.region_mask((dim,), s, molrg=True)
  x = jnp.asarray(rng.normal(size=(4, dim)))
  out = le.edit_measures(den, x, 1.0, mask, s, jax.random.key(0), null_k=5)
  assert np.abs(out["linearity"]).max() < 1e-10
  assert np.abs(out["composition"]).max() < 1e-10
  assert out["inside"].min() > 0.999 > out["inside_random"].max()
  # J is the same at every x: a direction does the same everywhere.
  np.testing.assert_allclose(out["transfer"], 1.0, atol=1e-10)
  np.testing.assert_allclose(out["transfer_random"], 1.0, atol=1e-10)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("loco")
  zoo = str(base / "zoo")
  s = settings_lib.override(le.settings("smoke"), {"zoo": {"dir": zoo}, "molrg": {"dir": zoo}})
  return base, s, runner.run_study("loco_edit", s, base / "out")


def test_smoke_run(smoke_run):
  base, s, m = smoke_run
  out = base / "out"
  for f in ("edits.png", "loco.png", "edits.npz", "metrics.json", "report.md"):
    assert (out / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 6
  assert json.loads((out / "metrics.json").read_text())["verdicts"] == m["verdicts"]
  fig = np.load(out / "edits.npz")
  assert fig["samples"].shape[:2] == (s.figure_images, len(s.figure_lambdas))
  for lab, row in m["subjects"].items():
    for name, e in row.items():
      if name == "num_models":
        continue
      val, ci = np.asarray(e["value"]), np.asarray(e["ci"])
      assert np.all(ci[..., 0] <= val + 1e-9) and np.all(val <= ci[..., 1] + 1e-9), (lab, name)
  # The exact MoLRG posterior mean changes only along its subspaces.
  assert m["subjects"]["exact MoLRG"]["on_support"]["value"] > 0.999
