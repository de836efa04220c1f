"""Closed-form denoisers against independent oracles."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import repro_jax
from repro_jax.diffusion import denoiser
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
  np.testing.assert_allclose(denoiser.empirical(data)(x, np.full(len(x), 0.7)), ref,
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
  """E[x0 | x_t] = μ + α Σ (α² Σ + β² I)⁻¹ (x_t − α μ) (docs/theory.md §1)."""
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


# Dtype policy ------------------------------------------------------------------

_XI = np.arange(6).reshape(2, 3)
_DI = np.arange(12).reshape(4, 3)
_BI = np.eye(3, dtype=np.int32)[None, :, :2]


def _int_cases():
  """(name, fn(x, data_or_params...)) pairs evaluated on integer and float copies."""
  return {
      "empirical_0.5": lambda f: repro_jax.empirical_denoiser(f(_XI), f(_DI), 0.5),
      "empirical_2.5": lambda f: repro_jax.empirical_denoiser(f(_XI), f(_DI), 2.5),
      "empirical_scale": lambda f: repro_jax.empirical_denoiser(f(_XI), f(_DI), 1.5,
                                                                scale=2.5),
      "gaussian": lambda f: repro_jax.gaussian_denoiser(f(_XI), f(np.zeros(3, int)),
                                                        f(4 * np.eye(3, dtype=int)), 0.5),
      "smoothed": lambda f: repro_jax.smoothed_sq_distance(f(_XI), f(_DI), 2.5),
      "molrg": lambda f: repro_jax.molrg_denoiser(f(_XI), f(_BI), 1, 2.5),
      "molrg_weights": lambda f: repro_jax.molrg_posterior_weights(f(_XI), f(_BI), 1, 2.5),
      "nearest": lambda f: repro_jax.nearest_neighbors(f(_XI), f(_DI))[1],
      "dist_subspaces": lambda f: repro_jax.dist_subspaces(f(_XI), f(_BI)),
  }


@pytest.mark.parametrize("name", sorted(_int_cases()))
@pytest.mark.parametrize("use_x64", [False, True])
def test_integer_inputs_are_promoted_to_the_default_float(name, use_x64):
  """σ and s are never cast to the integer dtype of x: int / bool / list inputs
  give the float answer, in float32 (float64 under x64)."""
  fn = _int_cases()[name]
  with jax.enable_x64(use_x64):
    want_dtype = jnp.zeros(()).dtype
    ref = fn(lambda a: np.asarray(a, want_dtype))
    got = fn(lambda a: a)
    assert got.dtype == want_dtype, got.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(fn(lambda a: np.asarray(a).tolist()), ref, rtol=1e-6)
  # Booleans are numbers too.
  out = repro_jax.empirical_denoiser(_XI > 2, _DI > 5, 0.5)
  ref = repro_jax.empirical_denoiser((_XI > 2) * 1.0, (_DI > 5) * 1.0, 0.5)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, ref, rtol=1e-6)


def _f32(*arrays):
  return [np.asarray(a, np.float32) for a in arrays]


@pytest.mark.parametrize("low", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_computed_in_float32(problem, low):
  """float16 overflows at 1/(2σ²) for σ <= 3e-3 (EDM's σ_min is 0.002) and at
  squared pixel distances: the result must be the float32 answer, cast back."""
  data, x = _f32(*problem)
  tol = dict(rtol=1e-2, atol=1e-2) if low == jnp.float16 else dict(rtol=3e-2, atol=3e-2)
  cases = []
  for sigma in (3e-3, 2e-3, 0.5):
    cases.append((lambda c, s=sigma: repro_jax.empirical_denoiser(c(x), c(data), s), 1.0))
  # Pixel-scale data (values ~300), moderate σ.
  cases.append((lambda c: repro_jax.empirical_denoiser(c(300 * x), c(300 * data), 30.0), 300.0))
  cases.append((lambda c: repro_jax.smoothed_sq_distance(c(x), c(data), 2e-3), 1.0))
  bases = np.asarray(repro_jax.random_molrg_bases(jax.random.PRNGKey(0), 6, 2, 2))
  cases.append((lambda c: repro_jax.molrg_denoiser(c(x), c(bases), 1.0, 1e-3), 1.0))
  cases.append((lambda c: repro_jax.molrg_posterior_weights(c(x), c(bases), 1.0, 1e-3), 1.0))
  for fn, unit in cases:
    rounded = lambda a: jnp.asarray(jnp.asarray(a, low), jnp.float32)   # same inputs
    ref = np.asarray(fn(rounded))
    got = fn(lambda a: jnp.asarray(a, low))
    assert got.dtype == low
    got = np.asarray(got.astype(jnp.float32))
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got / unit, ref / unit, **tol)


# Checks under transformations -----------------------------------------------

def test_shape_checks_run_under_jit_and_vmap(problem):
  data, x = _f32(*problem)
  f = jax.jit(repro_jax.empirical_denoiser)
  with pytest.raises(ValueError, match="`x` must have shape"):
    f(x[0], data, 0.5)                       # a [D] query, not [B, D]
  with pytest.raises(ValueError, match="`sigma` must be a scalar or have shape"):
    f(x, data, np.ones(2, np.float32))
  with pytest.raises(ValueError, match="last dimension"):
    f(x[:, :4], data, 0.5)
  with pytest.raises(ValueError, match="`x` must have shape"):
    jax.vmap(repro_jax.empirical_denoiser, in_axes=(0, None, None))(x, data, 0.5)
  with pytest.raises(ValueError, match="`x` must have shape"):
    jax.jit(repro_jax.smoothed_sq_distance)(x[0], data, 0.5)
  with pytest.raises(ValueError, match="`bases` must have shape"):
    jax.jit(repro_jax.molrg_denoiser)(x, data, 1.0, 0.5)
  with pytest.raises(ValueError, match="`beta` must be a scalar or have shape"):
    jax.jit(repro_jax.molrg_posterior_weights)(
        x, repro_jax.random_molrg_bases(jax.random.PRNGKey(0), 6, 2, 2), 1.0,
        np.ones(3, np.float32))
  # Batched over an extra leading axis, vmap is fine.
  out = jax.vmap(repro_jax.empirical_denoiser, in_axes=(0, None, None))(
      np.stack([x, 2 * x]), data, 0.5)
  np.testing.assert_allclose(out[1], repro_jax.empirical_denoiser(2 * x, data, 0.5),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("args,match", [
    (dict(sigma=0.0), "`sigma` must be finite and > 0"),
    (dict(sigma=-1.0), "`sigma` must be finite and > 0"),
    (dict(scale=np.nan), "`scale` must be finite and > 0"),
    (dict(nan_data=True), "`data` contains NaN"),
    (dict(nan_x=True), "`x` contains NaN"),
])
def test_value_checks_under_jit_with_traced_value_checks(problem, args, match):
  """Inside `traced_value_checks()` the value checks become checkify checks."""
  from jax.experimental import checkify
  from repro_jax import validation
  data, x = _f32(*problem)
  if args.get("nan_data"):
    data[1, 2] = np.nan
  if args.get("nan_x"):
    x[0, 0] = np.inf
  sigma, scale = args.get("sigma", 0.5), args.get("scale", 1.0)
  fn = lambda x, d, s, c: repro_jax.empirical_denoiser(x, d, s, scale=c)
  with validation.traced_value_checks():
    checked = checkify.checkify(jax.jit(fn), errors=checkify.user_checks)
    err, _ = checked(x, data, sigma, scale)
  with pytest.raises(Exception, match=match):
    err.throw()
  # Good input passes the same checked program.
  good_data, good_x = _f32(*problem)
  with validation.traced_value_checks():
    err, out = checked(good_x, good_data, 0.5, 1.0)
  assert err.get() is None
  np.testing.assert_allclose(out, repro_jax.empirical_denoiser(good_x, good_data, 0.5),
                             rtol=1e-6)


# Bad input raises a ValueError naming the argument -----------------------------

_X3, _D3 = np.zeros((2, 3)), np.ones((4, 3))
_U = np.eye(3)[None, :, :2]
_NAN_X = np.full((2, 3), np.nan)

_BAD = {
    "nearest_nan_x": (lambda: repro_jax.nearest_neighbors(_NAN_X, _D3), "`x` contains NaN"),
    "nearest_chunk_0": (lambda: repro_jax.nearest_neighbors(_X3, _D3, chunk_size=0),
                        "`chunk_size`"),
    "nearest_chunk_float": (lambda: repro_jax.nearest_neighbors(_X3, _D3, chunk_size=2.5),
                            "`chunk_size`"),
    "dist_finite_chunk_0": (lambda: repro_jax.dist_finite(_X3, _D3, chunk_size=0),
                            "`chunk_size`"),
    "smoothed_chunk_0": (lambda: repro_jax.smoothed_sq_distance(_X3, _D3, 1.0, chunk_size=0),
                         "`chunk_size`"),
    "smoothed_nan_x": (lambda: repro_jax.smoothed_sq_distance(_NAN_X, _D3, 1.0),
                       "`x` contains NaN"),
    "empirical_chunk_0": (lambda: repro_jax.empirical_denoiser(_X3, _D3, 1.0, chunk_size=0),
                          "`chunk_size`"),
    "empirical_complex": (lambda: repro_jax.empirical_denoiser(_X3 + 1j, _D3, 1.0),
                          "`x` must be real"),
    "weights_beta_0": (lambda: repro_jax.molrg_posterior_weights(_X3, _U, 1.0, 0.0),
                       "`beta`"),
    "weights_alpha_neg": (lambda: repro_jax.molrg_posterior_weights(_X3, _U, -1.0, 0.5),
                          "`alpha`"),
    "weights_nan_x": (lambda: repro_jax.molrg_posterior_weights(_NAN_X, _U, 1.0, 0.5),
                      "`x` contains NaN"),
    "molrg_beta_0": (lambda: repro_jax.molrg_denoiser(_X3, _U, 1.0, 0.0), "`beta`"),
    "molrg_alpha_shape": (lambda: repro_jax.molrg_denoiser(_X3, _U, np.ones(3), 0.5),
                          "`alpha` must be a scalar"),
    "molrg_not_orthonormal": (lambda: repro_jax.molrg_denoiser(_X3, 2 * _U, 1.0, 0.5),
                              "orthonormal"),
    "molrg_oblique": (lambda: repro_jax.molrg_denoiser(
        _X3, np.array([[[1.0, 0.6], [0.0, 0.8], [0.0, 0.0]]]), 1.0, 0.5), "orthonormal"),
    "molrg_k0": (lambda: repro_jax.molrg_denoiser(_X3, np.zeros((0, 3, 2)), 1.0, 0.5),
                 "K, D, R >= 1"),
    "molrg_weights_zero": (lambda: repro_jax.molrg_denoiser(_X3, np.stack([_U[0]] * 2), 1.0,
                                                            0.5, np.zeros(2)), "`weights`"),
    "molrg_ranks_shape": (lambda: repro_jax.molrg_denoiser(_X3, _U, 1.0, 0.5,
                                                           ranks=np.ones(3)), "`ranks`"),
    "subspaces_not_orthonormal": (lambda: repro_jax.dist_subspaces(_X3, 3 * _U),
                                  "orthonormal"),
    "subspaces_k0": (lambda: repro_jax.proj_subspaces(_X3, np.zeros((0, 3, 2))),
                     "K, D, R >= 1"),
    "sample_molrg_negative_weights": (lambda: repro_jax.sample_molrg(
        jax.random.PRNGKey(0), np.stack([_U[0]] * 2), 5, np.array([1.5, -0.5])), "`weights`"),
    "sample_molrg_k0": (lambda: repro_jax.sample_molrg(jax.random.PRNGKey(0),
                                                       np.zeros((0, 3, 2)), 5), "K, D, R"),
    "sample_molrg_num": (lambda: repro_jax.sample_molrg(jax.random.PRNGKey(0), _U, -1),
                         "`num`"),
    "covariance_not_psd": (lambda: repro_jax.gaussian_denoiser(
        _X3, np.zeros(3), np.diag([1.0, -0.5, 1.0]), 1.0), "positive semi-definite"),
    "covariance_not_symmetric": (lambda: repro_jax.GaussianMixture.from_covariances(
        np.ones(1), np.zeros((1, 3)), np.array([[[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]])),
        "symmetric"),
    "mixture_negative_weight": (lambda: repro_jax.GaussianMixture.from_covariances(
        np.array([1.0, -0.1]), np.zeros((2, 3)), np.stack([np.eye(3)] * 2)), "`weights`"),
}


@pytest.mark.parametrize("name", sorted(_BAD))
def test_bad_input_raises_value_error_naming_the_argument(name):
  call, match = _BAD[name]
  with pytest.raises(ValueError, match=match):
    call()


def test_small_round_off_in_covariances_and_bases_is_accepted(x64):
  """The value checks leave room for round-off: a rank-deficient float32
  covariance and float32 orthonormal bases used in float64 pass."""
  rng = np.random.default_rng(0)
  a = rng.normal(size=(5, 2)).astype(np.float32)
  cov = a @ a.T                                   # rank 2, eigenvalues ~ −1e-7
  assert np.all(np.isfinite(repro_jax.gaussian_denoiser(np.zeros((1, 5)), np.zeros(5),
                                                        cov, 0.3)))
  b32 = repro_jax.random_molrg_bases(jax.random.PRNGKey(2), 7, 2, 3, dtype=jnp.float32)
  out = repro_jax.molrg_denoiser(np.ones((2, 7)), np.asarray(b32, np.float64), 1.0, 0.5)
  assert out.dtype == jnp.float64 and np.all(np.isfinite(out))


# The canonical denoiser as a value -------------------------------------------------

def test_registry_builds_each_closed_form(molrg_problem, x64):
  bases, weights = molrg_problem[0], None
  d = bases.shape[1]
  rng = np.random.default_rng(3)
  data = rng.normal(size=(9, 2, d // 2)) if d % 2 == 0 else rng.normal(size=(9, d))
  mean, cov = rng.normal(size=d), np.eye(d) * 0.5
  mix = denoisers.GaussianMixture.from_covariances(np.ones(1), mean[None], cov[None])
  x = rng.normal(size=(4, d))
  s = np.array([0.1, 0.5, 1.0, 3.0])
  built = {
      "empirical": (denoiser.make("empirical", data=data), denoiser.empirical(data)),
      "gaussian": (denoiser.make("gaussian", mean=mean, cov=cov), denoiser.gaussian(mean, cov)),
      "gmm": (denoiser.make("gmm", mixture=mix), denoiser.gmm(mix)),
      "molrg": (denoiser.make("molrg", bases=bases, weights=weights), denoiser.molrg(bases)),
  }
  # The others are built by name in their own test files (patch denoisers,
  # smoothed score, low-rank Gaussian); every entry is tested somewhere.
  elsewhere = {"network", "ls", "els", "patch_composite", "smoothed", "gaussian_lowrank"}
  assert set(built) | elsewhere == set(denoiser.DENOISERS)
  for name, (made, direct) in built.items():
    assert isinstance(made, denoiser.Denoiser) and made.name == name
    assert made.num_models is None and not made.stacked
    xx = x.reshape((4,) + made.data_shape)
    np.testing.assert_array_equal(made(xx, s), direct(xx, s))
  assert built["empirical"][0].data_shape == data.shape[1:]
  assert built["molrg"][0].data_shape == (d,)
  # A scalar σ is broadcast to every row.
  np.testing.assert_array_equal(built["gmm"][0](x, 0.5), built["gmm"][0](x, np.full(4, 0.5)))


def test_registry_rejects_bad_names_and_options():
  with pytest.raises(ValueError, match="Unknown denoiser 'nope'"):
    denoiser.make("nope")
  with pytest.raises(ValueError, match="unknown field.*denoiser.empirical.sigma"):
    denoiser.make("empirical", data=np.zeros((2, 3)), sigma=1.0)
  with pytest.raises(ValueError, match="denoiser.network"):
    denoiser.make("network")                                  # workdir missing
  with pytest.raises(ValueError, match="denoiser.network.use_ema must be True or False"):
    denoiser.make("network", workdir="w", use_ema="yes")
  with pytest.raises(FileNotFoundError, match="no checkpoints"):
    denoiser.make("network", workdir="/nonexistent/run")
  with pytest.raises(ValueError, match="num_models"):
    denoiser.Denoiser(lambda x, s: x, num_models=0)


def test_stack_runs_each_model_on_its_rows(molrg_problem, x64):
  bases = jnp.stack([molrg_problem[0], molrg_problem[0][:, ::-1]])     # M = 2
  stacked = denoiser.stack(denoiser.molrg, bases, name="molrg", data_shape=(bases.shape[2],))
  assert stacked.num_models == 2 and stacked.stacked and stacked.data_shape == (bases.shape[2],)
  rng = np.random.default_rng(4)
  x = rng.normal(size=(2 * 3, bases.shape[2]))
  s = np.array([0.2, 1.0, 4.0, 0.3, 0.7, 2.0])
  out = stacked(x, s)
  for m in range(2):
    np.testing.assert_allclose(out[3 * m:3 * m + 3], denoiser.molrg(bases[m])(x[3 * m:3 * m + 3],
                                                                       s[3 * m:3 * m + 3]),
                               rtol=1e-13, atol=1e-13)
  with pytest.raises(ValueError, match="M·B rows"):
    stacked(x[:5], s[:5])
  with pytest.raises(ValueError, match="leading model axis"):
    denoiser.stack(denoiser.molrg, jnp.float32(1.0))


def test_network_wrap_is_tweedie_and_preconditioning(x64):
  """`from_model` against the heads' formulas, and EDM's `c_skip x + c_out F(c_in x)`."""
  from repro_jax.diffusion import schedules
  rng = np.random.default_rng(5)
  x = rng.normal(size=(4, 3)) * 2.0
  sigma = np.array([0.05, 0.4, 1.5, 9.0])
  net = lambda x_in, c: jnp.tanh(0.3 * x_in) + 0.01 * c[:, None]
  vp = schedules.get_schedule("vp")
  s = np.asarray(vp.scale_of_sigma(sigma))
  t = np.asarray(vp.t_of_sigma(sigma))
  c = 1000.0 * (t - vp.t_min) / (vp.t_max - vp.t_min)
  x_t = s[:, None] * x
  eps = np.asarray(net(x_t, c))
  got = denoiser.from_model(net, vp, "eps", time_input="t")(x, sigma)
  np.testing.assert_allclose(got, x_t / s[:, None] - sigma[:, None] * eps, rtol=1e-12)
  # EDM: the schedule has s = 1 and the network sees c_in x and ¼ log σ.
  sd = 0.5
  coeffs = lambda sg: (sd**2 / (sg**2 + sd**2), sg * sd / jnp.sqrt(sg**2 + sd**2),
                       1.0 / jnp.sqrt(sg**2 + sd**2))
  got = denoiser.from_model(net, schedules.get_schedule("edm"), "x0", time_input="log_sigma",
                            preconditioning=coeffs)(x, sigma)
  c_skip, c_out, c_in = (np.asarray(v)[:, None] for v in coeffs(sigma))
  ref = c_skip * x + c_out * np.asarray(net(c_in * x, 0.25 * np.log(sigma)))
  np.testing.assert_allclose(got, ref, rtol=1e-12)
  assert denoiser.TIME_INPUTS == ("t", "log_sigma")
  with pytest.raises(ValueError, match="Unknown time_input"):
    denoiser.from_model(net, vp, "eps", time_input="sigma")
  with pytest.raises(ValueError, match="Unknown head"):
    denoiser.from_model(net, vp, "noise")


def test_values_keep_their_callable():
  """Re-wrapping a callable keeps it (the samplers cache their compilation per callable)."""
  fn = lambda x, s: 0.5 * x
  den = denoiser.as_denoiser(fn, name="half")
  assert den.fn is fn and denoiser.as_denoiser(den) is den
  assert den.replace(num_models=3).fn is fn
  clipped = den.map_x0(lambda x0: jnp.clip(x0, -1.0, 1.0))
  np.testing.assert_array_equal(clipped(jnp.array([[4.0, 1.0]]), jnp.ones(1)), [[1.0, 0.5]])
  eps = denoiser.eps_of(den)
  np.testing.assert_allclose(eps(jnp.array([[4.0, 1.0]]), 2.0), [[1.0, 0.25]])
