"""Distances, projections and the smoothed distance (docs/theory.md §2)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import repro_jax


@pytest.fixture
def problem():
  rng = np.random.default_rng(10)
  return rng.normal(size=(53, 5)), rng.normal(size=(11, 5)) * 1.5


@pytest.mark.parametrize("chunk", [None, 4, 16, 53])
def test_nearest_neighbors_brute_force(problem, chunk, x64):
  data, x = problem
  d2 = ((x[:, None] - data[None]) ** 2).sum(-1)
  idx, sq = repro_jax.nearest_neighbors(x, data, chunk_size=chunk)
  np.testing.assert_array_equal(idx, d2.argmin(1))
  np.testing.assert_allclose(sq, d2.min(1), rtol=1e-12)
  np.testing.assert_allclose(repro_jax.dist_finite(x, data, chunk_size=chunk), np.sqrt(d2.min(1)),
                             rtol=1e-12)
  np.testing.assert_array_equal(repro_jax.proj_finite(x, data), data[d2.argmin(1)])


@pytest.mark.parametrize("sigma", [1e-3, 0.1, 0.5, 2.0, 50.0])
def test_gradient_identity(problem, sigma, x64):
  """½ ∇ dist²_K(x, σ) = σ ε*(x, σ) = x − D*(x, σ), by autodiff, to 1e-10 relative."""
  data, x = problem
  grad = jax.vmap(jax.grad(lambda xi: repro_jax.smoothed_sq_distance(
      xi[None], data, sigma, chunk_size=16)[0]))(jnp.asarray(x))
  eps = repro_jax.empirical_denoiser(x, data, sigma, head="eps", chunk_size=16)
  resid = x - repro_jax.empirical_denoiser(x, data, sigma)
  scale = np.linalg.norm(resid, axis=1, keepdims=True)
  assert np.max(np.abs(0.5 * grad - sigma * eps) / scale) < 1e-10
  assert np.max(np.abs(0.5 * grad - resid) / scale) < 1e-10


def test_smoothed_distance_formula_and_bounds(problem, x64):
  data, x = problem
  d2 = ((x[:, None] - data[None]) ** 2).sum(-1)
  for sigma in (0.01, 0.3, 3.0, 300.0):
    ref = -2 * sigma**2 * np.log(np.exp(-(d2 - d2.min(1, keepdims=True)) / (2 * sigma**2)).sum(1)) \
        + d2.min(1)
    got = repro_jax.smoothed_sq_distance(x, data, sigma, chunk_size=8)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.all(got <= d2.min(1) + 1e-12)
    assert np.all(got >= d2.min(1) - 2 * sigma**2 * math.log(len(data)) - 1e-9)
  # σ → 0: the exact squared distance.
  np.testing.assert_allclose(repro_jax.smoothed_sq_distance(x, data, 1e-4), d2.min(1), rtol=1e-9)


def test_union_of_subspaces(x64):
  bases = repro_jax.random_molrg_bases(jax.random.PRNGKey(0), 6, 2, [1, 2],
                                       orthogonal=False, dtype=jnp.float64)
  x = np.random.default_rng(1).normal(size=(20, 6))
  res = []
  for k in range(2):
    u = np.asarray(bases[k])
    p = x @ u @ u.T
    res.append(np.linalg.norm(x - p, axis=1))
  res = np.stack(res, 1)
  np.testing.assert_allclose(repro_jax.dist_subspaces(x, bases), res.min(1), rtol=1e-12)
  proj, k = repro_jax.proj_subspaces(x, bases)
  np.testing.assert_array_equal(k, res.argmin(1))
  np.testing.assert_allclose(np.linalg.norm(x - proj, axis=1), res.min(1), rtol=1e-12)


def test_bad_input():
  with pytest.raises(ValueError, match="`data` must have shape"):
    repro_jax.nearest_neighbors(np.zeros((2, 3)), np.zeros(3))
  with pytest.raises(ValueError, match="sigma"):
    repro_jax.smoothed_sq_distance(np.zeros((2, 3)), np.zeros((4, 3)), -1.0)
  with pytest.raises(ValueError, match="disagree on D"):
    repro_jax.dist_subspaces(np.zeros((2, 3)), np.zeros((1, 4, 2)))
