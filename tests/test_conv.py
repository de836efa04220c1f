"""The canonical-gradient convolution against `jax.vjp` of `lax.conv_general_dilated`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from repro_jax.networks import models
from repro_jax.networks.models import conv

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


def _pair(case, dtype):
  b, h, w, c, o, k, s, d, pad = case
  kx, kw = jax.random.split(jax.random.key(sum(case[:6])))
  x = jax.random.normal(kx, (b, h, w, c), dtype)
  kern = jax.random.normal(kw, (k, k, c, o), dtype)
  ref = lambda x, w: lax.conv_general_dilated(x, w, (s, s), pad, rhs_dilation=(d, d),
                                              dimension_numbers=_DN)
  new = lambda x, w: conv.conv_general_dilated(x, w, (s, s), pad, rhs_dilation=(d, d),
                                               dimension_numbers=_DN)
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


def test_unet_conv_grads_same_params_outputs_and_gradients():
  """`conv_grads` changes neither the parameters nor the outputs; gradients agree."""
  opts = dict(width=8, ch_mult=(1, 2), attn_resolutions=(4,), norm_groups=4)
  nets = {g: models.build("unet", (8, 8, 1), jax.random.key(0), conv_grads=g, **opts)
          for g in ("canonical", "xla")}
  (gd_c, p_c), (gd_x, p_x) = models.split(nets["canonical"]), models.split(nets["xla"])
  jax.tree.map(np.testing.assert_array_equal, p_c, p_x)
  # Non-zero output convolutions, so every gradient is non-trivial.
  p = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(a.size), a.shape),
                   p_c)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
  c = jnp.linspace(0.0, 900.0, 4)
  out = {g: models.apply(gd, p, x, c) for g, gd in (("canonical", gd_c), ("xla", gd_x))}
  np.testing.assert_array_equal(out["canonical"], out["xla"])
  grads = {g: jax.grad(lambda p: jnp.sum(models.apply(gd, p, x, c) ** 2))(p)
           for g, gd in (("canonical", gd_c), ("xla", gd_x))}
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4),
               grads["canonical"], grads["xla"])
