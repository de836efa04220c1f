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

`im2col_conv_general_dilated` is a second drop-in replacement that writes the
convolution as strided slices of the padded input, concatenated into patches
`[B, Ho, Wo, KH·KW·C]`, times the kernel as a matrix `[KH·KW·C, O]`; its
gradients are autodiff's (pads, slices and matrix products).  Under `vmap`
over models with their own kernels, XLA's convolution becomes a grouped
convolution (`feature_group_count` = number of models), the patches form a
batched matrix product; on XLA:CPU the latter trains 8–55 vmapped small
U-Nets 1.2–1.45× faster (`benchmarks/bench_training.py --only-conv-impl`).
It costs `KH·KW`× the input's memory, so it suits small images (the 4×4 and
8×8 grids of the CPU-scale studies), not 32×32 U-Nets on an accelerator.
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


def _patches(x, kernel_spatial, strides, padding, dilation):
  """`[B, Ho, Wo, KH·KW·C]`: the input window of each output position, (kh, kw, c)-major."""
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  b, h, w, c = xp.shape
  (kh, kw), (sh, sw), (dh, dw) = kernel_spatial, strides, dilation
  ho = (h - dh * (kh - 1) - 1) // sh + 1
  wo = (w - dw * (kw - 1) - 1) // sw + 1
  cols = [lax.slice(xp, (0, i * dh, j * dw, 0),
                    (b, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c),
                    (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]
  return cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)


def im2col_conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                                lhs_dilation=None, rhs_dilation=None,
                                dimension_numbers=None, feature_group_count: int = 1,
                                batch_group_count: int = 1, precision=None,
                                preferred_element_type=None, out_sharding=None):
  """`lax.conv_general_dilated` as patches × kernel matrix for 2-D NHWC/HWIO.

  Args are those of `lax.conv_general_dilated`; `lhs [B, H, W, C]`,
  `rhs [KH, KW, C, O]` → `[B, Ho, Wo, O]`.  Other layouts, input dilation,
  feature groups, negative padding, a window larger than the padded input and
  mixed input dtypes fall back to `lax.conv_general_dilated`.
  """
  lhs_dilation = tuple(lhs_dilation or (1,) * (lhs.ndim - 2))
  rhs_dilation = tuple(int(d) for d in (rhs_dilation or (1,) * (lhs.ndim - 2)))
  strides = tuple(int(s) for s in window_strides)
  fast = (_is_nhwc(dimension_numbers, lhs.ndim) and feature_group_count == 1
          and batch_group_count == 1 and all(v == 1 for v in lhs_dilation)
          and out_sharding is None)
  pads = (_pairs(padding, lhs.shape[1:3], rhs.shape[:2], strides, rhs_dilation)
          if fast else None)
  if fast:
    kh, kw = rhs.shape[:2]
    h = lhs.shape[1] + sum(pads[0]) - rhs_dilation[0] * (kh - 1)
    w = lhs.shape[2] + sum(pads[1]) - rhs_dilation[1] * (kw - 1)
    fast = min(v for p in pads for v in p) >= 0 and h > 0 and w > 0 and lhs.dtype == rhs.dtype
  if not fast:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type,
        out_sharding=out_sharding)
  kh, kw, c, o = rhs.shape
  cols = _patches(lhs, (kh, kw), strides, pads, rhs_dilation)
  return jnp.matmul(cols, rhs.reshape(kh * kw * c, o), precision=precision,
                    preferred_element_type=preferred_element_type)
