"""Sampling from the closed-form (empirical) denoiser of a data set, and files.

`sample_from_data` is the library side of `python -m experiments.sample`: the
same inputs as its flags, as arrays.  `sample_with` does the same for any
canonical denoiser (`repro_jax.diffusion.denoiser`); both run
`sample_batched` (fixed-size batches, optionally split over a mesh).
`sample_to_files` adds the file handling (read `.npy`/`.npz` through
`repro_jax.data.read_array`, write the `.npz` atomically, draw a PNG grid).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from repro_jax import data as data_lib
from repro_jax import io
from repro_jax import plotting
from repro_jax.diffusion import denoiser as denoiser_lib
from repro_jax.diffusion import schedules
from repro_jax.samplers import api
from repro_jax.samplers.batched import sample_batched
from repro_jax.samplers._core import SampleResult

DEFAULT_SPACING = {"edm": "edm", "ddpm": "leading", "log_linear": "uniform"}


# Inputs -------------------------------------------------------------------------

def parse_sigmas(text: str | Sequence[float]) -> np.ndarray:
  """`"80,10,1,0"` (or a sequence) → a validated decreasing σ grid, float64."""
  if isinstance(text, str):
    try:
      vals = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
      raise ValueError(f"`sigmas` must be comma-separated numbers; got {text!r}.") from None
  else:
    vals = list(np.asarray(text, np.float64).reshape(-1))
  grid = np.asarray(vals, np.float64)
  try:
    schedules.check_sigma_grid(grid)
  except ValueError as e:
    raise ValueError(f"`sigmas`: {e}") from None
  return grid


def make_sigmas(sigmas=None, *, schedule: str = "edm", steps: int = 18,
                spacing: str | None = None, final: str = "zero") -> np.ndarray:
  """An explicit grid (used as given) or `sigma_grid(get_schedule(schedule), steps, spacing)`.

  `spacing` None picks the schedule's usual one (`edm` for EDM, `leading` for
  DDPM, `uniform` otherwise).
  """
  if sigmas is not None:
    return parse_sigmas(sigmas)
  sched = schedules.get_schedule(schedule)
  spacing = spacing or DEFAULT_SPACING.get(schedule, "uniform")
  return schedules.sigma_grid(sched, steps, spacing, final=final)


# Sampling ----------------------------------------------------------------------

def _dtype_of(data: np.ndarray):
  """float64 for float64 data when x64 is on, else float32."""
  return jnp.zeros((), jnp.float64 if data.dtype == np.float64 else jnp.float32).dtype


def resolve_noise(data, noise=None, *, seed: int = 0,
                  num_samples: int | None = None) -> jax.Array:
  """The standard-normal `z [B, ...]` a run starts from (`x = σ_max z`).

  `noise` given: checked against `data [N, ...]` (and `num_samples`, if set).
  None: `num_samples` (default 16) draws from `split(PRNGKey(seed))[0]`.
  """
  data = np.asarray(data)
  dtype = _dtype_of(data)
  if noise is None:
    n = 16 if num_samples is None else num_samples
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
      raise ValueError(f"`num_samples` must be an integer >= 1; got {num_samples!r}.")
    noise_key = jax.random.split(jax.random.PRNGKey(int(seed)))[0]
    return jax.random.normal(noise_key, (int(n),) + data.shape[1:], dtype)
  noise = np.asarray(noise)
  if noise.ndim != data.ndim or noise.shape[1:] != data.shape[1:] or noise.shape[0] < 1:
    raise ValueError(f"`noise` must have shape [B, {', '.join(map(str, data.shape[1:]))}] "
                     f"to match `data` {data.shape}; got {noise.shape}.")
  if not np.issubdtype(noise.dtype, np.floating) or not np.all(np.isfinite(noise)):
    raise ValueError("`noise` must be a finite float array.")
  if num_samples is not None and num_samples != noise.shape[0]:
    raise ValueError(f"`num_samples` = {num_samples} but `noise` holds "
                     f"{noise.shape[0]} samples.")
  return jnp.asarray(noise, dtype)


def sample_from_data(data, noise=None, *, seed: int = 0,
                     num_samples: int | None = None, sigmas=None,
                     schedule: str = "edm", steps: int = 18,
                     spacing: str | None = None, final: str = "zero",
                     sampler: str = "ddim", return_trajectory: bool = False,
                     batch_size: int | None = None, mesh=None, **options) -> SampleResult:
  """Sample with the empirical (memorizing) denoiser of `data`.

  Args:
    data: training set `[N, ...]` (e.g. `[N, D]` or images `[N, H, W(, C)]`).
    noise: standard-normal `z [B, ...]` (`...` = `data.shape[1:]`); the run
      starts at `x = σ_max z`.  None draws `num_samples` from `seed`.
    seed: seeds the noise (if drawn) and the sampler's key (if stochastic).
    num_samples: B when `noise` is None (default 16).
    sigmas: explicit decreasing σ grid (VE), used as given; else the grid of
      `schedule`, `steps`, `spacing`, `final` (see `make_sigmas`).
    sampler: registry name (`ddim`, `gradient_estimation`, `ddpm`, `heun`,
      `dpm_solver`, ...).
    return_trajectory: also return `xs [T+1, B, ...]`, `x0_hats [T, B, ...]`.
    batch_size: run the B samples in batches of this size (one compilation).
    mesh: optional 1-D mesh (axis "data"): each batch is split over it.
    **options: sampler options (`gamma`, `eta`, `mu`, `order`, `churn`, ...);
      None values are dropped (sampler default).

  Returns:
    `SampleResult` (samples `[B, ...]`).
  """
  data = np.asarray(data)
  if data.ndim < 2 or data.shape[0] < 1 or not np.issubdtype(data.dtype, np.number):
    raise ValueError(f"`data` must be a numeric array [N, ...] with N >= 1 and at "
                     f"least 2 dims; got shape {data.shape}, dtype {data.dtype}.")
  if not np.all(np.isfinite(data)):
    raise ValueError("`data` contains NaN or inf values.")
  denoise = denoiser_lib.empirical(jnp.asarray(data, _dtype_of(data)))
  return sample_with(denoise, data[:1], noise, seed=seed, num_samples=num_samples,
                     sigmas=sigmas, schedule=schedule, steps=steps, spacing=spacing,
                     final=final, sampler=sampler, return_trajectory=return_trajectory,
                     batch_size=batch_size, mesh=mesh, **options)


def sample_with(denoise, like, noise=None, *, seed: int = 0,
                num_samples: int | None = None, sigmas=None, schedule: str = "edm",
                steps: int = 18, spacing: str | None = None, final: str = "zero",
                sampler: str = "ddim", return_trajectory: bool = False,
                batch_size: int | None = None, mesh=None, **options) -> SampleResult:
  """`sample_from_data` for any canonical denoiser (e.g. a trained network).

  Args:
    denoise: a `Denoiser` or canonical `denoise(x, σ) -> x0`
      (`repro_jax.diffusion.denoiser`).
    like: an array `[1, ...]` with the data's shape and dtype (for the noise).
    Other arguments as `sample_from_data`; the noise is seeded by
    `split(PRNGKey(seed))[0]`, the sampler's key is `split(PRNGKey(seed))[1]`.
  """
  like = np.asarray(like)
  spec = api.get_sampler(sampler)
  options = {k: v for k, v in options.items() if v is not None}
  spec.resolve(options)  # unknown / out-of-range options fail before any work
  grid = make_sigmas(sigmas, schedule=schedule, steps=steps, spacing=spacing,
                     final=final)
  key = jax.random.split(jax.random.PRNGKey(int(seed)))[1]
  noise = resolve_noise(like, noise, seed=seed, num_samples=num_samples)
  return sample_batched(denoise, noise, grid, sampler=sampler, batch_size=batch_size,
                        mesh=mesh, key=key, return_trajectory=return_trajectory, **options)


# Outputs -----------------------------------------------------------------------

save_npz = io.save_npz


def _as_images(x: np.ndarray):
  """`[B, H, W]`, `[B, H, W, C∈{1,3,4}]` or `[B, D]` with D a square → images."""
  if x.ndim == 3 or (x.ndim == 4 and x.shape[-1] in (1, 3, 4)):
    return x[..., 0] if x.ndim == 4 and x.shape[-1] == 1 else x
  if x.ndim == 2:
    side = math.isqrt(x.shape[1])
    if side * side == x.shape[1] and side > 1:
      return x.reshape(x.shape[0], side, side)
  return None


def save_image_grid(path, samples, *, value_range=None, max_images: int = 64,
                    reference=None, cols: int | None = None) -> None:
  """Draw samples as a PNG: an image grid, or (2-D points) a scatter plot.

  Args:
    path: output `.png`.
    samples: `[B, H, W]`, `[B, H, W, C]`, `[B, D]` (D a square: images;
      otherwise the first two coordinates are scattered).
    value_range: `(lo, hi)` mapped to black/white (default: the samples' range).
    max_images: at most this many images in the grid.
    reference: optional data `[N, ...]` drawn behind a scatter plot.
    cols: images per row of the grid (default `⌈√n⌉` for n images), e.g. B to
      draw several `[B, ...]` sets concatenated along the batch one per row.
  """
  if cols is not None and (isinstance(cols, bool) or not isinstance(cols, (int, np.integer))
                           or cols < 1):
    raise ValueError(f"`cols` must be an integer >= 1 or None; got {cols!r}.")
  plt = plotting.pyplot()

  x = np.asarray(samples, np.float64)
  imgs = _as_images(x)
  fig = None
  if imgs is None:
    if x.ndim != 2 or x.shape[1] < 2:
      raise ValueError(f"cannot draw samples of shape {x.shape} as a PNG.")
    fig, ax = plt.subplots(figsize=(4, 4))
    if reference is not None:
      r = np.asarray(reference).reshape(len(reference), -1)
      ax.scatter(r[:, 0], r[:, 1], s=12, c="tab:gray", label="data")
    ax.scatter(x[:, 0], x[:, 1], s=6, c="tab:red", label="samples")
    ax.legend(loc="best")
  else:
    imgs = imgs[:max_images]
    lo, hi = value_range if value_range is not None else (imgs.min(), imgs.max())
    imgs = np.clip((imgs - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    n = imgs.shape[0]
    cols = min(int(cols), n) if cols is not None else math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = imgs.shape[1:3]
    grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1) + imgs.shape[3:])
    for k in range(n):
      r, c = divmod(k, cols)
      grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + c * (w + 1):1 + c * (w + 1) + w] = imgs[k]
    fig, ax = plt.subplots(figsize=(max(2, cols * 0.6), max(2, rows * 0.6)))
    ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.axis("off")
  io.save_figure(fig, path)


def sample_to_files(data, out, *, noise=None, trajectory: bool = False,
                    png=None, checkpoint=None, model_index=None, use_ema=True,
                    **kwargs) -> SampleResult:
  """`sample_from_data` with file inputs / outputs (what `experiments.sample` runs).

  Args:
    data: array `[N, ...]` or a `.npy`/`.npz` path.
    out: output `.npz`; holds `samples [B, ...]`, `noise`, `sigmas`, `meta`
      (JSON of the run's settings) and, with `trajectory`, `xs`, `x0_hats`.
    noise: array `[B, ...]`, a `.npy` path, or None (drawn from `seed`).
    trajectory: store the trajectory.
    png: path of a PNG of the samples; True for `out` with suffix `.png`;
      None draws one only for image data (`data.ndim >= 3`); False never.
    checkpoint: instead of `data`, a training workdir (`experiments/train.py`):
      its latest checkpoint is sampled (`repro_jax.networks.training.load_denoiser`,
      with `model_index` for a many-model run and `use_ema`).
    **kwargs: passed to `sample_from_data`.
  """
  out = pathlib.Path(out)
  if (data is None) == (checkpoint is None):
    raise ValueError("give exactly one of `data` (empirical denoiser) and "
                     "`checkpoint` (trained network).")
  if out.suffix != ".npz":
    raise ValueError(f"`out` must be a .npz path; got {str(out)!r}.")
  if isinstance(noise, (str, os.PathLike)):
    noise = data_lib.read_array(noise, name="noise")
  if checkpoint is not None:
    from repro_jax.networks import training  # the training stack only when needed
    denoise = training.load_denoiser(str(checkpoint), use_ema=use_ema,
                                     model_index=model_index)
    data = np.zeros((1,) + tuple(denoise.data_shape), np.float32)
    kwargs.update(checkpoint=str(checkpoint), checkpoint_step=denoise.info["step"],
                  model_index=model_index, use_ema=use_ema)
    sample = lambda z, **kw: sample_with(denoise, data, z, **{
        k: v for k, v in kw.items()
        if k not in ("checkpoint", "checkpoint_step", "model_index", "use_ema")})
  else:
    if isinstance(data, (str, os.PathLike)):
      data = data_lib.read_array(data, name="data")
    data = np.asarray(data)
    sample = lambda z, **kw: sample_from_data(data, z, **kw)
  noise = resolve_noise(data, noise, seed=kwargs.get("seed", 0),
                        num_samples=kwargs.pop("num_samples", None))
  res = sample(noise, return_trajectory=trajectory, **kwargs)
  meta = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
  arrays = dict(samples=res.samples, sigmas=res.sigmas,
                meta=np.asarray(json.dumps(meta, default=str)))
  arrays["noise"] = noise
  if trajectory:
    arrays.update(xs=res.xs, x0_hats=res.x0_hats)
  save_npz(out, **arrays)
  if png is None:
    png = data.ndim >= 3
  if png:
    png_path = out.with_suffix(".png") if png is True else pathlib.Path(png)
    value_range = ((-1.0, 1.0) if checkpoint is not None   # training data lie in [-1, 1]
                   else (float(data.min()), float(data.max())))
    save_image_grid(png_path, res.samples, reference=None if checkpoint is not None else data,
                    value_range=value_range)
  return res
