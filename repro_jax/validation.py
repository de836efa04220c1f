"""Argument validation and the dtype policy shared by the public functions.

When checks run:

- *Shape and dtype checks* (number of dimensions, matching D, scalar-or-`[B]`
  parameters, empty arrays, complex dtypes, chunk sizes, names) run on every
  call, also at trace time under `jax.jit`, `jax.vmap` or `lax.scan`, where
  shapes and dtypes are known.  A bad shape raises `ValueError` before any
  work, whether or not the function is transformed.
- *Value checks* (NaN/inf entries, σ > 0, orthonormal bases, positive
  semi-definite covariances, non-negative weights) need numbers.  They run on
  concrete (eager) arguments only.  A traced argument is not checked, unless
  the trace happens inside `traced_value_checks()`: there each value check
  becomes a `jax.experimental.checkify` check, and the caller functionalizes
  it with `checkify.checkify(fn, errors=checkify.user_checks)` (a jitted
  function that contains such checks and is not functionalized fails to
  trace).  The switch is read at trace time: a function jitted and cached
  before the switch was turned on keeps its unchecked program.

The samplers (`repro_jax.samplers.sample`, `invert`) check their concrete
inputs (noise, σ grid, options) eagerly, and the canonical closed-form
denoisers of `repro_jax.diffusion.denoiser` check their data when they are
built, so the sampling path is checked although the denoiser runs traced.

Dtype policy (`float_dtypes`): integer and bool inputs are promoted to the
default float dtype (float32, or float64 under `jax.enable_x64`), never the
other way round; float16 and bfloat16 inputs are computed in float32 and the
result is cast back to the input dtype (float16 cannot hold `1/(2σ²)` at EDM's
σ_min = 0.002 nor the squared distances of pixel-scale data); float32 and
float64 are computed as given.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

_TRACED_CHECKS = contextvars.ContextVar("repro_jax_traced_value_checks", default=False)


@contextlib.contextmanager
def traced_value_checks(enabled: bool = True):
  """Within this context, value checks on traced arguments become `checkify` checks.

  Example:

      with validation.traced_value_checks():
        f = checkify.checkify(jax.jit(empirical_denoiser), errors=checkify.user_checks)
        err, out = f(x, data, sigma)
      err.throw()          # raises if σ ≤ 0, or x or data hold NaN/inf, ...
  """
  token = _TRACED_CHECKS.set(bool(enabled))
  try:
    yield
  finally:
    _TRACED_CHECKS.reset(token)


class DivergedError(FloatingPointError):
  """Training produced a NaN or inf loss or parameters (docs/theory.md §0.5).

  Raised, with the step, instead of continuing from or saving such a state.
  """


def is_traced(*xs: Any) -> bool:
  """True if any argument is an abstract tracer (we are inside a transform)."""
  return any(isinstance(x, jax.core.Tracer) for x in xs)


def require(x: Any, predicate: Callable[[Any], Any], message: str) -> None:
  """A value check: raise `ValueError(message)` unless `predicate(x)` holds.

  `predicate` maps `x` to a boolean scalar with `jnp` operations.  Eager for a
  concrete `x`; for a traced `x` a `checkify` check inside
  `traced_value_checks()`, nothing otherwise.
  """
  if is_traced(x):
    if _TRACED_CHECKS.get():
      checkify.check(predicate(x), message.replace("{", "{{").replace("}", "}}"))
    return
  with jax.ensure_compile_time_eval():   # concrete, even while tracing an outer jit
    ok = bool(predicate(x))
  if not ok:
    raise ValueError(message)


def shape_of(x: Any) -> tuple[int, ...]:
  return tuple(np.shape(x))


def check_ndim(x: Any, ndim: int, name: str, letters: str) -> None:
  """Raise if `x` does not have `ndim` dimensions, naming the expected shape."""
  if np.ndim(x) != ndim:
    raise ValueError(
        f"`{name}` must have shape [{', '.join(letters)}] ({ndim} dims); "
        f"got shape {shape_of(x)}.")


def check_same_dim(a: Any, b: Any, name_a: str, name_b: str) -> None:
  """Raise if the last dimensions (the data dimension D) differ."""
  if shape_of(a)[-1] != shape_of(b)[-1]:
    raise ValueError(
        f"`{name_a}` and `{name_b}` must share the last dimension D; got "
        f"{shape_of(a)} and {shape_of(b)}.")


def check_nonempty(x: Any, name: str) -> None:
  if np.size(x) == 0 or shape_of(x)[0] == 0:
    raise ValueError(f"`{name}` is empty (shape {shape_of(x)}).")


def check_finite(x: Any, name: str) -> None:
  """Raise if `x` holds NaN or inf (a value check, see the module docstring)."""
  if not is_traced(x) and not isinstance(x, jax.Array):
    arr = np.asarray(x)
    if arr.dtype.kind not in "fc":     # integers and bools are always finite
      return
    if not bool(np.all(np.isfinite(arr))):
      raise ValueError(f"`{name}` contains NaN or inf values.")
    return
  require(x, lambda v: jnp.all(jnp.isfinite(v)), f"`{name}` contains NaN or inf values.")


def check_rate(value: Any, name: str) -> None:
  """A learning rate (or other step size) must be a finite number > 0."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
    raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
  if not (np.isfinite(value) and value > 0):
    raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")


def first_non_finite(values) -> tuple[int, ...] | None:
  """Index of the first NaN/inf entry of a concrete array (row-major), or None."""
  arr = np.asarray(values)
  bad = ~np.isfinite(arr)
  if not bad.any():
    return None
  return tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), arr.shape))


def check_positive(x: Any, name: str, *, allow_zero: bool = False) -> None:
  """Raise if `x` has entries <= 0 (or < 0 with `allow_zero`), or NaN/inf."""
  relation = ">= 0" if allow_zero else "> 0"
  if is_traced(x):
    ok = (lambda v: jnp.all(jnp.isfinite(v) & (v >= 0))) if allow_zero else (
        lambda v: jnp.all(jnp.isfinite(v) & (v > 0)))
    require(x, ok, f"`{name}` must be finite and {relation}.")
    return
  arr = np.asarray(x)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"`{name}` must be finite; got {arr!r}.")
  bad = arr < 0 if allow_zero else arr <= 0
  if np.any(bad):
    raise ValueError(f"`{name}` must be {relation}; got {arr!r}.")


def check_batch_param(p: Any, batch: int, name: str) -> None:
  """A per-sample parameter is a scalar or a vector of length B."""
  shp = shape_of(p)
  if shp not in ((), (batch,), (1,)):
    raise ValueError(
        f"`{name}` must be a scalar or have shape [B] = [{batch}]; got {shp}.")


def check_int(v: Any, name: str, *, minimum: int | None = None,
              allow_none: bool = False) -> None:
  """Raise unless `v` is an integer (not a bool) `>= minimum` (or None if allowed)."""
  if v is None and allow_none:
    return
  if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
    raise ValueError(f"`{name}` must be an integer{' or None' if allow_none else ''}; "
                     f"got {v!r}.")
  if minimum is not None and v < minimum:
    raise ValueError(f"`{name}` must be >= {minimum}; got {v!r}.")


def check_chunk(chunk: Any, name: str = "chunk_size") -> None:
  """A chunk size is None (one block) or an integer >= 1."""
  check_int(chunk, name, minimum=1, allow_none=True)


def check_number(v: Any, name: str, *, lo: float | None = None,
                 hi: float | None = None, lo_open: bool = False,
                 hi_open: bool = False, kind: str = "") -> float:
  """A finite real number in the given range (bools rejected); returns it as float.

  `kind` prefixes the name in messages (e.g. `"option "`).
  """
  label = f"{kind}`{name}`"
  if isinstance(v, (bool, np.bool_)):
    raise ValueError(f"{label} must be a number; got {v!r}.")
  try:
    f = float(v)
  except (TypeError, ValueError):
    raise ValueError(f"{label} must be a number; got {v!r}.") from None
  bad = not np.isfinite(f)
  if lo is not None:
    bad |= f <= lo if lo_open else f < lo
  if hi is not None:
    bad |= f >= hi if hi_open else f > hi
  if bad:
    rng = (f"{'(' if lo_open else '['}{'-inf' if lo is None else lo}, "
           f"{'inf' if hi is None else hi}{')' if hi_open else ']'}")
    raise ValueError(f"{label} must be finite and in {rng}; got {v!r}.")
  return f


def float_dtypes(**arrays: Any) -> tuple[Any, Any]:
  """`(out, compute)` dtypes of a float computation on the named arrays.

  `out` is the arrays' promoted dtype, or the default float dtype when that is
  an integer or bool dtype; `compute` is `out` promoted to at least float32.
  Complex arrays raise ValueError naming the argument.
  """
  dts = []
  for name, a in arrays.items():
    dt = jnp.result_type(a)
    if jnp.issubdtype(dt, jnp.complexfloating):
      raise ValueError(f"`{name}` must be real; got dtype {dt}.")
    dts.append(dt)
  out = jnp.result_type(*dts)
  if not jnp.issubdtype(out, jnp.floating):
    out = jnp.result_type(float)
  return jnp.dtype(out), jnp.dtype(jnp.promote_types(out, jnp.float32))


def unknown_name(kind: str, name: str, known: Any) -> ValueError:
  return ValueError(
      f"Unknown {kind} {name!r}; choose one of: {', '.join(sorted(known))}.")
