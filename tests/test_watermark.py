"""The null-space watermark study (watermark): scores, attacks, directions, a smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.diffusion import denoiser
from repro_jax.studies import runner
from repro_jax.studies import watermark as wm


def test_auc_and_tpr_against_scikit_learn():
  from sklearn.metrics import roc_auc_score
  rng = np.random.default_rng(0)
  pos = rng.normal(1.0, 1.0, 300)
  neg = np.concatenate([rng.normal(0.0, 1.0, 700), pos[:5]])       # a few ties
  auc, tpr = wm.auc_tpr(pos, neg, 0.01)
  want = roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])
  assert auc == pytest.approx(want, abs=1e-12)
  thr = np.sort(neg)[int(np.ceil(0.99 * (len(neg) - 1)))]
  assert tpr == pytest.approx(np.mean(pos > thr))
  assert np.mean(neg > thr) <= 0.01
  assert wm.auc_tpr([5.0, 6.0], [0.0, 1.0], 0.01) == (1.0, 1.0)


def test_attacks_and_visibility():
  rng = np.random.default_rng(1)
  s = wm.settings("smoke")
  x = np.clip(rng.normal(0, 0.5, (3, 8, 8, 1)), -1, 1).astype(np.float32)
  assert np.array_equal(wm.attack(x, "clean", s, rng), x)
  for name in wm.ATTACKS:
    y = wm.attack(x, name, s, rng)
    assert y.shape == x.shape and np.isfinite(y).all()
  # JPEG at the best quality is close to the 8-bit image; blur keeps the mean.
  assert np.abs(wm.jpeg(x, 95) - x).max() < 0.15
  np.testing.assert_allclose(wm.attack(x, "blur", s, rng).mean(), x.mean(), atol=0.05)
  with pytest.raises(ValueError, match="unknown attack"):
    wm.attack(x, "rotate", s, rng)
  psnr, ssim = wm.visibility(x + 0.1, x)
  np.testing.assert_allclose(psnr, 10 * np.log10(4 / 0.01), rtol=1e-6)
  assert np.all(ssim < 1.0)
  assert np.all(wm.visibility(x, x)[1] == pytest.approx(1.0))


def test_directions_split_the_space(x64):
  rng = np.random.default_rng(2)
  dim = 12
  a = rng.normal(size=(dim, 4))
  den = denoiser.gaussian(jnp.zeros(dim), jnp.asarray(a @ a.T + 1e-3 * np.eye(dim)))
  x = jnp.asarray(rng.normal(size=(3, dim)))
  d = wm.directions(den, x, 0.5, jax.random.key(0), 4)
  for meth in wm.METHODS:
    np.testing.assert_allclose(np.linalg.norm(np.asarray(d[meth]), axis=1), 1.0, rtol=1e-12)
  assert np.abs(np.sum(np.asarray(d["null"]) * np.asarray(d["range"]), axis=1)).max() < 1e-10
  # J barely moves the null-space direction, fully moves the range one.
  jac = a @ a.T + 1e-3 * np.eye(dim)
  jac = jac @ np.linalg.inv(jac + 0.25 * np.eye(dim))
  assert np.linalg.norm(np.asarray(d["null"]) @ jac.T, axis=1).max() < 0.01
  assert np.linalg.norm(np.asarray(d["range"]) @ jac.T, axis=1).min() > 0.3
  # The matrix-free path finds the same range.
  d2 = wm.directions(den, x, 0.5, jax.random.key(0), 4, exact_max_dim=1)
  np.testing.assert_allclose(np.abs(np.sum(np.asarray(d["range"]) * np.asarray(d2["range"]),
                                           axis=1)), 1.0, atol=1e-6)


def test_smoke_run(tmp_path):
  s = settings_lib.override(wm.settings("smoke"), {"zoo": {"dir": str(tmp_path / "zoo")}})
  m = runner.run_study("watermark", s, tmp_path / "out")
  for f in ("examples.png", "robustness.png", "examples.npz", "metrics.json", "report.md"):
    assert (tmp_path / "out" / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 3
  assert json.loads((tmp_path / "out" / "metrics.json").read_text())["verdicts"] == m["verdicts"]
  row = m["subjects"]["MLP EDM"]
  for meth in wm.METHODS:
    for att in wm.ATTACKS:
      e = row["auc"][meth][att]
      assert 0.0 <= e["ci"][0] <= e["value"] + 1e-12 and e["value"] <= e["ci"][1] + 1e-12 <= 1.0 + 1e-12
