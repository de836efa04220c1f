"""Patch posterior denoisers: local (LS), equivariant local (ELS) and patch composites.

Images `x [B, H, W, C]`, training set `data [N, H, W, C]`, VE coordinates
`x_t = s (x0 + σ ε)` (`x = x_t / s`), σ and s scalars or `[B]`; the x0 head
by default (`head=`, as `denoisers.empirical_denoiser`).  `P = H·W`
positions, windows of side `w` inside a static maximal window `M = max_window`
(odd), `K = M·M·C` features per patch.

For an output position p the window `Ω_p` of x is compared with windows of
the training images; with `‖v‖²_Ω = Σ_{o ∈ Ω} v_o²`,

    w_{n,q}(p) = softmax_{(n,q) ∈ S(p)} ( −‖x[Ω_p] − y_n[Ω_q]‖²_Ω / (2σ²) ).

- `mode="center"` (Kamb & Ganguli, ICML 2025, eqs. 7–10 and 41): the output
  pixel is `D(x)[p] = Σ w_{n,q}(p) y_n[q]`, all C channels.  LS
  (`equivariant=False`): `S(p) = {(n, p)}`, the same position in every
  image.  ELS (`equivariant=True`): `S(p)` = patches at every position q.
- `mode="composite"` (Niedoba et al., ICML 2025, eqs. 9–11, PSPC-Square): the
  posterior mean of each whole window, `Z_p = Σ w_{n,q}(p) y_n[Ω_q]`, and each
  output pixel is the average of `Z_p` over the windows that cover it.  The
  paper's patch posterior compares crops at the same position (LS pairing,
  the default); `equivariant=True` pairs them with crops anywhere.

Boundary rules (`boundary=`):

- `"zeros"` (centre mode, default): pixels outside the image are 0.  For LS
  this only drops the outside offsets from the distance.  For ELS it is the
  *boundary-broken* ELS machine of Kamb & Ganguli (§3.4, App. B.2, eq. 41,
  Fig. 9): a window with zero padding can only be a noisy copy of a training
  window with the same padding, so `S(p)` holds the positions q whose window
  sticks out of the image by the same amounts, i.e. whose row satisfies
  `(min(i, r), min(H−1−i, r)) = (min(i', r), min(H−1−i', r))`, `r = (w−1)/2`,
  and likewise for columns: interior windows meet interior windows, edge
  windows the windows at the same distance from that edge, corner windows
  only their own position.  As σ → ∞ the ELS output at p is the mean over
  all n of the centre pixels `y_n[q]` of that class (LS: the mean of
  `y_n[p]`).
- `"circular"` (centre mode): periodic images, the fully equivariant machine
  of Kamb & Ganguli App. B.1 (for circularly padded networks); as σ → ∞ the
  ELS output is the mean of all pixels of all images.
- `"valid"` (composite mode, the only choice): the PSPC patch set `C_s` of
  Niedoba et al. §4 holds the `s × s` crops that lie inside the image (no
  padding); every pixel is covered by at least one.  A window larger than
  the image along an axis is cut to the image along that axis (a window
  `≥ max(H, W)` is the whole image: the empirical denoiser), which the paper,
  on square images with `s ≤ h`, leaves open.

Window per noise level: neither paper gives an a-priori rule.  Kamb & Ganguli
(§5.1, App. C.2) calibrate the side P of the P×P window at each time to the
trained network (the scale whose ELS output best matches the network by
cosine similarity, median over samples); it shrinks monotonically from large
at high noise to 3×3 for the last steps.  Niedoba et al. (§5.1, App. B, Figs.
10–11) tune `s(t)` per data set (EDM `t = σ`) by the error of patch posterior
means; on 32×32 data `s = 3` for σ ≤ 0.3, 7 at σ = 1, 15 at σ = 3 and the
whole image (32) for σ ≥ 10.  So the window schedule is data:
`WindowSchedule(sigma_edges, windows)`, e.g.
`WindowSchedule.from_points((0.3, 1, 3, 10), (3, 7, 15, 32))`.  In centre mode
windows are odd (a window has a centre pixel); composite crops may be even
(offsets `−⌊(w−1)/2⌋ … ⌊w/2⌋` from their anchor).

The window is a traced per-offset mask over the static `M × M` window
(`window_mask`), so one compilation serves every σ of a sampler.  A window of
side `2·max(H, W) − 1` sees the whole image from every pixel: with it LS (and
the boundary-broken ELS, whose classes are then single positions) is the
empirical denoiser.  Cost per call: about `2·B·P·N·K` flops for LS,
`2·B·P·N·P·K` for ELS (twice that for the composite's whole-patch values),
streamed over training images (`patch_streaming`).

Checks (`repro_jax.validation`): shapes, names, `max_window` and concrete
windows raise `ValueError` before any work; a traced window is checked only
inside `validation.traced_value_checks()`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from repro_jax import validation
from repro_jax.closed_form import patch_streaming
from repro_jax.diffusion import heads as heads_lib

MODES = ("center", "composite")
BOUNDARIES = {"center": ("zeros", "circular"), "composite": ("valid",)}


# Windows ---------------------------------------------------------------------

def _axis_mask(w, max_window):
  """`[..., M]`: offsets `−⌊(w−1)/2⌋ … ⌊w/2⌋` of `w [...]` within `−R … R`."""
  offs = jnp.arange(max_window) - (max_window - 1) // 2
  w = jnp.asarray(w)[..., None]
  return (offs >= -((w - 1) // 2)) & (offs <= w // 2)


def window_mask(window_size, max_window: int):
  """The window of side `window_size` as a 0/1 mask over the `M × M` offsets.

  `window_size`: an int or int array (traceable), `[...]`; `max_window` M:
  static, odd.  Returns float32 `[..., M, M]`, centred for odd sides (even
  sides, used by composites, reach one offset further down and right).
  """
  _check_max_window(max_window)
  rows = _axis_mask(window_size, max_window)
  return (rows[..., :, None] & rows[..., None, :]).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class WindowSchedule:
  """Window side as a step function of σ: traceable, hashable (a static argument).

  `windows[k]` is used for `sigma_edges[k−1] ≤ σ < sigma_edges[k]`
  (`windows[0]` below the first edge, `windows[-1]` from the last one on).

  Attributes:
    sigma_edges: increasing σ > 0, `(E,)`.
    windows: window sides ≥ 1, `(E + 1,)`.
  """
  sigma_edges: tuple[float, ...]
  windows: tuple[int, ...]

  def __post_init__(self):
    edges = tuple(float(e) for e in self.sigma_edges)
    wins = tuple(self.windows)
    for w in wins:
      validation.check_int(w, "windows[k]", minimum=1)
    if len(wins) != len(edges) + 1:
      raise ValueError(f"a WindowSchedule needs one window more than edges; got "
                       f"{len(wins)} windows and {len(edges)} edges.")
    if any(not np.isfinite(e) or e <= 0 for e in edges) or any(
        b <= a for a, b in zip(edges, edges[1:])):
      raise ValueError(f"`sigma_edges` must be finite, > 0 and increasing; got {edges}.")
    object.__setattr__(self, "sigma_edges", edges)
    object.__setattr__(self, "windows", tuple(int(w) for w in wins))

  @classmethod
  def constant(cls, window: int) -> "WindowSchedule":
    return cls((), (window,))

  @classmethod
  def from_points(cls, sigmas, windows) -> "WindowSchedule":
    """Windows calibrated at increasing σ points; edges at geometric midpoints."""
    s = [float(v) for v in sigmas]
    if len(s) != len(windows) or not s:
      raise ValueError("from_points() needs one window per σ point.")
    return cls(tuple(float(np.sqrt(a * b)) for a, b in zip(s, s[1:])), tuple(windows))

  @property
  def max_window(self) -> int:
    return max(self.windows)

  def __call__(self, sigma):
    """Window sides for `sigma` (any shape), int32."""
    sigma = jnp.asarray(sigma)
    k = jnp.searchsorted(jnp.asarray(self.sigma_edges, sigma.dtype), sigma, side="right")
    return jnp.asarray(self.windows, jnp.int32)[k]


# Patches ---------------------------------------------------------------------

def _extractor(h: int, w: int, max_window: int, boundary: str):
  """`extract(images [n, H, W, C]) -> [n, P, K]`, features ordered (row offset,
  column offset, C); `positions_first=True` gives `[P, n, K]` (the local pairing)."""
  r = (max_window - 1) // 2
  offs = np.arange(max_window) - r
  ri = np.arange(h)[:, None] + offs[None]
  rj = np.arange(w)[:, None] + offs[None]
  if boundary == "circular":
    ri, rj, pad = ri % h, rj % w, 0
  else:
    ri, rj, pad = ri + r, rj + r, r
  ri, rj = ri[:, None, :, None], rj[None, :, None, :]                    # [H, W, M, M]

  def extract(images, positions_first: bool = False):
    n = images.shape[0]
    if positions_first:
      images = jnp.moveaxis(images, 0, 2)                                 # [H, W, n, C]
      if pad:
        images = jnp.pad(images, ((pad, pad), (pad, pad), (0, 0), (0, 0)))
      p = jnp.moveaxis(images[ri, rj], 4, 2)                              # [H, W, n, M, M, C]
      return p.reshape(h * w, n, -1)
    if pad:
      images = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return images[:, ri, rj, :].reshape(n, h * w, -1)                     # [n, H, W, M, M, C]

  return extract


def _class_codes(r, h: int, w: int):
  """Zero-padding class of every position for window radius `r [B]`, `[B, P]` int."""
  r = r[:, None]
  i, j = jnp.arange(h)[None], jnp.arange(w)[None]
  row = jnp.minimum(i, r) * (h + 1) + jnp.minimum(h - 1 - i, r)           # [B, H]
  col = jnp.minimum(j, r) * (w + 1) + jnp.minimum(w - 1 - j, r)           # [B, W]
  return (row[:, :, None] * (w + 1) ** 2 + col[:, None, :]).reshape(r.shape[0], h * w)


def _anchors(win, h: int, w: int):
  """Composite: per-axis window sides cut to the image, and which anchors hold a
  crop inside the image, `[B, P]` bool."""
  wr, wc = jnp.minimum(win, h)[:, None], jnp.minimum(win, w)[:, None]
  i, j = jnp.arange(h)[None], jnp.arange(w)[None]
  ok_r = (i >= (wr - 1) // 2) & (i + wr // 2 <= h - 1)
  ok_c = (j >= (wc - 1) // 2) & (j + wc // 2 <= w - 1)
  return wr[:, 0], wc[:, 0], (ok_r[:, :, None] & ok_c[:, None, :]).reshape(-1, h * w)


# The denoiser ----------------------------------------------------------------

def _means(xq, images, coef, win, cfg, extract, shared: bool):
  """x0 `[B, H, W, C]` from the query patches `xq [B, P, K]` and windows `win [B or 1]`
  (`shared`: one window, `win [1]`, for every row)."""
  b, npos, k = xq.shape
  h, w, c = images.shape[1:]
  m_win = cfg["max_window"]
  anchors_ok = None
  if cfg["mode"] == "center":
    rows = cols = _axis_mask(win, m_win)
  else:
    wr, wc, anchors_ok = _anchors(win, h, w)
    rows, cols = _axis_mask(wr, m_win), _axis_mask(wc, m_win)
  mask = (rows[:, :, None, None] & cols[:, None, :, None]) & jnp.ones((1, 1, 1, c), bool)
  mask = mask.reshape(win.shape[0], k).astype(xq.dtype)                   # [B or 1, K]
  codes = None
  if cfg["equivariant"] and cfg["boundary"] == "zeros":
    code = _class_codes((win - 1) // 2, h, w)
    codes = (jnp.broadcast_to(code, (b, npos)), code)
  elif cfg["equivariant"] and cfg["mode"] == "composite":
    codes = (jnp.zeros((b, npos), jnp.int32), jnp.where(anchors_ok, 0, -1))
  if shared:
    feat = xq * mask[0]
    sq = jnp.sum(jnp.square(feat), -1)
    key_mask = mask[0]
  else:
    feat = jnp.concatenate([xq * mask[:, None], jnp.broadcast_to(
        -0.5 * mask[:, None], xq.shape)], -1)
    sq = jnp.sum(jnp.square(xq) * mask[:, None], -1)
    key_mask = None
  q = patch_streaming.Queries(feat, sq, coef, key_mask, codes)
  kw = dict(center_values=cfg["mode"] == "center", equivariant=cfg["equivariant"],
            chunk=cfg["chunk"], precision=cfg["precision"])
  if cfg["mesh"] is None:
    st = patch_streaming.patch_stats(q, images, extract, **kw)
  else:
    st = patch_streaming.patch_stats_sharded(q, images, extract, cfg["mesh"], cfg["axis"], **kw)
  z = (st.weighted / st.total[:, None]).reshape(b, npos, -1)
  if cfg["mode"] == "center":
    return z.reshape((b, h, w, c))
  weight = anchors_ok[:, :, None].astype(z.dtype) * mask[:, None, :]      # [B or 1, P, K]
  weight = jnp.broadcast_to(weight, z.shape)
  fold = jax.linear_transpose(extract, jax.ShapeDtypeStruct((b, h, w, c), z.dtype))
  (num,) = fold(jnp.where(weight > 0, z, 0.0) * weight)
  (den,) = fold(weight)
  return num / den


@functools.partial(jax.jit, static_argnames=(
    "max_window", "mode", "equivariant", "boundary", "chunk_size", "precision",
    "head", "mesh", "axis"))
def _patch(x, data, sigma, scale, window, *, max_window, mode, equivariant, boundary,
           chunk_size, precision, head, mesh, axis):
  b, h, w, c = x.shape
  sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype).reshape(-1), (b,))
  scale = jnp.broadcast_to(jnp.asarray(scale, x.dtype).reshape(-1), (b,))
  x_ve = x / scale[:, None, None, None]
  coef = 0.5 / jnp.square(sigma)
  extract = _extractor(h, w, max_window, boundary)
  cfg = dict(max_window=max_window, mode=mode, equivariant=equivariant, boundary=boundary,
             chunk=chunk_size, precision=precision, mesh=mesh, axis=axis)
  xq = extract(x_ve)
  win = jnp.asarray(window, jnp.int32)
  run = functools.partial(_means, xq, data, coef, cfg=cfg, extract=extract)
  if win.ndim == 0 or b == 1:
    x0 = run(win.reshape(-1)[:1], shared=True)
  else:   # one window for all rows (a sampler's step): the cheaper shared masks
    x0 = lax.cond(jnp.all(win == win[0]), lambda v: run(v[:1], shared=True),
                  lambda v: run(v, shared=False), win)
  return heads_lib.from_x0(head, x0, x, scale, sigma)


# Checks and the public function ----------------------------------------------

def _check_max_window(max_window):
  validation.check_int(max_window, "max_window", minimum=1)
  if max_window % 2 == 0:
    raise ValueError(f"`max_window` must be odd (a centred M × M window); got {max_window}.")


def check_window(window, max_window: int, mode: str, name: str = "window"):
  """Window sides (int, int array or traced): `1 ≤ w ≤ max_window`, odd in centre mode."""
  odd = mode == "center"
  rule = f"integers in [1, {max_window}]" + (", odd (centre mode)" if odd else "")
  if isinstance(window, WindowSchedule):
    for w in window.windows:
      check_window(w, max_window, mode, f"{name}.windows[k]")
    return
  if validation.is_traced(window):
    if not jnp.issubdtype(jnp.result_type(window), jnp.integer):
      raise ValueError(f"`{name}` must be {rule}; got dtype {jnp.result_type(window)}.")
    validation.require(window, lambda v: jnp.all((v >= 1) & (v <= max_window) & (
        (v % 2 == 1) | (not odd))), f"`{name}` must be {rule}.")
    return
  arr = np.asarray(window)
  if arr.dtype.kind not in "iu" or np.any(arr < 1) or np.any(arr > max_window) or (
      odd and np.any(arr % 2 == 0)):
    raise ValueError(f"`{name}` must be {rule}; got {window!r}.")


def check_data(data):
  """Training images `data [N, H, W, C]`: N ≥ 1, finite."""
  validation.check_ndim(data, 4, "data", "NHWC")
  validation.check_nonempty(data, "data")
  validation.check_finite(data, "data")


def check_images(x, data):
  """Queries `x [B, H, W, C]` (finite) against training images `data` (`check_data`)."""
  validation.check_ndim(x, 4, "x", "BHWC")
  check_data(data)
  if np.shape(x)[1:] != np.shape(data)[1:]:
    raise ValueError(f"`x` and `data` must share [H, W, C]; got {np.shape(x)} and "
                     f"{np.shape(data)}.")
  validation.check_finite(x, "x")


def check_options(mode, equivariant, boundary, max_window):
  """The static options; returns the boundary rule (its default for the mode)."""
  if mode not in MODES:
    raise validation.unknown_name("mode", mode, MODES)
  if not isinstance(equivariant, (bool, np.bool_)):
    raise ValueError(f"`equivariant` must be True or False; got {equivariant!r}.")
  boundary = BOUNDARIES[mode][0] if boundary is None else boundary
  if boundary not in BOUNDARIES[mode]:
    raise ValueError(f"boundary {boundary!r} is not defined for mode {mode!r}; choose "
                     f"one of: {', '.join(BOUNDARIES[mode])}.")
  _check_max_window(max_window)
  return boundary


def patch_denoiser(x, data, sigma, *, window, max_window: int, mode: str = "center",
                   equivariant: bool = False, boundary: str | None = None, scale=1.0,
                   head: str = "x0", chunk_size: int | None = None, precision="highest",
                   mesh=None, axis: str = "data"):
  """LS / ELS machines and patch posterior composites (module docstring).

  Args:
    x: noisy images `x_t = s (x0 + σ ε)`, `[B, H, W, C]`.
    data: training images `[N, H, W, C]` (split over `mesh` if given).
    sigma: σ > 0, scalar or `[B]`.
    window: window side: an int, an int array (scalar or `[B]`, may be
      traced), or a `WindowSchedule` evaluated at `sigma`.
    max_window: static odd side M of the maximal window (the cost grows as M²).
    mode: `"center"` (LS/ELS machines) or `"composite"` (patch composite).
    equivariant: compare with training patches at every position.
    boundary: `"zeros"` or `"circular"` (centre mode; default `"zeros"`),
      `"valid"` (composite mode).
    scale: kernel scale s > 0, scalar or `[B]`.
    head: `"x0"`, `"eps"`, `"score"` or `"v"`.
    chunk_size: training images per block of the running log-sum-exp; None
      picks about `patch_streaming.DEFAULT_BLOCK_LOGITS` logits per block.
    precision: matmul precision.
    mesh, axis: optional mesh; the training images are split over `axis`.

  Returns:
    `[B, H, W, C]`, the requested head, in the promoted dtype of x and data.
  """
  x, data = jnp.asarray(x), jnp.asarray(data)
  out, dt = validation.float_dtypes(x=x, data=data)
  boundary = check_options(mode, equivariant, boundary, max_window)
  check_images(x, data)
  b = np.shape(x)[0]
  for name, p in (("sigma", sigma), ("scale", scale)):
    validation.check_batch_param(p, b, name)
    validation.check_positive(p, name)
  check_window(window, max_window, mode)
  if isinstance(window, WindowSchedule):
    window = window(jnp.asarray(sigma, dt))
  elif np.ndim(window) not in (0, 1) or np.ndim(window) == 1 and np.shape(window) != (b,):
    raise ValueError(f"`window` must be a scalar or have shape [B] = [{b}]; got "
                     f"{np.shape(window)}.")
  validation.check_chunk(chunk_size)
  if head not in heads_lib.HEADS:
    raise validation.unknown_name("head", head, heads_lib.HEADS)
  x, data, sigma, scale = (jnp.asarray(v, dt) for v in (x, data, sigma, scale))
  return _patch(x, data, sigma, scale, window, max_window=max_window, mode=mode,
                equivariant=bool(equivariant), boundary=boundary, chunk_size=chunk_size,
                precision=precision, head=head, mesh=mesh, axis=axis).astype(out)
