"""2-D convolution whose gradients are canonical NHWC/HWIO convolutions.

`conv_general_dilated` is a drop-in replacement for `lax.conv_general_dilated`
(it is what `nnx.Conv(..., conv_general_dilated=...)` calls) with a
`jax.custom_vjp`: the forward pass is XLA's own convolution, unchanged; the
backward pass writes both gradients as stride-1 NHWC/HWIO convolutions of
explicitly transposed operands instead of the convolutions with exchanged
dimension numbers that `jax.vjp` writes.  Inside a `lax.scan` XLA:CPU runs
autodiff's forms 22-40x slower than alone, the canonical forms at 0.4-1.2x
(`benchmarks/bench_conv_loops.py`).

For `y [B, Ho, Wo, O] = conv(x [B, H, W, C], w [KH, KW, C, O])` with stride
`s`, kernel dilation `d` and padding `(lo, hi)` per spatial axis:

- `dx`: the output gradient `g`, dilated by `s` (zeros between rows, written
  as a pad), convolved with the spatially flipped kernel whose I/O axes are
  swapped, `[KH, KW, O, C]`, kernel dilation `d`;
- `dw`: the input as `[C, H, W, B]` (channels as the batch, the batch as the
  features) convolved with `g` as a kernel `[Ho, Wo, B, O]`, window stride `d`
  and kernel dilation `s`; the result `[C, KH, KW, O]` is transposed back.

Other layouts, input dilation and feature groups fall back to
`lax.conv_general_dilated` (and its autodiff).
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _pairs(padding, in_spatial, kernel_spatial, strides, dilation):
  """Explicit `[(lo, hi), (lo, hi)]` padding, as lax resolves a string."""
  if isinstance(padding, str):
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel_spatial, dilation)]
    return tuple(lax.padtype_to_pads(in_spatial, dilated, strides, padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _is_nhwc(dimension_numbers, ndim: int) -> bool:
  if ndim != 4:
    return False
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers == lax.conv_dimension_numbers(
        (1, 1, 1, 1), (1, 1, 1, 1), _NHWC)
  return tuple(dimension_numbers) == _NHWC


def _conv(x, w, strides, padding, dilation, precision, preferred):
  return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                  dimension_numbers=_NHWC, precision=precision,
                                  preferred_element_type=preferred)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _canonical(x, w, strides, padding, dilation, precision, preferred):
  return _conv(x, w, strides, padding, dilation, precision, preferred)


def _fwd(x, w, strides, padding, dilation, precision, preferred):
  return _conv(x, w, strides, padding, dilation, precision, preferred), (x, w)


def _bwd(strides, padding, dilation, precision, preferred, res, g):
  x, w = res
  kh, kw = w.shape[:2]
  g = g.astype(jnp.result_type(x, w))
  pads_dx, crop_dw = [], []
  for axis, (k, s, d, (lo, hi)) in enumerate(zip((kh, kw), strides, dilation, padding)):
    n_in, n_out = x.shape[1 + axis], g.shape[1 + axis]
    used = s * (n_out - 1) + d * (k - 1) + 1        # padded input rows the windows touch
    unused = n_in + lo + hi - used                   # trailing rows no window reaches
    pads_dx.append((d * (k - 1) - lo, d * (k - 1) - hi + unused))
    crop_dw.append((lo, hi - unused))
  # dx: dilate g by the stride (interior zeros), then a stride-1 convolution.
  if any(s > 1 for s in strides):
    g_dil = lax.pad(g, jnp.zeros((), g.dtype),
                    ((0, 0, 0), (0, 0, strides[0] - 1), (0, 0, strides[1] - 1), (0, 0, 0)))
  else:
    g_dil = g
  w_t = jnp.flip(w, (0, 1)).swapaxes(2, 3)          # [KH, KW, O, C]
  dx = _conv(g_dil, w_t, (1, 1), pads_dx, dilation, precision, None)
  # dw: channels as the batch, the batch as the features, g as the kernel.
  x_t = jnp.transpose(x, (3, 1, 2, 0))              # [C, H, W, B]
  g_t = jnp.transpose(g, (1, 2, 0, 3))              # [Ho, Wo, B, O]
  dw = _conv(x_t, g_t, dilation, crop_dw, strides, precision, None)   # [C, KH, KW, O]
  dw = jnp.transpose(dw, (1, 2, 0, 3))
  return dx.astype(x.dtype), dw.astype(w.dtype)


_canonical.defvjp(_fwd, _bwd)


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None, out_sharding=None):
  """`lax.conv_general_dilated`, with canonical-convolution gradients for 2-D NHWC/HWIO.

  Args are those of `lax.conv_general_dilated`; `lhs [B, H, W, C]`,
  `rhs [KH, KW, C, O]` → `[B, Ho, Wo, O]` when the fast path applies.
  """
  lhs_dilation = tuple(lhs_dilation or (1,) * (lhs.ndim - 2))
  rhs_dilation = tuple(rhs_dilation or (1,) * (lhs.ndim - 2))
  fast = (_is_nhwc(dimension_numbers, lhs.ndim) and feature_group_count == 1
          and batch_group_count == 1 and all(v == 1 for v in lhs_dilation)
          and out_sharding is None)
  if not fast:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type,
        out_sharding=out_sharding)
  strides = tuple(int(s) for s in window_strides)
  pads = _pairs(padding, lhs.shape[1:3], rhs.shape[:2], strides, rhs_dilation)
  return _canonical(lhs, rhs, strides, pads, tuple(int(d) for d in rhs_dilation),
                    precision, preferred_element_type)
