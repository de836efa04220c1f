"""A Gaussian with a low-rank plus diagonal covariance, and its fit to data (docs/theory.md §6.6).

For `x0 ~ N(μ, Σ)` with `Σ = U diag(λ) Uᵀ + diag(d)` (`U [D, R]`, `λ [R] ≥ 0`,
`d ≥ 0` a scalar (isotropic) or `[D]`), the posterior mean in VE coordinates
`x = x0 + σ ε` is the Wiener filter

    D(x) = μ + Σ (Σ + σ² I)⁻¹ (x − μ).

With `W = U diag(sqrt λ)`, `a = d + σ²` and `r = x − μ`, Woodbury's identity
and `Wᵀ (A + W Wᵀ)⁻¹ = C⁻¹ Wᵀ A⁻¹` (`A = diag(a)`) give

    D(x) = μ + (d / a) ⊙ r + (σ² / a) ⊙ W c,
    c = C⁻¹ Wᵀ (r / a),   C = I_R + Wᵀ diag(1/a) W,

an `R × R` solve per query instead of a `D × D` one: `O(B · D · R + B · R³)`
time and no `D × D` matrix.  Both terms stay bounded as σ → 0 (`d/a ≤ 1`,
`σ²/a ≤ 1`) and tend to `μ` as σ → ∞.

`fit_lowrank_gaussian` fits μ and Σ to a training set: the "hidden Gaussian
structure" denoiser of Li, Dai & Qu (NeurIPS 2024) is this Wiener filter of
the training set's empirical mean and covariance, here with the covariance
truncated to its top R eigenpairs plus an isotropic or diagonal remainder
(R = D reproduces the empirical covariance exactly).

Kernel `x_t = s (x0 + σ ε)`: the functions divide by `s` first; heads as in
`repro_jax.closed_form.denoisers`, whose dtype policy and checks apply.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import validation
from repro_jax.closed_form.denoisers import _cast
from repro_jax.closed_form.denoisers import _per_row
from repro_jax.closed_form.denoisers import check_data
from repro_jax.closed_form.denoisers import check_params
from repro_jax.closed_form.denoisers import check_query
from repro_jax.diffusion import heads as heads_lib

# What the fit puts outside the top-R eigenspace, see `fit_lowrank_gaussian`.
RESIDUALS = ("isotropic", "diagonal", "none")


class LowRankGaussian(NamedTuple):
  """`N(mean, basis diag(eigvals) basisᵀ + diag(diag))`.

  Shapes: `mean [D]`, `basis [D, R]` (any columns; the fit's are
  orthonormal), `eigvals [R]` (≥ 0), `diag` `[]` (isotropic, `diag · I`) or
  `[D]` (≥ 0).
  """
  mean: jax.Array
  basis: jax.Array
  eigvals: jax.Array
  diag: jax.Array

  def covariance(self) -> jax.Array:
    """The dense covariance `[D, D]` (for small D: tests, diagnostics)."""
    low = jnp.einsum("dr,r,er->de", self.basis, self.eigvals, self.basis,
                     precision="highest")
    return low + jnp.diag(jnp.broadcast_to(self.diag, self.mean.shape))


def check_lowrank(g: LowRankGaussian, name: str = "gaussian") -> None:
  """Shapes (`mean [D]`, `basis [D, R]`, `eigvals [R]`, `diag [] or [D]`), finite, ≥ 0."""
  if not isinstance(g, LowRankGaussian):
    raise ValueError(f"`{name}` must be a LowRankGaussian; got {type(g).__name__}.")
  validation.check_ndim(g.mean, 1, f"{name}.mean", "D")
  validation.check_ndim(g.basis, 2, f"{name}.basis", "DR")
  d, r = np.shape(g.basis)
  if d == 0 or r == 0:
    raise ValueError(f"`{name}.basis` [D, R] needs D, R >= 1; got shape {(d, r)}.")
  if np.shape(g.mean) != (d,):
    raise ValueError(f"`{name}.mean` must have shape [D] = [{d}]; got {np.shape(g.mean)}.")
  if np.shape(g.eigvals) != (r,):
    raise ValueError(f"`{name}.eigvals` must have shape [R] = [{r}]; got "
                     f"{np.shape(g.eigvals)}.")
  if np.shape(g.diag) not in ((), (d,)):
    raise ValueError(f"`{name}.diag` must be a scalar or have shape [D] = [{d}]; got "
                     f"{np.shape(g.diag)}.")
  for field in ("mean", "basis"):
    validation.check_finite(getattr(g, field), f"{name}.{field}")
  for field in ("eigvals", "diag"):
    validation.check_positive(getattr(g, field), f"{name}.{field}", allow_zero=True)


def _posterior_mean_ve(x, g: LowRankGaussian, sigma):
  """`μ + Σ (Σ + σ² I)⁻¹ (x − μ)` for `x [B, D]`, `sigma [B]` (module docstring)."""
  w = g.basis * jnp.sqrt(g.eigvals)[None, :]                         # [D, R]
  r = x - g.mean[None]                                               # [B, D]
  var = jnp.square(sigma)                                            # [B]
  if g.diag.ndim == 0:   # isotropic: C = I + WᵀW / a, one Gram matrix for all rows
    a = (g.diag + var)[:, None]                                      # [B, 1]
    gram = jnp.matmul(w.T, w, precision="highest")                   # [R, R]
    c_mat = gram[None] / a[:, :, None]
  else:
    a = g.diag[None, :] + var[:, None]                               # [B, D]
    c_mat = jnp.einsum("dr,bd,ds->brs", w, 1.0 / a, w, precision="highest")
  c_mat = c_mat + jnp.eye(w.shape[1], dtype=x.dtype)[None]           # [B, R, R]
  v = jnp.matmul(r / a, w, precision="highest")                      # [B, R]
  chol = jnp.linalg.cholesky(c_mat)
  c = jax.scipy.linalg.cho_solve((chol, True), v[..., None])[..., 0]
  wc = jnp.matmul(c, w.T, precision="highest")                       # [B, D]
  return g.mean[None] + (g.diag / a) * r + (var[:, None] / a) * wc


@functools.partial(jax.jit, static_argnames=("head",))
def _lowrank(x, g, sigma, scale, head):
  b = x.shape[0]
  sigma = _per_row(sigma, b, x.dtype)
  scale = _per_row(scale, b, x.dtype)
  x0 = _posterior_mean_ve(x / scale[:, None], g, sigma)
  return heads_lib.from_x0(head, x0, x, scale, sigma)


def lowrank_gaussian_denoiser(x, gaussian: LowRankGaussian, sigma, *, scale=1.0, head="x0"):
  """Posterior mean of `N(μ, U diag(λ) Uᵀ + diag(d))` for `x_t = s (x0 + σ ε)`.

  `μ + Σ (Σ + σ² I)⁻¹ (x/s − μ)` by Woodbury (module docstring); equal to
  `denoisers.gaussian_denoiser(x, μ, Σ, σ)` with the dense Σ.

  Args:
    x: `[B, D]`.
    gaussian: a `LowRankGaussian` (e.g. from `fit_lowrank_gaussian`).
    sigma: σ > 0, scalar or `[B]`.
    scale: s > 0, scalar or `[B]`.
    head: `"x0"`, `"eps"`, `"score"` or `"v"`.

  Returns:
    `[B, D]` in the dtype of `x` and the Gaussian's mean and basis.
  """
  x = jnp.asarray(x)
  check_lowrank(gaussian)
  out, dt = validation.float_dtypes(x=x, mean=jnp.asarray(gaussian.mean),
                                    basis=jnp.asarray(gaussian.basis))
  check_query(x, gaussian.mean, "gaussian.mean")
  check_params(x, sigma=sigma, scale=scale)
  if head not in heads_lib.HEADS:
    raise validation.unknown_name("head", head, heads_lib.HEADS)
  g = LowRankGaussian(*_cast(dt, *gaussian))
  x, sigma, scale = _cast(dt, x, sigma, scale)
  return _lowrank(x, g, sigma, scale, head).astype(out)


@functools.partial(jax.jit, static_argnames=("rank", "residual", "ddof", "via_svd"))
def _fit(data, *, rank, residual, ddof, via_svd):
  n, d = data.shape
  mean = jnp.mean(data, axis=0)
  yc = data - mean[None]
  denom = n - ddof
  if via_svd:            # N < D: the thin SVD of the centred data, no D × D matrix
    _, s, vt = jnp.linalg.svd(yc, full_matrices=False)
    lam, basis = jnp.square(s[:rank]) / denom, vt[:rank].T
  else:
    cov = jnp.matmul(yc.T, yc, precision="highest") / denom
    evals, evecs = jnp.linalg.eigh(0.5 * (cov + cov.T))               # ascending
    lam, basis = evals[::-1][:rank], evecs[:, ::-1][:, :rank]
  lam = jnp.maximum(lam, 0.0)
  var_j = jnp.sum(jnp.square(yc), axis=0) / denom                     # diag of S, [D]
  if residual == "isotropic":
    delta = (jnp.maximum(jnp.sum(var_j) - jnp.sum(lam), 0.0) / (d - rank)
             if rank < d else jnp.zeros((), data.dtype))
    return LowRankGaussian(mean, basis, jnp.maximum(lam - delta, 0.0), delta)
  if residual == "diagonal":
    low_j = jnp.sum(jnp.square(basis) * lam[None, :], axis=1)
    return LowRankGaussian(mean, basis, lam, jnp.maximum(var_j - low_j, 0.0))
  return LowRankGaussian(mean, basis, lam, jnp.zeros((), data.dtype))


def fit_lowrank_gaussian(data, rank: int, *, residual: str = "isotropic",
                         ddof: int = 0) -> LowRankGaussian:
  """Fit `N(μ, U diag(λ) Uᵀ + diag(d))` to a training set `[N, D]`.

  μ is the sample mean and `S = Σ_n (y_n − μ)(y_n − μ)ᵀ / (N − ddof)` the
  sample covariance (`ddof = 0`: the covariance of the empirical
  distribution, whose Wiener filter is the best linear denoiser of the
  training set).  `U`, `λ`: the top `rank` eigenpairs of S.  The remainder:

  - `"isotropic"`: `d = δ I`, δ the mean of the other `D − R` eigenvalues
    (`(tr S − Σ_r λ_r) / (D − R)`, 0 when R = D), and the kept eigenvalues
    lowered to `λ_r − δ`, so that Σ has S's top R eigenpairs and δ elsewhere
    (probabilistic PCA's maximum-likelihood fit);
  - `"diagonal"`: `d = diag(S − U diag(λ) Uᵀ)`, so that Σ matches S's
    top R eigenpairs' part and S's diagonal;
  - `"none"`: `d = 0`, the rank-R covariance alone.

  With `rank = D` every choice gives Σ = S.  Uses the thin SVD of the centred
  data when `rank ≤ N < D`, else the eigendecomposition of S.

  Args:
    data: `[N, D]`, N > ddof.
    rank: R, 1 ≤ R ≤ D.
    residual: one of `RESIDUALS`.
    ddof: 0 or 1.
  """
  data = jnp.asarray(data)
  check_data(data)
  n, d = np.shape(data)
  validation.check_int(rank, "rank", minimum=1)
  if rank > d:
    raise ValueError(f"`rank` = {rank} exceeds the dimension D = {d}.")
  if residual not in RESIDUALS:
    raise validation.unknown_name("residual", residual, RESIDUALS)
  if isinstance(ddof, bool) or ddof not in (0, 1):
    raise ValueError(f"`ddof` must be 0 or 1; got {ddof!r}.")
  if n - ddof < 1:
    raise ValueError(f"{n} row(s) of `data` do not give a covariance with ddof = {ddof}.")
  _, dt = validation.float_dtypes(data=data)
  return _fit(data.astype(dt), rank=rank, residual=residual, ddof=ddof,
              via_svd=rank <= n < d)
