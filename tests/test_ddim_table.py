"""DDIM's table study (ddim_table): its measures against direct computations, a smoke run."""

import json

import jax
import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.analysis import bootstrap
from repro_jax.analysis import distribution_metrics as dm
from repro_jax.studies import ddim_table as dt
from repro_jax.studies import runner


def test_slerp_keeps_the_ends_and_the_norm_of_orthogonal_noises():
  z1 = np.zeros((2, 3))
  z1[0, 0] = 2.0
  z2 = np.zeros((2, 3))
  z2[1, 2] = 2.0
  out = dt.slerp(z1, z2, np.linspace(0, 1, 5))
  assert out.shape == (5, 2, 3)
  np.testing.assert_allclose(out[0], z1, atol=1e-6)
  np.testing.assert_allclose(out[-1], z2, atol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(out.reshape(5, -1), axis=1), 2.0, rtol=1e-6)
  # The midpoint of a quarter circle: (cos 45°, sin 45°) · 2.
  np.testing.assert_allclose(out[2, 0, 0], out[2, 1, 2], rtol=1e-6)
  np.testing.assert_allclose(out[2, 0, 0], np.sqrt(2.0), rtol=1e-6)
  # Parallel noises: the straight line.
  np.testing.assert_allclose(dt.slerp(z1, 2 * z1, [0.5])[0], 1.5 * z1, rtol=1e-6)


def test_jump_fraction_of_even_snapping_and_constant_paths():
  a = np.linspace(0, 1, 11)[:, None] * np.ones((1, 4))
  snap = np.concatenate([np.zeros((5, 4)), np.ones((6, 4))])
  paths = np.stack([a, snap, np.zeros((11, 4))])
  np.testing.assert_allclose(dt.jump_fraction(paths), [0.1, 1.0, 0.0], atol=1e-12)


def test_retrieval_finds_the_same_index():
  rng = np.random.default_rng(0)
  ref = rng.standard_normal((2, 20, 5))
  x = ref + 1e-3 * rng.standard_normal(ref.shape)
  assert dt.retrieval(x, ref).all()
  perm = np.roll(np.arange(20), 1)
  assert not dt.retrieval(x[:, perm], ref).any()


def test_sw_bootstrap_matches_sliced_wasserstein_and_explicit_resamples():
  rng = np.random.default_rng(1)
  k, b, d = 3, 16, 4
  x = rng.standard_normal((k, b, d)).astype(np.float32)
  ref = (1.5 * rng.standard_normal((40, d)) + 0.3).astype(np.float32)
  key = jax.random.key(7)
  res = bootstrap.draw(jax.random.key(3), b, np.zeros(k, np.int64), 6)
  value, reps = dt.sw_bootstrap(key, x, ref, res.noise, res.models, num_projections=32)
  direct = dm.sliced_wasserstein(key, x.reshape(k * b, d), ref, num_projections=32)
  np.testing.assert_allclose(value, direct, rtol=1e-5)
  for r in range(reps.shape[0]):
    w = (np.asarray(res.models)[r][:, None] * np.asarray(res.noise)[r][None, :]).astype(int)
    pooled = np.repeat(x.reshape(k * b, d), w.ravel(), axis=0)
    np.testing.assert_allclose(
        reps[r], dm.sliced_wasserstein(key, pooled, ref, num_projections=32), rtol=1e-4)


def test_bad_settings_stop_before_any_work():
  s = dt.settings("smoke")
  for change in ({"etas": (0.2, 1.0)}, {"etas": (1.0, 0.0)}, {"steps": (6, 3)},
                 {"few_steps": (5,)}, {"consistency_steps": (12,)}, {"spacing": "nope"},
                 {"interp_points": 2}, {"num_samples": 4}, {"gap_ratio": 1.5},
                 {"digits_members": (("a", "mlp", 8, "nope"),)}):
    with pytest.raises(ValueError):
      settings_lib.override(s, change)
  with pytest.raises(ValueError, match="unknown variant"):
    dt.settings("nope")


def test_basic_interval_is_reflected_around_the_plug_in_value():
  e = dt._basic(1.0, np.array([1.1, 1.2, 1.3, 1.4, 1.5]), 0.5)
  assert e["plugin"] == 1.0 and e["value"] == pytest.approx(0.7)
  np.testing.assert_allclose(e["ci"], [2 - 1.4, 2 - 1.2])


def test_smoke_run(tmp_path):
  zoo = str(tmp_path / "zoo")
  s = settings_lib.override(dt.settings("smoke"), {"zoo": {"dir": zoo}, "molrg": {"dir": zoo}})
  m = runner.run_study("ddim_table", s, tmp_path / "out")
  for f in ("table.png", "consistency.png", "interpolation.png", "metrics.json", "report.md"):
    assert (tmp_path / "out" / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 5
  assert json.loads((tmp_path / "out" / "metrics.json").read_text())["verdicts"] == m["verdicts"]
  assert set(m["subjects"]) == {"MLP EDM", "MoLRG MLP N=32", "MoLRG exact"}
  for row in m["subjects"].values():
    for sc in row["scores"].values():
      for r in s.rows:
        for n in s.steps:
          e = sc["table"][r][str(n)]
          assert np.isfinite(e["value"]) and e["ci"][0] <= e["ci"][1]
    for r in ("0", "1"):
      for n in s.consistency_steps:
        assert 0 <= row["consistency"][r][str(n)]["value"] <= 1
  # The control snaps between training points; its median jump is a share of its path.
  for row in m["controls"].values():
    assert 1 / (s.interp_points - 1) - 1e-9 <= row["interpolation"]["value"] <= 1
