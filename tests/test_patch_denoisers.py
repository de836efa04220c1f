"""LS / ELS machines and patch posterior composites against a brute-force NumPy oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from repro_jax.closed_form import denoisers
from repro_jax.closed_form import patch
from repro_jax.closed_form import patch_streaming
from repro_jax.diffusion import denoiser

M = 9                       # = 2·5 − 1: the whole 5×5 image from every pixel
SIGMAS = np.array([0.05, 0.3, 1.0, 4.0])


# The oracle: explicit loops over positions, offsets and training patches, float64.

def _pixel(img, i, j, boundary):
  """Pixel (i, j) of img [H, W, C] and whether it lies outside the image."""
  h, w = img.shape[:2]
  if boundary == "circular":
    return img[i % h, j % w], False
  if 0 <= i < h and 0 <= j < w:
    return img[i, j], False
  return np.zeros(img.shape[2]), True


def _window(img, i, j, r, boundary):
  """The (2r+1)² window around (i, j): values [(2r+1)², C] and the set of its
  offsets that fall outside the image."""
  vals, outside = [], set()
  for di in range(-r, r + 1):
    for dj in range(-r, r + 1):
      v, out = _pixel(img, i + di, j + dj, boundary)
      vals.append(v)
      if out:
        outside.add((di, dj))
  return np.array(vals), frozenset(outside)


def _softmax_mean(query, keys, values, sigma):
  d = np.array([np.sum((query - k) ** 2) for k in keys])
  logit = -d / (2 * sigma**2)
  wt = np.exp(logit - logit.max())
  return np.tensordot(wt / wt.sum(), np.array(values), axes=1)


def np_center(x, data, sigma, window, equivariant, boundary):
  """Kamb & Ganguli: LS (same position) or ELS (every position; with zero
  padding only positions whose window has the same outside offsets)."""
  b_, h, w, _ = x.shape
  out = np.zeros_like(x)
  for b in range(b_):
    r = (int(np.broadcast_to(window, (b_,))[b]) - 1) // 2
    for i in range(h):
      for j in range(w):
        q, q_out = _window(x[b], i, j, r, boundary)
        keys, vals = [], []
        for img in data:
          for i2, j2 in ([(i, j)] if not equivariant else
                         [(a, c) for a in range(h) for c in range(w)]):
            k, k_out = _window(img, i2, j2, r, boundary)
            if boundary == "zeros" and k_out != q_out:
              continue
            keys.append(k)
            vals.append(img[i2, j2])
        out[b, i, j] = _softmax_mean(q, keys, vals, sigma[b])
  return out


def np_composite(x, data, sigma, window, equivariant):
  """Niedoba et al.: posterior means of every crop inside the image (same crop
  of each training image, or every crop with `equivariant`), averaged per pixel."""
  b_, h, w, _ = x.shape
  out = np.zeros_like(x)
  for b in range(b_):
    s = int(np.broadcast_to(window, (b_,))[b])
    sr, sc = min(s, h), min(s, w)
    corners = [(a, c) for a in range(h - sr + 1) for c in range(w - sc + 1)]
    acc, cnt = np.zeros_like(x[b]), np.zeros_like(x[b])
    for a, c in corners:
      crop = lambda img, a=a, c=c: img[a:a + sr, c:c + sc]
      keys = [crop(img) if not equivariant else img[a2:a2 + sr, c2:c2 + sc]
              for img in data for (a2, c2) in ([(a, c)] if not equivariant else corners)]
      acc[a:a + sr, c:c + sc] += _softmax_mean(crop(x[b]), keys, keys, sigma[b])
      cnt[a:a + sr, c:c + sc] += 1
    out[b] = acc / cnt
  return out


@pytest.fixture(scope="module")
def problem():
  rng = np.random.default_rng(0)
  data = rng.normal(size=(3, 5, 5, 2))
  x = data[[0, 1, 2, 0]] + rng.normal(size=(4, 5, 5, 2)) * SIGMAS[:, None, None, None]
  return x, data


CENTER = [(False, "zeros"), (True, "zeros"), (False, "circular"), (True, "circular")]


@pytest.mark.parametrize("equivariant,boundary", CENTER)
def test_center_matches_oracle(problem, equivariant, boundary, x64):
  x, data = problem
  for window in (1, 3, 5):                       # one compilation: the window is traced
    got = patch.patch_denoiser(x, data, SIGMAS, window=window, max_window=M,
                               equivariant=equivariant, boundary=boundary)
    want = np_center(x, data, SIGMAS, window, equivariant, boundary)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("equivariant", [False, True])
def test_composite_matches_oracle(problem, equivariant, x64):
  x, data = problem
  for window in (2, 3, 4):                       # even crops as in PSPC-Square
    got = patch.patch_denoiser(x, data, SIGMAS, window=window, max_window=M,
                               mode="composite", equivariant=equivariant)
    want = np_composite(x, data, SIGMAS, window, equivariant)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_per_row_windows(problem, x64):
  """A window per row ([B]) takes the per-row masks; equal rows the shared ones."""
  x, data = problem
  for windows in (np.array([1, 3, 5, 3]), np.array([3, 3, 3, 3])):
    got = patch.patch_denoiser(x, data, SIGMAS, window=jnp.asarray(windows), max_window=M,
                               equivariant=True)
    np.testing.assert_allclose(got, np_center(x, data, SIGMAS, windows, True, "zeros"),
                               rtol=1e-10, atol=1e-12)
  windows = np.array([2, 5, 3, 4])
  got = patch.patch_denoiser(x, data, SIGMAS, window=jnp.asarray(windows), max_window=M,
                             mode="composite")
  np.testing.assert_allclose(got, np_composite(x, data, SIGMAS, windows, False),
                             rtol=1e-10, atol=1e-12)


def test_whole_image_window_is_the_empirical_denoiser(problem, x64):
  x, data = problem
  emp = np.asarray(denoisers.empirical_denoiser(x.reshape(4, -1), data.reshape(3, -1),
                                                SIGMAS)).reshape(x.shape)
  for kw in (dict(equivariant=False), dict(equivariant=True),        # ELS classes: positions
             dict(mode="composite", window=5), dict(mode="composite", window=8)):
    kw = dict(window=M) | kw
    got = patch.patch_denoiser(x, data, SIGMAS, max_window=M, **kw)
    np.testing.assert_allclose(got, emp, rtol=1e-10, atol=1e-12, err_msg=str(kw))


def test_large_sigma_limits(problem, x64):
  """σ → ∞: uniform weights over the admitted patches."""
  x, data = problem
  big = 1e7
  ls = patch.patch_denoiser(x, data, big, window=3, max_window=M)
  np.testing.assert_allclose(ls, np.broadcast_to(data.mean(0), x.shape), atol=1e-9)
  circ = patch.patch_denoiser(x, data, big, window=3, max_window=M, equivariant=True,
                              boundary="circular")
  np.testing.assert_allclose(circ, np.broadcast_to(data.mean((0, 1, 2)), x.shape), atol=1e-9)
  # Zero padding, 3×3 windows of a 5×5 image: rows {0}, {1, 2, 3}, {4} are the classes.
  rows = [[0], [1, 2, 3], [1, 2, 3], [1, 2, 3], [4]]
  want = np.array([[data[:, rows[i]][:, :, rows[j]].mean((0, 1, 2)) for j in range(5)]
                   for i in range(5)])
  els = patch.patch_denoiser(x, data, big, window=3, max_window=M, equivariant=True)
  np.testing.assert_allclose(els, np.broadcast_to(want, x.shape), atol=1e-9)


@pytest.mark.parametrize("equivariant,boundary", CENTER)
def test_small_sigma_returns_the_training_image(problem, equivariant, boundary, x64):
  _, data = problem
  got = patch.patch_denoiser(data, data, 1e-4, window=3, max_window=M,
                             equivariant=equivariant, boundary=boundary)
  np.testing.assert_allclose(got, data, atol=1e-12)


def test_schedule_switches_window_in_one_jit(problem, x64):
  x, data = problem
  sched = patch.WindowSchedule((0.5, 2.0), (1, 3, 5))
  np.testing.assert_array_equal(sched(jnp.array([0.1, 0.5, 1.0, 2.0, 9.0])), [1, 3, 3, 5, 5])
  den = denoiser.make("els", data=data, windows=(1, 3, 5), sigma_edges=(0.5, 2.0))
  assert den.name == "els" and den.info["max_window"] == 5
  traces = []

  @jax.jit
  def f(x, sigma):
    traces.append(1)
    return den(x, sigma)

  for sigma, window in ((0.1, 1), (1.0, 3), (4.0, 5)):
    s = np.full(4, sigma)
    np.testing.assert_allclose(f(x, s), np_center(x, data, s, window, True, "zeros"),
                               rtol=1e-10, atol=1e-12)
  assert len(traces) == 1
  p = patch.WindowSchedule.from_points((0.3, 1.0, 3.0), (3, 7, 15))
  assert p.sigma_edges == pytest.approx((np.sqrt(0.3), np.sqrt(3.0))) and p.max_window == 15


def test_chunked_equals_unchunked(problem, x64):
  x, data = problem
  for kw in (dict(equivariant=True), dict(mode="composite", equivariant=False)):
    ref = patch.patch_denoiser(x, data, SIGMAS, window=3, max_window=5, chunk_size=None, **kw)
    got = patch.patch_denoiser(x, data, SIGMAS, window=3, max_window=5, chunk_size=2, **kw)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)   # 3 = 2 + a ragged tail


def test_sharded_equals_single_device(problem, mesh8, x64):
  x, data = problem                              # N = 3 images on 8 devices: 5 padding
  for kw in (dict(equivariant=True), dict(mode="composite", equivariant=True)):
    ref = patch.patch_denoiser(x, data, SIGMAS, window=3, max_window=5, **kw)
    got = patch.patch_denoiser(x, data, SIGMAS, window=3, max_window=5, mesh=mesh8,
                               chunk_size=1, **kw)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-13)


def test_query_tiles(problem, monkeypatch, x64):
  """Queries split into tiles of 2 images (the last one padded) give the oracle's values."""
  x, data = problem
  monkeypatch.setattr(patch_streaming, "QUERY_ROWS", 50)     # 2 images of 25 positions
  x3, s3 = x[:3], SIGMAS[:3]                                 # new shapes: a fresh trace
  per_row = np.array([1, 3, 5])
  for kw, want in (
      (dict(window=3, equivariant=True), np_center(x3, data, s3, 3, True, "zeros")),
      (dict(window=jnp.asarray(per_row), equivariant=True),
       np_center(x3, data, s3, per_row, True, "zeros")),
      (dict(window=3), np_center(x3, data, s3, 3, False, "zeros")),
      (dict(window=4, mode="composite", equivariant=True), np_composite(x3, data, s3, 4, True))):
    got = patch.patch_denoiser(x3, data, s3, max_window=5, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_float32_and_heads(problem):
  x, data = problem
  x32, d32 = x.astype(np.float32), data.astype(np.float32)
  got = patch.patch_denoiser(x32, d32, SIGMAS, window=3, max_window=5, equivariant=True)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, np_center(x, data, SIGMAS, 3, True, "zeros"),
                             rtol=1e-4, atol=1e-5)
  eps = patch.patch_denoiser(x32, d32, SIGMAS, window=3, max_window=5, equivariant=True,
                             head="eps")
  np.testing.assert_allclose(eps, (x32 - got) / SIGMAS[:, None, None, None].astype(np.float32),
                             rtol=1e-4, atol=1e-4)


def test_window_mask():
  m = np.asarray(patch.window_mask(3, 5))
  np.testing.assert_array_equal(m, np.pad(np.ones((3, 3)), 1))
  np.testing.assert_array_equal(patch.window_mask(2, 5)[2:4, 2:4], np.ones((2, 2)))
  assert float(patch.window_mask(2, 5).sum()) == 4
  assert patch.window_mask(jnp.array([1, 5]), 5).shape == (2, 5, 5)


def test_bad_input_raises_before_work(problem):
  x, data = problem
  call = lambda **kw: patch.patch_denoiser(**(dict(
      x=x, data=data, sigma=0.5, window=3, max_window=5) | kw))
  for kw, msg in ((dict(window=4), "odd"), (dict(window=7), r"\[1, 5\]"),
                  (dict(window=0), r"\[1, 5\]"), (dict(max_window=6), "max_window"),
                  (dict(x=x[0]), r"\[B, H, W, C\]"), (dict(data=data[:, :4]), "share"),
                  (dict(data=data[:0]), "empty"), (dict(mode="tiles"), "mode"),
                  (dict(boundary="valid"), "boundary"),
                  (dict(mode="composite", boundary="zeros"), "boundary"),
                  (dict(window=np.array([3, 3])), r"\[B\]"), (dict(sigma=-1.0), "sigma"),
                  (dict(window=patch.WindowSchedule((1.0,), (3, 9))), r"\[1, 5\]"),
                  (dict(chunk_size=0), "chunk_size"), (dict(head="noise"), "head")):
    with pytest.raises(ValueError, match=msg):
      call(**kw)
  with pytest.raises(ValueError, match="one window more"):
    patch.WindowSchedule((1.0, 2.0), (3, 5))
  with pytest.raises(ValueError, match="increasing"):
    patch.WindowSchedule((2.0, 1.0), (3, 5, 7))
  with pytest.raises(ValueError, match="odd"):
    denoiser.make("ls", data=data, windows=(3, 4), sigma_edges=(1.0,))


def test_registry_builds_each_by_name(problem, x64):
  x, data = problem
  sched = patch.WindowSchedule((1.0,), (3, 5))
  s = np.array([0.5, 0.5, 2.0, 2.0])
  for name, mode, eq, kw in (("ls", "center", False, {}),
                             ("els", "center", True, dict(boundary="circular")),
                             ("patch_composite", "composite", True, {})):
    opts = dict(equivariant=True) if mode == "composite" else {}
    den = denoiser.make(name, data=data, windows=(3, 5), sigma_edges=(1.0,), **kw, **opts)
    assert den.name == name and den.data_shape == (5, 5, 2)
    want = patch.patch_denoiser(x, data, s, window=sched, max_window=5, mode=mode,
                                equivariant=eq, **kw)
    np.testing.assert_allclose(den(x, s), want, rtol=1e-12, atol=1e-13)
  with pytest.raises(ValueError, match="unknown field"):
    denoiser.make("ls", data=data, windows=(3,), equivariant=True)
