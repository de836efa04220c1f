"""Verdicts as data: what a study concluded, in a form programs can read.

A study judges its measurements against criteria declared in its settings
(fixed before measuring) and returns a list of `Verdict`s.  The runner stores
them in `results/<study>/metrics.json` under `"verdicts"`; the study's report
and the results page are rendered from that list, never the other way round.

    {"claim": "...", "verdict": "reproduced" | "partly" | "not reproduced" | "not tested",
     "criterion": "...", "measured": {...}, "source": "..."}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from repro_jax import io

VERDICTS = ("reproduced", "partly", "not reproduced", "not tested")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Verdict:
  """One claim judged against one declared criterion.

  Attributes:
    claim: what the source states, in one sentence.
    verdict: one of `VERDICTS`.
    criterion: the test, with its thresholds (from the study's settings).
    measured: the numbers the criterion was evaluated on (JSON-able; a
      confidence interval as `[lo, hi]` next to its point value).
    source: where the claim comes from (document and section, or
      `docs/theory.md §n`).
  """
  claim: str
  verdict: str
  criterion: str
  measured: Mapping[str, Any]
  source: str

  def __post_init__(self):
    if self.verdict not in VERDICTS:
      raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}.")
    for name in ("claim", "criterion", "source"):
      if not isinstance(getattr(self, name), str) or not getattr(self, name):
        raise ValueError(f"a verdict needs a non-empty `{name}`.")

  def to_dict(self) -> dict:
    return dict(claim=self.claim, verdict=self.verdict, criterion=self.criterion,
                measured=io.to_jsonable(dict(self.measured)), source=self.source)


def judge(passed: bool, *, claim: str, criterion: str, measured: Mapping[str, Any],
          source: str, partly: bool = False) -> Verdict:
  """`reproduced` if `passed`, `partly` if not but `partly`, else `not reproduced`."""
  verdict = "reproduced" if passed else ("partly" if partly else "not reproduced")
  return Verdict(claim=claim, verdict=verdict, criterion=criterion, measured=measured,
                 source=source)


def from_dicts(rows: Sequence[Mapping[str, Any]]) -> list[Verdict]:
  """The verdicts of a `metrics.json` (checked against the schema)."""
  return [Verdict(**dict(r)) for r in rows]


def _fmt(value) -> str:
  if isinstance(value, float):
    return f"{value:.3g}"
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(_fmt(v) for v in value) + "]"
  return str(value)


def measured_text(measured: Mapping[str, Any]) -> str:
  return "; ".join(f"{k} = {_fmt(v)}" for k, v in measured.items())


def table(verdicts: Sequence[Verdict | Mapping[str, Any]]) -> str:
  """A markdown table: claim, verdict, criterion, measured."""
  vs = [v if isinstance(v, Verdict) else Verdict(**dict(v)) for v in verdicts]
  rows = [dict(claim=v.claim, verdict=f"**{v.verdict}**", criterion=v.criterion,
               measured=measured_text(v.measured)) for v in vs]
  return io.markdown_table(rows, ["claim", "verdict", "criterion", "measured"])


def summary(verdicts: Sequence[Verdict | Mapping[str, Any]]) -> str:
  """`3 reproduced, 1 partly` (counts in the order of `VERDICTS`)."""
  vs = [v.verdict if isinstance(v, Verdict) else v["verdict"] for v in verdicts]
  return ", ".join(f"{vs.count(k)} {k}" for k in VERDICTS if vs.count(k)) or "no verdicts"
