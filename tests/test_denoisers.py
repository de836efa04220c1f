"""Closed-form denoisers against independent oracles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import repro_jax
from repro_jax.diffusion import denoiser_fn
from repro_jax.closed_form import denoisers
from repro_jax.diffusion import heads


def np_empirical(x, data, sigma, scale=1.0):
  """Brute-force float64 posterior mean of the empirical distribution."""
  xv = x / np.reshape(scale, (-1, 1))
  d2 = ((xv[:, None, :] - data[None]) ** 2).sum(-1)
  logits = -d2 / (2 * np.reshape(sigma, (-1, 1)) ** 2)
  w = np.exp(logits - logits.max(1, keepdims=True))
  return (w / w.sum(1, keepdims=True)) @ data


@pytest.fixture
def problem():
  rng = np.random.default_rng(0)
  return rng.normal(size=(37, 6)), rng.normal(size=(5, 6)) * 1.3


@pytest.mark.parametrize("sigma", [0.05, 0.4, 2.0, 30.0])
def test_empirical_matches_numpy(problem, sigma, x64):
  data, x = problem
  scale = np.array([0.5, 1.0, 0.9, 0.2, 1.3])
  out = repro_jax.empirical_denoiser(x, data, sigma, scale=scale)
  np.testing.assert_allclose(out, np_empirical(x, data, sigma, scale), rtol=1e-12, atol=1e-12)


def test_per_row_sigma(problem, x64):
  data, x = problem
  sig = np.array([0.1, 0.3, 1.0, 3.0, 10.0])
  out = repro_jax.empirical_denoiser(x, data, sig)
  np.testing.assert_allclose(out, np_empirical(x, data, sig), rtol=1e-12, atol=1e-12)


def test_chunked_equals_unchunked(problem, x64):
  data, x = problem
  full = repro_jax.empirical_denoiser(x, data, 0.7, chunk_size=None)
  for chunk in (1, 5, 8, 36, 37, 100):   # divisors, ragged tails, larger than N
    np.testing.assert_allclose(
        repro_jax.empirical_denoiser(x, data, 0.7, chunk_size=chunk), full, rtol=1e-13, atol=1e-14)


def test_sharded_equals_single_device(problem, mesh8, x64):
  data, x = problem            # N = 37 does not divide 8: exercises the padding
  for sigma in (0.05, 0.7, 20.0):
    ref = repro_jax.empirical_denoiser(x, data, sigma, chunk_size=None)
    got = repro_jax.empirical_denoiser(x, data, sigma, chunk_size=3, mesh=mesh8)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14)
    sd_ref = repro_jax.smoothed_sq_distance(x, data, sigma)
    sd = repro_jax.smoothed_sq_distance(x, data, sigma, mesh=mesh8)
    np.testing.assert_allclose(sd, sd_ref, rtol=1e-13)


def test_precomputed_norms(problem, mesh8, x64):
  data, x = problem
  sq = np.sum(np.square(data), axis=1)
  ref = repro_jax.empirical_denoiser(x, data, 0.7)
  for kw in (dict(chunk_size=5), dict(chunk_size=3, mesh=mesh8)):
    got = repro_jax.empirical_denoiser(x, data, 0.7, data_sq=sq, **kw)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-14)
  # The canonical form computes the norms once and must agree too.
  np.testing.assert_allclose(denoiser_fn.empirical(data)(x, np.full(len(x), 0.7)), ref,
                             rtol=1e-13, atol=1e-14)
  with pytest.raises(ValueError, match="data_sq"):
    repro_jax.empirical_denoiser(x, data, 0.7, data_sq=sq[:-1])


def test_sharded_float32_jit_inside(problem, mesh8):
  data, x = (jnp.asarray(a, jnp.float32) for a in problem)
  f = jax.jit(lambda q: repro_jax.empirical_denoiser(q, data, 0.5, mesh=mesh8))
  np.testing.assert_allclose(f(x), np_empirical(np.asarray(x, np.float64),
                                                np.asarray(data, np.float64), 0.5),
                             rtol=2e-5, atol=2e-5)


def test_limits(problem, x64):
  data, x = problem
  nearest = ((x[:, None] - data[None]) ** 2).sum(-1).argmin(1)
  np.testing.assert_allclose(repro_jax.empirical_denoiser(x, data, 1e-5), data[nearest], atol=1e-12)
  np.testing.assert_allclose(repro_jax.empirical_denoiser(x, data, 1e5), np.tile(data.mean(0), (5, 1)),
                             atol=1e-8)


@pytest.mark.parametrize("sigma", [1e-4, 1e-2, 1.0, 1e2, 1e4])
def test_float32_stays_finite(problem, sigma):
  data, x = (jnp.asarray(a, jnp.float32) for a in problem)
  for q in (x, 1e4 * x):
    for head in heads.HEADS:
      out = repro_jax.empirical_denoiser(q, data, sigma, head=head)
      assert bool(jnp.all(jnp.isfinite(out))), (sigma, head)
    assert bool(jnp.all(jnp.isfinite(repro_jax.smoothed_sq_distance(q, data, sigma))))


def test_eps_and_score_heads_by_tweedie(problem, x64):
  data, x = problem
  s, sig = 0.6, 0.8
  x0 = repro_jax.empirical_denoiser(x, data, sig, scale=s)
  eps = repro_jax.empirical_denoiser(x, data, sig, scale=s, head="eps")
  score = repro_jax.empirical_denoiser(x, data, sig, scale=s, head="score")
  np.testing.assert_allclose(eps, (x - s * x0) / (s * sig), rtol=1e-12)
  # The score is the gradient of log p_t(x) = log mean_i N(x; s y_i, (s σ)² I).
  def log_p(xi):
    d2 = jnp.sum((xi - s * data) ** 2, -1)
    return jax.scipy.special.logsumexp(-d2 / (2 * (s * sig) ** 2))
  np.testing.assert_allclose(score, jax.vmap(jax.grad(log_p))(x), rtol=1e-10, atol=1e-12)


def test_head_round_trips(x64):
  rng = np.random.default_rng(1)
  xt, x0 = rng.normal(size=(2, 4, 3))
  scale, sigma = np.array([0.3, 0.7, 1.0, 0.9]), np.array([0.1, 1.0, 5.0, 40.0])
  for head in heads.HEADS:
    out = heads.from_x0(head, x0, xt, scale, sigma)
    np.testing.assert_allclose(heads.to_x0(head, out, xt, scale, sigma), x0, rtol=1e-10, atol=1e-10)
  # v = a ε − b x0 with a = 1/sqrt(1+σ²), b = σ a.
  eps = (xt - scale[:, None] * x0) / (scale * sigma)[:, None]
  a = 1 / np.sqrt(1 + sigma**2)
  np.testing.assert_allclose(heads.from_x0("v", x0, xt, scale, sigma),
                             a[:, None] * eps - (sigma * a)[:, None] * x0, rtol=1e-12)


def _gaussian_posterior_np(x, mu, cov, alpha, beta):
  """E[x0 | x_t] = μ + α Σ (α² Σ + β² I)⁻¹ (x_t − α μ) (THEORY.md §1)."""
  d = len(mu)
  gain = alpha * cov @ np.linalg.inv(alpha**2 * cov + beta**2 * np.eye(d))
  return mu + (x - alpha * mu) @ gain.T


def test_gaussian_against_formula(x64):
  rng = np.random.default_rng(2)
  a = rng.normal(size=(4, 4))
  cov, mu = a @ a.T + 0.1 * np.eye(4), rng.normal(size=4)
  x = rng.normal(size=(6, 4))
  s, sig = 0.8, 0.6
  out = repro_jax.gaussian_denoiser(x, mu, cov, sig, scale=s)
  np.testing.assert_allclose(out, _gaussian_posterior_np(x, mu, cov, s, s * sig), rtol=1e-10)


def test_gmm_against_bayes_formula(x64):
  rng = np.random.default_rng(3)
  k, d = 3, 4
  means = rng.normal(size=(k, d)) * 2
  covs = np.stack([(lambda a: a @ a.T + 0.05 * np.eye(d))(rng.normal(size=(d, d))) for _ in range(k)])
  w = np.array([0.2, 0.5, 0.3])
  x = rng.normal(size=(7, d)) * 2
  sig = 0.9
  mix = repro_jax.GaussianMixture.from_covariances(w, means, covs)
  out = repro_jax.gmm_denoiser(x, mix, sig)
  # Oracle: responsibilities from explicit densities, component posteriors by formula.
  ref = np.zeros_like(x)
  for b in range(x.shape[0]):
    logs, comp = [], []
    for j in range(k):
      c = covs[j] + sig**2 * np.eye(d)
      diff = x[b] - means[j]
      logs.append(math.log(w[j]) - 0.5 * diff @ np.linalg.solve(c, diff)
                  - 0.5 * np.linalg.slogdet(c)[1])
      comp.append(means[j] + covs[j] @ np.linalg.solve(c, diff))
    r = np.exp(np.array(logs) - max(logs))
    ref[b] = (r / r.sum()) @ np.array(comp)
  np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)


@pytest.fixture
def molrg_problem():
  key = jax.random.PRNGKey(0)
  with jax.enable_x64(True):
    bases = repro_jax.random_molrg_bases(key, 10, 3, [2, 4, 3], orthogonal=False,
                                         dtype=jnp.float64)
  return bases, np.array([0.5, 0.2, 0.3])


def test_molrg_bases_orthonormal():
  b = repro_jax.random_molrg_bases(jax.random.PRNGKey(1), 12, 3, 4)
  gram = jnp.einsum("kdr,ldq->klrq", b, b)
  np.testing.assert_allclose(gram, np.einsum("kl,rq->klrq", np.eye(3), np.eye(4)), atol=1e-5)
  padded = repro_jax.random_molrg_bases(jax.random.PRNGKey(1), 12, 2, [1, 3])
  np.testing.assert_array_equal(denoisers.molrg_ranks(padded), [1, 3])


def test_molrg_fast_path_equals_gmm(molrg_problem, x64):
  bases, w = molrg_problem
  covs = np.einsum("kdr,ker->kde", bases, bases)
  mix = repro_jax.GaussianMixture.from_covariances(w, np.zeros((3, 10)), covs)
  x = np.random.default_rng(4).normal(size=(9, 10))
  for alpha, beta in ((1.0, 0.3), (0.7, 0.7), (0.2, 1.5)):
    fast = repro_jax.molrg_denoiser(x, bases, alpha, beta, w)
    ref = repro_jax.gmm_denoiser(x, mix, beta / alpha, scale=alpha)
    np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-11)


def test_molrg_equal_ranks_is_talk_formula(x64):
  """Equal ranks, equal weights: the log-det terms cancel (the talk's formula)."""
  bases = np.asarray(repro_jax.random_molrg_bases(jax.random.PRNGKey(5), 8, 2, 3,
                                                  dtype=jnp.float32), np.float64)
  x = np.random.default_rng(6).normal(size=(4, 8))
  a, b = 0.8, 0.5
  phi = a**2 / (2 * b**2 * (a**2 + b**2))
  logits = phi * np.sum(np.einsum("bd,kdr->bkr", x, bases) ** 2, -1)
  w = np.exp(logits - logits.max(1, keepdims=True))
  w /= w.sum(1, keepdims=True)
  proj = np.einsum("bk,kdr,ker,be->bd", w, bases, bases, x)
  np.testing.assert_allclose(repro_jax.molrg_denoiser(x, bases, a, b), a / (a**2 + b**2) * proj,
                             rtol=1e-10)


def test_molrg_matches_monte_carlo(molrg_problem, x64):
  bases, w = molrg_problem
  key = jax.random.PRNGKey(7)
  sigma = 0.6
  x0s, _ = repro_jax.sample_molrg(key, bases, 200_000, w)
  xq, _ = repro_jax.sample_molrg(jax.random.fold_in(key, 1), bases, 3, w)
  xt = xq + sigma * jax.random.normal(jax.random.fold_in(key, 2), xq.shape, jnp.float64)
  logw = -jnp.sum((xt[:, None] - x0s[None]) ** 2, -1) / (2 * sigma**2)
  p = jax.nn.softmax(logw, axis=1)
  mc = p @ x0s
  se = jnp.sqrt(jnp.maximum(p @ x0s**2 - mc**2, 0) / (1 / jnp.sum(p**2, 1))[:, None])
  exact = repro_jax.molrg_denoiser(xt, bases, 1.0, sigma, w)
  assert float(jnp.max(jnp.abs(mc - exact) / (se + 1e-9))) < 5.0


def test_sample_molrg_statistics(molrg_problem, x64):
  bases, w = molrg_problem
  x, labels = repro_jax.sample_molrg(jax.random.PRNGKey(8), bases, 60_000, w)
  freq = np.bincount(np.asarray(labels), minlength=3) / 60_000
  np.testing.assert_allclose(freq, w, atol=0.01)
  cov = np.asarray(x).T @ np.asarray(x) / 60_000
  ref = np.einsum("k,kdr,ker->de", w, bases, bases)
  np.testing.assert_allclose(cov, ref, atol=0.03)
  # Every sample lies on its component's subspace.
  res = x - jnp.einsum("ndr,ner,ne->nd", bases[labels], bases[labels], x)
  assert float(jnp.abs(res).max()) < 1e-10


def test_bad_input():
  data = np.zeros((4, 3))
  with pytest.raises(ValueError, match="`x` must have shape"):
    repro_jax.empirical_denoiser(np.zeros(3), data, 1.0)
  with pytest.raises(ValueError, match="last dimension"):
    repro_jax.empirical_denoiser(np.zeros((2, 4)), data, 1.0)
  with pytest.raises(ValueError, match="`sigma` must be > 0"):
    repro_jax.empirical_denoiser(np.zeros((2, 3)), data, 0.0)
  with pytest.raises(ValueError, match="`sigma` must be a scalar or have shape"):
    repro_jax.empirical_denoiser(np.zeros((2, 3)), data, np.ones(3))
  with pytest.raises(ValueError, match="`data` contains NaN"):
    repro_jax.empirical_denoiser(np.zeros((2, 3)), np.full((4, 3), np.nan), 1.0)
  with pytest.raises(ValueError, match="`data` is empty"):
    repro_jax.empirical_denoiser(np.zeros((2, 3)), np.zeros((0, 3)), 1.0)
  with pytest.raises(ValueError, match="Unknown head"):
    repro_jax.empirical_denoiser(np.zeros((2, 3)), data, 1.0, head="nope")
  with pytest.raises(ValueError, match="`bases` must have shape"):
    repro_jax.molrg_denoiser(np.zeros((2, 3)), np.zeros((3, 2)), 1.0, 0.5)
  with pytest.raises(ValueError, match="`covs` must have shape"):
    repro_jax.GaussianMixture.from_covariances(np.ones(2), np.zeros((2, 3)), np.zeros((2, 3, 2)))
  with pytest.raises(ValueError, match="do not fit"):
    repro_jax.random_molrg_bases(jax.random.PRNGKey(0), 4, 3, 2)
