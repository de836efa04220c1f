"""The Jacobian rank study (jacobian_rank): its measures against brute force, a smoke run."""

import json

import numpy as np
import pytest

from repro_jax import settings as settings_lib
from repro_jax.studies import jacobian_rank as jr
from repro_jax.studies import runner


def _bases(rng, dim, k, r):
  q, _ = np.linalg.qr(rng.normal(size=(dim, k * r)))
  return q.reshape(dim, k, r).transpose(1, 0, 2)                   # [K, D, R]


def test_support_energy_matches_explicit_jacobians():
  rng = np.random.default_rng(0)
  dim, k, r = 10, 2, 2
  bases = _bases(rng, dim, k, r)
  span = bases.transpose(1, 0, 2).reshape(dim, -1)
  proj = span @ span.T
  jacs = rng.normal(size=(3, 5, dim, dim))                          # [M, B, D, D]
  jacs[0, 0] = 2.0 * proj                                            # J on the support only
  jacs[0, 1] = np.eye(dim) - proj                                    # J blind to it
  _, sv, vt = np.linalg.svd(jacs)
  got = jr.support_energy(sv, np.swapaxes(vt, -1, -2), bases)
  want = (np.linalg.norm(jacs @ proj, axis=(-2, -1)) ** 2
          / np.linalg.norm(jacs, axis=(-2, -1)) ** 2)
  np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
  assert got[0, 0] == pytest.approx(1.0) and got[0, 1] == pytest.approx(0.0, abs=1e-12)


def test_settings_variants_and_bad_settings():
  for v in jr.VARIANTS:
    s = jr.settings(v)
    assert s.tau in s.taus and set(s.mid_ts) <= set(s.ts)
  with pytest.raises(ValueError, match="unknown variant"):
    jr.settings("nope")
  s = jr.settings("smoke")
  for change, match in ((dict(tau=0.5), "tau must be one of taus"),
                        (dict(mid_ts=(0.5,)), "mid_ts"),
                        (dict(ts=(0.7, 0.3)), "increasing"),
                        (dict(digits_sizes=(32, 8)), "digits_sizes"),
                        (dict(digits_members=(("A", "mlp", 8, "nope"),)), "digits_members"),
                        (dict(digits_members=()), "digits_members"),
                        (dict(digits_seeds=()), "digits_seeds"),
                        (dict(num_points=1), "num_points")):
    with pytest.raises(ValueError, match=match):
      settings_lib.override(s, change)


@pytest.mark.parametrize("variant", ["cpu", "paper"])
def test_digits_members_are_the_cross_model_matrix_models(variant):
  """The digits networks are trained once for both studies: same settings, same group."""
  from repro_jax.studies import reproducibility_across_models as ram
  s, a = jr.settings(variant), ram.settings(variant)
  assert (s.digits_sizes, s.digits_seeds, s.zoo.dir) == (a.matrix_sizes, a.matrix_seeds,
                                                         a.zoo.dir)
  for m in s.digits_members:
    match = [x for x in a.members if x[1:4] == m[1:4] and x[4] == "vp"]
    assert match, m
    assert jr.member_config(s, m) == ram.member_config(a, match[0])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  base = tmp_path_factory.mktemp("jacobian")
  zoo = str(base / "zoo")
  s = settings_lib.override(jr.settings("smoke"), {"zoo": {"dir": zoo}, "molrg": {"dir": zoo}})
  metrics = runner.run_study("jacobian_rank", s, base / "out")
  return base, s, metrics


def test_smoke_run_files_and_numbers(smoke_run):
  base, s, m = smoke_run
  out = base / "out"
  for f in ("rank_ratio.png", "spectra.png", "ranks.npz", "spectra.npz", "metrics.json",
            "report.md"):
    assert (out / f).stat().st_size > 0, f
  assert len(m["verdicts"]) == 4
  saved = json.loads((out / "metrics.json").read_text())
  assert saved["verdicts"] == m["verdicts"]
  ranks = np.load(out / "ranks.npz")
  dims = m["dims"]
  for name, row in m["subjects"].items():
    rr = ranks[name.replace("/", "__")]                              # [T, tau, M, B]
    assert rr.shape[:2] == (len(s.ts), len(s.taus))
    # A larger threshold never counts more singular values.
    assert np.all(np.diff(rr, axis=1) <= 1e-7)
    np.testing.assert_allclose(np.asarray(row["ratio"]), rr.mean(axis=(2, 3)).T, atol=1e-6)
    ci = np.asarray(row["ci"])
    assert np.all(ci[..., 0] <= np.asarray(row["ratio"]) + 1e-9)
    assert np.all(np.asarray(row["ratio"]) <= ci[..., 1] + 1e-9)
    d = dims[name.split("/")[0]]
    assert np.allclose(rr * d, np.round(rr * d), atol=1e-4)         # whole ranks
  # The exact MoLRG posterior mean: rank r where one component dominates (small t),
  # at most K·r anywhere, and J acts on the support only.
  ex = m["subjects"]["molrg/exact MoLRG"]
  k = s.taus.index(s.tau)
  r, d = m["rank"], dims["molrg"]
  assert ex["ratio"][k][0] * d == pytest.approx(r, abs=1e-6)
  assert max(ex["ratio"][k]) * d <= 2 * r + 1e-6
  np.testing.assert_allclose(ex["energy"], 1.0, atol=1e-5)
  assert m["check"]["max_rel_err"] < 0.1


def test_matrix_free_path_agrees_with_exact(smoke_run, tmp_path):
  """With exact_max_dim below D every Jacobian goes through `top_singular`; with
  topk = D and power iterations its spectra equal the exact ones."""
  base, s, m = smoke_run
  zoo = str(base / "zoo")
  s2 = settings_lib.override(s, {"exact_max_dim": 1, "topk": 64, "power_iters": 3,
                                 "ts": s.ts[-1:], "mid_ts": s.ts[-1:],
                                 "zoo": {"dir": zoo}, "molrg": {"dir": zoo}})
  m2 = runner.run_study("jacobian_rank", s2, tmp_path / "out")
  assert m2["check"] is None
  for name in ("molrg/exact MoLRG", "digits/Gaussian (all digits)"):
    np.testing.assert_allclose(np.asarray(m2["subjects"][name]["ratio"])[:, 0],
                               np.asarray(m["subjects"][name]["ratio"])[:, -1], atol=1e-6)
  np.testing.assert_allclose(m2["subjects"]["molrg/exact MoLRG"]["energy"], 1.0, atol=1e-4)
  assert len(m2["subjects"]["molrg/exact MoLRG"]["energy"]) == 1
