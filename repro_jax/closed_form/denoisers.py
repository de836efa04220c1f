"""Closed-form posterior means `D(x_t) = E[x0 | x_t]` (docs/theory.md §1).

Noise convention: `x_t = scale · (x0 + sigma · ε)` unless a function says
otherwise (`molrg_denoiser` takes the low-dim talk's `x_t = α x0 + β ε`).
Inputs: queries `x` `[B, D]`; `sigma` and `scale` are scalars or `[B]`.
Every denoiser takes `head=` (`"x0"` default, `"eps"`, `"score"`, `"v"`); the
other heads are derived from the posterior mean by Tweedie (`repro_jax.diffusion.heads`).

- `empirical_denoiser`: data `[N, D]`, the optimal (memorizing) denoiser of the
  empirical distribution; one matmul per chunk, running log-sum-exp, optional
  sharding of the data over a mesh axis.
- `gaussian_denoiser`: `N(μ, Σ)`.
- `gmm_denoiser`: general Gaussian mixture (`GaussianMixture`).
- `molrg_denoiser`: mixture of low-rank Gaussians `Σ_k π_k N(0, U_k U_kᵀ)`.

Dtypes (`repro_jax.validation`): integer and bool inputs are promoted to the
default float dtype (never σ or s to the integer dtype of `x`); float16 and
bfloat16 inputs are computed in float32 and the result is cast back; the
output has the promoted dtype of `x` and the data (or bases, means).

Checks: shapes (`x [B, D]`, D matching the data, σ / s / α / β scalars or
`[B]`, K ≥ 1) raise `ValueError` also under `jit` / `vmap` (at trace time);
value checks (σ, s, α, β > 0; finite `x` and data; orthonormal bases;
positive semi-definite covariances; weights ≥ 0) run on concrete arguments,
and on traced ones only inside `validation.traced_value_checks()` (as
`checkify` checks).  `repro_jax.diffusion.denoiser` checks the data of its
canonical denoisers when they are built.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import validation
from repro_jax.closed_form import streaming
from repro_jax.diffusion import heads as heads_lib


def _per_row(p, batch, dtype):
  return jnp.broadcast_to(jnp.asarray(p, dtype).reshape(-1), (batch,))


def check_params(x, **params):
  """Scalar-or-`[B]` positive parameters of queries `x [B, D]` (σ, s, α, β)."""
  for name, p in params.items():
    validation.check_batch_param(p, np.shape(x)[0], name)
    validation.check_positive(p, name)


def check_query(x, other, other_name):
  """Queries `x [B, D]` against an array `other [..., D]`: shapes, finiteness."""
  validation.check_ndim(x, 2, "x", "BD")
  validation.check_same_dim(x, other, "x", other_name)
  validation.check_finite(x, "x")


def check_data(data, name="data"):
  """A data set `[N, D]`: two dimensions, N >= 1, finite."""
  validation.check_ndim(data, 2, name, "ND")
  validation.check_nonempty(data, name)
  validation.check_finite(data, name)


def _orthonormal_tol(dtype):
  return max(1e-2, 10.0 * float(jnp.finfo(dtype).eps))


def check_bases(bases, name="bases", *, orthonormal=True):
  """Bases `[K, D, R]` with K, D, R >= 1, finite; with `orthonormal`, each
  `U_k` has orthonormal non-zero columns (zero columns pad lower ranks)."""
  validation.check_ndim(bases, 3, name, "KDR")
  if min(np.shape(bases)) == 0:
    raise ValueError(f"`{name}` [K, D, R] needs K, D, R >= 1; got shape "
                     f"{validation.shape_of(bases)}.")
  validation.check_finite(bases, name)
  if orthonormal:
    tol = _orthonormal_tol(validation.float_dtypes(bases=bases)[0])

    def ok(u):
      u = jnp.asarray(u, jnp.promote_types(jnp.result_type(u), jnp.float32))
      gram = jnp.einsum("kdr,kds->krs", u, u)
      active = (jnp.diagonal(gram, axis1=1, axis2=2) > 0.5).astype(u.dtype)
      want = active[:, :, None] * jnp.eye(u.shape[2], dtype=u.dtype)[None]
      return jnp.max(jnp.abs(gram - want)) <= tol

    validation.require(
        bases, ok, f"the non-zero columns of each `{name}[k]` must be orthonormal "
        f"(|U_kᵀU_k − I| <= {tol:g}; zero columns pad lower ranks).")


def check_weights(weights, k, name="weights"):
  """Mixture weights `[K]`: finite, >= 0, not all zero."""
  if np.shape(weights) != (k,):
    raise ValueError(f"`{name}` must have shape [K] = [{k}]; got {np.shape(weights)}.")
  validation.check_positive(weights, name, allow_zero=True)
  validation.require(weights, lambda w: jnp.sum(w) > 0, f"`{name}` must not all be 0.")


def _cast(dtype, *xs):
  return tuple(None if v is None else jnp.asarray(v, dtype) for v in xs)


# Empirical (memorizing) denoiser ----------------------------------------------

@functools.partial(jax.jit, static_argnames=("chunk_size", "precision", "head",
                                             "mesh", "axis"))
def _empirical(x, data, sigma, scale, data_sq, *, chunk_size, precision, head, mesh, axis):
  b = x.shape[0]
  sigma = _per_row(sigma, b, x.dtype)
  scale = _per_row(scale, b, x.dtype)
  x_ve = x / scale[:, None]
  coef = 0.5 / jnp.square(sigma)
  if mesh is None:
    st = streaming.lse_stats(x_ve, data, coef, chunk=chunk_size,
                              precision=precision, data_sq=data_sq)
  else:
    st = streaming.lse_stats_sharded(x_ve, data, coef, mesh, axis,
                                      chunk=chunk_size, precision=precision,
                                      data_sq=data_sq)
  x0 = st.weighted / st.total[:, None]
  return heads_lib.from_x0(head, x0, x, scale, sigma)


def empirical_denoiser(x, data, sigma, *, scale=1.0, head="x0",
                       chunk_size=streaming.DEFAULT_CHUNK, mesh=None,
                       axis="data", precision="highest", data_sq=None):
  """Posterior mean of the empirical distribution `(1/N) Σ δ(x0 − y_i)`.

  `D(x) = Σ_i w_i y_i` with `w = softmax_i(−‖x/s − y_i‖² / (2σ²))`
  (reproducibility paper, Theorem 1, eq. 2).  As σ → 0 it returns the
  training point nearest to `x/s`; as σ → ∞, the data mean.

  Args:
    x: noisy queries `x_t = s (x0 + σ ε)`, `[B, D]`.
    data: training set `[N, D]`, possibly sharded (see `mesh`).
    sigma: noise-to-signal level σ > 0, scalar or `[B]`.
    scale: kernel scale s > 0, scalar or `[B]`.
    head: `"x0"` (posterior mean), `"eps"`, `"score"` or `"v"`.
    chunk_size: rows of `data` per block of the running log-sum-exp (memory
      `O(B · chunk_size)`); None for one block.
    mesh: optional `jax.sharding.Mesh`; the rows of `data` are split over its
      `axis` and per-device partial log-sum-exps are merged.
    precision: matmul precision for the distances and the weighted sum.
    data_sq: optional `‖y_i‖²` `[N]` of `data`, computed once by a caller that
      reuses the same data for many calls (a sampler's steps); by default it
      is computed on each call.

  Returns:
    `[B, D]`, the requested head, in the dtype of `x` and `data` (see the
    module docstring for integer and float16 inputs).
  """
  x, data = jnp.asarray(x), jnp.asarray(data)
  out, dt = validation.float_dtypes(x=x, data=data)
  check_data(data)
  check_query(x, data, "data")
  check_params(x, sigma=sigma, scale=scale)
  if data_sq is not None and np.shape(data_sq) != np.shape(data)[:1]:
    raise ValueError(f"`data_sq` must have shape [N] = {np.shape(data)[:1]}; got "
                     f"{np.shape(data_sq)}.")
  validation.check_chunk(chunk_size)
  x, data, sigma, scale, data_sq = _cast(dt, x, data, sigma, scale, data_sq)
  return _empirical(x, data, sigma, scale, data_sq, chunk_size=chunk_size,
                    precision=precision, head=head, mesh=mesh, axis=axis).astype(out)


# Gaussians -------------------------------------------------------------------

class GaussianMixture(NamedTuple):
  """`Σ_k π_k N(μ_k, Σ_k)` with `Σ_k = V_k diag(λ_k) V_kᵀ` pre-decomposed.

  Shapes: `log_weights [K]`, `means [K, D]`, `eigvals [K, D]` (≥ 0),
  `eigvecs [K, D, D]` (columns are eigenvectors).
  """
  log_weights: jax.Array
  means: jax.Array
  eigvals: jax.Array
  eigvecs: jax.Array

  @classmethod
  def from_covariances(cls, weights, means, covs) -> "GaussianMixture":
    """Build from weights `[K]` (≥ 0, normalized here), means `[K, D]`,
    covariances `[K, D, D]` (symmetric positive semi-definite, up to round-off)."""
    validation.check_ndim(means, 2, "means", "KD")
    validation.check_ndim(covs, 3, "covs", "KDD")
    k, d = np.shape(means)
    if k == 0 or d == 0:
      raise ValueError(f"`means` [K, D] needs K, D >= 1; got shape {np.shape(means)}.")
    if np.shape(covs) != (k, d, d):
      raise ValueError(f"`covs` must have shape [K, D, D] = {(k, d, d)}; got "
                       f"{np.shape(covs)}.")
    for name, v in (("means", means), ("covs", covs)):
      validation.check_finite(v, name)
    check_weights(weights, k)
    _, dt = validation.float_dtypes(weights=jnp.asarray(weights),
                                    means=jnp.asarray(means), covs=jnp.asarray(covs))
    w, means, covs = _cast(dt, weights, means, covs)
    tol = float(np.sqrt(jnp.finfo(dt).eps))
    scale = jnp.max(jnp.abs(covs), axis=(1, 2))                       # [K]
    validation.require(
        covs, lambda c: jnp.all(jnp.max(jnp.abs(c - jnp.swapaxes(c, -1, -2)), axis=(1, 2))
                                <= tol * scale),
        "`covs` must be symmetric.")
    lam, vec = jnp.linalg.eigh(0.5 * (covs + jnp.swapaxes(covs, -1, -2)))
    # Round-off may leave eigenvalues slightly below 0 (clamped); a clearly
    # negative one is an error, not a covariance.
    validation.require(lam, lambda l: jnp.all(l >= -tol * scale[:, None]),
                       "`covs` must be positive semi-definite.")
    return cls(jnp.log(w / jnp.sum(w)), means, jnp.maximum(lam, 0.0), vec)


def _gmm_x0_ve(x, mix: GaussianMixture, sigma):
  """Posterior mean in VE coordinates (`x = x0 + σ ε`), `sigma [B]`."""
  var = mix.eigvals[None] + jnp.square(sigma)[:, None, None]          # [B, K, D]
  diff = x[:, None, :] - mix.means[None]                              # [B, K, D]
  coords = jnp.einsum("bkd,kde->bke", diff, mix.eigvecs)              # [B, K, D]
  log_lik = -0.5 * (jnp.sum(jnp.square(coords) / var, -1)
                    + jnp.sum(jnp.log(var), -1))                      # [B, K]
  resp = jax.nn.softmax(mix.log_weights[None] + log_lik, axis=-1)     # [B, K]
  shrink = coords * (mix.eigvals[None] / var)                         # [B, K, D]
  comp_mean = mix.means[None] + jnp.einsum("bke,kde->bkd", shrink, mix.eigvecs)
  return jnp.einsum("bk,bkd->bd", resp, comp_mean)


@functools.partial(jax.jit, static_argnames=("head",))
def _gmm(x, mix, sigma, scale, head):
  b = x.shape[0]
  sigma = _per_row(sigma, b, x.dtype)
  scale = _per_row(scale, b, x.dtype)
  x0 = _gmm_x0_ve(x / scale[:, None], mix, sigma)
  return heads_lib.from_x0(head, x0, x, scale, sigma)


def gmm_denoiser(x, mixture: GaussianMixture, sigma, *, scale=1.0, head="x0"):
  """Posterior mean of a Gaussian mixture for `x_t = s (x0 + σ ε)`.

  `E[x0 | x] = Σ_k r_k(x) (μ_k + Σ_k (Σ_k + σ² I)⁻¹ (x/s − μ_k))`, with
  responsibilities `r_k ∝ π_k N(x/s; μ_k, Σ_k + σ² I)`.  `x` `[B, D]`.
  """
  x = jnp.asarray(x)
  out, dt = validation.float_dtypes(x=x, mixture=mixture.means)
  check_query(x, mixture.means, "mixture.means")
  check_params(x, sigma=sigma, scale=scale)
  mix = jax.tree.map(lambda a: jnp.asarray(a, dt), mixture)
  x, sigma, scale = _cast(dt, x, sigma, scale)
  return _gmm(x, mix, sigma, scale, head).astype(out)


def gaussian_denoiser(x, mean, cov, sigma, *, scale=1.0, head="x0"):
  """Posterior mean of `N(μ, Σ)`: `μ + Σ (Σ + σ² I)⁻¹ (x/s − μ)`.  `x` `[B, D]`."""
  validation.check_ndim(mean, 1, "mean", "D")
  validation.check_ndim(cov, 2, "cov", "DD")
  mix = GaussianMixture.from_covariances(jnp.ones((1,)), jnp.asarray(mean)[None],
                                         jnp.asarray(cov)[None])
  x = jnp.asarray(x)
  out, _ = validation.float_dtypes(x=x, mean=jnp.asarray(mean), cov=jnp.asarray(cov))
  return gmm_denoiser(x, mix, sigma, scale=scale, head=head).astype(out)


# Mixture of low-rank Gaussians ----------------------------------------------

def molrg_ranks(bases):
  """Rank of each component: its number of non-zero (unit) columns.  `[K]`."""
  return jnp.sum(jnp.sum(jnp.square(bases), axis=1) > 0.5, axis=-1)


def _molrg_weights(x, bases, alpha, beta, weights, ranks):
  b = x.shape[0]
  alpha = _per_row(alpha, b, x.dtype)[:, None]
  beta = _per_row(beta, b, x.dtype)[:, None]
  k = bases.shape[0]
  log_pi = (jnp.full((k,), -jnp.log(k), x.dtype) if weights is None
            else jnp.log(jnp.asarray(weights, x.dtype) / jnp.sum(weights)))
  r = (molrg_ranks(bases) if ranks is None else jnp.asarray(ranks)).astype(x.dtype)
  proj_sq = jnp.sum(jnp.square(jnp.einsum("bd,kdr->bkr", x, bases)), -1)  # [B, K]
  a2, b2 = jnp.square(alpha), jnp.square(beta)
  phi = a2 / (2.0 * b2 * (a2 + b2))
  logits = (log_pi[None] + phi * proj_sq
            - 0.5 * r[None] * (jnp.log(a2 + b2) - jnp.log(b2)))
  return jax.nn.softmax(logits, axis=-1)


def _check_molrg(x, bases, alpha, beta, weights, ranks):
  check_bases(bases)
  check_query(x, np.zeros((1, np.shape(bases)[1])), "bases[k]ᵀ")
  check_params(x, alpha=alpha, beta=beta)
  k = np.shape(bases)[0]
  if weights is not None:
    check_weights(weights, k)
  if ranks is not None and np.shape(ranks) != (k,):
    raise ValueError(f"`ranks` must have shape [K] = [{k}]; got {np.shape(ranks)}.")


def molrg_posterior_weights(x, bases, alpha, beta, weights=None, ranks=None):
  """Component responsibilities `w_k(x_t)` of the MoLRG posterior, `[B, K]`.

  `w = softmax_k(log π_k + φ ‖U_kᵀ x‖² − (r_k/2) log(α² + β²) + (r_k/2) log β²)`,
  `φ = α² / (2 β² (α² + β²))` (docs/theory.md §1).  `alpha`, `beta` > 0,
  scalars or `[B]`; arguments as in `molrg_denoiser`.
  """
  x, bases = jnp.asarray(x), jnp.asarray(bases)
  out, dt = validation.float_dtypes(x=x, bases=bases)
  _check_molrg(x, bases, alpha, beta, weights, ranks)
  x, bases, alpha, beta, weights = _cast(dt, x, bases, alpha, beta, weights)
  return _molrg_weights(x, bases, alpha, beta, weights, ranks).astype(out)


@functools.partial(jax.jit, static_argnames=("head",))
def _molrg(x, bases, alpha, beta, weights, ranks, head):
  b = x.shape[0]
  w = _molrg_weights(x, bases, alpha, beta, weights, ranks)              # [B, K]
  al = _per_row(alpha, b, x.dtype)
  be = _per_row(beta, b, x.dtype)
  coords = jnp.einsum("bd,kdr->bkr", x, bases)
  proj = jnp.einsum("bkr,kdr->bkd", coords * w[..., None], bases).sum(1)
  x0 = (al / (jnp.square(al) + jnp.square(be)))[:, None] * proj
  return heads_lib.from_x0(head, x0, x, al, be / al)


def molrg_denoiser(x, bases, alpha, beta, weights=None, *, ranks=None, head="x0"):
  """MoLRG posterior mean for `x_t = α x0 + β ε` (low-dim talk, Lemma).

  `E[x0 | x_t] = α/(α² + β²) Σ_k w_k(x_t) U_k U_kᵀ x_t`.

  Args:
    x: `[B, D]`.
    bases: `[K, D, R]`; component k uses its non-zero columns (pad with zero
      columns for ranks below R), which must be orthonormal.
    alpha, beta: kernel coefficients > 0, scalars or `[B]` (`α = s`, `β = s σ`).
    weights: mixture weights `[K]` (≥ 0, not all 0; default uniform).
    ranks: optional `[K]` ranks (default: counted from the non-zero columns).
    head: output head (`"x0"`, `"eps"`, `"score"`, `"v"`).
  """
  x, bases = jnp.asarray(x), jnp.asarray(bases)
  out, dt = validation.float_dtypes(x=x, bases=bases)
  _check_molrg(x, bases, alpha, beta, weights, ranks)
  x, bases, alpha, beta, weights = _cast(dt, x, bases, alpha, beta, weights)
  return _molrg(x, bases, alpha, beta, weights, ranks, head).astype(out)


def random_molrg_bases(key, dim: int, num_components: int, rank, *,
                       orthogonal: bool = True, dtype=jnp.float32):
  """Random orthonormal bases `[K, D, R_max]` for a MoLRG.

  Args:
    key: PRNG key.
    dim: ambient dimension D.
    num_components: K.
    rank: an int (all equal) or a sequence of K ranks; smaller ranks are padded
      with zero columns up to `R_max`.
    orthogonal: if True the K subspaces are mutually orthogonal (one QR of a
      `D × Σ r_k` Gaussian; needs `Σ r_k ≤ D`), as in the low-dim talk.
  """
  ranks = [int(rank)] * num_components if np.ndim(rank) == 0 else [int(r) for r in rank]
  if len(ranks) != num_components or min(ranks) < 1:
    raise ValueError(f"`rank` must be >= 1, one per component; got {rank!r}.")
  r_max = max(ranks)
  if orthogonal:
    if sum(ranks) > dim:
      raise ValueError(f"{num_components} orthogonal subspaces of ranks {ranks} "
                       f"do not fit in D = {dim}.")
    q, _ = jnp.linalg.qr(jax.random.normal(key, (dim, sum(ranks)), dtype))
    blocks = np.split(np.arange(sum(ranks)), np.cumsum(ranks)[:-1])
    cols = [q[:, idx] for idx in blocks]
  else:
    if r_max > dim:
      raise ValueError(f"rank {r_max} exceeds D = {dim}.")
    keys = jax.random.split(key, num_components)
    cols = [jnp.linalg.qr(jax.random.normal(k, (dim, r), dtype))[0]
            for k, r in zip(keys, ranks)]
  return jnp.stack([jnp.pad(c, ((0, 0), (0, r_max - c.shape[1]))) for c in cols])


def sample_molrg(key, bases, num: int, weights=None):
  """Draw `num` points of `Σ_k π_k N(0, U_k U_kᵀ)`.

  `bases [K, D, R]` (any columns: the covariance is `U_k U_kᵀ`), `weights [K]`
  (≥ 0, not all 0; default uniform).  Returns `(x [num, D], labels [num])`
  with labels the component indices.
  """
  check_bases(bases, orthonormal=False)
  validation.check_int(num, "num", minimum=0)
  bases = jnp.asarray(bases)
  if not jnp.issubdtype(bases.dtype, jnp.floating):
    bases = bases.astype(jnp.result_type(float))
  k = bases.shape[0]
  if weights is not None:
    check_weights(weights, k)
  k_lab, k_coef = jax.random.split(key)
  logits = (jnp.zeros((k,)) if weights is None
            else jnp.log(jnp.asarray(weights) / jnp.sum(jnp.asarray(weights))))
  labels = jax.random.categorical(k_lab, logits, shape=(num,))
  coef = jax.random.normal(k_coef, (num, bases.shape[2]), bases.dtype)
  return jnp.einsum("ndr,nr->nd", bases[labels], coef), labels
