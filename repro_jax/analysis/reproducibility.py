"""Reproducibility of trained models: shared noises, pairwise scores, regimes, plane maps.

The pieces the reproducibility experiments share (docs/theory.md §4–§5):

- `fixed_noises`: the one set of starting noises `z [B, ...]` every model uses,
  drawn once from a seed and saved;
- `calibrated_similarity`: the similarity (a `metrics` descriptor) with its
  threshold calibrated on real images;
- `pair_scores`: RP (at each threshold), mean similarity and MAE score between
  every pair of K generators fed the same noises, `[K, K]` each;
  `pair_values`: the per-noise similarities and MAEs they average, `[K, K, B]`
  (for `bootstrap` intervals and `score_curves`);
- `training_scores`: GL, L_generalize and the nearest-neighbour ratio of one
  generator against its training set;
- `regime`: memorization / transition / generalization from the measured GL
  and the RP to the ε* (empirical-denoiser) generation;
- the paper's noise-plane labelling (Fig. 4): each plane point is assigned to
  the anchor generation it is most similar to (`anchor_labels`), and two maps
  are compared by their agreement against chance (`map_agreement`).
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax.diffusion import denoiser
from repro_jax import io
from repro_jax import samplers
from repro_jax.analysis import metrics
from repro_jax.diffusion import schedules

REGIMES = ("memorization", "transition", "generalization")
NOISE_FILE_MAX_BYTES = 1 << 20   # noises saved beside the results below this size


def fixed_noises(seed: int, num: int, data_shape: Sequence[int], path=None) -> np.ndarray:
  """Standard-normal noises `[num, *data_shape]` (float32), drawn once and reused.

  If `path` holds an array of that shape it is loaded (so a study keeps its
  noises across runs and code changes); otherwise the noises are drawn from
  `jax.random.key(seed)` and, with a `path`, saved there.
  """
  shape = (int(num),) + tuple(int(s) for s in data_shape)
  if path is not None and pathlib.Path(path).exists():
    z = np.load(path)
    if z.shape == shape:
      return z.astype(np.float32)
  z = np.asarray(jax.random.normal(jax.random.key(int(seed)), shape, jnp.float32))
  if path is not None:
    io.save_npy(path, z)
  return z


def calibrated_similarity(key, images, name: str = "ncc", *, num_pairs: int = 2000,
                          noise: float = 0.1, max_shift: int = 0, fn=None):
  """`(Similarity, Calibration)`: descriptor `name` with its calibrated threshold.

  `fn`: the descriptor function when it is not registered under `name`, e.g.
  `name="learned"`, `fn=descriptor.load_or_train(images, settings, cache_dir=...)`.
  """
  cal = metrics.calibrate(key, images, name, num_pairs=num_pairs, noise=noise,
                          max_shift=max_shift, fn=fn)
  return metrics.get_similarity(name, cal.threshold, fn=fn), cal


def sigma_grid(steps: int, sigma_min: float, sigma_max: float) -> np.ndarray:
  """The deterministic samplers' EDM ρ-grid `[steps + 1]` (ending at 0)."""
  return schedules.edm_sigmas(int(steps), float(sigma_min), float(sigma_max))


def clipped(denoise, lo: float = -1.0, hi: float = 1.0):
  """`denoise` with its x0 estimate clipped to the data range (DDPM's "clip x0").

  An ε-prediction network's x0 error grows like σ·(ε error), so at large σ an
  imperfect ε-model predicts x0 far outside the data range; DDPM / DDIM
  samplers clip it.  Exact denoisers of data in `[lo, hi]` are unchanged.
  """
  return denoiser.as_denoiser(denoise).map_x0(lambda x0: jnp.clip(x0, lo, hi))


def empirical_denoisers(ds, subsets: dict) -> dict:
  """The ε* denoiser of each training subset, `{N: denoise}` (build once, reuse:
  a sampler compiles once per denoiser object and input shape)."""
  return {n: denoiser.empirical(ds.x[idx]) for n, idx in subsets.items()}


def theory_generations(dens: dict, noise, sigmas, *, sampler: str, chunk: int = 256,
                       **options) -> dict:
  """ε* generations from the noises, `{N: [B, ...]}`, for `dens = empirical_denoisers(...)`."""
  noise = np.asarray(noise, np.float32)
  return {n: np.asarray(samplers.sample_batched(den, noise, sigmas, sampler=sampler,
                                                batch_size=int(chunk), **options).samples)
          for n, den in dens.items()}


def pair_scores(samples, sims: dict, mae_threshold: float = 15.0) -> dict:
  """Scores between every pair of K generators fed the same B noises.

  Args:
    samples: `[K, B, ...]` in `[−1, 1]`; row b of every generator from noise b.
    sims: `{label: Similarity}`, e.g. the calibrated one and the paper's 0.6.
    mae_threshold: MAE-score threshold on `[0, 255]`.

  Returns:
    `{"rp_<label>": [K, K], "sim_mean": [K, K] (first similarity), "mae": [K, K]}`
    as float64 NumPy arrays (symmetric, diagonal 1 for RP and MAE).
  """
  out = {}
  for i, (label, sim) in enumerate(sims.items()):
    rp, mean_sim = metrics.rp_matrix(samples, sim)
    out[f"rp_{label}"] = np.asarray(rp, np.float64)
    if i == 0:
      out["sim_mean"] = np.asarray(mean_sim, np.float64)
  out["mae"] = np.asarray(metrics.mae_matrix(samples, mae_threshold), np.float64)
  return out


def pair_values(samples, sims: dict) -> dict:
  """Per-noise similarity and MAE between every pair of K generators.

  Args:
    samples: `[K, B, ...]` in `[−1, 1]`; row b of every generator from noise b.
    sims: `{label: Similarity}`; labels sharing a descriptor share one array.

  Returns:
    `{"sim_<label>": [K, K, B], "mae": [K, K, B]}` (float32 NumPy; MAE on
    `[0, 255]`).  `mean(sim_<label> > threshold, -1)` is `pair_scores`' RP.
  """
  samples = jnp.asarray(samples, jnp.float32)
  out, by_descriptor = {}, {}
  for label, sim in sims.items():
    if sim.descriptor not in by_descriptor:
      feats = jax.vmap(sim.features)(samples)                        # [K, B, F]
      by_descriptor[sim.descriptor] = np.asarray(jnp.einsum("mbf,nbf->mnb", feats, feats))
    out[f"sim_{label}"] = by_descriptor[sim.descriptor]
  px = metrics.to_pixels(samples).reshape(samples.shape[:2] + (-1,))   # [K, B, P]
  # One generator against all at a time: `[K, B, P]` in memory, not `[K, K, B, P]`.
  out["mae"] = np.asarray(jax.lax.map(lambda a: jnp.mean(jnp.abs(a[None] - px), -1), px))
  return out


def max_similarities(samples, train, sims: dict, *, chunk: int = 4096) -> dict:
  """`{label: [B]}`: each sample's largest similarity to a training image
  (labels sharing a descriptor share one search)."""
  out, by_descriptor = {}, {}
  for label, sim in sims.items():
    if sim.descriptor not in by_descriptor:
      by_descriptor[sim.descriptor] = np.asarray(
          metrics.max_similarity(samples, train, sim, chunk=chunk).value)
    out[label] = by_descriptor[sim.descriptor]
  return out


def training_scores(samples, train, sims: dict, *, chunk: int = 4096,
                    max_sims: dict | None = None) -> dict:
  """How much a generator copies its training set.

  Args:
    samples: `[B, ...]`.
    train: the generator's training images `[N, ...]`.
    sims: `{label: Similarity}`.
    max_sims: `max_similarities(samples, train, sims)` if already computed.

  Returns:
    `gl_<label>` (GL score per similarity), `max_sim_median` (median over
    samples of the largest similarity to a training image, first similarity),
    `l_generalize` (mean distance to the nearest training image) and
    `nn_ratio_median` (median nearest / second-nearest distance; 0 = copies).
  """
  out = {}
  if max_sims is None:
    max_sims = max_similarities(samples, train, sims, chunk=chunk)
  for i, (label, sim) in enumerate(sims.items()):
    value = np.asarray(max_sims[label])
    out[f"gl_{label}"] = float(1.0 - np.mean(value > np.asarray(sim.threshold, value.dtype)))
    if i == 0:
      out["max_sim_median"] = float(np.median(value))
  out["l_generalize"] = float(metrics.l_generalize(samples, train, chunk=chunk))
  if len(train) >= 2:
    out["nn_ratio_median"] = float(np.median(np.asarray(
        metrics.nearest_train_distance_ratio(samples, train, chunk=chunk))))
  else:
    out["nn_ratio_median"] = float("nan")
  return out


def regime(gl: float, rp_theory: float, *, gl_mem: float = 0.1, rp_theory_mem: float = 0.5,
           gl_gen: float = 0.9) -> str:
  """Memorization (`gl < gl_mem` and `rp_theory > rp_theory_mem`), generalization
  (`gl > gl_gen`) or transition (anything else)."""
  if gl < gl_mem and rp_theory > rp_theory_mem:
    return "memorization"
  if gl > gl_gen:
    return "generalization"
  return "transition"


def off_diagonal_mean(mat, rows: Sequence[int], cols: Sequence[int]) -> float:
  """Mean of `mat[i, j]` over `i in rows`, `j in cols`, `i ≠ j` (nan if empty)."""
  vals = [mat[i, j] for i in rows for j in cols if i != j]
  return float(np.mean(vals)) if vals else float("nan")


# Noise plane (Fig. 4) -------------------------------------------------------------

def pick_anchors(train_index, class_labels=None) -> np.ndarray:
  """Three noise indices whose generations reach three different training images.

  Args:
    train_index: `[B]` training index reached from each noise (e.g. the
      nearest training image of the ε* generation).
    class_labels: optional `[B]` class of that image; three distinct classes
      are preferred when available.

  Returns:
    int `[3]` noise indices.
  """
  train_index = np.asarray(train_index)
  chosen, seen_img, seen_cls = [], set(), set()
  for strict in (True, False):
    for b, i in enumerate(train_index):
      if len(chosen) == 3:
        break
      c = None if class_labels is None else int(np.asarray(class_labels)[b])
      if int(i) in seen_img or b in chosen or (strict and c is not None and c in seen_cls):
        continue
      chosen.append(b)
      seen_img.add(int(i))
      seen_cls.add(c)
  if len(chosen) < 3:
    raise ValueError("fewer than three distinct training images among the noises' "
                     "generations; use more noises.")
  return np.array(chosen[:3])


def anchor_labels(plane_samples, anchor_samples, sim: metrics.Similarity):
  """The paper's labelling: the anchor generation each plane generation matches best.

  Args:
    plane_samples: `[P, ...]` generations from the plane noises.
    anchor_samples: `[3, ...]` the same generator's outputs from `ε1, ε2, ε3`.

  Returns:
    `(labels int [P] in {0, 1, 2}, similarity [P] to that anchor)`.
  """
  s = np.asarray(sim.features(plane_samples) @ sim.features(anchor_samples).T)
  return s.argmax(1), s.max(1)


def map_agreement(labels_a, labels_b) -> tuple[float, float]:
  """`(agreement, chance)`: fraction of plane points with equal labels, and the
  agreement two independent maps with the same label frequencies would have."""
  a, b = np.asarray(labels_a).reshape(-1), np.asarray(labels_b).reshape(-1)
  agree = float(np.mean(a == b))
  ks = np.union1d(a, b)
  chance = float(sum(np.mean(a == k) * np.mean(b == k) for k in ks))
  return agree, chance


PLANE_CMAPS = ("Greys", "Blues", "Oranges")


def plane_rgb(labels, values, cmaps: Sequence[str] = PLANE_CMAPS) -> np.ndarray:
  """RGB image `[G_b, G_a, 3]`: hue = anchor label, intensity = similarity to it."""
  import matplotlib
  labels, values = np.asarray(labels), np.clip(np.asarray(values), 0.0, 1.0)
  out = np.zeros(labels.shape + (3,))
  for k, name in enumerate(cmaps):
    rgba = matplotlib.colormaps[name](0.15 + 0.85 * values)
    out[labels == k] = rgba[labels == k][:, :3]
  return out


def save_samples(path, **arrays) -> None:
  """Write generations (float16 to halve the size) atomically as `.npz`."""
  io.save_npz(path, **{k: np.asarray(v, np.float16) for k, v in arrays.items()})
