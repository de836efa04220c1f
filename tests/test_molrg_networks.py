"""L_score, sample labels and the molrg_networks study (tiny sizes).

Oracles: the exact MoLRG score (L_score 0), the identity denoiser (relative
L_score exactly 1) and a NumPy brute force of the score distance through the
general Gaussian-mixture posterior; synthetic samplers that copy training
points, draw fresh MoLRG points or draw isotropic noise; NumPy nearest
neighbours with padding.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax.diffusion import denoiser
from repro_jax.closed_form import denoisers
from repro_jax.closed_form import geometry
from repro_jax.analysis import score_metrics
from repro_jax import settings as settings_lib
from repro_jax.networks import training
from repro_jax.studies import molrg_networks as mn
from repro_jax.studies import runner
from repro_jax.studies import verdicts

D, K = 12, 2


def _bases(rank=2, seed=0, dtype=jnp.float32):
  return denoisers.random_molrg_bases(jax.random.key(seed), D, K, rank, dtype=dtype)


# L_score ----------------------------------------------------------------------------

def test_l_score_of_exact_denoiser_is_zero():
  bases = _bases()
  err = score_metrics.l_score(denoiser.molrg(bases), bases, jax.random.key(1),
                              num_samples=256, num_sigmas=8)
  assert err.sigmas.shape == err.abs_per_sigma.shape == err.rel_per_sigma.shape == (8,)
  assert float(err.l_score_rel) < 1e-5
  assert float(err.l_score) < 1e-5 * float(jnp.mean(err.abs_per_sigma) + 1.0)


def test_l_score_of_identity_is_one_and_of_zero_model_positive():
  bases = _bases()
  key = jax.random.key(2)
  ident = score_metrics.l_score(lambda x, s: x, bases, key, num_samples=128, num_sigmas=4)
  np.testing.assert_allclose(np.asarray(ident.rel_per_sigma), 1.0, rtol=1e-6)
  zero = score_metrics.l_score(lambda x, s: jnp.zeros_like(x), bases, key, num_samples=128,
                               num_sigmas=4)
  assert float(zero.l_score) > 0 and float(zero.l_score_rel) > 0.1


def test_score_errors_match_numpy_gaussian_mixture_oracle(x64):
  bases = _bases(rank=3, dtype=jnp.float64)
  other = _bases(rank=3, seed=5, dtype=jnp.float64)     # a "model": the wrong subspaces
  rng = np.random.default_rng(0)
  x0 = np.asarray(denoisers.sample_molrg(jax.random.key(3), bases, 16)[0])
  eps = rng.normal(size=x0.shape)
  sigma = np.geomspace(0.05, 3.0, 16)
  err, norm = score_metrics.score_errors(denoiser.molrg(other), bases, x0, eps, sigma)
  # Oracle: exact Gaussian-mixture posterior means in NumPy, score = (D − x)/σ².
  x = x0 + sigma[:, None] * eps

  def posterior_mean(b):
    out = []
    for xi, s in zip(x, sigma):
      covs = [bk @ bk.T + s**2 * np.eye(D) for bk in np.asarray(b)]
      logp = [-0.5 * xi @ np.linalg.solve(c, xi) - 0.5 * np.linalg.slogdet(c)[1]
              for c in covs]
      w = np.exp(np.array(logp) - max(logp))
      w /= w.sum()
      out.append(sum(wk * bk @ bk.T @ np.linalg.solve(c, xi)
                     for wk, bk, c in zip(w, np.asarray(b), covs)))
    return np.array(out)
  s_true = (posterior_mean(bases) - x) / sigma[:, None] ** 2
  s_model = (posterior_mean(other) - x) / sigma[:, None] ** 2
  np.testing.assert_allclose(err, np.linalg.norm(s_model - s_true, axis=1), rtol=1e-8)
  np.testing.assert_allclose(norm, np.linalg.norm(s_true, axis=1), rtol=1e-8)


def test_l_score_takes_image_shaped_denoisers():
  bases = _bases()
  flat = denoiser.molrg(bases)
  image = lambda x, s: flat(x.reshape(x.shape[0], -1), s).reshape(x.shape)
  err = score_metrics.l_score(image, bases, jax.random.key(0), num_samples=64,
                              num_sigmas=4, data_shape=(2, 2, 3))
  assert float(err.l_score_rel) < 1e-5


# Sample labels ----------------------------------------------------------------------

def test_nearest_two_with_padding_matches_numpy():
  rng = np.random.default_rng(1)
  x, train = rng.normal(size=(7, D)), rng.normal(size=(9, D))
  mask = np.arange(9) < 5
  got = np.asarray(score_metrics.nearest_two(jnp.asarray(x), jnp.asarray(train), mask))
  d = np.linalg.norm(x[:, None] - train[None, :5], axis=-1)
  np.testing.assert_allclose(got, np.sort(d, axis=1)[:, :2], rtol=1e-4, atol=1e-5)


def test_labels_of_synthetic_memorizing_generalizing_and_noise_samplers():
  bases = _bases(rank=4)
  train = denoisers.sample_molrg(jax.random.key(0), bases, 32)[0]
  key = jax.random.key(7)
  # memorizer: training points + a 1e-3 jitter
  idx = jax.random.randint(key, (200,), 0, 32)
  copies = train[idx] + 1e-3 * jax.random.normal(key, (200, D))
  mem = score_metrics.sample_labels(copies, train, bases)
  assert float(mem.frac_copy) == 1.0 and float(mem.frac_new) == 0.0
  assert float(mem.frac_on_support) == 1.0
  assert score_metrics.regime(float(mem.frac_copy), float(mem.frac_new)) == "memorization"
  # generalizer: fresh samples of the true distribution (r = 4: P(copy) ≈ 3^-4)
  fresh = denoisers.sample_molrg(jax.random.key(9), bases, 200)[0]
  gen = score_metrics.sample_labels(fresh, train, bases)
  assert float(gen.frac_on_support) == 1.0
  assert float(gen.frac_copy) < 0.05 and float(gen.frac_new) > 0.95
  assert score_metrics.regime(float(gen.frac_copy), float(gen.frac_new)) == "generalization"
  np.testing.assert_allclose(np.asarray(gen.support_dist), 0.0, atol=1e-5)
  # isotropic noise: off the support (dist/‖x‖ ≈ sqrt(1 − r/D) per component)
  noise = score_metrics.sample_labels(jax.random.normal(key, (200, D)), train, bases)
  assert float(noise.frac_on_support) == 0.0 and float(noise.frac_new) == 0.0
  assert score_metrics.regime(float(noise.frac_copy), float(noise.frac_new)) == "transition"
  assert 0.6 < float(jnp.median(noise.support_dist)) < 1.0


def test_crossing_and_boundary():
  assert score_metrics.crossing([8, 16, 32], [0.0, 0.25, 0.75]) == pytest.approx(
      math.sqrt(16 * 32))
  assert score_metrics.crossing([8, 16], [0.6, 1.0]) == 8.0
  assert math.isnan(score_metrics.crossing([8, 16], [0.1, 0.2]))
  ns, ranks = [4, 8, 16, 32, 64, 128], [2, 4, 8]
  frac = np.array([[float(n >= 4 * r) for r in ranks] for n in ns])   # steps at 4 r
  n_star, expo, c = mn.boundary(ns, ranks, frac, level=0.5)
  # a 0 → 1 step between N/2 and N crosses ½ at the geometric midpoint N/√2
  np.testing.assert_allclose(n_star, np.array([8, 16, 32]) / math.sqrt(2))
  assert expo == pytest.approx(1.0) and c == pytest.approx(4.0 / math.sqrt(2))


# The study's pieces -----------------------------------------------------------------

def test_grid_data_blocks_and_nested_subsets():
  grid = mn.make_grid_data([1, 3], 2, 10, dim=D, num_components=K)
  assert grid.x.shape == (40, D) and grid.bases.shape == (4, K, D, 3)
  for b in range(4):        # orthonormal columns (zero padding beyond the rank)
    g = np.einsum("kdr,kds->krs", grid.bases[b], grid.bases[b])
    eye = np.diag([1.0] * grid.ranks[b] + [0.0] * (3 - grid.ranks[b]))
    np.testing.assert_allclose(g, np.broadcast_to(eye, g.shape), atol=1e-5)
  cells = mn.make_cells(grid, [(3, 4), (3, 10)], 2)
  subs = mn.cell_subsets(grid, cells)
  assert [len(s) for s in subs] == [4, 4, 10, 10]
  assert set(subs[0]) <= set(subs[2])          # N = 4 ⊂ N = 10, same (r, seed) block
  for b, s in zip(cells.block, subs):          # every row lies on its block's subspaces
    dist = np.asarray(geometry.dist_subspaces(grid.x[s], grid.bases[b]))
    assert dist.max() < 1e-5


def test_stacked_denoiser_equals_each_model():
  bases = jnp.stack([_bases(1, 0), _bases(1, 2)])
  make = mn.molrg_factory((D,))
  x = jax.random.normal(jax.random.key(0), (2 * 5, D))      # model-major [M·B, D]
  sigma = jnp.tile(jnp.linspace(0.1, 2.0, 5), 2)
  out = denoiser.stack(make, bases)(x, sigma)
  for m in range(2):
    rows = slice(5 * m, 5 * (m + 1))
    np.testing.assert_allclose(out[rows], make(bases[m])(x[rows], sigma[rows]), rtol=1e-6)


# End to end --------------------------------------------------------------------------

def test_settings_variants():
  for v in mn.VARIANTS:
    s = runner.study_settings("molrg_networks", v)
    assert all(r * s.num_components <= s.dim for r in s.ranks)
    assert math.prod(s.image_shape) == s.dim
    assert s.num_data_sets == max(getattr(s, a).num_seeds for a in s.archs())
    for name in s.archs():   # complete, valid training settings
      arch = getattr(s, name)
      cfg = mn.train_settings(arch)
      training.check_config(cfg)
      assert cfg.model == arch.model and cfg.train == arch.train
  cpu = mn.settings("cpu")
  assert cpu.archs() == ["mlp", "unet", "dit"] and cpu.mlp.num_seeds >= 3
  assert (cpu.unet.model.name, cpu.dit.model.name) == ("unet", "dit")
  ratios = np.diff(np.log(cpu.ns)) / math.log(math.sqrt(2))   # √2-spaced, rounded
  np.testing.assert_allclose(ratios, 1.0, atol=0.1)
  assert (min(cpu.ranks), max(cpu.ranks)) == (2, 10)
  paper = mn.settings("paper")
  assert all(getattr(paper, a).num_seeds >= 3 for a in paper.archs())
  with pytest.raises(ValueError, match="variant"):
    runner.study_settings("molrg_networks", "nope")
  with pytest.raises(ValueError, match="unknown field"):
    settings_lib.override(mn.settings("smoke"), {"mlp": {"hidden": 8}})


def _cells(ranks, ns, seeds):
  c = [(r, s, n) for r in ranks for n in ns for s in range(seeds)]
  return mn.Cells(*(np.array(v) for v in zip(*c)), np.zeros(len(c), int))


def test_cell_fractions_match_a_loop_over_draws():
  """Replicates of the per-cell fractions equal an explicit loop: noises drawn
  jointly for every model, seeds drawn per rank and used at every N."""
  ranks, ns, seeds, b, reps = [2, 5], [4, 8, 16], 3, 7, 6
  cells = _cells(ranks, ns, seeds)
  rng = np.random.default_rng(0)
  ind = (rng.random((len(cells), b)) < 0.4).astype(np.float32)
  noise_idx = rng.integers(0, b, (reps, b))
  noise_counts = np.stack([np.bincount(i, minlength=b) for i in noise_idx]).astype(np.float32)
  seed_idx = rng.integers(0, seeds, (reps, len(ranks), seeds))
  seed_counts = np.stack([[np.bincount(i, minlength=seeds) for i in row]
                          for row in seed_idx]).astype(np.float32)
  got = mn.cell_fractions(ind, cells, ranks, ns, noise_counts, seed_counts)
  want = np.zeros((reps, len(ns), len(ranks)))
  for k in range(reps):
    for j, r in enumerate(ranks):
      for i, n in enumerate(ns):
        vals = [ind[(cells.rank == r) & (cells.n == n) & (cells.seed == sd)][0][noise_idx[k]]
                .mean() for sd in seed_idx[k, j]]
        want[k, i, j] = np.mean(vals)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  counts = np.asarray(mn.seed_counts(jax.random.key(0), 2, 3, 5))
  assert counts.shape == (5, 2, 3) and np.all(counts.sum(-1) == 3)


def test_boundary_estimates_of_an_exactly_linear_grid():
  """Noise-free steps at N = 4 r: every replicate gives a = 1 exactly, the CI
  collapses on 1 and the linear verdict's check passes; steps at 4 r² give 2."""
  ranks, ns = [2, 4, 8], [4, 8, 16, 32, 64, 128, 256]
  for power, expo in ((1, 1.0), (2, 2.0)):
    frac = np.array([[float(n >= 4 * r ** power) for r in ranks] for n in ns])
    reps = np.broadcast_to(frac, (5,) + frac.shape)
    b = mn.boundary_estimates(reps, 1.0 - reps, frac, 1.0 - frac, ranks, ns, level=0.5,
                              ci_level=0.95)
    gen = b["generalize"]
    assert gen["exponent"] == pytest.approx(expo)
    np.testing.assert_allclose(gen["exponent_ci"], [expo, expo])
    assert gen["exponent_kept"] == 1.0
  # A rank that never crosses: no exponent, in the point value and every replicate.
  frac[:, -1] = 0.0
  reps = np.broadcast_to(frac, (5,) + frac.shape)
  gen = mn.boundary_estimates(reps, reps, frac, frac, ranks, ns, level=0.5,
                              ci_level=0.95)["generalize"]
  assert math.isnan(gen["exponent"]) and gen["exponent_kept"] == 0.0


def test_study_smoke(tmp_path):
  s = runner.study_settings("molrg_networks", "smoke")
  workdir = tmp_path / "molrg_networks"
  runner.run_study("molrg_networks", s, workdir)
  assert {"config.json", "metrics.json", "cells.csv", "report.md", "phase_diagram.png",
          "boundary.png", "details.png", "manifest.json"} <= {p.name for p in workdir.iterdir()}
  m = json.loads((workdir / "metrics.json").read_text())
  assert set(m["archs"]) == set(s.archs())
  for name in s.archs():
    n_cells = len(s.ranks) * len(s.ns) * getattr(s, name).num_seeds
    assert len([c for c in m["cells"] if c["arch"] == name]) == n_cells
  assert m["reference"]["max_l_score_rel"] < 1e-5        # exact score: L_score = 0
  assert m["reference"]["min_frac_new"] >= 0.6           # exact sampler: new samples
  # 300 steps on N = 2 points: the nets copy them (training at tiny size).
  for c in m["cells"]:
    if c["arch"] == "mlp" and c["n"] == 2:
      assert c["frac_copy"] >= 0.9 and c["regime"] == "memorization", c
  mlp = m["archs"]["mlp"]
  assert mlp["checks"]["memorizes_at_smallest_n"]
  for c in m["cells"]:
    assert 0.0 <= c["frac_new"] <= c["frac_on_support"] <= 1.0
    assert c["l_score_rel"] > 1e-3 and math.isfinite(c["l_score"])
    assert c["regime"] in score_metrics.REGIMES
  assert np.asarray(mlp["matrices"]["frac_new"]).shape == (len(s.ns), len(s.ranks))
  # Every fraction's CI holds its point value; N* has one CI per rank.
  for f in ("frac_new", "frac_copy"):
    ci = np.asarray(mlp["matrices_ci"][f], float)
    point = np.asarray(mlp["matrices"][f], float)
    assert ci.shape == point.shape + (2,)
    assert np.all(ci[..., 0] <= point + 1e-6) and np.all(point <= ci[..., 1] + 1e-6)
  assert np.asarray(mlp["boundaries"]["generalize"]["n_star_ci"]).shape == (len(s.ranks), 2)
  assert set(mlp["checks"]) == {"memorizes_at_smallest_n", "generalizes_at_largest_n",
                                "boundary_grows_with_r", "exponent_linear",
                                "score_error_falls_with_n"}
  # Verdicts are data: one per check and architecture, reproduced exactly when
  # the check passed.
  vs = verdicts.from_dicts(m["verdicts"])
  checks = [v for a in s.archs() for v in m["archs"][a]["checks"].values()]
  assert [v.verdict == "reproduced" for v in vs] == checks
  assert vs[0].measured["frac_copy"] == mlp["matrices"]["frac_copy"][0]
  # The complete training settings of each architecture are recorded.
  config = json.loads((workdir / "config.json").read_text())
  assert config["mlp"]["optim"]["learning_rate"] == 3e-3
  assert config["unet"]["train"]["num_steps"] == 20
  report = (workdir / "report.md").read_text()
  assert "**Verdict.**" in report and "boundary.png" in report
  assert "| claim | verdict | criterion | measured |" in report
