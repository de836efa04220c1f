"""Argument validation shared by the public functions.

Every check runs in Python on concrete values before any jitted work starts, and
is skipped for traced values (inside `jit`, `vmap`, `scan`), where shapes are
already fixed by the outer call that was checked.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def is_traced(*xs: Any) -> bool:
  """True if any argument is an abstract tracer (we are inside a transform)."""
  return any(isinstance(x, jax.core.Tracer) for x in xs)


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
  """Raise if a concrete array holds NaN or inf (skipped when traced)."""
  if is_traced(x):
    return
  if not bool(np.all(np.isfinite(np.asarray(x)))):
    raise ValueError(f"`{name}` contains NaN or inf values.")


def check_positive(x: Any, name: str, *, allow_zero: bool = False) -> None:
  """Raise if a concrete scalar/array has entries <= 0 (or < 0)."""
  if is_traced(x):
    return
  arr = np.asarray(x)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"`{name}` must be finite; got {arr!r}.")
  bad = arr < 0 if allow_zero else arr <= 0
  if np.any(bad):
    relation = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"`{name}` must be {relation}; got {arr!r}.")


def check_batch_param(p: Any, batch: int, name: str) -> None:
  """A per-sample parameter is a scalar or a vector of length B."""
  shp = shape_of(p)
  if shp not in ((), (batch,), (1,)):
    raise ValueError(
        f"`{name}` must be a scalar or have shape [B] = [{batch}]; got {shp}.")


def unknown_name(kind: str, name: str, known: Any) -> ValueError:
  return ValueError(
      f"Unknown {kind} {name!r}; choose one of: {', '.join(sorted(known))}.")
