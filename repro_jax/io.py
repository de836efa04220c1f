"""Atomic writers for results: a crash never leaves a half-written file.

Each writer writes to a temporary file in the destination directory and moves
it into place with `os.replace` (atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import pathlib
import tempfile
from typing import Any, Iterable, Sequence

import numpy as np


@contextlib.contextmanager
def _atomic_path(path):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
  os.close(fd)
  try:
    yield tmp
    # mkstemp creates the file private (0600); give it the usual mode of a new
    # file under the user's umask, as a plain `open` would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_bytes(path, data: bytes) -> None:
  with _atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)


def write_text(path, text: str) -> None:
  write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any):
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if isinstance(obj, (np.generic,)):
    return obj.item()
  if isinstance(obj, np.ndarray) or hasattr(obj, "__array__"):
    return to_jsonable(np.asarray(obj).tolist())
  if isinstance(obj, float) and not np.isfinite(obj):
    return str(obj)
  return obj


def save_json(path, obj: Any) -> None:
  write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def load_json(path) -> Any:
  with open(path) as f:
    return json.load(f)


def save_csv(path, rows: Iterable[dict | Sequence], header: Sequence[str] | None = None) -> None:
  """Write rows (dicts, or sequences with `header`) as CSV."""
  rows = list(rows)
  buf = io.StringIO()
  if rows and isinstance(rows[0], dict):
    header = list(header or rows[0].keys())
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    for r in rows:
      w.writerow({k: to_jsonable(v) for k, v in r.items()})
  else:
    w = csv.writer(buf)
    if header:
      w.writerow(header)
    w.writerows(rows)
  write_text(path, buf.getvalue())


def save_figure(fig, path, **kwargs) -> None:
  """Save a matplotlib figure atomically (format from the suffix) and close it."""
  import matplotlib.pyplot as plt
  path = pathlib.Path(path)
  kwargs.setdefault("dpi", 120)
  kwargs.setdefault("bbox_inches", "tight")
  with _atomic_path(path) as tmp:
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **kwargs)
  plt.close(fig)


def save_npz(path, **arrays) -> None:
  buf = io.BytesIO()
  np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
  write_bytes(path, buf.getvalue())


def save_npy(path, array) -> None:
  buf = io.BytesIO()
  np.save(buf, np.asarray(array))
  write_bytes(path, buf.getvalue())


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None,
                   fmt: str = "{:.3g}") -> str:
  """A GitHub-markdown table from dict rows (floats formatted with `fmt`)."""
  if not rows:
    return ""
  columns = list(columns or rows[0].keys())

  def cell(v):
    if isinstance(v, (float, np.floating)):
      return fmt.format(float(v))
    return str(v)

  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
  return "\n".join(lines) + "\n"
