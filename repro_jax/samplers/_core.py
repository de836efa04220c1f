"""The machinery every sampler shares: result type, spec, the scanned driver.

A sampler is a `SamplerSpec`: a pure `step` that moves a batch `x [B, ...]`
(VE coordinates, `x = x0 + σ ε`) from `σ_cur` to `σ_next`, an optional `final`
step used when the grid ends at σ = 0, the state it carries between steps, and
its options.  `run` turns a spec into one jitted `lax.scan` over the grid:

- the grid enters as an array, so a new grid of the same length reuses the
  compiled loop; the loop is retraced only per grid length, per "ends at 0",
  per batch shape / dtype, per structural option and per denoiser;
- the denoiser is traced once into a jaxpr whose captured arrays (training set,
  network parameters) are hoisted into jit *arguments*, not baked into the
  program as constants (which would copy a 100 MB data set into the HLO);
- per-step keys are `fold_in(key, step)`;
- `run` checks its concrete inputs (start, grid, options, key) eagerly; the
  denoiser runs traced, where value checks do not run (`repro_jax.validation`),
  so the canonical closed-form denoisers check their data when they are built;
- a float16 or bfloat16 start is carried (and the denoiser called) in float32,
  and the results are cast back: float16 cannot hold `1/σ²` at EDM's
  σ_min = 0.002, and rounding the state to 8 or 11 bits at every step moves
  deterministic trajectories to other training points.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from repro_jax import validation
from repro_jax.diffusion.schedules import check_sigma_grid

Array = jax.Array


class SampleResult(NamedTuple):
  """Output of a sampler run (or an inversion).

  Attributes:
    samples: the final states `[B, ...]` (for `invert`: the latents
      `z = x(σ_max) / σ_max`).
    xs: states along the grid `[T+1, B, ...]` (`xs[0]` the start), or None
      unless the trajectory was requested.
    x0_hats: the denoiser's estimate `x̂0 = D(x_t, σ_t)` at each step
      `[T, B, ...]` (for Heun with churn: at the churned `σ̂_t`), or None.
    sigmas: the σ grid walked, `[T+1]` (float64 NumPy, as given).
  """
  samples: Array
  xs: Array | None
  x0_hats: Array | None
  sigmas: Array


# A step: (den, x, state, i, s_cur, s_next, key, opts) -> (x_next, state, x0_hat),
# `den(x, s)` the canonical denoiser at a scalar σ, `opts` a dict of options.
StepFn = Callable[..., tuple]


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
  """A registered sampler (hashable: it is a static argument of `jax.jit`).

  Attributes:
    name: registry name.
    step: the update from `σ_cur > 0` to `σ_next` (either direction; `σ_next`
      may be 0 only if `final` is None).
    init: `x -> state`, the pytree carried between steps.
    final: update for a last step to σ = 0, `(den, x, state, i, s_cur, key,
      opts)`; None uses `step` with `σ_next = 0`.
    options: `((name, default), ...)` float options, traced (no retrace when
      they change).
    static_options: `((name, default), ...)` structural options (retrace).
    validate: `opts -> None`, raises ValueError naming the bad option.
    stochastic: `opts -> bool`, whether the run draws noise (then a `key` is
      required).
    evals: `opts -> int`, denoiser evaluations per (non-final) step.
    invertible: True if the deterministic update may run on an increasing grid
      (`invert`).
  """
  name: str
  step: StepFn
  init: Callable = lambda x: ()
  final: StepFn | None = None
  options: tuple = ()
  static_options: tuple = ()
  validate: Callable = lambda opts: None
  stochastic: Callable = lambda opts: False
  evals: Callable = lambda opts: 1
  invertible: bool = False

  def resolve(self, options: dict) -> dict:
    """Defaults overridden by `options`; unknown names raise ValueError."""
    known = dict(self.options + self.static_options)
    unknown = sorted(set(options) - set(known))
    if unknown:
      raise ValueError(
          f"sampler {self.name!r} has no option(s) {unknown}; its options are "
          f"{sorted(known) or 'none'}.")
    opts = {**known, **options}
    self.validate(opts)
    return opts


# Helpers for step functions ------------------------------------------------------

def normal_like(key, x):
  """Standard normal noise with the shape and dtype of `x` (one draw per step key)."""
  return jax.random.normal(key, x.shape, x.dtype)


def eps_from(x, x0, s):
  """ε-head in VE coordinates, `(x − D) / σ`."""
  return (x - x0) / s


def denoise_final(den, x, state, i, s, key, opts):
  """Last step to σ = 0: return the posterior mean (every solver's limit)."""
  del i, key, opts
  x0 = den(x, s)
  return x0, state, x0


def check_range(opts: dict, name: str, lo=None, hi=None, *, lo_open=False,
                hi_open=False) -> None:
  """Raise unless option `name` is a finite number in `[lo, hi]` (open ends if asked)."""
  validation.check_number(opts[name], name, lo=lo, hi=hi, lo_open=lo_open,
                          hi_open=hi_open, kind="option ")


# Denoiser hoisting -----------------------------------------------------------------

_HOISTED: "weakref.WeakKeyDictionary[Callable, dict]" = weakref.WeakKeyDictionary()


def _float_dtype_key():
  return jnp.zeros(()).dtype.name  # float32, or float64 under enable_x64


def hoist(denoise: Callable, x: Array, arg_name: str = "x"):
  """Trace `denoise(x, σ[B])` once; return `(pure, consts)`.

  `pure(consts, x, sigma)` evaluates the traced program with the arrays the
  denoiser closed over passed in as `consts`, so that they become arguments of
  the sampler's jit rather than constants.  Cached per denoiser object (weakly)
  and input shape / dtype, so the same `pure` comes back and the jit cache hits.
  """
  key = (tuple(x.shape), jnp.dtype(x.dtype).name, _float_dtype_key())
  try:
    per = _HOISTED.setdefault(denoise, {})
  except TypeError:  # not weak-referenceable: no cache
    per = {}
  if key in per:
    return per[key]
  x_spec = jax.ShapeDtypeStruct(x.shape, x.dtype)
  s_spec = jax.ShapeDtypeStruct(x.shape[:1], x.dtype)
  try:
    closed = jax.make_jaxpr(denoise)(x_spec, s_spec)
  except Exception as e:  # shapes the denoiser cannot take
    raise ValueError(
        f"the denoiser cannot be applied to `{arg_name}` of shape "
        f"{tuple(x.shape)} ({x.dtype}) with sigma [B]: {type(e).__name__}: {e}") from e
  outs = closed.out_avals
  if len(outs) != 1 or tuple(outs[0].shape) != tuple(x.shape):
    raise ValueError(
        f"the denoiser must return x0 with the shape of `{arg_name}` "
        f"{tuple(x.shape)}; it returned {[tuple(o.shape) for o in outs]}.")
  jaxpr = closed.jaxpr

  def pure(consts, x, sigma):
    return jax.core.eval_jaxpr(jaxpr, consts, x, sigma)[0].astype(x.dtype)

  per[key] = (pure, list(closed.consts))
  return per[key]


# The scanned driver ----------------------------------------------------------------

@functools.partial(jax.jit, static_argnames=("spec", "pure", "static", "final_zero",
                                             "trajectory"))
def _drive(x, sigmas, key, consts, dyn, *, spec, pure, static, final_zero,
           trajectory):
  t = sigmas.shape[0] - 1
  b = x.shape[0]
  opts = {**dyn, **dict(static), "num_steps": t}

  def den(x, s):
    return pure(consts, x, jnp.broadcast_to(s, (b,)).astype(x.dtype))

  def body(carry, inp):
    x, state = carry
    i, s, s_next = inp
    x_new, state, x0 = spec.step(den, x, state, i, s, s_next,
                                 jax.random.fold_in(key, i), opts)
    return (x_new, state), ((x_new, x0) if trajectory else None)

  n_scan = t - 1 if final_zero else t
  idx = jnp.arange(t)
  (x_end, state), traj = lax.scan(
      body, (x, spec.init(x)), (idx[:n_scan], sigmas[:n_scan], sigmas[1:n_scan + 1]))
  if final_zero:
    final = spec.final or (lambda den, x, st, i, s, k, o: spec.step(
        den, x, st, i, s, jnp.zeros_like(s), k, o))
    x_last, _, x0_last = final(den, x_end, state, idx[t - 1], sigmas[t - 1],
                               jax.random.fold_in(key, idx[t - 1]), opts)
    if trajectory:
      traj = (jnp.concatenate([traj[0], x_last[None]]),
              jnp.concatenate([traj[1], x0_last[None]]))
    x_end = x_last
  if not trajectory:
    return SampleResult(x_end, None, None, sigmas)
  xs = jnp.concatenate([x[None], traj[0]])
  return SampleResult(x_end, xs, traj[1], sigmas)


def check_key(key) -> None:
  if key is None:
    return
  if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return
  if np.shape(key) != (2,) or np.asarray(key).dtype != np.uint32:
    raise ValueError(f"`key` must be a PRNG key (jax.random.key or PRNGKey); got "
                     f"{type(key).__name__} of shape {np.shape(key)}.")


def check_start(x, name: str) -> Array:
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[0] < 1 or x.size == 0:
    raise ValueError(f"`{name}` must have shape [B, ...] with B >= 1; got {tuple(x.shape)}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f"`{name}` must be a float array; got dtype {x.dtype}.")
  validation.check_finite(x, name)
  return x


def run(spec: SamplerSpec, denoise: Callable, x: Array, sigmas, *, key=None,
        return_trajectory: bool = False, arg_name: str = "x",
        check_grid: bool = True, **options) -> SampleResult:
  """Run `spec` from the state `x [B, ...]` (at `sigmas[0]`) along `sigmas [T+1]`.

  The grid may decrease (sampling; a last entry 0 triggers the final step) or,
  for `invert`, increase (all entries > 0); `check_grid` validates a
  decreasing grid.
  """
  x = check_start(x, arg_name)
  out_dtype, compute = validation.float_dtypes(**{arg_name: x})
  x = x.astype(compute)     # float16 / bfloat16 states are carried in float32
  sig = np.asarray(sigmas, np.float64)
  if check_grid:
    check_sigma_grid(sig)
  opts = spec.resolve(options)
  stochastic = bool(spec.stochastic(opts))
  if stochastic and key is None:
    raise ValueError(f"sampler {spec.name!r} is stochastic with these options; "
                     f"pass a PRNG `key`.")
  check_key(key)
  if key is None:
    key = jax.random.PRNGKey(0)  # unused by deterministic updates
  static_names = {n for n, _ in spec.static_options}
  static = tuple(sorted((n, v) for n, v in opts.items() if n in static_names))
  static += (("noisy", stochastic),)
  dyn = {n: np.asarray(v, x.dtype) for n, v in opts.items() if n not in static_names}
  pure, consts = hoist(denoise, x, arg_name)
  res = _drive(x, jnp.asarray(sig, x.dtype), key, consts, dyn, spec=spec,
               pure=pure, static=static, final_zero=bool(sig[-1] == 0.0),
               trajectory=bool(return_trajectory))
  cast = lambda a: None if a is None else a.astype(out_dtype)
  return res._replace(samples=cast(res.samples), xs=cast(res.xs),
                      x0_hats=cast(res.x0_hats), sigmas=sig)


def num_evaluations(spec: SamplerSpec, sigmas, **options) -> int:
  """Denoiser calls a run makes on `sigmas` (a final step to 0 costs one)."""
  opts = spec.resolve(options)
  sig = np.asarray(sigmas, np.float64)
  t = sig.shape[0] - 1
  per = int(spec.evals(opts))
  if sig[-1] == 0.0:
    return per * (t - 1) + 1
  return per * t


