"""The reproducibility experiments: helpers against brute force, studies at smoke size."""

import csv
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from oracles import np_ncc
from repro_jax.diffusion import denoiser
from repro_jax.analysis import metrics
from repro_jax.networks import model_zoo
from repro_jax.analysis import reproducibility as rpr
from repro_jax.networks import training
from repro_jax import settings as settings_lib
from repro_jax.studies import _zoo_study
from repro_jax.studies import runner
from repro_jax.studies import verdicts as verdicts_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


# Model zoo ---------------------------------------------------------------------

def test_nested_subsets_and_grid_order():
  subs = model_zoo.nested_subsets(100, (4, 16, 100), seed=3)
  assert [len(subs[n]) for n in (4, 16, 100)] == [4, 16, 100]
  assert set(subs[4]) <= set(subs[16]) <= set(subs[100])
  assert len(np.unique(subs[16])) == 16
  sizes, seeds = model_zoo.model_grid((4, 16), (0, 1))
  np.testing.assert_array_equal(sizes, [4, 4, 16, 16])
  np.testing.assert_array_equal(seeds, [0, 1, 0, 1])


@pytest.fixture(scope="module")
def tiny_trainer():
  cfg = runner.study_settings("reproducibility_regimes", "smoke")
  train_cfg = model_zoo.train_config(cfg.zoo, 16)
  assert train_cfg.model.name == "mlp" and train_cfg.model.hidden == 16
  trainer = training.make_trainer(train_cfg, (8, 8, 1))
  keys = [jax.random.key(i) for i in range(3)]
  # Perturb the zero-initialized output layer so the models differ.
  params = jnp.stack([training.init_state(trainer, k).params for k in keys])
  params = params + 0.05 * jax.random.normal(jax.random.key(9), params.shape)
  return trainer, params


def test_stacked_denoiser_matches_each_model(tiny_trainer):
  trainer, params = tiny_trainer
  b = 5
  x = jax.random.normal(jax.random.key(1), (3 * b, 8, 8, 1))
  sigma = jnp.tile(jnp.array([0.01, 0.3, 1.0, 5.0, 80.0]), 3)
  stacked = training.stacked_denoiser(trainer, params)(x, sigma)
  for m in range(3):
    one = training.network_denoiser(trainer, params[m])(x[m * b:(m + 1) * b],
                                                        sigma[m * b:(m + 1) * b])
    np.testing.assert_allclose(stacked[m * b:(m + 1) * b], one, rtol=1e-5, atol=1e-5)


def test_sample_models_chunks_and_models(tiny_trainer):
  trainer, params = tiny_trainer
  noise = np.asarray(jax.random.normal(jax.random.key(2), (7, 8, 8, 1)))
  sig = rpr.sigma_grid(4, 0.002, 80.0)
  den = training.stacked_denoiser(trainer, params)
  full = _zoo_study.sample(den, noise, sig, sampler="heun", chunk=7)
  chunked = _zoo_study.sample(den, noise, sig, sampler="heun", chunk=3)
  assert full.shape == (3, 7, 8, 8, 1)
  np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-5)
  one = _zoo_study.sample(training.network_denoiser(trainer, params[1]), noise, sig,
                          sampler="heun", chunk=7)
  np.testing.assert_allclose(one, full[1], rtol=1e-4, atol=1e-4)


# Reproducibility helpers against brute force ------------------------------------

def test_pair_and_training_scores_brute_force(x64):
  rng = np.random.default_rng(0)
  train = np.tanh(rng.normal(size=(30, 6, 6, 1)))
  copies = np.clip(train[:8] + 0.02 * rng.normal(size=(8, 6, 6, 1)), -1, 1)
  fresh = np.tanh(rng.normal(size=(8, 6, 6, 1)))
  a = np.concatenate([copies, fresh])
  stack = np.stack([a, a[::-1], np.clip(a + 0.05, -1, 1)])
  sims = {"cal": metrics.get_similarity("ncc", 0.9), "paper": metrics.get_similarity("ncc", 0.6)}
  ps = rpr.pair_scores(stack, sims, 15.0)
  for m in range(3):
    for n in range(3):
      s = np.diag(np_ncc(stack[m], stack[n]))
      assert ps["rp_cal"][m, n] == pytest.approx((s > 0.9).mean())
      assert ps["rp_paper"][m, n] == pytest.approx((s > 0.6).mean())
      mae = np.abs(127.5 * (stack[m] - stack[n])).reshape(16, -1).mean(1)
      assert ps["mae"][m, n] == pytest.approx((mae < 15).mean())
  for k in ("rp_cal", "rp_paper", "mae", "sim_mean"):
    np.testing.assert_allclose(ps[k], ps[k].T, atol=1e-12)
  # The per-noise values behind the scores.
  pv = rpr.pair_values(stack, sims)
  assert pv["sim_cal"] is pv["sim_paper"]                     # one descriptor, one array
  for m in range(3):
    for n in range(3):
      np.testing.assert_allclose(pv["sim_cal"][m, n], np.diag(np_ncc(stack[m], stack[n])),
                                 atol=1e-5)
      np.testing.assert_allclose(
          pv["mae"][m, n], np.abs(127.5 * (stack[m] - stack[n])).reshape(16, -1).mean(1),
          atol=1e-3)
  np.testing.assert_allclose((pv["sim_cal"] > 0.9).mean(-1), ps["rp_cal"])
  np.testing.assert_allclose((pv["mae"] < 15).mean(-1), ps["mae"])
  np.testing.assert_allclose(np.diag(ps["rp_cal"]), 1.0)
  sc = rpr.training_scores(a, train, sims, chunk=7)
  s = np_ncc(a, train)
  assert sc["gl_cal"] == pytest.approx(1 - (s.max(1) > 0.9).mean())
  assert sc["gl_paper"] == pytest.approx(1 - (s.max(1) > 0.6).mean())
  d = np.sort(np.sqrt(((a.reshape(16, 1, -1) - train.reshape(1, 30, -1)) ** 2).sum(-1)), 1)
  assert sc["l_generalize"] == pytest.approx(d[:, 0].mean())
  assert sc["nn_ratio_median"] == pytest.approx(np.median(d[:, 0] / d[:, 1]))
  assert rpr.training_scores(copies, train, sims)["gl_cal"] == 0.0
  ms = rpr.max_similarities(a, train, sims, chunk=7)
  np.testing.assert_allclose(ms["cal"], s.max(1), atol=1e-6)
  assert rpr.training_scores(a, train, sims, chunk=7, max_sims=ms) == sc


def test_regime_bands_and_off_diagonal():
  assert rpr.regime(0.05, 0.9) == "memorization"
  assert rpr.regime(0.05, 0.2) == "transition"
  assert rpr.regime(0.3, 0.9) == "transition"
  assert rpr.regime(0.95, 0.0) == "generalization"
  assert rpr.regime(0.8, 0.0) == "transition"
  mat = np.arange(16.0).reshape(4, 4)
  assert rpr.off_diagonal_mean(mat, [0, 1], [0, 1]) == pytest.approx((1 + 4) / 2)
  assert np.isnan(rpr.off_diagonal_mean(mat, [2], [2]))


def test_anchor_labels_agreement_and_anchors():
  rng = np.random.default_rng(1)
  anchors = rng.normal(size=(3, 4, 4, 1))
  plane = np.concatenate([anchors + 0.1 * rng.normal(size=(3, 4, 4, 1)),
                          rng.normal(size=(20, 4, 4, 1))])
  sim = metrics.get_similarity("ncc", 0.5)
  lab, val = rpr.anchor_labels(plane, anchors, sim)
  s = np_ncc(plane, anchors)
  np.testing.assert_array_equal(lab, s.argmax(1))
  np.testing.assert_allclose(val, s.max(1), rtol=1e-5)
  np.testing.assert_array_equal(lab[:3], [0, 1, 2])
  a = np.array([0, 0, 1, 1, 2, 2])
  b = np.array([0, 1, 1, 1, 2, 0])
  agree, chance = rpr.map_agreement(a, b)
  assert agree == pytest.approx(4 / 6)
  assert chance == pytest.approx(sum((a == k).mean() * (b == k).mean() for k in range(3)))
  # Anchors: distinct training images, distinct classes first.
  idx = rpr.pick_anchors([5, 5, 7, 9, 11], class_labels=[1, 1, 1, 2, 3])
  np.testing.assert_array_equal(idx, [0, 3, 4])
  np.testing.assert_array_equal(rpr.pick_anchors([5, 5, 7, 9]), [0, 2, 3])
  with pytest.raises(ValueError, match="three distinct"):
    rpr.pick_anchors([1, 1, 2])
  rgb = rpr.plane_rgb(lab[:9].reshape(3, 3), val[:9].reshape(3, 3))
  assert rgb.shape == (3, 3, 3) and np.all((rgb >= 0) & (rgb <= 1))


def test_fixed_noises_saved_and_reused(tmp_path):
  path = tmp_path / "noises.npy"
  z = rpr.fixed_noises(4, 5, (2, 2, 1), path)
  assert z.shape == (5, 2, 2, 1) and z.dtype == np.float32
  np.save(path, z + 1.0)                          # a saved set wins over the seed
  np.testing.assert_array_equal(rpr.fixed_noises(4, 5, (2, 2, 1), path), z + 1.0)
  assert rpr.fixed_noises(4, 6, (2, 2, 1), path).shape == (6, 2, 2, 1)   # shape changed


def test_theory_generations_are_copies():
  rng = np.random.default_rng(2)
  data = np.tanh(rng.normal(size=(6, 4, 4, 1))).astype(np.float32)

  class _Ds:
    x = data
  noise = rng.normal(size=(10, 4, 4, 1)).astype(np.float32)
  dens = rpr.empirical_denoisers(_Ds, {6: np.arange(6)})
  gen = rpr.theory_generations(dens, noise, rpr.sigma_grid(12, 0.002, 80.0), sampler="heun",
                               chunk=4)[6]
  d = np.sqrt(((gen.reshape(10, 1, -1) - data.reshape(1, 6, -1)) ** 2).sum(-1)).min(1)
  assert d.max() < 1e-2


# The studies at smoke size -------------------------------------------------------

def _groups(zoo_dir):
  """The trained groups in a zoo directory (not the learned descriptors' cache)."""
  return sorted(p.name for p in zoo_dir.iterdir() if p.is_dir() and p.name != "descriptors")


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
  base = tmp_path_factory.mktemp("repro")
  zoo_dir = {"zoo": {"dir": str(base / "zoo")}}
  cfg = settings_lib.override(runner.study_settings("reproducibility_regimes", "smoke"), zoo_dir)
  m1 = runner.run_study("reproducibility_regimes", cfg, base / "regimes")
  groups_after_first = _groups(base / "zoo")
  cfg2 = settings_lib.override(
      runner.study_settings("reproducibility_across_samplers", "smoke"), zoo_dir)
  m2 = runner.run_study("reproducibility_across_samplers", cfg2, base / "samplers")
  groups_after_second = _groups(base / "zoo")
  return base, cfg, m1, m2, groups_after_first, groups_after_second


def test_regimes_smoke(smoke_runs):
  base, cfg, m, _, groups, _ = smoke_runs
  out = base / "regimes"
  for f in ("calibration.png", "regimes.png", "rp_theory.png", "samples.png",
            "threshold_band_learned.png",
            "noise_plane.png", "threshold_band.png", "similarity_distributions.png",
            "regimes.csv", "metrics.json", "report.md", "noises.npy",
            "subsets.npz", "config.json", "figures.npz"):
    assert (out / f).stat().st_size > 0, f
  assert len(groups) == len(cfg.zoo.widths)
  assert np.load(out / "noises.npy").shape == (cfg.num_noises, 8, 8, 1)
  subsets = np.load(out / "subsets.npz")
  assert [len(subsets[f"N{n}"]) for n in cfg.zoo.sizes] == list(cfg.zoo.sizes)
  saved = json.loads((out / "metrics.json").read_text())
  assert 0.0 < saved["threshold"] < 1.0
  k = len(cfg.zoo.widths) * len(cfg.zoo.seeds) + 1
  for s in m["per_size"]:
    for key in ("rp_cal", "rp_paper", "mae", "sim_mean"):
      mat = np.asarray(s[key])
      assert mat.shape == (k, k)
      np.testing.assert_allclose(mat, mat.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(s["rp_cal"]), 1.0)      # RP of a model with itself
    np.testing.assert_allclose(np.diag(s["mae"]), 1.0)
    assert s["theory"]["gl_cal"] <= 0.1                         # ε* generations are copies
    assert s["regime"] in rpr.REGIMES
    for v in s["widths"].values():
      assert 0.0 <= v["gl_cal"] <= 1.0 and 0.0 <= v["rp_theory"] <= 1.0
  text = (out / "report.md").read_text()
  assert "![regimes](regimes.png)" in text and "**Verdicts**" in text
  assert len(m["noise_plane"]["anchors"]) == 3
  assert [v["claim"] for v in m["verdicts"]] == [v["claim"] for v in saved["verdicts"]]
  assert len(m["verdicts"]) == 7
  assert {v["verdict"] for v in saved["verdicts"]} <= set(verdicts_lib.VERDICTS)
  # Every verdict but the dip's (two N cannot dip) is tested and carries intervals.
  assert [v["verdict"] == "not tested" for v in saved["verdicts"]] == [False] * 5 + [True, False]
  for v in saved["verdicts"][:5]:
    assert any(k.endswith("_ci") for k in v["measured"]), v["claim"]


def _inside(value, ci, tol=1e-9):
  return ci[0] - tol <= value <= ci[1] + tol


def test_regimes_intervals_and_curves_are_consistent(smoke_runs):
  base, cfg, _, _, _, _ = smoke_runs
  from repro_jax.studies import reproducibility_regimes as rr
  out = base / "regimes"
  m = json.loads((out / "metrics.json").read_text())
  arrays = np.load(out / "figures.npz")
  rows = list(csv.DictReader((out / "regimes.csv").open()))
  assert len(rows) == len(cfg.zoo.sizes) * len(cfg.zoo.widths) * len(cfg.zoo.seeds)
  for row in rows:                     # per model: value, lo, hi of every score
    for k in rr.SCORES:
      v, lo, hi = (float(row[k + x]) for x in ("", "_lo", "_hi"))
      assert 0.0 <= lo <= v <= hi <= 1.0, (k, row)
  t = np.asarray(arrays["curve_thresholds"])
  i_cal = int(np.flatnonzero(np.isclose(t, m["threshold"], atol=1e-6))[0])
  k = len(cfg.zoo.widths) * len(cfg.zoo.seeds) + 1
  for j, s in enumerate(m["per_size"]):
    for key in ("rp_seed", "rp_cross", "rp_cross_paper", "mae_cross", "gl", "rp_theory"):
      assert _inside(s[key], s[key + "_ci"]), (s["N"], key)
    assert _inside(s["theory"]["gl_cal"], s["theory"]["gl_cal_ci"])
    for v in s["widths"].values():
      for key in rr.SCORES:
        assert _inside(v[key], v[key + "_ci"]), (s["N"], key)
    # The mean over widths is the mean of the widths' scores.
    assert s["rp_seed"] == pytest.approx(np.mean([v["rp_seed"] for v in s["widths"].values()]))
    ci = np.asarray(s["rp_cal_ci"])
    assert ci.shape == (k, k, 2)
    assert np.all(ci[..., 0] <= np.asarray(s["rp_cal"]) + 1e-4)
    assert np.all(np.asarray(s["rp_cal"]) <= ci[..., 1] + 1e-4)
    # The threshold curves at the calibrated threshold are the reported scores.
    assert arrays["curve_rp_seed"][j, i_cal] == pytest.approx(s["rp_seed"], abs=1e-9)
    assert arrays["curve_rp_cross"][j, i_cal] == pytest.approx(s["rp_cross"], abs=1e-9)
    assert arrays["curve_rp_theory"][j, i_cal] == pytest.approx(s["rp_theory"], abs=1e-9)
    assert arrays["curve_gl"][j, i_cal] == pytest.approx(s["gl"], abs=1e-9)
    assert np.all(np.diff(arrays["curve_rp_seed"][j]) <= 1e-12)     # RP falls with t
    assert np.all(np.diff(arrays["curve_gl"][j]) >= -1e-12)         # GL rises with t
    # The band: its thresholds, point values on the curves, intervals around them.
    b = s["band"]
    np.testing.assert_allclose(b["thresholds"], rr.band_thresholds(cfg))
    for x, v, ci_b, g, gci in zip(b["thresholds"], b["rp_seed"], b["rp_seed_ci"], b["gl"],
                                  b["gl_ci"]):
      i = int(np.argmin(np.abs(t - x)))
      assert arrays["curve_rp_seed"][j, i] == pytest.approx(v, abs=1e-6)
      assert arrays["curve_gl"][j, i] == pytest.approx(g, abs=1e-6)
      assert _inside(v, ci_b) and _inside(g, gci)
    # Threshold-free: quantiles ordered, histograms hold every pair / sample.
    for key in ("sim_seed_quantiles", "max_sim_quantiles"):
      assert np.all(np.diff(s[key]) >= 0) and len(s[key]) == len(arrays["quantile_levels"])
    pairs = len(cfg.zoo.widths) * len(cfg.zoo.seeds) * (len(cfg.zoo.seeds) - 1) // 2
    assert arrays["hist_seed"][j].sum() == pairs * cfg.num_noises
    assert arrays["hist_train"][j].sum() == (k - 1) * cfg.num_noises
  text = (out / "report.md").read_text()
  assert "![threshold band](threshold_band.png)" in text
  assert "![similarity distributions](similarity_distributions.png)" in text
  s0 = m["per_size"][0]
  assert f"{s0['rp_seed']:.2f} [{s0['rp_seed_ci'][0]:.2f}, {s0['rp_seed_ci'][1]:.2f}]" in text


def _rerender(name, study_dir, figures):
  """Delete the figures and the report, render them again from metrics.json and the
  saved arrays; returns (old report, new report)."""
  before = (study_dir / "report.md").read_text()
  for f in figures + ("report.md",):
    (study_dir / f).unlink()
  module = runner.study_module(name)
  s = settings_lib.parse(module.Settings, json.loads((study_dir / "config.json").read_text()))
  module.render(s, json.loads((study_dir / "metrics.json").read_text()), study_dir)
  for f in figures:
    assert (study_dir / f).stat().st_size > 0, f
  return before, (study_dir / "report.md").read_text()


def test_regimes_render_needs_only_metrics_and_arrays(smoke_runs):
  base = smoke_runs[0]
  before, after = _rerender("reproducibility_regimes", base / "regimes",
                            ("calibration.png", "regimes.png", "rp_theory.png", "samples.png",
                             "noise_plane.png"))
  assert after == before


def test_regimes_verdicts_follow_their_criteria(smoke_runs):
  base, cfg, _, _, _, _ = smoke_runs
  from repro_jax.studies import _regimes_report as report
  from repro_jax.studies import reproducibility_regimes as rr
  m = json.loads((base / "regimes" / "metrics.json").read_text())
  s = m["summary"]
  # One width: "wider memorizes longer" has nothing to compare.
  one = dict(m, summary=dict(s, wider_memorizes_longer=None))
  assert rr.verdicts(cfg, one)[3].verdict == "not tested"
  assert rr.verdicts(cfg, dict(m, summary=dict(s, wider_memorizes_longer=True)))[3].verdict == (
      "reproduced")
  # A stricter plane margin than the measured agreement above chance fails the plane verdict.
  pr = s["plane"][0]
  strict = settings_lib.override(
      cfg, {"min_plane_margin": pr["agree_models"] - pr["chance_models"] + 0.01})
  assert rr.verdicts(strict, m)[6].verdict == "not reproduced"
  # Memorization and generalization RP: the point value and the interval's lower end.
  good_learned = dict(s["learned"], rp_seed_smallest_N=0.95, rp_seed_smallest_N_ci=[0.85, 0.99],
                      rp_seed_largest_N=0.95, rp_seed_largest_N_ci=[0.85, 0.99], dip_N=64,
                      rp_seed_dip=0.5, rp_seed_dip_ci=[0.4, 0.6], dip_holds=True)
  for idx, n_key, v_key in ((0, "smallest", "memorization"), (4, "largest", "generalization")):
    base_s = dict(s, memorization_at_smallest_N=True, learned=good_learned)
    ok = dict(base_s, **{f"rp_seed_{n_key}_N": 0.95, f"rp_seed_{n_key}_N_ci": [0.85, 0.99]})
    assert rr.verdicts(cfg, dict(m, summary=ok))[idx].verdict == "reproduced"
    wide = dict(ok, **{f"rp_seed_{n_key}_N_ci": [0.75, 0.99]})      # lower end too low
    j = report.judgements(cfg, dict(m, summary=wide))[idx]
    assert rr.verdicts(cfg, dict(m, summary=wide))[idx].verdict == "not reproduced"
    assert "0.75" in report.why_not(j) and "0.8" in report.why_not(j)
    low = dict(ok, **{f"rp_seed_{n_key}_N": 0.85})                  # point value too low
    assert rr.verdicts(cfg, dict(m, summary=low))[idx].verdict == "not reproduced"
    assert "0.85" in report.why_not(report.judgements(cfg, dict(m, summary=low))[idx])
    # The same criterion under the learned descriptor: failing there fails the verdict.
    bad = dict(ok, learned=dict(good_learned, **{f"rp_seed_{n_key}_N": 0.7}))
    assert rr.verdicts(cfg, dict(m, summary=bad))[idx].verdict == "not reproduced"
    assert "learned descriptor" in report.why_not(report.judgements(cfg, dict(m, summary=bad))[idx])
  # The dip: the interval at the interior minimum wholly below both ends.
  dip = dict(s, dip_N=64, rp_seed_dip=0.5, rp_seed_dip_ci=[0.45, 0.55],
             rp_seed_smallest_N=0.9, rp_seed_smallest_N_ci=[0.85, 0.95],
             rp_seed_largest_N=0.8, rp_seed_largest_N_ci=[0.7, 0.9], dip_band=[True, False],
             learned=good_learned)
  assert rr.verdicts(cfg, dict(m, summary=dip))[5].verdict == "reproduced"
  no_learned_dip = dict(dip, learned=dict(good_learned, dip_holds=False))
  assert rr.verdicts(cfg, dict(m, summary=no_learned_dip))[5].verdict == "not reproduced"
  assert rr.verdicts(cfg, dict(m, summary=dip))[5].measured["band_fraction"] == 0.5
  overlap = dict(dip, rp_seed_dip_ci=[0.45, 0.72])               # reaches the largest N's
  assert rr.verdicts(cfg, dict(m, summary=overlap))[5].verdict == "not reproduced"
  why = report.why_not(report.judgements(cfg, dict(m, summary=overlap))[5])
  assert "0.72" in why and "0.70" in why and "N = 64" in why


def test_regimes_dip_and_band_helpers():
  from repro_jax.studies import _regimes_stats as stats
  assert stats.dip([0.9, 0.5, 0.6, 0.8], [0.85, 0.4, 0.5, 0.75], [0.95, 0.6, 0.7, 0.85]) == (1, True)
  assert stats.dip([0.9, 0.5, 0.8], [0.85, 0.4, 0.55], [0.95, 0.6, 0.85]) == (1, False)
  assert stats.dip([0.9, 0.8], [0.8, 0.7], [1.0, 0.9]) == (None, None)


def test_across_samplers_smoke_reuses_models(smoke_runs):
  base, cfg, _, m, first, second = smoke_runs
  out = base / "samplers"
  for f in ("sampler_rp.png", "samplers_vs_N.png", "kernels.png", "samplers.csv",
            "kernels.csv", "metrics.json", "report.md"):
    assert (out / f).stat().st_size > 0, f
  # The zoo of the first study is reused; only the other-kernel group is new.
  assert set(first) < set(second) and len(second) == len(first) + 1
  labels = [s[0] for s in m["samplers"]]
  for mat in m["sampler_rp_mean"].values():
    mat = np.asarray(mat)
    assert mat.shape == (len(labels), len(labels))
    np.testing.assert_allclose(np.diag(mat), 1.0)
    np.testing.assert_allclose(mat, mat.T, atol=1e-6)
  assert len(m["summary"]["kernels"]) == len(cfg.zoo.sizes)
  assert len(m["verdicts"]) == 3 and "**Verdicts.**" in (out / "report.md").read_text()
  assert (out / "sampler_rp.npz").stat().st_size > 0
  before, after = _rerender("reproducibility_across_samplers", out,
                            ("sampler_rp.png", "samplers_vs_N.png", "kernels.png"))
  assert after == before


def test_configs_variants():
  for name in ("reproducibility_regimes", "reproducibility_across_samplers"):
    for variant in ("cpu", "cpu_full", "smoke", "paper"):
      c = runner.study_settings(name, variant)
      assert c.zoo.sizes == tuple(sorted(c.zoo.sizes))
    with pytest.raises(ValueError, match="variant"):
      runner.study_settings(name, "bogus")
  paper = runner.study_settings("reproducibility_regimes", "paper")
  assert paper.zoo.sizes == tuple(2**k for k in range(6, 16))
  assert paper.zoo.widths == (64, 128, 256) and paper.zoo.model == "unet"
  assert paper.zoo.train.data.name == "cifar10" and paper.chunk == 64
  for variant in ("cpu", "smoke", "paper"):     # both studies share one zoo: trained once
    assert (runner.study_settings("reproducibility_across_samplers", variant).zoo
            == runner.study_settings("reproducibility_regimes", variant).zoo)
  # The complete training settings of a group are in the study's settings.
  cpu = runner.study_settings("reproducibility_regimes", "cpu")
  group = model_zoo.train_config(cpu.zoo, 128)
  assert (group.model.hidden, group.diffusion.parameterization, group.train.num_steps) == (
      128, "edm", 5000)


def test_cpu_zoo_finds_its_trained_groups():
  """The cpu zoo's settings hash to the groups trained before the settings were typed
  (a changed field would silently train new models instead of restoring)."""
  s = runner.study_settings("reproducibility_across_samplers", "cpu")
  zoo = s.zoo
  subsets = model_zoo.nested_subsets(1797, zoo.sizes, zoo.subset_seed)
  hashes = [model_zoo.group_hash(model_zoo.train_config(zoo, w), zoo.sizes, zoo.seeds, subsets)
            for w in zoo.widths]
  assert hashes == ["fd33c6e153", "68d987f5d7"]
  other = model_zoo.train_config(zoo, zoo.widths[s.kernel.width_index],
                                 overrides={"diffusion": settings_lib.to_dict(s.kernel.diffusion)})
  assert model_zoo.group_hash(other, zoo.sizes, s.kernel.seeds, subsets) == "3d522515cb"


def test_clipped_denoiser():
  data = np.array([[0.5, -0.5], [1.0, -1.0]], np.float32)
  exact = denoiser.empirical(data)
  x = jnp.array([[30.0, -40.0], [0.4, -0.6]])
  s = jnp.array([0.01, 0.01])
  np.testing.assert_allclose(rpr.clipped(exact)(x, s), exact(x, s))   # in range: unchanged
  wild = lambda x, s: 10.0 * x
  np.testing.assert_allclose(rpr.clipped(wild)(x, s), np.clip(10.0 * np.asarray(x), -1, 1))
