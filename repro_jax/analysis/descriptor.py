"""A learned copy-detection descriptor, trained here on the images themselves.

The paper compares images with SSCD (Pizzi et al., 2022), a network trained so
that an image and an edited copy of it have nearly the same unit-norm
features while distinct images do not.  Its weights cannot be downloaded
here, so this module trains a small descriptor in the same spirit on the
training images (docs/theory.md §5.8):

- `EmbeddingNet`: a few circular-padded convolutions (stride 2 down to a 2×2
  map) and a linear head, `[B, H, W, C] -> [B, dim]`;
- training (`train`): two augmented views of every image of a batch (pixel
  noise and circular shifts as `metrics.perturb` makes copies, brightness and
  contrast jitter, small crops), an InfoNCE loss in which the other view is
  the positive and the other `2B − 2` views are the negatives, plus SSCD's
  KoLeo entropy term that spreads the features; Adam, a pure jitted step,
  `lax.scan` over chunks of steps, deterministic given the key;
- a cache (`load_or_train`): parameters saved atomically under
  `cache_dir/<hash of settings and data>/` and restored instead of retrained;
- `LearnedDescriptor`: the trained network as a `metrics.Descriptor` (rows
  L2-normalized, any leading batch dimensions), so
  `metrics.get_similarity("learned", threshold, fn=...)` and
  `reproducibility.calibrated_similarity(key, images, "learned", fn=...)`
  use it wherever the pixel NCC is used; `learned_similarity` does both steps
  (train or restore, then calibrate the threshold exactly as for NCC).

Shapes: `B` batch, `N` training images, `H W C` image, `F` = `dim` features.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import pathlib
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax import lax

from repro_jax import io
from repro_jax import settings as settings_lib
from repro_jax import validation
from repro_jax.analysis import metrics

NAME = "learned"
CACHE_DIR = "workdirs/descriptors"   # where the studies keep trained descriptors
PARAMS_FILE = "params.npz"
META_KEY = "__meta__"


@dataclasses.dataclass(frozen=True, kw_only=True)
class DescriptorSettings:
  """How the descriptor is built and trained (the cache key, with the data).

  Augmentation strengths are on the `[−1, 1]` pixel scale: each view gets
  Gaussian noise of std drawn uniformly in `[0, noise]`, a circular shift of
  up to `max_shift` pixels, a brightness offset in `[−brightness, brightness]`,
  a contrast factor in `[1 − contrast, 1 + contrast]` and a crop of up to a
  fraction `crop` of each side, resized back.
  """
  width: int = 32               # channels of the first convolution (2·width after)
  dim: int = 64                 # F, feature dimension
  steps: int = 600
  batch: int = 128              # images per step (2·batch views); at most N is used
  lr: float = 3e-3              # Adam, cosine-decayed to 0 after a linear warm-up
  warmup: int = 50
  temperature: float = 0.1      # InfoNCE softmax temperature
  entropy_weight: float = 0.1   # weight of the KoLeo term (0: InfoNCE only)
  noise: float = 0.2
  max_shift: int = 1
  brightness: float = 0.1
  contrast: float = 0.2
  crop: float = 0.1
  chunk: int = 200              # steps per jitted `lax.scan` call
  seed: int = 0

  def __post_init__(self):
    for name in ("width", "dim", "steps", "batch", "chunk"):
      validation.check_int(getattr(self, name), f"descriptor.{name}", minimum=1)
    if self.batch < 2:
      raise ValueError(f"`descriptor.batch` must be >= 2 (InfoNCE needs negatives); "
                       f"got {self.batch}.")
    validation.check_int(self.warmup, "descriptor.warmup", minimum=0)
    validation.check_int(self.max_shift, "descriptor.max_shift", minimum=0)
    validation.check_int(self.seed, "descriptor.seed", minimum=0)
    validation.check_number(self.lr, "descriptor.lr", lo=0.0, lo_open=True)
    validation.check_number(self.temperature, "descriptor.temperature", lo=0.0, lo_open=True)
    validation.check_number(self.entropy_weight, "descriptor.entropy_weight", lo=0.0)
    for name in ("noise", "brightness"):
      validation.check_number(getattr(self, name), f"descriptor.{name}", lo=0.0, hi=2.0)
    validation.check_number(self.contrast, "descriptor.contrast", lo=0.0, hi=1.0, hi_open=True)
    validation.check_number(self.crop, "descriptor.crop", lo=0.0, hi=0.5, hi_open=True)


def check_images(images, settings: DescriptorSettings, name: str = "images") -> np.ndarray:
  """`images` as float32 `[N, H, W, C]`, checked against `settings` (before any work)."""
  x = np.asarray(images)
  if x.ndim != 4:
    raise ValueError(f"`{name}` must have shape [N, H, W, C]; got shape {x.shape}.")
  if x.shape[0] < 2:
    raise ValueError(f"`{name}` needs at least 2 images to train a descriptor; got "
                     f"shape {x.shape}.")
  validation.float_dtypes(**{name: x})
  x = x.astype(np.float32)
  validation.check_finite(x, name)
  h, w = x.shape[1:3]
  if 2 * settings.max_shift >= min(h, w):
    raise ValueError(f"`descriptor.max_shift` = {settings.max_shift} is too large for "
                     f"{h}×{w} images (must be < {min(h, w) / 2}).")
  return x


# The network -------------------------------------------------------------------

def circular_patches(x):
  """3×3 neighbourhoods with circular padding, `[B, H, W, C] -> [B, H, W, 9C]`."""
  return jnp.concatenate([jnp.roll(x, (di, dj), axis=(1, 2))
                          for di in (1, 0, -1) for dj in (1, 0, -1)], axis=-1)


class CircularConv(nnx.Module):
  """A 3×3 convolution with circular padding (the copies' shifts are circular),
  written as patches times a matrix: inside `lax.scan` XLA:CPU runs the
  gradients of its convolutions 20–40× slower than alone (README, Benchmarks),
  while the gradients of this form are rolls and matmuls."""

  def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
    self.stride = stride
    self.linear = nnx.Linear(9 * cin, cout, rngs=rngs)

  def __call__(self, x):
    return self.linear(circular_patches(x)[:, ::self.stride, ::self.stride])


class EmbeddingNet(nnx.Module):
  """3×3 convolutions halving the resolution until it is at most 2×2, then a
  linear head: `[B, H, W, C] -> [B, dim]` (not normalized; `LearnedDescriptor` normalizes)."""

  def __init__(self, data_shape, width: int, dim: int, *, rngs: nnx.Rngs):
    h, w, c = data_shape
    self.stem = CircularConv(c, width, 1, rngs=rngs)
    downs, ch = [], width
    while max(h, w) > 2:
      downs.append(CircularConv(ch, 2 * width, 2, rngs=rngs))
      ch, h, w = 2 * width, -(-h // 2), -(-w // 2)
    self.downs = nnx.List(downs)
    self.head = nnx.Linear(h * w * ch, dim, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.stem(x))
    for conv in self.downs:
      x = nnx.relu(conv(x))
    return self.head(x.reshape(x.shape[0], -1))


@functools.lru_cache(maxsize=None)
def _graph(data_shape: tuple, width: int, dim: int):
  """`(graphdef, abstract params)` of the network for `data_shape` (no compute)."""
  model = nnx.eval_shape(lambda: EmbeddingNet(data_shape, width, dim, rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, params


def init_params(key, data_shape, settings: DescriptorSettings):
  """Fresh parameters (an `nnx.State`) of the network for images of `data_shape`."""
  model = EmbeddingNet(tuple(data_shape), settings.width, settings.dim, rngs=nnx.Rngs(key))
  return nnx.split(model, nnx.Param)[1]


def _apply(graphdef, params, x):
  """Unit-norm features `[B, F]` of `x [B, H, W, C]`."""
  f = nnx.merge(graphdef, params)(x.astype(jnp.float32))
  return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), 1e-8)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _embed(graphdef, params, x, chunk: int):
  """`_apply` over `x [B, H, W, C]` in blocks of `chunk` images (bounded memory)."""
  if x.shape[0] <= chunk:
    return _apply(graphdef, params, x)
  blocks = x.reshape((-1, chunk) + x.shape[1:])
  return lax.map(lambda xb: _apply(graphdef, params, xb), blocks).reshape(x.shape[0], -1)


@dataclasses.dataclass(frozen=True, eq=False)
class LearnedDescriptor:
  """A trained network as a `metrics.Descriptor`: `x [..., H, W, C] -> [..., F]`.

  Any number of leading batch dimensions (`[B, ...]`, `[M, B, ...]`); works
  eagerly, under `jit` / `vmap` and on sharded arrays.  Compared by identity.
  """
  data_shape: tuple
  settings: DescriptorSettings
  params: Any                       # nnx.State of float32 arrays
  chunk: int = 1024                 # images per block when embedding many

  def __call__(self, x):
    x = jnp.asarray(x)
    if x.ndim < 4 or tuple(x.shape[-3:]) != self.data_shape:
      raise ValueError(f"the learned descriptor was trained on images of shape "
                       f"{self.data_shape}; got an array of shape {tuple(x.shape)} "
                       f"(expected [..., {', '.join(map(str, self.data_shape))}]).")
    graphdef, _ = _graph(self.data_shape, self.settings.width, self.settings.dim)
    lead = x.shape[:-3]
    n = math.prod(lead)
    x = x.reshape((n,) + self.data_shape)
    # Padded to a power of two (a multiple of `chunk` above it): few shapes to compile.
    if n <= self.chunk:
      size = 1 << max(n - 1, 0).bit_length()
    else:
      size = -(-n // self.chunk) * self.chunk
    x = jnp.pad(x, ((0, size - n),) + ((0, 0),) * 3)
    f = _embed(graphdef, self.params, x, self.chunk)[:n]
    return f.reshape(lead + f.shape[-1:])


# Augmentations and the loss ----------------------------------------------------

def _crop(key, img, frac: float):
  """A random crop of up to `frac` of each side of `img [H, W, C]`, resized back."""
  h, w = img.shape[:2]
  k1, k2 = jax.random.split(key)
  scale = 1.0 / (1.0 - frac * jax.random.uniform(k1))             # zoom in by 1..1/(1−frac)
  room = jnp.array([h, w], jnp.float32) * (scale - 1.0)
  shift = -room * jax.random.uniform(k2, (2,))
  return jax.image.scale_and_translate(img, img.shape, (0, 1), jnp.stack([scale, scale]),
                                       shift, method="linear")


def augment(key, x, s: DescriptorSettings):
  """One random view of each image of `x [B, H, W, C]` (see `DescriptorSettings`)."""
  b = x.shape[0]
  kc, ks, kb, kk, kn, kz = jax.random.split(key, 6)
  if s.crop > 0:
    x = jax.vmap(lambda k, img: _crop(k, img, s.crop))(jax.random.split(kc, b), x)
  if s.max_shift > 0:
    shifts = jax.random.randint(ks, (b, 2), -s.max_shift, s.max_shift + 1)
    x = jax.vmap(lambda img, d: jnp.roll(img, (d[0], d[1]), axis=(0, 1)))(x, shifts)
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  contrast = 1.0 + s.contrast * jax.random.uniform(kk, (b, 1, 1, 1), minval=-1, maxval=1)
  bright = s.brightness * jax.random.uniform(kb, (b, 1, 1, 1), minval=-1, maxval=1)
  x = mean + contrast * (x - mean) + bright
  std = s.noise * jax.random.uniform(kz, (b, 1, 1, 1))
  return jnp.clip(x + std * jax.random.normal(kn, x.shape), -1.0, 1.0)


def info_nce(f1, f2, temperature: float):
  """Symmetric InfoNCE of two views `f1, f2 [B, F]` (unit rows): for each of the
  2B views the other view of its image is the positive, the rest negatives."""
  f = jnp.concatenate([f1, f2])                                 # [2B, F]
  n = f1.shape[0]
  logits = (f @ f.T) / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)
  pos = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, pos))


def koleo(f, eps: float = 1e-8):
  """KoLeo entropy estimate (up to constants), `−mean_i log min_{j≠i} ‖f_i − f_j‖`."""
  d2 = jnp.sum((f[:, None] - f[None]) ** 2, axis=-1)
  d2 = jnp.where(jnp.eye(f.shape[0], dtype=bool), jnp.inf, d2)
  return -jnp.mean(0.5 * jnp.log(jnp.min(d2, axis=1) + eps))


# Training -------------------------------------------------------------------------

class TrainResult(NamedTuple):
  params: Any            # nnx.State
  losses: np.ndarray     # [steps] loss of each step
  seconds: float         # wall time of the training (compilation included)


def _optimizer(s: DescriptorSettings):
  """Adam with a linear warm-up over `min(warmup, steps // 2)` steps, then a cosine
  decay to 0 at `steps`."""
  warm = min(s.warmup, s.steps // 2)
  if warm == 0:
    return optax.adam(optax.cosine_decay_schedule(s.lr, s.steps))
  return optax.adam(optax.warmup_cosine_decay_schedule(0.0, s.lr, warm, s.steps))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _train_chunk(graphdef, s: DescriptorSettings, length: int, carry, images, key, start):
  """`length` steps from step `start`; `carry = (params, opt_state)`. Returns
  `(carry, losses [length])`.  Step `t` draws its batch and views from
  `fold_in(key, t)`, so the chunking does not change the result."""
  opt = _optimizer(s)
  n = images.shape[0]
  batch = min(s.batch, n)

  def loss_fn(params, k):
    kb, ka = jax.random.split(k)
    x = images[jax.random.choice(kb, n, (batch,), replace=False)]
    # Both views in one batch [2B, ...]: one network in the program, not two.
    f1, f2 = jnp.split(_apply(graphdef, params, augment(ka, jnp.concatenate([x, x]), s)), 2)
    loss = info_nce(f1, f2, s.temperature)
    if s.entropy_weight > 0:
      loss = loss + s.entropy_weight * 0.5 * (koleo(f1) + koleo(f2))
    return loss

  def step(carry, t):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(params, jax.random.fold_in(key, t))
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  return lax.scan(step, carry, start + jnp.arange(length))


def train(key, images, settings: DescriptorSettings) -> TrainResult:
  """Train the descriptor on `images [N, H, W, C]` in `[−1, 1]` (deterministic in `key`).

  Raises `ValueError` for bad images or settings before any work, and
  `validation.DivergedError` if the loss becomes NaN or inf.
  """
  s = settings
  x = check_images(images, s)
  data_shape = tuple(x.shape[1:])
  t0 = time.perf_counter()
  k_init, k_train = jax.random.split(key)
  params = init_params(k_init, data_shape, s)
  graphdef, _ = _graph(data_shape, s.width, s.dim)
  carry = (params, _optimizer(s).init(params))
  x = jnp.asarray(x)
  losses, done = [], 0
  while done < s.steps:
    length = min(s.chunk, s.steps - done)
    carry, loss = _train_chunk(graphdef, s, length, carry, x, k_train, jnp.int32(done))
    loss = np.asarray(loss)
    bad = validation.first_non_finite(loss)
    if bad is not None:
      raise validation.DivergedError(f"descriptor training diverged at step {done + bad[0]} "
                                     f"(loss {loss[bad[0]]}); lower `descriptor.lr`.")
    losses.append(loss)
    done += length
    logging.info("descriptor: step %d/%d, loss %.4f, %.1f s", done, s.steps, float(loss[-1]),
                 time.perf_counter() - t0)
  params = jax.block_until_ready(carry[0])
  return TrainResult(params, np.concatenate(losses), time.perf_counter() - t0)


# The cache ------------------------------------------------------------------------

def data_fingerprint(images) -> str:
  """SHA-256 of the images as float32 (shape included)."""
  x = np.ascontiguousarray(np.asarray(images, np.float32))
  h = hashlib.sha256(repr(x.shape).encode())
  h.update(x.tobytes())
  return h.hexdigest()


def cache_path(cache_dir, images, settings: DescriptorSettings) -> pathlib.Path:
  """`cache_dir/<16 hex digits>`: the hash of the settings and the data fingerprint."""
  key = settings_lib.to_json(settings) + data_fingerprint(images)
  return pathlib.Path(cache_dir) / hashlib.sha256(key.encode()).hexdigest()[:16]


def _flat_params(params) -> dict[str, np.ndarray]:
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}


def save(directory, descriptor: LearnedDescriptor, meta: dict) -> pathlib.Path:
  """Write `descriptor.json` (readable) and `params.npz` (the parameters and
  `meta`, written last and atomically: its presence marks a complete entry)."""
  directory = pathlib.Path(directory)
  meta = dict(meta, settings=settings_lib.to_dict(descriptor.settings),
              data_shape=list(descriptor.data_shape))
  io.save_json(directory / "descriptor.json", meta)
  io.save_npz(directory / PARAMS_FILE, **_flat_params(descriptor.params),
              **{META_KEY: np.array(json.dumps(io.to_jsonable(meta), sort_keys=True))})
  return directory / PARAMS_FILE


def restore(directory, data_shape, settings: DescriptorSettings,
            fingerprint: str | None = None) -> LearnedDescriptor:
  """The descriptor saved in `directory` by `save`; `ValueError` if it is missing,
  unreadable, or saved for other settings, data or parameter shapes."""
  path = pathlib.Path(directory) / PARAMS_FILE
  data_shape = tuple(int(d) for d in data_shape)
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except Exception as e:  # noqa: BLE001  (missing, truncated or damaged file)
    raise ValueError(f"cannot read the descriptor at {path}: {e}") from e
  meta = json.loads(str(arrays.pop(META_KEY, "{}")))
  if meta.get("settings") != settings_lib.to_dict(settings):
    raise ValueError(f"{path} was trained with other settings: {meta.get('settings')}.")
  if tuple(meta.get("data_shape", ())) != data_shape:
    raise ValueError(f"{path} was trained on images of shape {meta.get('data_shape')}, "
                     f"not {data_shape}.")
  if fingerprint is not None and meta.get("data_fingerprint") != fingerprint:
    raise ValueError(f"{path} was trained on other images.")
  _, abstract = _graph(data_shape, settings.width, settings.dim)
  paths, treedef = jax.tree_util.tree_flatten_with_path(abstract)
  leaves = []
  for p, spec in paths:
    name = jax.tree_util.keystr(p)
    a = arrays.get(name)
    if a is None or a.shape != spec.shape or a.dtype != spec.dtype:
      raise ValueError(f"{path}: parameter {name} is missing or has the wrong shape.")
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{path}: parameter {name} holds NaN or inf.")
    leaves.append(jnp.asarray(a))
  return LearnedDescriptor(data_shape, settings, jax.tree_util.tree_unflatten(treedef, leaves))


def load_or_train(images, settings: DescriptorSettings = DescriptorSettings(), *,
                  cache_dir=None) -> LearnedDescriptor:
  """The descriptor of `images [N, H, W, C]`: restored from `cache_dir` if it was
  trained there before with the same settings and images, else trained with
  the key `jax.random.key(settings.seed)` and saved there.

  The cache entry is `cache_path(cache_dir, images, settings)`; without a
  `cache_dir` nothing is read or written.  A damaged entry is retrained.
  """
  x = check_images(images, settings)
  data_shape = tuple(x.shape[1:])
  directory = fingerprint = None
  if cache_dir is not None:
    fingerprint = data_fingerprint(x)
    directory = cache_path(cache_dir, x, settings)
    if (directory / PARAMS_FILE).exists():
      try:
        out = restore(directory, data_shape, settings, fingerprint)
        logging.info("descriptor: restored from %s", directory)
        return out
      except ValueError as e:
        logging.warning("descriptor: retraining, %s", e)
  result = train(jax.random.key(settings.seed), x, settings)
  out = LearnedDescriptor(data_shape, settings, result.params)
  if directory is not None:
    save(directory, out, dict(data_fingerprint=fingerprint, train_seconds=result.seconds,
                              final_loss=float(result.losses[-1])))
  return out


def learned_similarity(key, images, settings: DescriptorSettings = DescriptorSettings(), *,
                       cache_dir=None, num_pairs: int = 2000, noise: float = 0.1,
                       max_shift: int = 0):
  """`(Similarity, Calibration)` of the learned descriptor of `images`.

  The descriptor is `load_or_train(images, settings, cache_dir=cache_dir)`;
  the threshold is calibrated on the same images exactly as the pixel NCC's
  (`metrics.calibrate`: copies `perturb(image, noise, max_shift)` against
  pairs of distinct images).  `key` is the calibration's key.
  """
  fn = load_or_train(images, settings, cache_dir=cache_dir)
  cal = metrics.calibrate(key, images, NAME, num_pairs=num_pairs, noise=noise,
                          max_shift=max_shift, fn=fn)
  return metrics.get_similarity(NAME, cal.threshold, fn=fn), cal
