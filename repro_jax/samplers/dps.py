"""Deterministic diffusion posterior sampling (DPS) over any deterministic sampler.

The reproducibility paper's App. D (Algorithm 1) removes every source of noise
from DPS (Chung et al., 2022): after each step of a deterministic solver from
`σ_i` to `σ_{i+1}`, the new state is pulled towards the measurement `z`,

    x'_{i+1} = Solver(x_i, σ_i → σ_{i+1})
    x_{i+1}  = x'_{i+1} − ξ_i ∇_{x_i} ℓ(z − A(x̂0(x_i, σ_i))),

with `x̂0 = D(x_i, σ_i)` the canonical denoiser, the gradient taken through it
(`jax.grad`), and `ℓ` either

- `loss="squared"`: `‖·‖²`, the paper's App. D (eq. 21, all `ξ_i = 1`), or
- `loss="norm"`: `‖·‖`, Chung et al.'s DPS (step `ζ`, i.e. `ζ / (2‖·‖)` on the
  squared norm).

Coordinates.  The paper writes the update for VP states `x^VP = s(σ) x`,
`s(σ) = 1 / sqrt(1 + σ²)`; in the VE coordinates of this package
(`x = x0 + σ ε`) the same update reads `x_{i+1} = x'_{i+1} − ξ_i ∇ ℓ` with
`ξ_i = ξ / (s(σ_i) s(σ_{i+1}))` (`step_scale="vp"`, the default: the paper's
constant ξ on VP states); `step_scale="ve"` takes `ξ_i = ξ` on VE states.

The step functions are the registered samplers' own (`_core.SamplerSpec.step`
/ `final`), driven by one jitted `lax.scan`; the denoiser's arrays are hoisted
into jit arguments as in `_core.run`.  Every noise has its own observation:
`noise [B, ...]` and `observation [B, ...]` are paired; a stack of M models
(`Denoiser.num_models = M`) runs every model on every pair (model-major) and
returns `[M, B, ...]`.

Measurement operators follow `Measurement`: a pytree (its arrays are jit
arguments) with `__call__(x [B, ...]) -> y [B, ...]` and `check(item_shape)`;
`Inpainting` keeps the pixels outside a hidden region (`centre_square`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Protocol, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from repro_jax import validation
from repro_jax.diffusion import denoiser as denoiser_lib
from repro_jax.diffusion.schedules import check_sigma_grid
from repro_jax.samplers import _core
from repro_jax.samplers import api

LOSSES = ("squared", "norm")
STEP_SCALES = ("vp", "ve")


# Measurement operators --------------------------------------------------------------

class Measurement(Protocol):
  """A (differentiable) measurement `A`: `A(x [B, ...]) -> y [B, ...]`.

  Must be a JAX pytree (its arrays become jit arguments); `check(item_shape)`
  raises ValueError for images it cannot measure.
  """

  def __call__(self, x: jax.Array) -> jax.Array: ...

  def check(self, item_shape: Sequence[int]) -> None: ...


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Inpainting:
  """`A(x) = m ⊙ x`: keeps the observed pixels (`mask = 1`), zeroes the hidden ones.

  Attributes:
    mask: `[H, W, C]` (or `[H, W, 1]`, broadcast over channels) of 0 / 1, 1 =
      observed.
  """
  mask: jax.Array

  def __call__(self, x):
    return x * self.mask.astype(x.dtype)

  def check(self, item_shape: Sequence[int]) -> None:
    shape = tuple(np.shape(self.mask))
    item = tuple(int(d) for d in item_shape)
    ok = len(shape) == len(item) and all(a in (b, 1) for a, b in zip(shape, item))
    ok = ok and shape[:-1] == item[:-1]
    if not ok:
      raise ValueError(f"the inpainting mask of shape {shape} does not fit images of shape "
                       f"{item} (it must be [H, W, C] or [H, W, 1] with the images' H, W).")

  @property
  def hidden_fraction(self) -> float:
    m = np.asarray(self.mask, np.float64)
    return float(1.0 - m.mean())


def centre_square(height: int, width: int, fraction: float) -> tuple[np.ndarray, int]:
  """A centred square hidden region covering about `fraction` of an `H × W` image.

  The side is the integer `k` that brings `k² / (H W)` nearest to `fraction`
  (ties: the smaller); the square starts at `((H − k) // 2, (W − k) // 2)`.

  Returns:
    `(mask [H, W, 1] float32 with 1 = observed, 0 = hidden, side k)`.
  """
  if not 0 < fraction < 1:
    raise ValueError(f"`fraction` must lie in (0, 1); got {fraction!r}.")
  h, w = int(height), int(width)
  if h < 2 or w < 2:
    raise ValueError(f"images must be at least 2 × 2; got {h} × {w}.")
  sides = np.arange(1, min(h, w) + 1)
  k = int(sides[np.argmin(np.abs(sides ** 2 / (h * w) - fraction))])
  mask = np.ones((h, w, 1), np.float32)
  r, c = (h - k) // 2, (w - k) // 2
  mask[r:r + k, c:c + k] = 0.0
  return mask, k


def inpainting(height: int, width: int, fraction: float) -> Inpainting:
  """`Inpainting` of a centred square covering about `fraction` (`centre_square`)."""
  return Inpainting(jnp.asarray(centre_square(height, width, fraction)[0]))


# The loop ---------------------------------------------------------------------------------

class DPSResult(NamedTuple):
  """Restorations and their data consistency.

  Attributes:
    samples: `[B, ...]` (or `[M, B, ...]` for a stack of M models).
    residual: `‖z − A(x)‖` of each restoration, `[B]` (or `[M, B]`).
  """
  samples: jax.Array
  residual: jax.Array


def step_size(xi: float, s, s_next, step_scale: str):
  """`ξ_i` on VE states: `ξ` (`"ve"`) or `ξ / (s(σ_i) s(σ_{i+1}))` (`"vp"`)."""
  if step_scale == "ve":
    return xi * jnp.ones_like(s)
  return xi * jnp.sqrt((1.0 + s * s) * (1.0 + s_next * s_next))


def _per_item(r, loss: str):
  sq = jnp.sum(jnp.square(r.reshape(r.shape[0], -1)), axis=1)
  return sq if loss == "squared" else jnp.sqrt(sq + 1e-30)


@functools.partial(jax.jit, static_argnames=("spec", "pure", "static", "final_zero", "loss",
                                             "step_scale"))
def _drive(x, sigmas, obs, operator, xi, consts, dyn, *, spec, pure, static, final_zero,
           loss, step_scale):
  t = sigmas.shape[0] - 1
  b = x.shape[0]
  opts = {**dyn, **dict(static), "num_steps": t, "noisy": False}
  key = jax.random.key(0)           # deterministic steps draw nothing

  def den(x, s):
    return pure(consts, x, jnp.broadcast_to(s, (b,)).astype(x.dtype))

  def guidance(x, s):
    def total(y):
      return jnp.sum(_per_item(obs - operator(den(y, s)), loss))
    return jax.grad(total)(x)

  def body(x_state, inp):
    x, state = x_state
    i, s, s_next = inp
    g = guidance(x, s)
    x_new, state, _ = spec.step(den, x, state, i, s, s_next, key, opts)
    return (x_new - step_size(xi, s, s_next, step_scale) * g, state), None

  n_scan = t - 1 if final_zero else t
  idx = jnp.arange(t)
  (x, state), _ = lax.scan(body, (x, spec.init(x)),
                           (idx[:n_scan], sigmas[:n_scan], sigmas[1:n_scan + 1]))
  if final_zero:
    s = sigmas[t - 1]
    g = guidance(x, s)
    final = spec.final or (lambda den, x, st, i, s, k, o: spec.step(
        den, x, st, i, s, jnp.zeros_like(s), k, o))
    x_last, _, _ = final(den, x, state, idx[t - 1], s, key, opts)
    x = x_last - step_size(xi, s, jnp.zeros_like(s), step_scale) * g
  res = jnp.sqrt(jnp.sum(jnp.square((obs - operator(x)).reshape(b, -1)), axis=1))
  return x, res


def check(noise, observation, operator, sigmas, *, sampler: str, xi: float, loss: str,
          step_scale: str, options: dict):
  """Validate every input of `dps` (before any work); returns `(spec, opts)`."""
  if loss not in LOSSES:
    raise ValueError(f"`loss` must be one of {LOSSES}; got {loss!r}.")
  if step_scale not in STEP_SCALES:
    raise ValueError(f"`step_scale` must be one of {STEP_SCALES}; got {step_scale!r}.")
  validation.check_number(xi, "xi", lo=0.0)
  spec = api.get_sampler(sampler)
  opts = spec.resolve(options)
  if spec.stochastic(opts):
    raise ValueError(f"DPS here is deterministic; sampler {sampler!r} with these options "
                     f"draws noise.")
  noise = _core.check_start(noise, "noise")
  observation = _core.check_start(observation, "observation")
  operator.check(noise.shape[1:])
  want = jax.eval_shape(operator, jax.ShapeDtypeStruct(noise.shape, noise.dtype)).shape
  if tuple(observation.shape) != tuple(want):
    raise ValueError(f"`observation` must have the shape of A(noise), {tuple(want)}; got "
                     f"{tuple(observation.shape)}.")
  sig = np.asarray(sigmas, np.float64)
  check_sigma_grid(sig)
  return spec, opts


def dps(denoise, noise, observation, operator: Measurement, sigmas, *,
        sampler: str = "heun", xi: float = 1.0, loss: str = "squared",
        step_scale: str = "vp", **options) -> DPSResult:
  """Deterministic DPS from `σ_max · noise`, one observation per noise.

  Args:
    denoise: canonical denoiser `D(x [B, ...], σ [B]) -> x0` (VE, `x = x0 + σ ε`),
      a `Denoiser` or a callable; a stack of M models runs every model on every
      (noise, observation) pair.
    noise: standard-normal `[B, ...]`.
    observation: `z = A(u) [B, ...]`, paired with `noise`.
    operator: the measurement `A` (`Measurement`, e.g. `Inpainting`).
    sigmas: strictly decreasing σ grid `[T+1]` (a last 0 runs the sampler's final step).
    sampler: a deterministic registered sampler (`heun`, `euler`, `dpm_solver`,
      `dpm_solver_pp_2m`, `ddim`, `sigma_form`, ...); `**options` its options.
    xi: guidance step `ξ >= 0` (0: plain sampling).
    loss: `"squared"` (paper App. D) or `"norm"` (Chung et al.).
    step_scale: `"vp"` (ξ on VP states, the paper) or `"ve"`.

  Returns:
    `DPSResult(samples [(M,) B, ...], residual [(M,) B])`.
  """
  spec, opts = check(noise, observation, operator, sigmas, sampler=sampler, xi=xi,
                     loss=loss, step_scale=step_scale, options=options)
  den = denoiser_lib.as_denoiser(denoise)
  _, dtype = validation.float_dtypes(noise=jnp.asarray(noise))   # float16 runs in float32
  x = jnp.asarray(noise, dtype)
  obs = jnp.asarray(observation, dtype)
  m = den.num_models or 1
  if den.stacked:
    x = jnp.broadcast_to(x[None], (m,) + x.shape).reshape((-1,) + x.shape[1:])
    obs = jnp.broadcast_to(obs[None], (m,) + obs.shape).reshape((-1,) + obs.shape[1:])
  sig = np.asarray(sigmas, np.float64)
  x = x * float(sig[0])
  static_names = {n for n, _ in spec.static_options}
  static = tuple(sorted((n, v) for n, v in opts.items() if n in static_names))
  dyn = {n: np.asarray(v, dtype) for n, v in opts.items() if n not in static_names}
  pure, consts = _core.hoist(den.fn, x, "noise")
  out, res = _drive(x, jnp.asarray(sig, dtype), obs, operator,
                    jnp.asarray(xi, dtype), consts, dyn, spec=spec, pure=pure,
                    static=static, final_zero=bool(sig[-1] == 0.0), loss=loss,
                    step_scale=step_scale)
  if den.stacked:
    out = out.reshape((m, -1) + out.shape[1:])
    res = res.reshape(m, -1)
  return DPSResult(out, res)


def dps_batched(denoise, noise, observation, operator: Measurement, sigmas, *,
                batch_size: int, **kwargs) -> DPSResult:
  """`dps` over fixed-size batches of pairs (the last padded; one compilation).

  Same arguments as `dps` plus `batch_size`; returns NumPy arrays
  `samples [(M,) B, ...]`, `residual [(M,) B]`.
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
      or batch_size < 1:
    raise ValueError(f"`batch_size` must be an integer >= 1; got {batch_size!r}.")
  noise, observation = np.asarray(noise, np.float32), np.asarray(observation, np.float32)
  check(noise, observation, operator, sigmas, **{k: kwargs.get(k, d) for k, d in (
      ("sampler", "heun"), ("xi", 1.0), ("loss", "squared"), ("step_scale", "vp"))},
        options={k: v for k, v in kwargs.items()
                 if k not in ("sampler", "xi", "loss", "step_scale")})
  b = noise.shape[0]
  size = min(int(batch_size), b)
  stacked = denoiser_lib.as_denoiser(denoise).stacked
  outs, ress = [], []
  for j in range(math.ceil(b / size)):
    z, o = noise[j * size:(j + 1) * size], observation[j * size:(j + 1) * size]
    keep = z.shape[0]
    if keep < size:
      pad = ((0, size - keep),) + ((0, 0),) * (z.ndim - 1)
      z, o = np.pad(z, pad), np.pad(o, pad)
    r = dps(denoise, z, o, operator, sigmas, **kwargs)
    sl = (slice(None), slice(0, keep)) if stacked else (slice(0, keep),)
    outs.append(np.asarray(r.samples)[sl])
    ress.append(np.asarray(r.residual)[sl])
  axis = 1 if stacked else 0
  return DPSResult(np.concatenate(outs, axis), np.concatenate(ress, axis))
