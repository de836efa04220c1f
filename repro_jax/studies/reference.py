"""How a rerun compares with a reference run of the same study (e.g. the committed one).

The key numbers of a study are the `measured` values of its verdicts: a rerun
matches its reference when every verdict is the same and every key number
agrees within a relative tolerance (trained networks and float32 reductions
are not bit-reproducible across machines and thread counts).  The largest
relative difference over all numbers of `metrics.json` (timings excepted) is
reported beside it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

# Relative tolerance on the verdicts' measured numbers; absolute floor for
# numbers that are (near) zero, such as float64 round-off errors.
RTOL = 0.05
ATOL = 1e-6
_TIMING = ("second", "steps_per_sec", "per_sec", "elapsed", "finished")
_NONFINITE = ("nan", "inf", "-inf")   # how `io.to_jsonable` writes them


@dataclasses.dataclass(frozen=True)
class Comparison:
  """Outcome of `compare`."""
  verdicts_match: bool
  key_numbers_match: bool
  max_key_diff: float           # largest relative difference of a key number
  max_diff: float               # largest relative difference over all numbers
  where: str                    # the number with the largest difference
  note: str = ""

  @property
  def matches(self) -> bool:
    return self.verdicts_match and self.key_numbers_match

  def text(self) -> str:
    if self.note:
      return self.note
    if self.matches:
      return f"matches (key numbers within {self.max_key_diff:.1e} rel.)"
    if not self.verdicts_match:
      return "verdicts differ"
    return f"key numbers differ (up to {self.max_key_diff:.1e} rel. at {self.where})"


def _numbers(value: Any, path: str = "") -> Iterator[tuple[str, float]]:
  if isinstance(value, dict):
    for k, v in value.items():
      if not any(t in str(k).lower() for t in _TIMING):
        yield from _numbers(v, f"{path}.{k}" if path else str(k))
  elif isinstance(value, (list, tuple)):
    for i, v in enumerate(value):
      yield from _numbers(v, f"{path}[{i}]")
  elif isinstance(value, (int, float)) and not isinstance(value, bool):
    yield path, float(value)
  elif isinstance(value, str) and value in _NONFINITE:
    yield path, float(value)


def _rel(a: float, b: float) -> float:
  """Relative difference; NaN against a number (or inf against a finite) is inf."""
  if a == b or (math.isnan(a) and math.isnan(b)):
    return 0.0
  if not (math.isfinite(a) and math.isfinite(b)):
    return math.inf
  if abs(a - b) <= ATOL:
    return 0.0
  return abs(a - b) / max(abs(a), abs(b))


def _max_diff(ref, new, *, missing: bool = False) -> tuple[float, str]:
  """Largest `_rel` over the numbers both hold; with `missing`, a number only
  one of them holds counts as an infinite difference."""
  a, b = dict(_numbers(ref)), dict(_numbers(new))
  worst, where = 0.0, ""
  for k in sorted(a.keys() | b.keys()):
    if k in a and k in b:
      d = _rel(a[k], b[k])
    else:
      d = math.inf if missing else 0.0
    if d > worst:
      worst, where = d, k
  return worst, where


def compare(reference: dict | None, new: dict, *, rtol: float = RTOL) -> Comparison:
  """Compare two `metrics.json` contents of one study."""
  if reference is None:
    return Comparison(True, True, 0.0, 0.0, "", note="no reference")
  rv, nv = reference.get("verdicts", []), new.get("verdicts", [])
  same_verdicts = ([(v["claim"], v["verdict"]) for v in rv] ==
                   [(v["claim"], v["verdict"]) for v in nv])
  key, key_where = _max_diff({"verdicts": [v["measured"] for v in rv]},
                            {"verdicts": [v["measured"] for v in nv]}, missing=True)
  worst, where = _max_diff(reference, new)
  if not rv:
    return Comparison(False, False, key, worst, where,
                      note="reference has no verdicts (older format)")
  return Comparison(same_verdicts, key <= rtol, key, worst, key_where or where)
