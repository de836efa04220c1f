"""Reproducibility and generalization metrics (docs/theory.md §5).

Images are arrays `[B, ...]` scaled to `[−1, 1]`.  A *similarity* is a
descriptor `f: [B, ...] -> [B, F]` (rows L2-normalized, so similarity is a dot
product) together with the threshold above which two images count as "the
same".  The paper uses SSCD copy-detection features with threshold 0.6; those
weights cannot be downloaded here, so the default descriptor is the pixel
normalized cross-correlation (`"ncc"`), whose threshold is calibrated on real
data by `calibrate` (similarities of distinct training images vs an image and
a slightly perturbed copy of itself).  Any user descriptor plugs in through
`Similarity(name, fn, threshold)`, or by name with its function given as `fn`
(`get_similarity(name, threshold, fn=...)`, `calibrate(..., fn=...)`); the
descriptor trained on the data (`"learned"`, `repro_jax.analysis.descriptor`)
is used that way.

All reductions over a training set are chunked (`O(B · chunk)` memory) and the
pairwise metrics over M models are vmapped (`rp_matrix`).  The searches of B
samples against a training set `[N, ...]` (`max_similarity`, `gl_score`,
`l_generalize`, `nearest_train`, `nearest_train_distance_ratio`) take an
optional 1-D `mesh` (axis "data", `repro_jax.sharding.make_mesh`): the samples
are split over its devices, each searches the whole (replicated) training set,
so the result is the one-device result.

Threshold conventions: two images count as the same when their similarity is
*strictly* above the threshold (`sim > threshold`; a similarity equal to the
threshold does not count), in RP, GL and their variants; a pair counts as
reproduced by MAE when `MAE < threshold` (strictly below).

Inputs: arrays or nested lists, integer pixels promoted to float (float16 and
bfloat16 are computed in float32).  Empty sets, NaN/inf entries, mismatched
shapes and chunk sizes below 1 raise `ValueError` naming the argument (values
are checked on concrete arguments only, see `repro_jax.validation`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from repro_jax import sharding as sharding_lib
from repro_jax import validation
from repro_jax.closed_form import streaming

Descriptor = Callable[[jax.Array], jax.Array]


def _flat(x):
  return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _prep(x, name: str, batch_dims: int = 1, letters: str = "B"):
  """`x` as a float array `[*batch, ...]`, non-empty and finite."""
  x = jnp.asarray(x)
  _, dt = validation.float_dtypes(**{name: x})
  if x.ndim < batch_dims + 1:
    raise ValueError(f"`{name}` must have shape [{', '.join(letters)}, ...]; got "
                     f"shape {x.shape}.")
  if x.size == 0:
    raise ValueError(f"`{name}` is empty (shape {x.shape}).")
  validation.check_finite(x, name)
  return x.astype(dt)


def _check_same_item_shape(a, b, name_a: str, name_b: str, batch_dims: int = 1):
  if a.shape[batch_dims:] != b.shape[batch_dims:]:
    raise ValueError(f"`{name_a}` {tuple(a.shape)} and `{name_b}` {tuple(b.shape)} must "
                     f"hold images of the same shape (the dimension D must agree).")


def _normalize(f, eps=1e-8):
  return f / jnp.maximum(jnp.linalg.norm(f, axis=-1, keepdims=True), eps)


def ncc_descriptor(x):
  """Normalized cross-correlation features: per-image mean removed, unit norm."""
  f = _flat(x)
  return _normalize(f - jnp.mean(f, axis=1, keepdims=True))


def cosine_descriptor(x):
  """Raw pixels, unit norm (cosine similarity in pixel space)."""
  return _normalize(_flat(x))


def pooled_ncc_descriptor(x, factor: int = 2):
  """NCC after `factor`×`factor` average pooling (less sensitive to 1-px jitter).

  `x` `[B, H, W, C]` (or `[B, H, W]`); H, W divisible by `factor`.
  """
  if x.ndim == 3:
    x = x[..., None]
  b, h, w, c = x.shape
  pooled = x.reshape(b, h // factor, factor, w // factor, factor, c).mean((2, 4))
  return ncc_descriptor(pooled)


DESCRIPTORS: dict[str, Descriptor] = {
    "ncc": ncc_descriptor,
    "cosine": cosine_descriptor,
    "pooled_ncc": pooled_ncc_descriptor,
}


@dataclasses.dataclass(frozen=True)
class Similarity:
  """A descriptor and its decision threshold (`sim > threshold` ⇒ same image)."""
  name: str
  descriptor: Descriptor
  threshold: float

  def features(self, x):
    return _normalize(self.descriptor(jnp.asarray(x)))


# Descriptors trained on the data: a name, but the function comes from training
# (`repro_jax.analysis.descriptor.load_or_train`) and is passed as `fn`.
TRAINED_DESCRIPTORS = ("learned",)


def _descriptor(name: str, fn: Descriptor | None) -> Descriptor:
  """The function of similarity `name`: `fn` if given, else the registered one."""
  if fn is not None:
    if not callable(fn):
      raise ValueError(f"`fn` must be a descriptor function [B, ...] -> [B, F]; got {fn!r}.")
    return fn
  if name in TRAINED_DESCRIPTORS:
    raise ValueError(f"the {name!r} similarity is trained on the data: pass its descriptor as "
                     f"`fn=` (repro_jax.analysis.descriptor.load_or_train(images, ...)).")
  if name not in DESCRIPTORS:
    raise validation.unknown_name("similarity", name, (*DESCRIPTORS, *TRAINED_DESCRIPTORS))
  return DESCRIPTORS[name]


def get_similarity(name: str, threshold: float, *, fn: Descriptor | None = None) -> Similarity:
  """A descriptor with a threshold (typically from `calibrate`).

  `name` is a registered descriptor (`DESCRIPTORS`), or any label when the
  function is given as `fn` (required for `TRAINED_DESCRIPTORS`, e.g.
  `"learned"` with `descriptor.load_or_train(...)`).
  """
  desc = _descriptor(name, fn)
  if not -1.0 <= threshold <= 1.0:
    raise ValueError(f"`threshold` must lie in [-1, 1] for a cosine similarity; got {threshold}.")
  return Similarity(name, desc, float(threshold))


def _pair(x1, x2, batch_dims: int = 1, letters: str = "B"):
  """Two paired sets of samples, checked (`_prep`) and of equal shapes."""
  x1 = _prep(x1, "x1", batch_dims, letters)
  x2 = _prep(x2, "x2", batch_dims, letters)
  if x1.shape != x2.shape:
    raise ValueError(f"paired samples must have equal shapes; got {tuple(x1.shape)} and "
                     f"{tuple(x2.shape)}.")
  return x1, x2


# Paired metrics ---------------------------------------------------------------

def paired_similarity(x1, x2, sim: Similarity):
  """`sim(x1_b, x2_b)` for each pair, `[B]`."""
  x1, x2 = _pair(x1, x2)
  return jnp.sum(sim.features(x1) * sim.features(x2), axis=-1)


def rp_score(x1, x2, sim: Similarity):
  """RP = P(sim(x1, x2) > threshold) over paired samples (same noise).

  Strict: a pair whose similarity equals the threshold is not counted.
  """
  return jnp.mean(paired_similarity(x1, x2, sim) > sim.threshold)


def to_pixels(x):
  """`[−1, 1]` → `[0, 255]`."""
  return (jnp.asarray(x) + 1.0) * 127.5


def paired_mae(x1, x2):
  """Mean absolute pixel difference on the `[0, 255]` scale, `[B]`."""
  x1, x2 = _pair(x1, x2)
  return jnp.mean(jnp.abs(_flat(to_pixels(x1)) - _flat(to_pixels(x2))), axis=1)


def mae_score(x1, x2, threshold: float = 15.0):
  """MAE score = P(MAE(x1, x2) < threshold) on pixels in `[0, 255]`.

  Strict: a pair whose MAE equals the threshold is not counted.
  """
  return jnp.mean(paired_mae(x1, x2) < threshold)


@functools.partial(jax.jit, static_argnames=("descriptor",))
def _rp_matrix(feats, threshold, descriptor=None):
  del descriptor
  sims = jnp.einsum("mbf,nbf->mnb", feats, feats)
  return jnp.mean(sims > threshold, axis=-1), jnp.mean(sims, axis=-1)


def rp_matrix(samples, sim: Similarity):
  """RP between every pair of M models fed the same noises.

  Args:
    samples: `[M, B, ...]`, row b of every model generated from noise b.

  Returns:
    `(rp [M, M], mean_similarity [M, M])` (RP counts `sim > threshold`).
  """
  samples = _prep(samples, "samples", 2, "MB")
  feats = jax.vmap(sim.features)(samples)                    # [M, B, F]
  return _rp_matrix(feats, sim.threshold)


def mae_matrix(samples, threshold: float = 15.0):
  """MAE score between every pair of M models, `[M, M]` (`MAE < threshold`)."""
  samples = _prep(samples, "samples", 2, "MB")
  px = jax.vmap(lambda s: _flat(to_pixels(s)))(samples)                # [M, B, P]
  mae = jnp.mean(jnp.abs(px[:, None] - px[None]), axis=-1)             # [M, M, B]
  return jnp.mean(mae < threshold, axis=-1)


# Against a training set ------------------------------------------------------

def _search(k, chunk):
  if k is None:
    return functools.partial(streaming.nearest, chunk=chunk)
  return functools.partial(streaming.nearest_k, k=k, chunk=chunk)


def _nearest(queries, train, k, chunk, mesh) -> streaming.NNStats:
  """`streaming.nearest` (k None) or `nearest_k` of `queries [B, F]` in `train [N, F]`,
  with the queries split over `mesh` (padded to a multiple of its devices)."""
  if mesh is None:
    return _search(k, chunk)(queries, train)
  return _nearest_sharded(queries, train, k, chunk, mesh)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _nearest_sharded(queries, train, k, chunk, mesh) -> streaming.NNStats:
  """`_nearest` over `mesh`, compiled once per (shapes, k, chunk, mesh): called
  eagerly, `shard_map` would dispatch its body op by op on every call."""
  b, axis = queries.shape[0], sharding_lib.DATA_AXIS
  pad = (-b) % mesh.shape[axis]
  if pad:
    queries = jnp.concatenate([queries, jnp.zeros((pad,) + queries.shape[1:], queries.dtype)])
  res = jax.shard_map(_search(k, chunk), mesh=mesh, in_specs=(P(axis), P()),
                      out_specs=streaming.NNStats(P(axis), P(axis)))(queries, train)
  return streaming.NNStats(res.sq_dist[:b], res.index[:b])


class MaxSimilarity(NamedTuple):
  value: jax.Array   # [B] max_i sim(x_b, y_i)
  index: jax.Array   # [B] argmax_i


def max_similarity(samples, train, sim: Similarity, *, chunk: int = 4096,
                   mesh=None) -> MaxSimilarity:
  """Most similar training image of each sample (chunked over the training set).

  `samples [B, ...]`, `train [N, ...]`; returns `value [B]`, `index [B]`.
  For unit-norm features `max_i ⟨f, g_i⟩ = 1 − ½ min_i ‖f − g_i‖²`, so the
  exact chunked nearest-neighbour search of `repro_jax.closed_form.streaming`
  is reused.  `chunk`: training rows per block (>= 1, or None for one block);
  `mesh`: split the samples over its devices.
  """
  samples, train = _prep(samples, "samples"), _prep(train, "train")
  _check_same_item_shape(samples, train, "samples", "train")
  validation.check_chunk(chunk, "chunk")
  f = sim.features(samples)
  g = sim.features(train)
  res = _nearest(f, g, None, chunk, mesh)
  return MaxSimilarity(1.0 - 0.5 * res.sq_dist, res.index)


def gl_score(samples, train, sim: Similarity, **kwargs):
  """GL = 1 − P(max_i sim(x, y_i) > threshold): 0 means every sample is a copy.

  Strict: a sample whose best similarity equals the threshold is not a copy.
  """
  return 1.0 - jnp.mean(max_similarity(samples, train, sim, **kwargs).value > sim.threshold)


def rp_cond(x1c, x2c, sim: Similarity):
  """RP between class-conditional samples of two models (same class, same noise).

  `x1c`, `x2c`: `[C, B, ...]`.  Returns the RP over all classes and noises.
  """
  x1c, x2c = _pair(x1c, x2c, 2, "CB")
  c, b = np.shape(x1c)[:2]
  return rp_score(jnp.reshape(x1c, (c * b,) + x1c.shape[2:]),
                  jnp.reshape(x2c, (c * b,) + x2c.shape[2:]), sim)


def rp_between(x1, x2c, sim: Similarity):
  """RP_between = P(max_c sim(x1, x2^c) > threshold).

  `x1` `[B, ...]` (e.g. unconditional), `x2c` `[C, B, ...]` (conditional on
  each class c, same noise b).
  """
  x1, x2c = _prep(x1, "x1"), _prep(x2c, "x2c", 2, "CB")
  if x2c.shape[1:] != x1.shape:
    raise ValueError(f"`x2c` must have shape [C, *x1.shape] = [C, {', '.join(map(str, x1.shape))}]; "
                     f"got {tuple(x2c.shape)}.")
  f1 = sim.features(x1)
  f2 = jax.vmap(sim.features)(x2c)                            # [C, B, F]
  best = jnp.max(jnp.einsum("bf,cbf->cb", f1, f2), axis=0)
  return jnp.mean(best > sim.threshold)


def l_generalize(samples, train, *, chunk: int = 4096, mesh=None):
  """`E min_i ‖F(ε) − y_i‖` (Euclidean, on the flattened arrays; `mesh` as `max_similarity`)."""
  samples, train = _prep(samples, "samples"), _prep(train, "train")
  _check_same_item_shape(samples, train, "samples", "train")
  validation.check_chunk(chunk, "chunk")
  res = _nearest(_flat(samples), _flat(train), None, chunk, mesh)
  return jnp.mean(jnp.sqrt(res.sq_dist))


class NearestTrain(NamedTuple):
  index: jax.Array      # [B] nearest training row
  distance: jax.Array   # [B] ‖x_b − y_index‖, recomputed exactly


def nearest_train(samples, train, *, chunk: int = 4096, mesh=None) -> NearestTrain:
  """Nearest training image of each sample and the exact distance to it.

  `samples [B, ...]`, `train [N, ...]` (Euclidean, on the flattened arrays;
  `mesh` as `max_similarity`).  The search's matmul form
  `‖x‖² − 2⟨x, y⟩ + ‖y‖²` has a round-off floor of about `sqrt(eps) ‖x‖`; the
  distance to the row found is recomputed as `‖x − y‖`, so a copy of a
  training image reads ≈ 0 (`train[index]` is the copied image).
  """
  samples, train = _prep(samples, "samples"), _prep(train, "train")
  _check_same_item_shape(samples, train, "samples", "train")
  validation.check_chunk(chunk, "chunk")
  index = _nearest(_flat(samples), _flat(train), None, chunk, mesh).index
  return NearestTrain(index, jnp.linalg.norm(_flat(samples - train[index]), axis=-1))


def nearest_train_distance_ratio(samples, train, *, chunk: int = 4096, mesh=None):
  """`d1 / d2`: distance to the nearest over the second-nearest training point, `[B]`.

  ≈ 0 for a copy of a training image, ≈ 1 for a sample between training points.
  Needs at least 2 training points; `mesh` as `max_similarity`.
  """
  samples, train = _prep(samples, "samples"), _prep(train, "train")
  _check_same_item_shape(samples, train, "samples", "train")
  validation.check_chunk(chunk, "chunk")
  if train.shape[0] < 2:
    raise ValueError(f"`train` needs at least 2 rows; got shape {tuple(train.shape)}.")
  res = _nearest(_flat(samples), _flat(train), 2, chunk, mesh)
  d = jnp.sqrt(res.sq_dist)
  return d[:, 0] / jnp.maximum(d[:, 1], 1e-30)


# Calibration -------------------------------------------------------------------

class Calibration(NamedTuple):
  threshold: float
  distinct: np.ndarray      # similarities between distinct training images
  perturbed: np.ndarray     # similarities between an image and its perturbed copy
  accuracy: float           # balanced accuracy of the threshold on the two sets


def perturb(key, x, *, noise: float = 0.1, max_shift: int = 0):
  """A slightly perturbed copy: Gaussian pixel noise (std `noise` on the [−1, 1]
  scale) and, if `max_shift > 0`, a random circular shift of up to that many
  pixels (too strong a change for 8×8 images, fine at 32×32)."""
  k1, k2 = jax.random.split(key)
  x = jnp.asarray(x)
  if x.ndim >= 3 and max_shift > 0:
    shifts = jax.random.randint(k2, (x.shape[0], 2), -max_shift, max_shift + 1)
    x = jax.vmap(lambda img, s: jnp.roll(img, (s[0], s[1]), axis=(0, 1)))(x, shifts)
  return jnp.clip(x + noise * jax.random.normal(k1, x.shape, x.dtype), -1.0, 1.0)


def calibrate(key, images, descriptor: str = "ncc", *, num_pairs: int = 2000,
              noise: float = 0.1, max_shift: int = 0,
              fn: Descriptor | None = None) -> Calibration:
  """Choose the threshold that best separates copies from distinct images.

  Distinct pairs: random pairs of different training images.  Copies: an image
  and `perturb(image)`.  The threshold maximizes the balanced accuracy (the
  midpoint of the optimal interval).  A copy counts when its similarity is
  strictly above the threshold, as in `rp_score`.  `descriptor` names the
  similarity; `fn` supplies its function (as in `get_similarity`).
  """
  images = _prep(images, "images")
  validation.check_int(num_pairs, "num_pairs", minimum=1)
  n = images.shape[0]
  if n < 2:
    raise ValueError("calibration needs at least 2 images.")
  sim = Similarity(descriptor, _descriptor(descriptor, fn), 0.0)
  k1, k2, k3 = jax.random.split(key, 3)
  i = jax.random.randint(k1, (num_pairs,), 0, n)
  j = (i + jax.random.randint(k2, (num_pairs,), 1, n)) % n          # j ≠ i
  distinct = np.asarray(paired_similarity(images[i], images[j], sim))
  base = images[i]
  perturbed = np.asarray(paired_similarity(base, perturb(k3, base, noise=noise,
                                                         max_shift=max_shift), sim))
  cands = np.unique(np.concatenate([distinct, perturbed]))
  tpr = (perturbed[None, :] > cands[:, None]).mean(1)
  tnr = (distinct[None, :] <= cands[:, None]).mean(1)
  acc = 0.5 * (tpr + tnr)
  best = np.flatnonzero(acc == acc.max())
  lo, hi = cands[best[0]], cands[min(best[-1] + 1, len(cands) - 1)]
  return Calibration(float(0.5 * (lo + hi)), distinct, perturbed, float(acc.max()))
