"""LOCO edit directions (analysis.loco) against dense float64 linear algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax.analysis import loco
from repro_jax.diffusion import denoiser


def _gaussian(rng, dim, rank):
  a = rng.normal(size=(dim, rank)) * np.linspace(2.0, 0.5, rank)
  return a @ a.T + 1e-3 * np.eye(dim)


def _dense_directions(jac, inside, null_k, k):
  """Top-k right singular triplets of diag(inside) J N, N = I − V_c V_cᵀ with V_c the
  top null_k right singular vectors of diag(1 − inside) J (NumPy float64)."""
  out = np.diag(1.0 - inside) @ jac
  vc = np.linalg.svd(out)[2][:null_k].T
  proj = np.eye(len(inside)) - vc @ vc.T
  u, s, vt = np.linalg.svd(np.diag(inside) @ jac @ proj)
  return u[:, :k], s[:k], vt[:k].T, vc


def test_masked_directions_match_dense_linear_algebra(x64):
  rng = np.random.default_rng(0)
  dim, null_k, k = 12, 3, 2
  cov = _gaussian(rng, dim, 6)
  den = denoiser.gaussian(jnp.zeros(dim), jnp.asarray(cov))
  x = jnp.asarray(rng.normal(size=(3, dim)))
  sigma = jnp.array([0.3, 1.0, 3.0])
  mask = np.zeros(dim)
  mask[[1, 4, 5, 9, 10]] = 1.0
  # oversample = D makes each randomized SVD exact (l = D).
  got = jax.jit(loco.masked_directions, static_argnums=(0, 5),
                static_argnames=("null_k", "oversample", "power_iters"))(
      den, x, sigma, jnp.asarray(mask), jax.random.key(1), k, null_k=null_k, oversample=dim)
  for b in range(3):
    jac = cov @ np.linalg.inv(cov + sigma[b] ** 2 * np.eye(dim))
    u, s, v, vc = _dense_directions(jac, mask, null_k, k)
    np.testing.assert_allclose(np.asarray(got.top.s[b]), s, rtol=1e-9)
    np.testing.assert_allclose(np.abs(np.sum(np.asarray(got.top.v[b]) * v, 0)), 1.0, atol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(np.asarray(got.top.u[b]) * u, 0)), 1.0, atol=1e-8)
    # The projected-out subspace is V_c's, and the directions avoid it.
    np.testing.assert_allclose(np.asarray(got.null[b]) @ np.asarray(got.null[b]).T,
                               vc @ vc.T, atol=1e-8)
    assert np.abs(np.asarray(got.null[b]).T @ np.asarray(got.top.v[b])).max() < 1e-8
    # Their effect sits inside the mask: J v = s u with u zero outside.
    np.testing.assert_allclose(jac @ np.asarray(got.top.v[b]) * mask[:, None],
                               np.asarray(got.top.u[b] * got.top.s[b][None]), atol=1e-8)


def test_projection_moves_the_change_into_the_mask(x64):
  """Against the unprojected top direction (null_k = 0), the projected one puts
  a larger share of its change inside the region."""
  rng = np.random.default_rng(1)
  dim = 16
  cov = _gaussian(rng, dim, 8)
  den = denoiser.gaussian(jnp.zeros(dim), jnp.asarray(cov))
  x = jnp.asarray(rng.normal(size=(1, dim)))
  mask = (np.arange(dim) < 5).astype(float)
  jac = cov @ np.linalg.inv(cov + np.eye(dim))

  def share(null_k):
    v = np.asarray(loco.masked_directions(den, x, 1.0, mask, jax.random.key(0), 1,
                                          null_k=null_k, oversample=dim).top.v[0, :, 0])
    change = jac @ v
    return np.sum((change * mask) ** 2) / np.sum(change ** 2)

  # J has numerical rank 8 (and 1e-3 elsewhere): projecting out the 8 input
  # directions the outside sees most leaves almost nothing outside.
  assert share(0) < 0.9
  assert share(8) > 0.99


def test_bad_arguments_raise_before_work():
  def never(*_):
    raise AssertionError("the denoiser ran")
  den = denoiser.Denoiser(never)
  x = np.ones((2, 6))
  for kwargs, match in ((dict(k=0), "k >= 1"), (dict(k=2, null_k=-1), "null_k"),
                        (dict(k=4, null_k=3), "null_k"), (dict(k=1, null_k=1, mask=np.ones(5)), "mask")):
    kwargs = dict(kwargs)
    mask = kwargs.pop("mask", np.ones(6))
    k = kwargs.pop("k")
    with pytest.raises(ValueError, match=match):
      loco.masked_directions(den, x, 1.0, mask, jax.random.key(0), k, **kwargs)
