"""The closed-form atlas (closed_form_atlas): its scores against brute force, the
verdict logic on synthetic numbers, and a smoke run."""

import json

import jax
import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.studies import closed_form_atlas as ca
from repro_jax.studies import runner


def test_r2_and_errors_against_explicit_formulas():
  rng = np.random.default_rng(0)
  net = rng.normal(size=(3, 5, 12))
  ref = net + 0.1 * rng.normal(size=(3, 5, 12))
  got = ca.r2_per_input(net, ref)
  for m in range(3):
    for b in range(5):
      y, f = net[m, b], ref[m, b]
      want = 1 - np.sum((y - f) ** 2) / np.sum((y - y.mean()) ** 2)
      assert got[m, b] == pytest.approx(want, rel=1e-12)
  assert np.all(ca.r2_per_input(net, net) == 1.0)
  np.testing.assert_allclose(ca.sq_err(net, ref), np.sum((net - ref) ** 2, -1), rtol=1e-12)
  np.testing.assert_allclose(ca.spread(net), np.sum((net - net.mean(1, keepdims=True)) ** 2,
                                                    -1), rtol=1e-12)


def test_summary_is_the_pooled_r2_with_paired_intervals():
  """r² = 1 − Σ sse / Σ sst; the best form, ties and the gap to the reference."""
  s = settings_lib.override(ca.settings("smoke"), dict(bootstrap_resamples=200))
  rng = np.random.default_rng(2)
  t, m, b = 2, 2, 40
  sst = rng.uniform(1, 2, size=(t, m, b))
  good = 0.1 * sst * rng.uniform(0.5, 1.5, size=(t, m, b))
  bad = 0.6 * sst * rng.uniform(0.5, 1.5, size=(t, m, b))
  same = good * rng.uniform(0.95, 1.05, size=(t, m, b))
  cell = {"sse": {"train": {"ε*": bad, "Gaussian": good, "smoothed": same, ca.LINEAR: 0 * bad}},
          "sst_eps": {"train": sst}, "sst": {"train": 4 * sst}, "params": {}}
  out = ca.summarize(cell, "ε*", jax.random.key(0), s, dim=4, data_var=2.0)["train"]
  for fi, arr in enumerate((bad, good, same, 0 * bad)):
    np.testing.assert_allclose(out["r2"][fi], 1 - arr.sum((1, 2)) / sst.sum((1, 2)))
    np.testing.assert_allclose(out["r2_x0"][fi], 1 - arr.sum((1, 2)) / (4 * sst.sum((1, 2))))
    ci = np.asarray(out["r2_ci"][fi])
    assert np.all(ci[:, 0] <= out["r2"][fi]) and np.all(out["r2"][fi] <= ci[:, 1])
  np.testing.assert_allclose(out["nmse"][1], good.mean((1, 2)) / (4 * 2.0))
  # The linear ceiling (r² = 1) is never the best closed form; Gaussian and
  # smoothed are not distinguishable, ε* is far behind.
  assert set(out["best"]) <= {"Gaussian", "smoothed"}
  assert all(set(tie) == {"Gaussian", "smoothed"} - {bst}
             for tie, bst in zip(out["tied"], out["best"]))
  assert all(g > 0.3 and lo > 0.3 for g, (lo, _) in zip(out["gap"], out["gap_ci"]))


def test_linear_fit_recovers_an_affine_map():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 6))
  a = rng.normal(size=(2, 6, 6))
  c = rng.normal(size=(2, 6))
  y = np.einsum("pf,mfg->mpg", x, a) + c[:, None]
  w = ca.linear_fit(x, y, ridge=0.0)
  np.testing.assert_allclose(w[:, :6], a, atol=1e-10)
  np.testing.assert_allclose(w[:, 6], c, atol=1e-10)
  xe = rng.normal(size=(7, 6))
  np.testing.assert_allclose(ca.linear_apply(w, xe),
                             np.einsum("bf,mfg->mbg", xe, a) + c[:, None], atol=1e-9)
  per_model = rng.normal(size=(2, 7, 6))
  np.testing.assert_allclose(ca.linear_apply(w, per_model),
                             np.einsum("mbf,mfg->mbg", per_model, a) + c[:, None], atol=1e-9)


def test_cross_fit_never_scores_its_own_choice():
  """Each half is scored at the candidate the other half prefers (least loss)."""
  loss = np.ones((3, 2, 8))
  even = np.arange(8) % 2 == 0
  loss[0][:, even] = 0.1     # candidate 0 best on the even inputs
  loss[2][:, ~even] = 0.2    # candidate 2 best on the odd inputs
  picks = ca.cross_fit(loss)
  assert list(picks[even]) == [2] * 4 and list(picks[~even]) == [0] * 4
  assert np.all(ca.pick(loss, picks) == 1.0)     # each half scored at the other's choice
  ramp = np.broadcast_to(np.linspace(1, 0, 3)[:, None, None], (3, 2, 8))
  np.testing.assert_array_equal(ca.pick(ramp, ca.cross_fit(ramp)), 0.0)


def test_window_schedule_maps_each_grid_sigma_to_its_window():
  s = ca.settings("smoke")
  sig = ca.sigma_grid(s)[:-1]
  windows = [5, 3, 5][:len(sig)]
  sched = ca.window_schedule(sig, windows)
  got = [int(np.asarray(sched(np.float32(v)))) for v in sig]
  assert got == windows


def test_settings_variants_and_bad_settings():
  for v in ca.VARIANTS:
    s = ca.settings(v)
    assert s.map_width in s.zoo.widths
  with pytest.raises(ValueError, match="unknown variant"):
    ca.settings("nope")
  s = ca.settings("smoke")
  for change, match in ((dict(windows=(4,)), "windows"),
                        (dict(digits_sizes=(32, 8)), "digits_sizes"),
                        (dict(digits_seeds=(0,)), "digits_seeds"),
                        (dict(map_width=3), "map_width"),
                        (dict(final_forms=("nope",)), "final_forms"),
                        (dict(published_r2_band=(0.9, 0.8)), "published_r2_band"),
                        (dict(num_inputs=2), "num_inputs")):
    with pytest.raises(ValueError, match=match):
      settings_lib.override(s, change)


def _kind(forms, r2, gap_ci, best=None):
  t = len(r2[0])
  return dict(forms=forms, r2=r2, r2_ci=[[[v, v] for v in row] for row in r2],
              nmse=[[0.0] * t for _ in forms], best=best or [forms[0]] * t,
              tied=[[] for _ in range(t)], rival=[forms[1]] * t,
              gap=[c[0] for c in gap_ci], gap_ci=gap_ci, models=2, inputs=4)


def _metrics(s, mem_gap, gen_gap, molrg_gap, final_median):
  sig = list(ca.sigma_grid(s)[:-1])
  t = len(sig)
  forms = ["ε*", "Gaussian", ca.LINEAR]
  r2 = [[0.9] * t, [0.5] * t, [0.95] * t]
  n_mem, n_gen = (str(n) for n in s.digits_sizes)
  cell = lambda g: {k: _kind(forms, r2, [[g, g + 0.01]] * t) for k in ("train", "trajectory")}
  mforms = ["exact MoLRG", "ε*", ca.LINEAR]
  mcell = {k: _kind(mforms, r2, [[molrg_gap, molrg_gap + 0.01]] * t)
           for k in ("train", "held-out", "trajectory")}
  final = {n_gen: {"MLP": {"ELS": {"r2_median": {"value": final_median,
                                                 "ci": [final_median - 0.01,
                                                        final_median + 0.01]}},
                           "other seed": {"r2_median": {"value": 0.9, "ci": [0.8, 0.95]}}}}}
  return {"sigmas": sig, "digits": {"MLP": {n_mem: cell(mem_gap), n_gen: cell(gen_gap)}},
          "molrg": {"MoLRG MLP": {str(max(s.molrg.sizes)): mcell}}, "final": final}


def test_verdicts_follow_the_declared_criteria():
  s = ca.settings("smoke")
  good = ca.verdicts(s, _metrics(s, mem_gap=-0.2, gen_gap=0.1, molrg_gap=-0.3,
                                 final_median=0.9))
  assert [v.verdict for v in good] == ["reproduced"] * 4
  bad = ca.verdicts(s, _metrics(s, mem_gap=0.1, gen_gap=-0.1, molrg_gap=0.2,
                                final_median=0.3))
  assert [v.verdict for v in bad] == ["not reproduced"] * 4
  # ε* beaten only above gen_max_sigma does not count.
  m = _metrics(s, mem_gap=-0.2, gen_gap=-0.1, molrg_gap=-0.3, final_median=0.9)
  n_gen = str(s.digits_sizes[1])
  for kind in ("train", "trajectory"):
    k = m["digits"]["MLP"][n_gen][kind]
    k["gap_ci"] = [[0.05, 0.1] if v > s.gen_max_sigma else [-0.1, -0.05] for v in m["sigmas"]]
  assert ca.verdicts(s, m)[1].verdict == "not reproduced"
  # Where no closed form explains the network (best r² below the floor) a gap
  # does not count; with no such σ at all the claim is not reproduced.
  m = _metrics(s, mem_gap=-0.2, gen_gap=0.1, molrg_gap=-0.3, final_median=0.9)
  n_mem = str(s.digits_sizes[0])
  for kind in ("train", "trajectory"):
    k = m["digits"]["MLP"][n_mem][kind]
    k["gap_ci"][0] = [0.5, 0.6]
    k["r2"] = [[0.1] + row[1:] for row in k["r2"]]
  assert ca.verdicts(s, m)[0].verdict == "reproduced"
  for kind in ("train", "trajectory"):
    m["digits"]["MLP"][n_mem][kind]["r2"] = [[0.1] * len(m["sigmas"])] * 3
  assert ca.verdicts(s, m)[0].verdict == "not reproduced"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("atlas")
  zoo = str(base / "zoo")
  s = settings_lib.override(ca.settings("smoke"), {"zoo": {"dir": zoo}, "molrg": {"dir": zoo}})
  metrics = runner.run_study("closed_form_atlas", s, base / "out")
  return base, s, metrics


def test_smoke_run_files_and_numbers(smoke_run):
  base, s, m = smoke_run
  out = base / "out"
  for f in ("atlas.png", "r2_sigma.png", "r2_sigma_x0.png", "params.png", "final.png", "final_samples.png",
            "atlas.npz", "metrics.json", "report.md"):
    assert (out / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 4
  saved = json.loads((out / "metrics.json").read_text())
  assert saved["verdicts"] == m["verdicts"]
  t = len(m["sigmas"])
  raw = np.load(out / "atlas.npz")
  for data in ("digits", "molrg"):
    for label, cells in m[data].items():
      for n, cell in cells.items():
        for kind, k in cell.items():
          if kind == "params":
            for f, p in k.items():
              assert len(p) == t and set(p) <= set(s.smoothings if f == "smoothed" else
                                                   s.windows)
            continue
          sse = np.stack([raw[f"{data}__{label}__N{n}__{kind}__{f}"] for f in k["forms"]])
          for head, what in (("r2", "sst_eps"), ("r2_x0", "sst")):
            sst = raw[f"{data}__{label}__N{n}__{kind}__{what}"]
            np.testing.assert_allclose(np.asarray(k[head]),
                                       1 - sse.sum((2, 3)) / sst.sum((1, 2)), rtol=1e-5,
                                       atol=1e-6)
          ci = np.asarray(k["r2_ci"])
          assert np.all(ci[..., 0] <= np.asarray(k["r2"]) + 1e-9)
          assert np.all(np.asarray(k["r2"]) <= ci[..., 1] + 1e-9)
          assert all(b != ca.LINEAR for b in k["best"])
  # The MoLRG posterior mean against itself would be r² = 1: the exact form is
  # scored against the trained networks, not against itself.
  assert "exact MoLRG" in next(iter(next(iter(m["molrg"].values())).values()))["train"]["forms"]
  for n, nets in m["final"].items():
    for label, row in nets.items():
      assert set(s.final_forms) <= set(row)
      for cell in row.values():
        lo, hi = cell["r2_median"]["ci"]
        assert lo <= cell["r2_median"]["value"] <= hi
  assert "Which closed form explains the network?" in (out / "report.md").read_text()
