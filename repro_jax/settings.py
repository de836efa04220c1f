"""Typed, frozen settings: what a config becomes before it reaches library code.

The user-facing config files (ml_collections ConfigDicts with
`--config.x=` overrides) are parsed ONCE, at the entry point or the runner,
into frozen dataclasses; library functions take those and arrays, never a
ConfigDict or a path to a config file.

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Optim:
      learning_rate: float = 1e-3
      warmup_steps: int = 200

    s = settings.parse(Optim, {"learning_rate": 3e-4})     # a mapping or a ConfigDict
    settings.to_dict(s)          # {"learning_rate": 0.0003, "warmup_steps": 200}
    settings.override(s, {"warmup_steps": 0})              # a new, re-checked value

Parsing checks every field by its annotation (int, float, bool, str, tuples,
nested settings, `X | None`), turns JSON lists back into tuples, and rejects
unknown fields with a message naming the dotted path and the known fields.
`to_dict` is the canonical JSON-able form: what `config.json` records and
what fingerprints hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from typing import Any, Mapping, TypeVar

T = TypeVar("T")

_NONE = type(None)


def _as_mapping(value, where: str) -> Mapping[str, Any]:
  if hasattr(value, "to_dict") and not dataclasses.is_dataclass(value):   # ConfigDict
    value = value.to_dict()
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    value = to_dict(value)
  if not isinstance(value, Mapping):
    raise ValueError(f"{where} must be a mapping of fields; got {type(value).__name__}.")
  return value


def parse(cls: type[T], value, *, where: str = "config") -> T:
  """Build the frozen settings `cls` from a mapping, ConfigDict or settings value.

  Missing fields take their defaults; unknown fields, wrong types and
  out-of-range values (`__post_init__` of `cls`) raise `ValueError` naming
  the field as `where.a.b`.
  """
  if isinstance(value, cls):
    return value
  mapping = _as_mapping(value, where)
  hints = typing.get_type_hints(cls)
  names = [f.name for f in dataclasses.fields(cls) if f.init]
  unknown = sorted(set(mapping) - set(names))
  if unknown:
    raise ValueError(f"unknown field(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                     f"known fields of {where}: {', '.join(names)}.")
  kwargs = {k: _coerce(hints[k], mapping[k], f"{where}.{k}") for k in names if k in mapping}
  try:
    return cls(**kwargs)
  except TypeError as e:   # a required field is missing
    raise ValueError(f"{where}: {e}") from None


def _type_name(tp) -> str:
  return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(tp, value, where: str):
  """`value` checked against the annotation `tp` (and converted where lossless)."""
  if tp is Any:
    return value
  origin, args = typing.get_origin(tp), typing.get_args(tp)
  if origin in (typing.Union, types.UnionType):
    if value is None and _NONE in args:
      return None
    errors = []
    for arg in (a for a in args if a is not _NONE):
      try:
        return _coerce(arg, value, where)
      except ValueError as e:
        errors.append(str(e))
    raise ValueError(errors[0] if len(errors) == 1 else
                     f"{where} must be one of {', '.join(map(_type_name, args))}; got {value!r}.")
  if dataclasses.is_dataclass(tp):
    return parse(tp, value, where=where)
  if origin is tuple:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
      raise ValueError(f"{where} must be a tuple; got {value!r}.")
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if args and len(args) != len(value):
      raise ValueError(f"{where} must have {len(args)} entries; got {value!r}.")
    return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
  if tp is bool:
    if not isinstance(value, bool):
      raise ValueError(f"{where} must be True or False; got {value!r}.")
    return value
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      if isinstance(value, float) and value.is_integer():
        return int(value)
      raise ValueError(f"{where} must be an integer; got {value!r}.")
    return int(value)
  if tp is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ValueError(f"{where} must be a number; got {value!r}.")
    return float(value)
  if tp is str:
    if not isinstance(value, str):
      raise ValueError(f"{where} must be a string; got {value!r}.")
    return value
  return value


def to_dict(value) -> Any:
  """The JSON-able form: nested dicts, tuples as lists, in field order."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
  if isinstance(value, (list, tuple)):
    return [to_dict(v) for v in value]
  if isinstance(value, Mapping):
    return {str(k): to_dict(v) for k, v in value.items()}
  return value


def _tuples(value):
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  return value


def to_config(value):
  """An `ml_collections.ConfigDict` of the settings (tuples kept as tuples), for
  the user-facing config files and their `--config.x=` overrides."""
  import ml_collections
  return ml_collections.ConfigDict(_tuples(to_dict(value)))


def _merge(base: dict, changes: Mapping, where: str) -> dict:
  out = dict(base)
  for k, v in dict(changes).items():
    if k not in out:
      raise ValueError(f"unknown field {where}.{k}; known: {', '.join(out)}.")
    if isinstance(v, Mapping) and isinstance(out[k], dict):
      out[k] = _merge(out[k], v, f"{where}.{k}")
    else:
      out[k] = to_dict(v)
  return out


def override(value: T, changes: Mapping[str, Any], *, where: str = "config") -> T:
  """A copy of `value` with nested `changes` applied (and checked again)."""
  return parse(type(value), _merge(to_dict(value), _as_mapping(changes, where), where),
               where=where)


def to_json(value, **kwargs) -> str:
  """`to_dict` as JSON with sorted keys (the form fingerprints hash)."""
  kwargs.setdefault("sort_keys", True)
  return json.dumps(to_dict(value), **kwargs)


def digest(value, length: int = 16) -> str:
  """A short hash of the settings' canonical JSON."""
  return hashlib.sha256(to_json(value).encode()).hexdigest()[:length]
