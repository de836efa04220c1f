"""Closed-form studies: their library helpers against oracles, and both
studies end to end at smoke size with their numbers asserted."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from cifar_files import write_cifar_dir
from test_trained_view import _subject

from repro_jax.diffusion import denoiser
from repro_jax.closed_form import denoisers
from repro_jax.studies import _descent as descent
from repro_jax.analysis import distribution_metrics as dm
from repro_jax.closed_form import geometry
from repro_jax.studies import _memorization as memorization
from repro_jax.analysis import noise_plane
from repro_jax import samplers
from repro_jax.diffusion import schedules
from repro_jax import settings as settings_lib
from repro_jax.studies import common
from repro_jax.studies import runner
from repro_jax.studies import verdicts as verdicts_lib


# Noise plane ---------------------------------------------------------------------------

def test_plane_noises_hit_anchors_and_are_affine():
  rng = np.random.default_rng(0)
  anchors = rng.normal(size=(3, 4, 2))
  a = np.array([0.0, 1.0, 0.25])
  b = np.array([0.0, 1.0])
  eps = np.asarray(noise_plane.plane_noises(anchors, a, b))
  assert eps.shape == (6, 4, 2)
  grid = eps.reshape(2, 3, 4, 2)                               # [G_b, G_a, ...]
  np.testing.assert_allclose(grid[0, 0], anchors[0], atol=1e-6)   # (0, 0) = ε1
  np.testing.assert_allclose(grid[0, 1], anchors[1], atol=1e-6)   # (1, 0) = ε2
  np.testing.assert_allclose(grid[1, 0], anchors[2], atol=1e-6)   # (0, 1) = ε3
  want = 0.25 * (anchors[1] - anchors[0]) + 1.0 * (anchors[2] - anchors[0]) + anchors[0]
  np.testing.assert_allclose(grid[1, 2], want, atol=1e-6)
  assert noise_plane.plane_axis(48)[[0, -1]].tolist() == pytest.approx([-0.1, 1.1])
  with pytest.raises(ValueError, match="anchors"):
    noise_plane.plane_noises(anchors[:2], a, b)


def test_basin_labels_boundary_and_palette():
  rng = np.random.default_rng(1)
  data = rng.normal(size=(7, 3, 2))
  x = data[[3, 3, 0, 6]] + 1e-3 * rng.normal(size=(4, 3, 2))
  assert noise_plane.basin_labels(x, data).tolist() == [3, 3, 0, 6]
  grid = np.array([[1, 1, 2], [1, 1, 2], [5, 5, 5]])
  # 12 adjacent pairs: 6 horizontal (2 differ), 6 vertical (3 differ).
  assert noise_plane.boundary_fraction(grid) == pytest.approx(5 / 12)
  pal = noise_plane.basin_palette([grid, np.array([9, 9, 9, 9, 9])])
  assert set(pal) == {1, 2, 5, 9}
  assert pal[9] != pal[1] and pal[1] != pal[5]        # most frequent first, distinct
  img = noise_plane.label_image(grid, pal)
  assert img.shape == (3, 3, 4) and tuple(img[0, 0]) == tuple(pal[1])


# Distribution metrics -------------------------------------------------------------------

def test_sliced_wasserstein_matches_assignment_oracle(x64):
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 3)) + 0.5
  key = jax.random.PRNGKey(0)
  got = float(dm.sliced_wasserstein(key, x, y, num_projections=7))
  dirs = np.asarray(dm.random_directions(key, 3, 7, jnp.float64))
  w2 = []
  for k in range(7):
    px, py = x @ dirs[:, k], y @ dirs[:, k]
    cost = (px[:, None] - py[None, :]) ** 2
    r, c = optimize.linear_sum_assignment(cost)       # optimal 1-D transport, brute force
    w2.append(cost[r, c].mean())
  assert got == pytest.approx(math.sqrt(np.mean(w2)), rel=1e-12)
  assert float(dm.sliced_wasserstein(key, x, x)) == 0.0
  # Unequal sizes: a cloud and the same cloud duplicated are the same law.
  assert float(dm.sliced_wasserstein(key, x, np.concatenate([x, x]))) == pytest.approx(0, abs=1e-12)


def _exact_molrg_design(bases):
  """Points ±sqrt(r) U_k e_j: per-component second moment exactly I_r, equal counts."""
  k, _, r = bases.shape
  pts = [s * math.sqrt(r) * bases[i, :, j] for i in range(k) for j in range(r) for s in (1, -1)]
  return np.stack(pts)


def test_covariance_error_exact_design(x64):
  bases = np.asarray(denoisers.random_molrg_bases(jax.random.PRNGKey(1), 10, 3, 2,
                                                  dtype=jnp.float64))
  x = _exact_molrg_design(bases)
  err = dm.covariance_error(x, bases)
  np.testing.assert_allclose(err.per_component, 0, atol=1e-12)
  assert float(err.weight_error) == pytest.approx(0, abs=1e-12)
  # Twice the scale: E[ccᵀ] = 4 I, so ‖3 I‖_F / √r = 3.
  np.testing.assert_allclose(dm.covariance_error(2 * x, bases).per_component, 3, rtol=1e-12)
  mom = dm.component_moments(x, bases)
  np.testing.assert_array_equal(mom.labels, np.asarray(geometry.proj_subspaces(x, bases)[1]))
  # Only component 0 present: weight error 1 − 1/3.
  only0 = x[mom.labels == 0]
  assert float(dm.covariance_error(only0, bases).weight_error) == pytest.approx(2 / 3)


# Descent diagnostics --------------------------------------------------------------------

def _numpy_molrg_sq_distance(x, bases, sigma):
  """−2σ² log Σ_k (1/K) N(x; 0, U_kU_kᵀ + σ²I) − D σ² log(2πσ²), brute force."""
  k, d, _ = bases.shape
  logs = []
  for i in range(k):
    cov = bases[i] @ bases[i].T + sigma**2 * np.eye(d)
    _, logdet = np.linalg.slogdet(cov)
    quad = np.einsum("bd,bd->b", x, np.linalg.solve(cov, x.T).T)
    logs.append(-0.5 * (quad + logdet + d * math.log(2 * math.pi)) - math.log(k))
  lse = np.logaddexp.reduce(np.stack(logs), axis=0)
  return -2 * sigma**2 * lse - d * sigma**2 * math.log(2 * math.pi * sigma**2)


@pytest.mark.parametrize("sigma", [1e-3, 0.3, 5.0])
def test_molrg_smoothed_distance_oracle_and_gradient(sigma, x64):
  bases = np.asarray(denoisers.random_molrg_bases(jax.random.PRNGKey(2), 8, 2, [3, 1],
                                                  dtype=jnp.float64))
  x = np.random.default_rng(3).normal(size=(5, 8))
  got = np.asarray(descent.molrg_smoothed_sq_distance(x, bases, sigma))
  np.testing.assert_allclose(got, _numpy_molrg_sq_distance(x, bases, sigma), rtol=1e-10)
  err = jax.jit(lambda q: descent.identity_error(
      lambda y, s: descent.molrg_smoothed_sq_distance(y, bases, s), denoiser.molrg(bases),
      q, sigma))(x)
  assert float(jnp.max(err)) < 1e-10
  if sigma == 1e-3:   # σ → 0: the squared distance to the union of subspaces
    np.testing.assert_allclose(got, np.asarray(geometry.dist_subspaces(x, bases))**2, rtol=1e-4)


def test_identity_error_finite_set(x64):
  rng = np.random.default_rng(4)
  data, x = rng.normal(size=(20, 4)), 2 * rng.normal(size=(6, 4))
  err = descent.identity_error(lambda q, s: geometry.smoothed_sq_distance(q, data, s),
                               denoiser.empirical(data), x, 0.4)
  assert float(jnp.max(err)) < 1e-10
  # A wrong denoiser is caught.
  bad = descent.identity_error(lambda q, s: geometry.smoothed_sq_distance(q, data, s),
                               lambda q, s: 0.9 * denoiser.empirical(data)(q, s), x, 0.4)
  assert float(jnp.min(bad)) > 1e-3


def test_ddim_on_one_point_shrinks_by_exactly_one_minus_beta(x64):
  """K = {y}: D* ≡ y, so DDIM scales x − y by σ_{t−1}/σ_t: η = 0, ratio constant."""
  y = jnp.ones((1, 5), jnp.float64)
  sig = schedules.sigma_grid(schedules.get_schedule("edm"), 6, "edm", final="min")
  z = jax.random.normal(jax.random.PRNGKey(0), (3, 5), jnp.float64)
  xs = samplers.sample(denoiser.empirical(y), z, sig, sampler="sigma_form",
                       return_trajectory=True).xs
  dist = np.linalg.norm(np.asarray(xs) - np.asarray(y), axis=-1)       # [T+1, B]
  betas = descent.step_betas(sig)
  np.testing.assert_allclose(betas, 1 - sig[1:] / sig[:-1])
  np.testing.assert_allclose(descent.shrink_factors(dist), (1 - betas)[:, None] * np.ones((1, 3)),
                             rtol=1e-9)
  assert np.max(descent.required_eta(descent.shrink_factors(dist), betas)) < 1e-8
  ratio = descent.admissibility_ratio(dist, sig, 5)
  np.testing.assert_allclose(ratio, ratio[:1] * np.ones_like(ratio), rtol=1e-9)
  # η needed for a factor f: |f − (1 − β)| / β.
  np.testing.assert_allclose(descent.required_eta(np.array([[0.5], [1.2]]), np.array([0.25, 0.5])),
                             [[1.0], [1.4]])


# Memorization helpers -------------------------------------------------------------------

def test_copy_stats_against_brute_force():
  rng = np.random.default_rng(5)
  data = rng.normal(size=(30, 2, 3)).astype(np.float32)
  x = np.concatenate([data[[4, 9]], rng.normal(size=(3, 2, 3)).astype(np.float32)])
  st = memorization.copy_stats(x, data, chunk=7)
  d = np.linalg.norm(x.reshape(5, 1, -1).astype(np.float64) - data.reshape(1, 30, -1), axis=-1)
  order = np.argsort(d, axis=1)
  np.testing.assert_array_equal(st.index, order[:, 0])
  np.testing.assert_array_equal(st.second, order[:, 1])
  np.testing.assert_allclose(st.d2, np.sort(d, axis=1)[:, 1], rtol=1e-6)
  assert st.d1[0] == 0.0 and st.ratio[1] == 0.0        # exact copies: exactly 0
  assert memorization.index_agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75


def test_round_trip_errors_fall_with_steps():
  data = jax.random.uniform(jax.random.PRNGKey(0), (16, 6), minval=-1, maxval=1)
  den = denoiser.empirical(data)
  z = jax.random.normal(jax.random.PRNGKey(1), (8, 6))
  errs = []
  for steps in (8, 64):
    sig = schedules.sigma_grid(schedules.get_schedule("edm"), steps, "edm", final="min")
    rt = memorization.round_trip(den, data[:8], z, sig, sampler="heun")
    errs.append((np.median(rt.data_error), np.median(rt.noise_error)))
  assert errs[1][0] < errs[0][0] / 10 and errs[1][0] < 1e-4
  assert errs[1][1] < errs[0][1]


# The studies end to end (smoke) ---------------------------------------------------------

def _run(name, tmp_path, overrides=None):
  s = settings_lib.override(runner.study_settings(name, "smoke"), overrides or {})
  out = runner.run_study(name, s, tmp_path / name)
  wd = tmp_path / name
  on_disk = json.loads((wd / "metrics.json").read_text())
  assert on_disk["summary"].keys() == out["summary"].keys()
  # Verdicts are data in metrics.json, in the schema, one per claim.
  assert on_disk["verdicts"] == out["verdicts"] and out["verdicts"]
  verdicts_lib.from_dicts(on_disk["verdicts"])
  # The report is drawn from metrics.json and the saved arrays only: drawing it
  # again, without measuring, gives the same text.
  report = (wd / "report.md").read_text()
  (wd / "report.md").unlink()
  runner.study_module(name).render(s, on_disk, wd)
  assert (wd / "report.md").read_text() == report
  return out, wd


def test_memorization_theory_smoke(tmp_path):
  out, wd = _run("memorization_theory", tmp_path)
  s = out["summary"]
  assert s["det_ratio_max"] < 1e-6          # deterministic samples are training points
  assert s["det_gl_max"] == 0.0             # GL = 0: pure memorization
  assert s["second_order_rp_min"] >= 0.95   # Heun / DPM-Solver++ / two grids agree
  assert s["det_rp_index_min"] >= 0.85      # DDIM too, up to its first-order error
  assert s["sto_rp_index_max"] <= 0.2       # the stochastic sampler does not
  assert s["det_converging"] and s["heun_rt_decreasing"]
  assert s["heun_rt_at_largest"] < 1e-3 and s["heun_rt_same_point"] == 1.0
  assert min(s["plane_agree_last"].values()) >= 0.9
  for r in out["table"]:
    assert 1 <= r["nfe"] <= 2 * s["table_steps"]
  for f in ("report.md", "rp_vs_steps.png", "round_trip.png", "noise_plane.png", "copies.png",
            "sweep.csv", "rp_pairs.csv", "round_trip.csv", "config.json"):
    assert (wd / f).stat().st_size > 0, f
  report = (wd / "report.md").read_text()
  assert "![noise plane](noise_plane.png)" in report and "**Verdict (copies).** **reproduced**" in report
  assert [v["verdict"] for v in out["verdicts"]] == ["reproduced"] * 4
  assert "| **reproduced** |" in report
  for f in ("noise_plane.npz", "copies.npz"):
    assert (wd / f).stat().st_size > 0, f
  # CIFAR-10 asked for without a path: the study refuses before any work, naming
  # the flag; with a path the settings carry it.
  mt = runner.study_module("memorization_theory")
  s_cifar = settings_lib.override(runner.study_settings("memorization_theory", "smoke"),
                                  {"datasets": ("digits", "cifar10")})
  with pytest.raises(ValueError, match="--cifar10=PATH"):
    common.check_data("memorization_theory", mt, s_cifar)
  filled = common.with_data(mt, s_cifar, {"cifar10": str(tmp_path)})
  assert filled.cifar10_dir == str(tmp_path)
  with pytest.raises(ValueError, match="data_batch_1"):
    common.check_data("memorization_theory", mt, filled)
  write_cifar_dir(tmp_path / "cifar", 10)
  (tmp_path / "cifar" / "data_batch_4").unlink()        # a partial copy: refused at once
  with pytest.raises(ValueError, match=r"no data_batch_4 in it"):
    common.check_data("memorization_theory", mt,
                      common.with_data(mt, s_cifar, {"cifar10": str(tmp_path / "cifar")}))
  # Where the data lies is no part of the results: a relative, moved or
  # differently spelled path gives the same fingerprint.
  other = common.with_data(mt, s_cifar, {"cifar10": "elsewhere/../cifar-10-batches-py/"})
  assert other.cifar10_dir != filled.cifar10_dir and os.path.isabs(other.cifar10_dir)
  assert common.fingerprint("memorization_theory", other) == \
      common.fingerprint("memorization_theory", filled)
  assert common.fingerprint("memorization_theory", other) != common.fingerprint(
      "memorization_theory", runner.study_settings("memorization_theory", "smoke"))
  # A worse copy ratio than the declared criterion fails the copies verdict.
  strict = settings_lib.override(runner.study_settings("memorization_theory", "smoke"),
                                 {"copy_max_ratio": 0.0})
  assert mt.verdicts(strict, out)[0].verdict == "not reproduced"


def test_optimization_view_smoke(tmp_path):
  zoo = str(tmp_path / "zoo")
  out, wd = _run("optimization_view", tmp_path, {"zoo": {"dir": zoo}, "molrg": {"dir": zoo}})
  s = out["summary"]
  for kind in ("finite", "molrg"):
    assert s[kind]["identity_max"] < 1e-10                   # σ ε* = ½∇dist²_K, float64
    assert s[kind]["eta_95"] < 1.0 and s[kind]["frac_shrinking"] == 1.0
    assert s[kind]["gap_last"] < 1e-2 * s[kind]["gap_first"]  # x̂0 → proj_K(x_t)
  assert s["molrg"]["eta_median"] < 1e-3                      # exact linear contraction off K
  rows = out["sampler_table"]
  for r in rows:
    assert r["nfe"] <= r["nfe_budget"]
    if r["sampler"] != "gradient_estimation":
      assert r["dist"] < 1e-3          # a final denoising step lands on the subspaces
  assert all(s["ge_beats_ddim"].values())
  assert s["floor_sw"] < min(r["sw"] for r in rows)
  for f in ("report.md", "admissibility.png", "shrink.png", "identity.png", "projection.png",
            "samplers.png", "schedules.png", "sampler_table.csv", "schedule_table.csv",
            "trajectories.npz", "gamma.png", "gamma_sweep.csv", "trained.png",
            "trained_tables.csv", "trained_curves.npz"):
    assert (wd / f).stat().st_size > 0, f
  verdict = {v["claim"][:30]: v["verdict"] for v in out["verdicts"]}
  assert len(out["verdicts"]) == 11
  # Trained denoisers beside the exact ones: the exact MoLRG posterior mean is a
  # projection at small σ (η → 0 where the premise holds), every estimate has a CI
  # around its value, and every cell of both tables is scored.
  tv = out["trained"]["subjects"]
  assert [r["trained"] for r in tv.values()] == [True, False, True, False]
  # The exact posterior mean tends to the projection as σ → 0: η_t → 0 (at σ_min,
  # (σ²/(1+σ²)) ‖U Uᵀx‖ / dist_K(x) for the nearest subspace).
  with np.load(wd / "trained_curves.npz") as f:
    eta = f["MoLRG exact|eta"]                               # [3 quantiles, T]
  assert eta[1, -1] < 1e-2 < eta[1, 0]
  for r in tv.values():
    for e in r["diagnostics"].values():
      assert np.isfinite(e["value"]) and e["ci"][0] <= e["ci"][1]
    assert set(r["table"]["schedule"]) == set(out["trained"]["subjects"][
        "MoLRG exact"]["table"]["schedule"])
  s_cfg = runner.study_settings("optimization_view", "smoke")
  assert {len(v) for r in tv.values() for smp in r["table"]["sampler"].values()
          for v in smp.values()} == {len(s_cfg.nfe)}
  assert "### The optimization view with trained denoisers" in (wd / "report.md").read_text()
  # γ = 1 (DDIM) lands on training points on every grid, γ = 2 only on the fine one.
  g = s["gamma"]
  assert g["ddim_worst"] < g["tolerance"] < g["ge_readme"] and g["ge_fine_worst"] < g["tolerance"]
  assert abs(g["ge_readme_ratio"] - 1) < 0.1     # the last step's displacement is the distance
  assert verdict["Gradient estimation's off-data"] == "reproduced"
  assert "### Gradient estimation: γ, and the README example" in (wd / "report.md").read_text()
  assert verdict["The gradient-estimation sample"] == "reproduced"
  assert verdict["The ideal denoiser is a gradie"] == "reproduced"
  # The schedule ordering is judged as the talk's order (not reproduced when it differs).
  order = verdict["A log-linear σ schedule beats "]
  assert order == ("reproduced" if s["schedule_order_agrees"] else "not reproduced")
  if order == "not reproduced":
    assert "**not reproduced**: a different ordering" in (wd / "report.md").read_text()


# A trained-denoiser part that passes every criterion (its verdicts are tested in
# test_trained_view.py).
TRAINED = {"subjects": {"net": _subject(1.2, 0.5, -0.1, -0.1)}}


def test_optimization_view_ordering_verdicts():
  """Gradient estimation vs DDIM: all budgets won → reproduced, some → partly,
  none → not reproduced, not compared → not tested."""
  ov = runner.study_module("optimization_view")
  s = runner.study_settings("optimization_view", "smoke")
  side = dict(nu=1.1, eta_95=0.1, identity_max=1e-15, gap_first=1.0, gap_last=0.0)
  base = dict(finite=side, molrg=side, ge_beats_dpm_solver={}, schedule_order_agrees=False,
              schedule_order_talk=["log_linear", "leading"],
              schedule_order_by_sw=["leading", "log_linear"],
              gamma=dict(tolerance=0.1, ddim_worst=0.0, ge_readme=2.0, ge_readme_ratio=1.0,
                         ge_fine_worst=0.01))
  want = {(True, True): "reproduced", (True, False): "partly", (False, False): "not reproduced",
          (): "not tested"}
  for wins, expected in want.items():
    summary = dict(base, ge_beats_ddim={n: w for n, w in zip((5, 10), wins)})
    vs = ov.verdicts(s, {"trained": TRAINED, "summary": summary})
    assert [v.verdict for v in vs[:4]] == ["reproduced"] * 4
    assert vs[4].verdict == expected, wins
    assert vs[5].verdict == "not reproduced"
    assert vs[6].verdict == "reproduced"
  assert ov.verdicts(s, {"trained": TRAINED, "summary": dict(base, ge_beats_ddim={5: True}, schedule_order_agrees=True)}
                     )[5].verdict == "reproduced"
  # γ = 2 never landing, even on fine grids, would be a defect: not reproduced.
  assert ov.verdicts(s, {"trained": TRAINED, "summary": dict(base, ge_beats_ddim={5: True},
                                         gamma=dict(base["gamma"], ge_fine_worst=1.0))}
                     )[6].verdict == "not reproduced"
  # The declared criteria decide: ν above `max_nu` fails admissibility.
  loose = dict(side, nu=2.5)
  assert ov.verdicts(s, {"trained": TRAINED, "summary": dict(base, finite=loose, ge_beats_ddim={})}
                     )[0].verdict == "not reproduced"


def test_memorization_training_sets_are_scaled(tmp_path):
  from repro_jax.studies import memorization_theory as mt
  cfg = settings_lib.override(runner.study_settings("memorization_theory", "smoke"), dict(
      datasets=("random", "molrg", "digits", "cifar10"), molrg_dim=12, random_dim=10,
      cifar10_num_train=64, cifar10_dir=str(write_cifar_dir(tmp_path / "cifar", 80))))
  sets = mt.load_training_sets(cfg, jax.random.PRNGKey(0))
  assert list(sets) == ["random", "molrg", "digits", "cifar10"]
  assert sets["random"][0].shape == (64, 10) and sets["molrg"][0].shape == (64, 12)
  assert sets["digits"][0].shape == (64, 64) and sets["digits"][1] == (8, 8, 1)
  assert sets["cifar10"][0].shape == (64, 3072) and sets["cifar10"][1] == (32, 32, 3)
  for x, _ in sets.values():
    assert np.abs(x).max() <= 1.0 + 1e-6
