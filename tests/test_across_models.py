"""The cross-model matrix and the disjoint-halves study (reproducibility_across_models)."""

import json

import jax
import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.analysis import metrics
from repro_jax.studies import reproducibility_across_models as ram
from repro_jax.studies import runner
from repro_jax.studies import verdicts as verdicts_lib


def test_halves_are_disjoint_and_nested():
  a, b = ram.halves(101, (4, 10, 50), seed=3)
  assert not set(a[50]) & set(b[50])
  for half in (a, b):
    assert [len(half[n]) for n in (4, 10, 50)] == [4, 10, 50]
    assert set(half[4]) < set(half[10]) < set(half[50])
  with pytest.raises(ValueError, match="<= 50"):
    ram.halves(101, (51,), seed=0)


def test_settings_refuse_bad_members_before_any_work():
  with pytest.raises(ValueError, match="distinct"):
    ram.Settings(members=(("a", "mlp", 8, "edm", "vp"), ("a", "dit", 8, "edm", "vp")))
  with pytest.raises(ValueError, match="a member is"):
    ram.Settings(members=(("a", "resnet", 8, "edm", "vp"),))
  with pytest.raises(ValueError, match="a member is"):
    ram.Settings(members=(("a", "mlp", 8, "score", "vp"),))
  with pytest.raises(ValueError, match="2 seeds"):
    ram.Settings(matrix_seeds=(0,))
  s = ram.settings("smoke")
  with pytest.raises(ValueError, match="matrix_sizes"):
    ram.check(settings_lib.override(s, {"matrix_sizes": (8, 5000)}), 1797)
  with pytest.raises(ValueError, match="halves_sizes"):
    ram.check(settings_lib.override(s, {"halves_sizes": (8, 1000)}), 1797)


def test_sigma_range_is_shared_by_every_member():
  s = ram.settings("cpu")
  lo, hi = ram.sigma_range(s)
  assert s.sigma_min < lo < hi <= s.sigma_max          # a VP member raises σ_min
  only_edm = settings_lib.override(s, {"members": (("e", "mlp", 8, "edm", "vp"),
                                                   ("f", "dit", 8, "edm", "vp")),
                                       "convergence_members": (0, 1)})
  assert ram.sigma_range(only_edm) == (s.sigma_min, s.sigma_max)


def test_matrix_scores_point_values_match_a_loop():
  """Each cell is the mean over pairs of sample sets of two different trained models
  of its two entries of the per-noise hit rate (brute force), and its interval
  contains it."""
  rng = np.random.default_rng(0)
  base = rng.normal(size=(3, 40, 4, 4, 1))
  # 2 members × 2 samplers × 2 seeds; seed s of member m is model 2m + s.
  stack, entry_of, model_of = [], [], []
  for m in range(2):
    for smp in range(2):
      for s in range(2):
        x = base[m] + 0.3 * rng.normal(size=base[m].shape) * (1 + s + smp)
        stack.append(np.tanh(x))
        entry_of.append(2 * m + smp)
        model_of.append(2 * m + s)
  stack = np.asarray(stack, np.float32)
  sim = metrics.get_similarity("ncc", 0.7)
  cfg = ram.Settings(bootstrap_resamples=200)
  out = ram.matrix_scores(stack, entry_of, model_of, [0, 0, 1, 1], sim, cfg,
                          jax.random.key(0))
  f = np.stack([np.asarray(sim.features(x), np.float64) for x in stack])
  hits = np.einsum("kbf,lbf->klb", f, f) > 0.7
  px = (stack.reshape(len(stack), 40, -1) + 1) * 127.5
  mae = np.abs(px[:, None] - px[None]).mean(-1) < cfg.mae_threshold
  for name, h in (("rp", hits), ("mae", mae)):
    for e in range(4):
      for g in range(4):
        pairs = [h[i, j].mean() for i in range(8) for j in range(8)
                 if model_of[i] != model_of[j] and entry_of[i] == e and entry_of[j] == g]
        assert out[name][e, g] == pytest.approx(np.mean(pairs), abs=1e-6)
    assert np.all(out[f"{name}_lo"] <= out[name] + 1e-9)
    assert np.all(out[name] <= out[f"{name}_hi"] + 1e-9)
  np.testing.assert_allclose(out["rp"], out["rp"].T, atol=1e-9)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("models")
  # Two training stages instead of the smoke variant's three: the stop-and-resume
  # path and the onset interpolation need two (test_stages_are_the_single_run_at_those_steps
  # checks the stages themselves).
  cfg = settings_lib.override(runner.study_settings("reproducibility_across_models", "smoke"),
                              {"zoo": {"dir": str(base / "zoo")}, "convergence_steps": (5, 20)})
  m = runner.run_study("reproducibility_across_models", cfg, base / "out")
  return base / "out", cfg, m


def test_smoke_run_writes_every_file_and_consistent_matrices(smoke_run):
  out, cfg, m = smoke_run
  for f in ("matrix.png", "matrix_mae.png", "halves.png", "halves.csv", "matrix.npz",
            "convergence.png", "convergence.csv", "onset.csv",
            "metrics.json", "report.md", "noises.npy", "config.json"):
    assert (out / f).stat().st_size > 0, f
  e = len(cfg.members) * len(cfg.samplers)
  assert len(m["entries"]) == e
  with np.load(out / "matrix.npz") as z:
    for n in cfg.matrix_sizes:
      rp, lo, hi = z[f"rp_N{n}"], z[f"rp_lo_N{n}"], z[f"rp_hi_N{n}"]
      assert rp.shape == (e, e)
      np.testing.assert_allclose(rp, rp.T, atol=1e-9)
      assert np.all((lo <= rp + 1e-9) & (rp <= hi + 1e-9))
  rows = m["half_rows"]
  assert [r["N"] for r in rows] == list(cfg.halves_sizes)
  for r in rows:
    assert r["rp_halves_lo"] <= r["rp_halves"] <= r["rp_halves_hi"]
  assert len(m["verdicts"]) == len(cfg.matrix_sizes) + 3
  conv = m["convergence"]
  assert [r["step"] for r in conv["rows"]] == list(cfg.convergence_steps)
  assert len(conv["onset"]) == len(cfg.onset_sizes) * len(cfg.matrix_seeds)
  assert {v["verdict"] for v in m["verdicts"]} <= set(verdicts_lib.VERDICTS)
  assert "**Verdicts.**" in (out / "report.md").read_text()


def test_smoke_render_needs_only_metrics_and_arrays(smoke_run):
  out, _, _ = smoke_run
  before = (out / "report.md").read_text()
  for f in ("matrix.png", "matrix_mae.png", "halves.png", "convergence.png", "report.md"):
    (out / f).unlink()
  module = runner.study_module("reproducibility_across_models")
  s = settings_lib.parse(module.Settings, json.loads((out / "config.json").read_text()))
  module.render(s, json.loads((out / "metrics.json").read_text()), out)
  assert (out / "report.md").read_text() == before
  assert (out / "matrix.png").stat().st_size > 0


def _summary(worst_rp, h0, h1, n_sizes=2):
  per_n = {str(n): dict(worst=dict(pair=["a", "b"], rp=worst_rp, rp_ci=[worst_rp - 0.05,
                                                                        worst_rp + 0.05],
                                   mae=0.5),
                        rp_offdiag_mean=0.8, rp_seeds_min=0.9, fraction_pairs_above=0.5)
           for n in range(n_sizes)}
  converged = dict(step=8000, curves={}, weakest="rp_seeds a", weakest_rp=0.95,
                   weakest_ci=[0.9, 0.97], largest_change=0.01)
  exponent = dict(a=1.1, a_lo=0.8, a_hi=1.4, b=0.0, num_sizes=3)
  return dict(summary=dict(per_N=per_n, halves_smallest=h0, halves_largest=h1,
                           converged=converged, onset_exponent=exponent, onsets_found=9))


def test_verdicts_follow_their_criteria():
  cfg = settings_lib.override(ram.Settings(), {"matrix_sizes": (0, 1)})
  low = dict(N=16, rp_halves=0.02, rp_halves_lo=0.0, rp_halves_hi=0.05, rp_same=0.9,
             rp_same_lo=0.85, rp_same_hi=0.95)
  high = dict(N=898, rp_halves=0.8, rp_halves_lo=0.75, rp_halves_hi=0.85, rp_same=0.9,
              rp_same_lo=0.85, rp_same_hi=0.95)
  vs = ram.verdicts(cfg, _summary(0.65, low, high))
  assert [v.verdict for v in vs] == ["reproduced"] * 5
  vs = ram.verdicts(cfg, _summary(0.55, low, dict(high, rp_halves=0.6, rp_halves_lo=0.5)))
  assert [v.verdict for v in vs][:3] == ["not reproduced", "not reproduced", "partly"]
  vs = ram.verdicts(cfg, _summary(0.7, dict(low, rp_halves_hi=0.8), high))
  assert vs[2].verdict == "not reproduced"
  # Convergence: below the bar but flat is "partly"; still moving is "not reproduced".
  m = _summary(0.7, low, high)
  c = m["summary"]["converged"]
  m["summary"]["converged"] = dict(c, weakest_rp=0.85, weakest_ci=[0.8, 0.9])
  assert ram.verdicts(cfg, m)[3].verdict == "partly"
  m["summary"]["converged"] = dict(c, weakest_ci=[0.75, 0.97])       # CI reaches below 0.8
  assert ram.verdicts(cfg, m)[3].verdict == "partly"
  m["summary"]["converged"] = dict(c, weakest_rp=0.85, largest_change=0.2)
  assert ram.verdicts(cfg, m)[3].verdict == "not reproduced"
  # Onset ∝ N^a: linear only if the CI holds 1; fewer than 3 N cannot say.
  m = _summary(0.7, low, high)
  m["summary"]["onset_exponent"] = dict(a=2.0, a_lo=1.6, a_hi=2.5, b=0.0, num_sizes=3)
  assert ram.verdicts(cfg, m)[4].verdict == "not reproduced"
  m["summary"]["onset_exponent"] = dict(a=1.0, a_lo=0.5, a_hi=1.5, b=0.0, num_sizes=2)
  assert ram.verdicts(cfg, m)[4].verdict == "not tested"


def test_stages_are_the_single_run_at_those_steps(tmp_path):
  """Training stopped and resumed at each stage gives the models of one
  uninterrupted run at those steps; a rerun trains nothing."""
  from repro_jax import data as data_lib
  from repro_jax.networks import model_zoo
  s = ram.settings("smoke")
  zoo = settings_lib.override(s.zoo, {"train": {"train": {"log_every": 4,
                                                          "checkpoint_every": 4}}})
  ds = data_lib.load_dataset(zoo.train.data)
  subsets = model_zoo.nested_subsets(len(ds), (8, 16), 0)
  cfg = model_zoo.train_config(zoo, 16)
  kw = dict(sizes=(8, 16), seeds=(0,), subsets=subsets, data_shape=ds.data_shape)
  staged = model_zoo.ensure_stages(cfg, tmp_path / "a", "m", stages=(3, 10), **kw)
  assert [g.name for g in staged] == ["m@3", "m@10"]
  for step, g in zip((3, 10), staged):
    one = model_zoo.ensure_group(settings_lib.override(cfg, {"train": {"num_steps": step}}),
                                 tmp_path / f"one{step}", "m", **kw)
    np.testing.assert_allclose(np.asarray(g.params), np.asarray(one.params), rtol=1e-6,
                               atol=1e-7)
  again = model_zoo.ensure_stages(cfg, tmp_path / "a", "m", stages=(3, 10), **kw)
  np.testing.assert_array_equal(np.asarray(again[1].params), np.asarray(staged[1].params))


def test_onset_steps_interpolates_in_log_steps():
  from repro_jax.studies import _convergence
  steps = [100, 200, 400, 800]
  assert _convergence.onset_steps(steps, [1.0, 0.8, 0.2, 0.0], 0.5) == pytest.approx(
      np.exp(np.log(200) + 0.5 * np.log(2)))
  assert np.isnan(_convergence.onset_steps(steps, [1.0, 0.9, 0.8, 0.7], 0.5))   # never
  assert np.isnan(_convergence.onset_steps(steps, [0.4, 0.2, 0.1, 0.0], 0.5))   # not bracketed


@pytest.mark.parametrize("a", [1.0, 2.0])
def test_fit_exponent_recovers_a_power_law(a):
  from repro_jax.studies import _convergence
  rng = np.random.default_rng(0)
  sizes = np.repeat([8, 16, 32, 64], 3)
  onsets = 10.0 * sizes ** a * np.exp(0.05 * rng.normal(size=sizes.size))
  onsets[-1] = np.nan                                   # one model without an onset
  e = _convergence.fit_exponent(sizes, onsets, level=0.95)
  assert e["a"] == pytest.approx(a, abs=0.05) and e["a_lo"] < a < e["a_hi"]
  assert e["a_hi"] - e["a_lo"] < 0.3 and e["num_sizes"] == 4
  assert np.isnan(_convergence.fit_exponent([8, 8], [1.0, 2.0], level=0.9)["a"])


def test_fit_exponent_interval_covers_at_its_level():
  """Monte Carlo: the interval holds the true exponent in about 95 % of draws."""
  from repro_jax.studies import _convergence
  rng = np.random.default_rng(1)
  sizes = np.repeat([8, 16, 32, 64], 3)
  hits = [(lambda e: e["a_lo"] <= 1.0 <= e["a_hi"])(_convergence.fit_exponent(
      sizes, 10.0 * sizes * np.exp(0.2 * rng.normal(size=sizes.size)), level=0.95))
      for _ in range(400)]
  assert 0.92 <= np.mean(hits) <= 0.98
