"""Denoiser Jacobians (`repro_jax.analysis.jacobian`) against independent oracles.

Oracles are brute-force NumPy float64, written here from the models' densities
(never from the library's functions):

- empirical: `J = Cov_w(y) / σ²`, `w = softmax_i(−‖x − y_i‖² / (2σ²))`;
- Gaussian `N(μ, Σ)`: `J = Σ (Σ + σ² I)⁻¹`;
- MoLRG `Σ_k π_k N(0, U_k U_kᵀ)` in VE form (`x = x0 + σ ε`): the full
  Jacobian of `Σ_k w_k(x) M_k x`, `M_k = U_k U_kᵀ (U_k U_kᵀ + σ² I)⁻¹`,
  `w_k ∝ π_k N(x; 0, U_k U_kᵀ + σ² I)`, with the weight term `Σ_k (M_k x) ∇w_kᵀ`;
- `numpy.linalg.svd` of those matrices for the matrix-free top-k triplets.

Sizes are tiny (D ≤ 20, B ≤ 6): each call is one small compilation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax.analysis import jacobian as jac_lib
from repro_jax.diffusion import denoiser

RTOL = 1e-8


def _rel(got, want):
  """Per-matrix relative Frobenius error `‖got − want‖ / ‖want‖`, `[...]`."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  return (np.linalg.norm(got - want, axis=(-2, -1))
          / np.linalg.norm(want, axis=(-2, -1)))


def _assert_rel(got, want, tol=RTOL):
  err = _rel(got, want)
  assert np.all(err <= tol), f"relative errors {err} > {tol}"


def _softmax(logits):
  z = np.exp(logits - logits.max())
  return z / z.sum()


# Oracles -----------------------------------------------------------------------

def np_empirical_jacobian(x, data, sigma):
  """`(J [D, D], w [N])` of the empirical posterior mean at one query `x [D]`."""
  w = _softmax(-np.sum((x[None] - data) ** 2, axis=1) / (2.0 * sigma ** 2))
  mean = w @ data
  c = data - mean
  cov = np.einsum("i,id,ie->de", w, c, c)
  return cov / sigma ** 2, w


def np_gaussian_jacobian(cov, sigma):
  """`Σ (Σ + σ² I)⁻¹` (Σ symmetric, so it is `((Σ + σ² I)⁻¹ Σ)ᵀ`)."""
  a = cov + sigma ** 2 * np.eye(len(cov))
  return np.linalg.solve(a, cov).T


def np_molrg(x, bases, pi, sigma):
  """MoLRG posterior mean at `x [D]`, VE form, from the full Gaussian densities.

  `bases`: list of `U_k [D, r_k]` (no padding), `pi [K]` normalized.

  Returns `(x0 [D], J [D, D], w [K], weight_term [D, D])` with
  `J = Σ_k w_k M_k + Σ_k (M_k x) ∇w_kᵀ`, the last sum being `weight_term`.
  """
  d = len(x)
  logits, grads, maps = [], [], []
  for u, p in zip(bases, pi):
    signal = u @ u.T
    c = signal + sigma ** 2 * np.eye(d)
    c_inv_x = np.linalg.solve(c, x)
    _, logdet = np.linalg.slogdet(c)
    logits.append(np.log(p) - 0.5 * x @ c_inv_x - 0.5 * logdet - 0.5 * d * np.log(2 * np.pi))
    grads.append(-c_inv_x)                                   # ∇ log N(x; 0, C_k)
    maps.append(np.linalg.solve(c, signal).T)                # U Uᵀ C⁻¹ (both symmetric)
  w = _softmax(np.array(logits))
  grads = np.array(grads)                                    # [K, D]
  mean_grad = w @ grads
  grad_w = w[:, None] * (grads - mean_grad[None])            # ∇w_k, [K, D]
  x0 = sum(wk * m @ x for wk, m in zip(w, maps))
  direct = sum(wk * m for wk, m in zip(w, maps))
  weight_term = sum(np.outer(m @ x, g) for m, g in zip(maps, grad_w))
  return x0, direct + weight_term, w, weight_term


def _orthonormal(rng, d, r):
  return np.linalg.qr(rng.normal(size=(d, r)))[0]


def _check_triplets(top, jac, k, tol, *, vec_tol=None):
  """`top` (library) against the SVD of the brute-force `jac [B, D, D]`."""
  vec_tol = tol if vec_tol is None else vec_tol
  u, s, v = (np.asarray(a, np.float64) for a in top)
  uu, ss, vvt = np.linalg.svd(jac)
  assert u.shape == (len(jac), jac.shape[1], k) and v.shape == (len(jac), jac.shape[2], k)
  np.testing.assert_allclose(s, ss[:, :k], rtol=tol, atol=0)
  for b in range(len(jac)):
    # Orthonormal columns, J v_i = s_i u_i, and each u_i, v_i the exact one up to sign
    # (the top-k singular values are simple here: checked below).
    np.testing.assert_allclose(u[b].T @ u[b], np.eye(k), atol=vec_tol)
    np.testing.assert_allclose(v[b].T @ v[b], np.eye(k), atol=vec_tol)
    np.testing.assert_allclose(jac[b] @ v[b], u[b] * s[b], atol=vec_tol * ss[b, 0])
    gaps = -np.diff(ss[b, :k + 1]) / ss[b, 0]
    assert np.all(gaps > 1e-2), f"row {b}: top-{k} singular values not separated: {ss[b]}"
    np.testing.assert_allclose(np.abs(np.sum(u[b] * uu[b, :, :k], 0)), 1.0, atol=vec_tol)
    np.testing.assert_allclose(np.abs(np.sum(v[b] * vvt[b, :k].T, 0)), 1.0, atol=vec_tol)


# 1. Empirical denoiser ------------------------------------------------------------

def test_empirical_jacobian_is_weighted_covariance_over_sigma_squared(x64):
  rng = np.random.default_rng(0)
  n, d = 12, 6
  data = rng.normal(size=(n, d))
  # Rows 0-3: queries among the cluster data[2:].
  # Row 4: a query between two training points 1 apart, all others >= 2 away,
  # at a σ where the second weight is ~1e-6 and the rest < 1e-60: J is rank 1
  # up to far below τ = 1e-6 (memorization).  Row 5: σ so small that all but
  # one weight underflow: J is exactly 0 in float64 (here and in the library).
  direction = rng.normal(size=d)
  data[1] = data[0] + direction / np.linalg.norm(direction)
  data[2:] = data[0] + 5.0 * _orthonormal(rng, d, 1)[:, 0] + rng.normal(size=(n - 2, d))
  far = np.min(np.linalg.norm(data[2:] - data[0], axis=1))
  assert far > 2.0
  x = np.concatenate([data[2:6] + 0.6 * rng.normal(size=(4, d)),
                      (0.7 * data[0] + 0.3 * data[1])[None],
                      (data[7] + 0.05 * rng.normal(size=d))[None]])
  sigma = np.array([0.8, 1.2, 1.5, 3.0, 0.12, 0.01])

  den = denoiser.empirical(data)
  got = np.asarray(jax.jit(lambda x, s: jac_lib.jacobian(den, x, s))(x, sigma))
  want, w = zip(*(np_empirical_jacobian(xb, data, sb) for xb, sb in zip(x, sigma)))
  want, w = np.array(want), np.array(w)

  # Several non-negligible weights on the first four rows.
  assert np.all(np.sum(w[:4] > 1e-3, axis=1) >= 3), w[:4]
  _assert_rel(got[:5], want[:5])
  np.testing.assert_allclose(got[:5], np.swapaxes(got[:5], 1, 2), rtol=0,
                             atol=1e-12 * np.abs(want[:5]).max())

  # The collapse: second weight ~1e-6, third below 1e-60.
  w4 = np.sort(w[4])[::-1]
  assert 1e-8 < w4[1] < 1e-4 and w4[2] < 1e-60, w4
  sv_got = np.asarray(jac_lib.singular_values(got))
  sv_want = np.linalg.svd(want, compute_uv=False)
  tau = 1e-6
  ratio = np.asarray(jac_lib.rank_ratio(sv_got, tau))
  brute = np.sum(sv_want > tau * sv_want[:, :1], axis=1) / d
  np.testing.assert_array_equal(ratio[4:], brute[4:])
  assert ratio[4] == 1.0 / d
  # Fully memorized: both Jacobians exactly 0, rank 0.
  assert np.all(want[5] == 0) and np.all(got[5] == 0)
  assert ratio[5] == 0.0
  # Several weights: full rank at this threshold.
  np.testing.assert_array_equal(ratio[:4], brute[:4])
  assert np.all(ratio[:4] > 1.0 / d)


# 2. Gaussian --------------------------------------------------------------------

def test_gaussian_jacobian_is_cov_times_inverse_noisy_cov(x64):
  rng = np.random.default_rng(1)
  d, b = 6, 4
  a = rng.normal(size=(d, d))
  cov = a @ a.T / d + 0.05 * np.eye(d)
  mean = rng.normal(size=d)
  sigma = np.array([0.1, 0.5, 1.0, 3.0])
  x = rng.normal(size=(b, 2, 3))                     # image-shaped rows: J acts on flat rows
  den = denoiser.gaussian(mean, cov)
  t = rng.normal(size=(b, d))

  @jax.jit
  def run(x, sigma, t):
    x0, jvp, vjp = jac_lib.linearize_rows(den, x, sigma)
    return (jac_lib.jacobian(den, x, sigma), jac_lib.jacobian(den, x, sigma, chunk_size=4),
            x0, jvp(t), vjp(t), jac_lib.jacobian(den, x, 0.5))

  got, chunked, x0, jt, vt, scalar = (np.asarray(a) for a in run(x, sigma, t))
  want = np.array([np_gaussian_jacobian(cov, s) for s in sigma])
  assert got.shape == (b, d, d)
  _assert_rel(got, want)
  # Chunked columns: the same matrices.
  np.testing.assert_allclose(chunked, got, rtol=0, atol=1e-14)
  # `linearize_rows`: the value and both linear maps per row.
  want_x0 = mean + np.einsum("bij,bj->bi", want, x.reshape(b, d) - mean)
  np.testing.assert_allclose(x0, want_x0, rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(jt, np.einsum("bij,bj->bi", want, t), rtol=1e-10, atol=1e-12)
  np.testing.assert_allclose(vt, np.einsum("bji,bj->bi", want, t), rtol=1e-10, atol=1e-12)
  # A scalar σ is broadcast to every row.
  _assert_rel(scalar, np.array([want[1]] * b))


# 3. MoLRG -----------------------------------------------------------------------

def _molrg_problem(rng):
  """K = 3 non-orthogonal subspaces of D = 10, ranks (2, 2, 1), padded to R = 2."""
  d = 10
  bases = [_orthonormal(rng, d, 2), _orthonormal(rng, d, 2), _orthonormal(rng, d, 1)]
  padded = np.stack([np.pad(u, ((0, 0), (0, 2 - u.shape[1]))) for u in bases])
  pi = np.array([0.5, 0.3, 0.2])
  return bases, padded, pi


def _between(bases, pi, sigma, i, j, z_i, z_j):
  """A point `t U_i z_i + (1 − t) U_j z_j` with `w_i = w_j` (bisection on t)."""
  lo, hi = 0.0, 1.0
  for _ in range(60):
    t = 0.5 * (lo + hi)
    x = t * bases[i] @ z_i + (1 - t) * bases[j] @ z_j
    w = np_molrg(x, bases, pi, sigma)[2]
    lo, hi = (lo, t) if w[i] > w[j] else (t, hi)
  return x


@pytest.fixture(scope="module")
def molrg_case():
  """A MoLRG at 5 rows: 2 near a component, 2 between two, 1 generic; σ per row.

  Returns the problem, the oracle and the library's Jacobian (computed once).
  """
  rng = np.random.default_rng(2)
  bases, padded, pi = _molrg_problem(rng)
  d = padded.shape[1]
  sigma = np.array([0.5, 0.5, 0.7, 1.0, 2.0])
  x = np.stack([
      bases[0] @ np.array([2.5, -1.8]) + 0.01 * rng.normal(size=d),
      bases[1] @ np.array([-2.0, 3.0]) + 0.01 * rng.normal(size=d),
      _between(bases, pi, sigma[2], 0, 1, np.array([1.5, 1.0]), np.array([-1.2, 1.4])),
      _between(bases, pi, sigma[3], 1, 2, np.array([2.0, 0.5]), np.array([-2.0])),
      1.5 * rng.normal(size=d),
  ])
  oracle = [np_molrg(xb, bases, pi, sb) for xb, sb in zip(x, sigma)]
  x0_want, want, w, weight_term = (np.array(a) for a in zip(*oracle))
  with jax.enable_x64(True):
    den = denoiser.molrg(padded, pi)
    x0 = np.asarray(den(x, sigma))
    got = np.asarray(jac_lib.jacobian(den, x, sigma))
  return dict(bases=bases, padded=padded, pi=pi, x=x, sigma=sigma, x0=x0, x0_want=x0_want,
              got=got, want=want, w=w, weight_term=weight_term)


def test_molrg_full_jacobian_includes_the_weight_term(molrg_case):
  m = molrg_case
  got, want, w, weight_term = m["got"], m["want"], m["w"], m["weight_term"]
  # The oracle is the model the library implements (values agree).
  np.testing.assert_allclose(m["x0"], m["x0_want"], rtol=1e-10, atol=1e-12)
  _assert_rel(got, want)

  # Near a component the weight term is small (but not 0: the 1e-8 check sees
  # it), between two it is not.
  share = np.linalg.norm(weight_term, axis=(1, 2)) / np.linalg.norm(want, axis=(1, 2))
  assert np.all((1e-7 < share[:2]) & (share[:2] < 1e-3)), share
  assert np.all(share[2:4] > 0.1), share
  assert abs(w[2, 0] - w[2, 1]) < 1e-9 and abs(w[3, 1] - w[3, 2]) < 1e-9, w
  # Without the weight term the Jacobian between components is clearly wrong.
  assert np.all(_rel(got[2:4], (want - weight_term)[2:4]) > 0.1)
  # A VE posterior mean has J = Cov[x0 | x] / σ²: symmetric positive semi-definite
  # (the weight term is c²/σ² times the w-covariance of the P_k x).
  np.testing.assert_allclose(got, np.swapaxes(got, 1, 2), rtol=0, atol=1e-13)
  assert np.all(np.linalg.eigvalsh(got) > -1e-13)


def test_molrg_jacobian_near_a_component_is_shrunk_projector(molrg_case, x64):
  """Documentation: near component k, `J ≈ P_k / (1 + σ²)` (P_k = U_k U_kᵀ)."""
  m = molrg_case
  d = m["x"].shape[1]
  for b, k in ((0, 0), (1, 1)):
    proj = m["bases"][k] @ m["bases"][k].T / (1.0 + m["sigma"][b] ** 2)
    np.testing.assert_allclose(m["got"][b], proj, atol=1e-4)
    ratio = jac_lib.rank_ratio(jac_lib.singular_values(m["got"][b]), 1e-3)
    assert float(ratio) == m["bases"][k].shape[1] / d


# 4. Matrix-free top-k -----------------------------------------------------------

def test_top_singular_molrg_matches_exact_svd(molrg_case, x64):
  # J has rank <= Σ r_k = 5 < l = k + oversample: the range is found in one pass,
  # the triplets are exact to round-off.
  m = molrg_case
  bases, x, sigma, want = m["bases"], m["x"], m["sigma"], m["want"]
  top = jac_lib.top_singular(denoiser.molrg(m["padded"], m["pi"]), x, sigma,
                             jax.random.key(3), 3, oversample=3, power_iters=1)
  np.testing.assert_allclose(np.asarray(top.s), np.linalg.svd(want, compute_uv=False)[:, :3],
                             rtol=1e-8)
  # Rows with simple top-3 singular values: every triplet.
  rows = [2, 3, 4]
  _check_triplets(jac_lib.TopSingular(*(a[np.array(rows)] for a in top)), want[rows], 3, 1e-8)
  # Near a component the top pair is (c, c) up to the weight term, c = 1/(1 + σ²),
  # and spans the component.
  c = 1.0 / (1.0 + sigma[:2] ** 2)
  np.testing.assert_allclose(np.asarray(top.s)[:2, :2], np.stack([c, c], 1), rtol=1e-4)
  for b, k in ((0, 0), (1, 1)):
    u = np.asarray(top.u[b, :, :2])
    np.testing.assert_allclose(u @ u.T, bases[k] @ bases[k].T, atol=1e-4)


def test_top_singular_low_rank_gaussian_under_jit(x64):
  rng = np.random.default_rng(5)
  d, r = 20, 4
  basis = _orthonormal(rng, d, r)
  cov = basis @ np.diag([6.0, 3.0, 1.5, 0.8]) @ basis.T + 1e-4 * np.eye(d)
  sigma = np.array([0.5, 1.0, 2.0])
  x = rng.normal(size=(3, d))
  den = denoiser.gaussian(np.zeros(d), cov)
  want = np.array([np_gaussian_jacobian(cov, s) for s in sigma])

  run = jax.jit(lambda x, s, key: jac_lib.top_singular(den, x, s, key, r, oversample=4,
                                                       power_iters=2))
  top = run(jnp.asarray(x), jnp.asarray(sigma), jax.random.key(6))
  assert top.s.dtype == jnp.float64
  _check_triplets(top, want, r, 1e-8)
  ss = np.linalg.svd(want, compute_uv=False)
  assert np.all(ss[:, r] / ss[:, r - 1] < 1e-2)          # the gap the accuracy relies on
  ratio = np.asarray(jac_lib.rank_ratio(top.s, 1e-2, dim=d))
  np.testing.assert_array_equal(ratio, np.sum(ss > 1e-2 * ss[:, :1], 1) / d)


def test_top_singular_random_init_network(x64):
  """A random-init residual MLP with EDM preconditioning, float64: a general spectrum."""
  from repro_jax.networks import models
  rng = np.random.default_rng(7)
  d, hidden = 16, 32
  graphdef, shapes = models.abstract("mlp", (d,), hidden=hidden, depth=1, emb_dim=8)
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                        models.init_params(shapes, jax.random.key(0)))
  # The output layer starts at zero; make it random so the network is not F = 0.
  params["dense_out"]["kernel"] = jnp.asarray(rng.normal(size=(hidden, d)) / np.sqrt(hidden))
  den = models.get_parameterization("edm").denoiser(
      lambda x, c: models.apply(graphdef, params, x, c))
  x = rng.normal(size=(2, d))
  sigma = np.array([1.0, 3.0])

  # The Jacobian from central differences of the network in float64 (one batched
  # call): truncation ~h², round-off ~eps/h.
  h = 1e-5
  steps = np.eye(d) * h
  probe = np.concatenate([x[:, None] + steps[None], x[:, None] - steps[None]], 1)  # [B, 2D, D]

  @jax.jit
  def run(probe, probe_sigma, x, sigma, key):
    return (den(probe, probe_sigma), jac_lib.jacobian(den, x, sigma),
            jac_lib.top_singular(den, x, sigma, key, 2, oversample=6, power_iters=6))

  out, got, top = run(probe.reshape(-1, d), np.repeat(sigma, 2 * d), x, sigma,
                      jax.random.key(8))
  out = np.asarray(out, np.float64).reshape(2, 2 * d, d)
  fd = np.swapaxes((out[:, :d] - out[:, d:]) / (2 * h), 1, 2)                   # [B, D_out, D_in]
  got = np.asarray(got)
  _assert_rel(got, fd, 1e-7)

  uu, ss, _ = np.linalg.svd(got)
  assert np.all(ss[:, -1] / ss[:, 0] > 1e-3)                   # full rank, no clear gap
  # More power iterations, looser tolerance: the spectrum decays slowly.
  u, s, v = (np.asarray(a) for a in top)
  np.testing.assert_allclose(s, ss[:, :2], rtol=1e-4)
  np.testing.assert_allclose(s[:, 0], ss[:, 0], rtol=1e-7)
  np.testing.assert_allclose(np.einsum("bij,bjk->bik", got, v), u * s[:, None], atol=1e-3)
  np.testing.assert_allclose(np.abs(np.sum(u[:, :, 0] * uu[:, :, 0], 1)), 1.0, atol=1e-6)


# 5. Stacked models: rows independent --------------------------------------------

def test_stacked_rows_get_their_own_models_jacobian(x64):
  rng = np.random.default_rng(9)
  d, b = 5, 3
  covs = np.stack([a @ a.T / d + 0.1 * np.eye(d) for a in rng.normal(size=(2, d, d))])
  means = rng.normal(size=(2, d))
  den = denoiser.stack(lambda p: denoiser.gaussian(p["mean"], p["cov"]),
                       {"mean": jnp.asarray(means), "cov": jnp.asarray(covs)})
  x = rng.normal(size=(2 * b, d))                           # model-major: rows [m·B, (m+1)·B)
  sigma = np.array([0.2, 0.7, 1.5, 0.2, 0.7, 1.5])

  @jax.jit
  def run(x, sigma, key):
    return (jac_lib.jacobian(den, x, sigma),
            jac_lib.top_singular(den, x, sigma, key, 2, oversample=3, power_iters=2))

  got, top = run(x, sigma, jax.random.key(10))
  want = np.array([np_gaussian_jacobian(covs[i // b], s) for i, s in enumerate(sigma)])
  _assert_rel(got, want)
  # The two models really differ at the same σ.
  assert np.all(_rel(want[:b], want[b:]) > 0.05)
  # Top singular values per row too.
  np.testing.assert_allclose(np.asarray(top.s), np.linalg.svd(want, compute_uv=False)[:, :2],
                             rtol=1e-8)


# 6. randomized_svd, singular_values, rank_ratio ---------------------------------------

def _row_maps(a, calls=None):
  """`(matvec, rmatvec)` of explicit matrices `a [B, D_out, D_in]`."""
  def matvec(t):
    if calls is not None:
      calls.append(t.shape)
    return jnp.einsum("bij,bj->bi", a, t)
  return matvec, lambda c: jnp.einsum("bji,bj->bi", a, c)


def test_randomized_svd_on_planted_low_rank_matrices(x64):
  rng = np.random.default_rng(11)
  b, d_out, d_in, k = 3, 12, 9, 3
  planted = np.array([[8.0, 4.0, 2.0, 1.0], [5.0, 4.5, 1.0, 0.5], [3.0, 1.0, 0.3, 0.1]])
  low = np.stack([_orthonormal(rng, d_out, 4) @ np.diag(p) @ _orthonormal(rng, d_in, 4).T
                  for p in planted])
  a = low + 1e-6 * rng.normal(size=(b, d_out, d_in))
  calls = []
  top = jac_lib.randomized_svd(*_row_maps(a, calls), b, d_in, jax.random.key(12), k,
                               oversample=3, power_iters=2, dtype=jnp.float64)
  assert calls and all(c == (b, d_in) for c in calls)        # row-wise [B, D_in] tangents
  assert top.u.shape == (b, d_out, k) and top.v.shape == (b, d_in, k)
  assert top.s.dtype == jnp.float64
  _check_triplets(top, a, k, 1e-8)
  # Exact rank 4, no oversampling, no power step: exact to round-off.
  top = jac_lib.randomized_svd(*_row_maps(low), b, d_in, jax.random.key(13), 4,
                               oversample=0, power_iters=0, dtype=jnp.float64)
  np.testing.assert_allclose(np.asarray(top.s), planted, rtol=1e-10)


@pytest.mark.parametrize("power_iters", [0, 1])
def test_randomized_svd_wide_map(power_iters, x64):
  # A wide map (D_out = 9 < k + oversample = 11 <= D_in = 12): l is capped at D_out.
  rng = np.random.default_rng(16)
  wide = rng.normal(size=(2, 9, 12))
  top = jac_lib.randomized_svd(*_row_maps(wide), 2, 12, jax.random.key(0), 3,
                               oversample=8, power_iters=power_iters, dtype=jnp.float64)
  _check_triplets(top, wide, 3, 1e-6)


def test_singular_values_are_descending_svd(x64):
  rng = np.random.default_rng(14)
  m = rng.normal(size=(2, 3, 5, 4))
  np.testing.assert_allclose(np.asarray(jac_lib.singular_values(m)),
                             np.linalg.svd(m, compute_uv=False), rtol=1e-12)


def test_rank_ratio_against_brute_force_count(x64):
  rng = np.random.default_rng(15)
  n = 7
  s = np.sort(10.0 ** rng.uniform(-6, 1, size=(4, n)), axis=1)[:, ::-1]
  s[3] = 0.0                                                 # a zero matrix: rank 0

  def brute(s_row, tau, dim):
    if s_row[0] == 0:
      return 0.0
    return sum(1 for v in s_row if v > tau * s_row[0]) / dim

  def same(got, want, dim):
    # The count exactly, the ratio to round-off (count / D may be count · (1/D)).
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_array_equal(np.rint(got * dim), np.rint(want * dim))
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)

  for tau in (0.0, 1e-4, 1e-2, 0.5):
    same(jac_lib.rank_ratio(s, tau), [brute(row, tau, n) for row in s], n)
  # A band of thresholds adds a leading axis [T].
  taus = np.array([1e-5, 1e-3, 0.1, 1.0])
  got = np.asarray(jac_lib.rank_ratio(s, taus))
  assert got.shape == (len(taus), len(s))
  same(got, [[brute(row, t, n) for row in s] for t in taus], n)
  # `dim`: a count over another D (e.g. only the top n of D singular values known).
  same(jac_lib.rank_ratio(s, 1e-2, dim=50), [brute(row, 1e-2, 50) for row in s], 50)
  # Strict threshold: s_i = τ s_1 exactly is not counted (0.01 · 2 = 0.02 exactly).
  assert float(jac_lib.rank_ratio(np.array([2.0, 1.0, 0.02, 0.01]), 0.01)) == 0.5
  # One row, a band: shape [T]; τ = 1 counts nothing, τ = 0 every non-zero value.
  one = np.asarray(jac_lib.rank_ratio(np.array([3.0, 1.0, 0.0]), np.array([0.0, 1.0])))
  np.testing.assert_array_equal(one, [2 / 3, 0.0])
  assert float(jac_lib.rank_ratio(np.zeros(5), 0.0)) == 0.0


# 7. Bad input --------------------------------------------------------------------

def _never(*_):
  raise AssertionError("did work before rejecting its arguments")


@pytest.mark.parametrize("kwargs", [
    dict(k=0), dict(k=-1), dict(k=2, oversample=-1), dict(k=2, power_iters=-1),
    dict(k=5, oversample=8),                 # k > D_in = 4
])
def test_randomized_svd_rejects_bad_arguments_before_work(kwargs):
  kwargs = dict(kwargs)
  k = kwargs.pop("k")
  with pytest.raises(ValueError):
    jac_lib.randomized_svd(_never, _never, 2, 4, jax.random.key(0), k, **kwargs)


BAD_TOP = [dict(k=0), dict(k=2, oversample=-1), dict(k=2, power_iters=-1),
           dict(k=7, oversample=0)]                      # k > D = 6


@pytest.mark.parametrize("kwargs", BAD_TOP)
def test_top_singular_rejects_bad_arguments(kwargs):
  den = denoiser.Denoiser(lambda x, sigma: 0.5 * x)
  kwargs = dict(kwargs)
  k = kwargs.pop("k")
  with pytest.raises(ValueError):
    jac_lib.top_singular(den, np.ones((2, 6)), 1.0, jax.random.key(0), k, **kwargs)


@pytest.mark.parametrize("kwargs", BAD_TOP)
def test_top_singular_rejects_bad_arguments_before_work(kwargs):
  kwargs = dict(kwargs)
  k = kwargs.pop("k")
  with pytest.raises(ValueError):
    jac_lib.top_singular(denoiser.Denoiser(_never), np.ones((2, 6)), 1.0, jax.random.key(0),
                         k, **kwargs)


def test_rows_need_a_batch_axis():
  den = denoiser.Denoiser(_never)
  for x in (np.ones(6), np.ones(()), np.ones((0, 6))):
    with pytest.raises(ValueError, match="batch"):
      jac_lib.jacobian(den, x, 1.0)
    with pytest.raises(ValueError, match="batch"):
      jac_lib.top_singular(den, x, 1.0, jax.random.key(0), 1)
    with pytest.raises(ValueError, match="batch"):
      jac_lib.linearize_rows(den, x, 1.0)


def test_unet_with_custom_vjp_convolutions_matches_jacrev():
  """The U-Net's convolutions have a custom_vjp (no forward mode): the Jacobian
  goes through reverse mode; checked against `jax.jacrev` of each row."""
  from repro_jax import settings as settings_lib
  from repro_jax.networks import training
  cfg = settings_lib.override(training.variant("cpu"), dict(
      model=dict(name="unet", width=4, ch_mult=(1,), num_res_blocks=1, norm_groups=2,
                 emb_dim=4, attn_resolutions=(), conv_impl="canonical"),
      diffusion=dict(parameterization="eps", schedule="vp")))
  tr = training.make_trainer(cfg, (4, 4, 1))
  params = 0.1 * jax.random.normal(jax.random.key(0), (tr.layout.size,))
  den = training.network_denoiser(tr, params)
  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 1))
  sigma = jnp.array([0.5, 2.0])
  jac = np.asarray(jac_lib.jacobian(den, x, sigma))
  for b in range(2):
    row = jax.jacrev(lambda v: den(v.reshape(1, 4, 4, 1), sigma[b:b + 1]).reshape(-1))(
        x[b].reshape(-1))
    np.testing.assert_allclose(jac[b], np.asarray(row), rtol=1e-4, atol=1e-5)
  top = jac_lib.top_singular(den, x, sigma, jax.random.key(2), 2, oversample=14)   # l = D
  np.testing.assert_allclose(np.asarray(top.s), np.linalg.svd(jac, compute_uv=False)[:, :2],
                             rtol=1e-3)
