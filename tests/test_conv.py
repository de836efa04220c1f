"""The canonical-gradient and im2col convolutions against `lax.conv_general_dilated`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from repro_jax import settings as settings_lib
from repro_jax.networks import models
from repro_jax.networks import training
from repro_jax.networks.models import conv
from repro_jax.networks.models import layers

_DN = ("NHWC", "HWIO", "NHWC")

# (B, H, W, C, O, kernel, stride, dilation, padding): the U-Net's 3×3 SAME,
# 1×1 and stride-2 SAME convolutions, odd sizes, VALID, dilation, explicit pads.
CASES = [
    (3, 8, 8, 4, 5, 3, 1, 1, "SAME"),
    (2, 8, 8, 6, 3, 1, 1, 1, "SAME"),
    (2, 8, 8, 4, 4, 3, 2, 1, "SAME"),
    (2, 7, 9, 3, 4, 3, 2, 1, "SAME"),
    (1, 10, 10, 2, 3, 3, 3, 1, "VALID"),
    (2, 9, 8, 3, 2, 3, 1, 2, "SAME"),
    (1, 8, 8, 2, 3, 3, 2, 2, ((2, 0), (1, -1))),
    (2, 5, 6, 3, 2, 2, 1, 1, ((0, 1), (1, 0))),
]


def _pair(case, dtype, impl=conv.conv_general_dilated):
  b, h, w, c, o, k, s, d, pad = case
  kx, kw = jax.random.split(jax.random.key(sum(case[:6])))
  x = jax.random.normal(kx, (b, h, w, c), dtype)
  kern = jax.random.normal(kw, (k, k, c, o), dtype)
  ref = lambda x, w: lax.conv_general_dilated(x, w, (s, s), pad, rhs_dilation=(d, d),
                                              dimension_numbers=_DN)
  new = lambda x, w: impl(x, w, (s, s), pad, rhs_dilation=(d, d), dimension_numbers=_DN)
  return x, kern, ref, new


def _vjp(fn, x, w):
  y, pull = jax.vjp(fn, x, w)
  g = jax.random.normal(jax.random.key(7), y.shape, y.dtype)
  return (y,) + pull(g)


@pytest.mark.parametrize("case", CASES)
def test_forward_and_gradients_match_autodiff_float64(x64, case):
  x, w, ref, new = _pair(case, jnp.float64)
  for a, b in zip(_vjp(ref, x, w), _vjp(jax.jit(new), x, w)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-12)


def test_backward_is_canonical_convolutions():
  """The gradients are stride-1, undilated-input NHWC/HWIO convolutions."""
  x, w, _, new = _pair(CASES[2], jnp.float32)
  jaxpr = jax.make_jaxpr(jax.grad(lambda x, w: new(x, w).sum(), (0, 1)))(x, w)
  convs = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
  canonical = lax.conv_dimension_numbers(x.shape, w.shape, _DN)
  assert len(convs) == 3
  for e in convs:
    assert e.params["dimension_numbers"] == canonical
    assert e.params["lhs_dilation"] == (1, 1)
  assert [e.params["window_strides"] for e in convs[1:]] == [(1, 1), (1, 1)]


def test_vmap_and_scan_float32():
  """Vmapped over a model axis (as `train_many`) and inside a `lax.scan`."""
  x, w, ref, new = _pair(CASES[0], jnp.float32)
  xs, ws = jnp.stack([x, 2 * x, -x]), jnp.stack([w, w + 1, 0.5 * w])
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  grad_ref = jax.vmap(jax.grad(loss(ref), (0, 1)))(xs, ws)
  grad_new = jax.jit(jax.vmap(jax.grad(loss(new), (0, 1))))(xs, ws)
  for a, b in zip(grad_ref, grad_new):
    np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-4)

  def descend(f):
    def body(w, _):
      return w - 1e-3 * jax.grad(loss(f), 1)(x, w), None
    return jax.jit(lambda w: lax.scan(body, w, None, length=3)[0])
  np.testing.assert_allclose(descend(new)(w), descend(ref)(w), rtol=2e-5, atol=2e-5)


def test_other_layouts_fall_back_to_lax():
  x = jax.random.normal(jax.random.key(0), (2, 3, 8, 8))            # NCHW
  w = jax.random.normal(jax.random.key(1), (4, 3, 3, 3))            # OIHW
  args = ((1, 1), "SAME")
  np.testing.assert_array_equal(conv.conv_general_dilated(x, w, *args),
                                lax.conv_general_dilated(x, w, *args))


# im2col -------------------------------------------------------------------------------

# The im2col path proper (non-negative padding): 3×3 SAME stride 1, 1×1, stride-2
# SAME on even and odd sizes, VALID stride 3, kernel dilation 2, explicit
# asymmetric pads, and a non-square image with stride 2 and dilation 2.
IM2COL_CASES = [c for c in CASES if not isinstance(c[-1], tuple)] + [
    (2, 5, 6, 3, 2, 2, 1, 1, ((0, 1), (1, 0))),
    (2, 6, 5, 2, 3, 3, 1, 1, ((2, 0), (0, 1))),
    (1, 9, 7, 2, 3, 3, 2, 2, "SAME"),
]


@pytest.mark.parametrize("case", IM2COL_CASES)
def test_im2col_forward_and_gradients_match_lax_float64(x64, case):
  x, w, ref, new = _pair(case, jnp.float64, conv.im2col_conv_general_dilated)
  for a, b in zip(_vjp(ref, x, w), _vjp(jax.jit(new), x, w)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-12)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  for a, b in zip(jax.grad(loss(ref), (0, 1))(x, w), jax.jit(jax.grad(loss(new), (0, 1)))(x, w)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [IM2COL_CASES[0], IM2COL_CASES[3], IM2COL_CASES[5]])
def test_im2col_vmapped_over_models_matches_lax_float64(x64, case):
  """Per-model kernels and inputs (as `train_many`): a batched matmul, no convolution."""
  x, w, ref, new = _pair(case, jnp.float64, conv.im2col_conv_general_dilated)
  m = 3
  xs = jnp.stack([x * (1 + i) for i in range(m)])
  ws = jax.random.normal(jax.random.key(11), (m,) + w.shape, w.dtype)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  vg = lambda f: jax.vmap(jax.value_and_grad(loss(f), (0, 1)))
  (l_ref, g_ref), (l_new, g_new) = vg(ref)(xs, ws), jax.jit(vg(new))(xs, ws)
  for a, b in zip((l_ref,) + g_ref, (l_new,) + g_new):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-12)
  for a, b in zip(jax.vmap(lambda x, w: _vjp(ref, x, w))(xs, ws),
                  jax.jit(jax.vmap(lambda x, w: _vjp(new, x, w)))(xs, ws)):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-12)
  jaxpr = jax.make_jaxpr(vg(new))(xs, ws)
  prims = {e.primitive.name for e in jaxpr.jaxpr.eqns}
  assert "conv_general_dilated" not in prims and "dot_general" in prims


def test_im2col_in_a_scan_float32():
  x, w, ref, new = _pair(CASES[2], jnp.float32, conv.im2col_conv_general_dilated)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))

  def descend(f):
    def body(w, _):
      return w - 1e-3 * jax.grad(loss(f), 1)(x, w), None
    return jax.jit(lambda w: lax.scan(body, w, None, length=3)[0])
  np.testing.assert_allclose(descend(new)(w), descend(ref)(w), rtol=2e-5, atol=2e-5)


def _fallback_cases():
  """(lhs, rhs, positional args, keyword args) that im2col hands to lax unchanged."""
  k = jax.random.split(jax.random.key(3), 8)
  nchw = (jax.random.normal(k[0], (2, 3, 6, 6)), jax.random.normal(k[1], (4, 3, 3, 3)),
          ((1, 1), "SAME"), {})
  nchw_dn = (nchw[0], nchw[1], ((2, 2), "SAME"),
             dict(dimension_numbers=("NCHW", "OIHW", "NCHW")))
  groups = (jax.random.normal(k[2], (2, 6, 6, 4)), jax.random.normal(k[3], (3, 3, 2, 6)),
            ((1, 1), "SAME"), dict(dimension_numbers=_DN, feature_group_count=2))
  lhs_dil = (jax.random.normal(k[4], (1, 5, 5, 2)), jax.random.normal(k[5], (3, 3, 2, 3)),
             ((1, 1), ((1, 1), (1, 1))), dict(lhs_dilation=(2, 2), dimension_numbers=_DN))
  negative = (jax.random.normal(k[6], (2, 8, 8, 2)), jax.random.normal(k[7], (3, 3, 2, 3)),
              ((2, 2), ((2, 0), (1, -1))), dict(rhs_dilation=(2, 2), dimension_numbers=_DN))
  return dict(nchw=nchw, nchw_dn=nchw_dn, groups=groups, lhs_dilation=lhs_dil,
              negative_padding=negative)


@pytest.mark.parametrize("name", sorted(_fallback_cases()))
def test_im2col_falls_back_to_lax(name):
  x, w, args, kw = _fallback_cases()[name]
  ref = lambda x, w: lax.conv_general_dilated(x, w, *args, **kw)
  new = lambda x, w: conv.im2col_conv_general_dilated(x, w, *args, **kw)
  for a, b in zip(_vjp(ref, x, w), _vjp(new, x, w)):
    np.testing.assert_array_equal(b, a)
  jaxpr = jax.make_jaxpr(new)(x, w)
  assert [e.primitive.name for e in jaxpr.jaxpr.eqns] == ["conv_general_dilated"]


# The U-Net and the settings ------------------------------------------------------------

def test_unet_conv_impl_same_params_outputs_and_gradients():
  """`conv_impl` changes neither the parameters nor the outputs; gradients agree."""
  opts = dict(width=8, ch_mult=(1, 2), attn_resolutions=(4,), norm_groups=4)
  impls = ("canonical", "xla", "im2col")
  assert set(impls) == set(layers.CONV_IMPLS)
  split = {g: models.split(models.build("unet", (8, 8, 1), jax.random.key(0), conv_impl=g,
                                        **opts)) for g in impls}
  gd = {g: s[0] for g, s in split.items()}
  p_c = split["canonical"][1]
  for g in impls[1:]:
    jax.tree.map(np.testing.assert_array_equal, p_c, split[g][1])
  # Non-zero output convolutions, so every gradient is non-trivial.
  p = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(a.size), a.shape),
                   p_c)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  c = jnp.linspace(0.0, 900.0, 4)
  # One jitted program per implementation (eager op-by-op dispatch is slower).
  run = {g: jax.jit(lambda p, gd=gd[g]: (
      models.apply(gd, p, x, c),
      jax.grad(lambda p: jnp.sum(models.apply(gd, p, x, c) ** 2))(p)))(p) for g in impls}
  out = {g: r[0] for g, r in run.items()}
  grads = {g: r[1] for g, r in run.items()}
  np.testing.assert_array_equal(out["canonical"], out["xla"])
  # im2col sums the products in another order: equal to float32 rounding.
  np.testing.assert_allclose(out["im2col"], out["xla"], rtol=1e-5, atol=1e-5)
  for g in impls[1:]:
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
                 grads["canonical"], grads[g])


def test_unknown_conv_impl_is_rejected():
  with pytest.raises(ValueError, match="convolution implementation 'nope'; choose one of: "
                                       "canonical, im2col, xla"):
    layers.conv(2, 3, impl="nope", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="convolution implementation 'nope'"):
    models.abstract("unet", (8, 8, 1), width=8, norm_groups=4, conv_impl="nope")


def test_check_config_rejects_unknown_conv_impl(tmp_path):
  """Rejected before any work: no data read, no directory written."""
  cfg = settings_lib.override(training.variant("smoke"), {"model": {"conv_impl": "nope"}})
  assert cfg.model.name == "unet"
  with pytest.raises(ValueError, match=r"config\.model\.conv_impl\) 'nope'; choose one of: "
                                       "canonical, im2col, xla"):
    training.check_config(cfg)
  with pytest.raises(ValueError, match=r"config\.model\.conv_impl"):
    training.train(cfg, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
  for impl in layers.CONV_IMPLS:
    training.check_config(settings_lib.override(cfg, {"model": {"conv_impl": impl}}))
