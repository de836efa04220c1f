"""Brute-force NumPy oracles shared by several test files."""

import numpy as np


def np_ncc(a, b):
  """Normalized cross-correlation of every row of `a` with every row of `b`, `[A, B]`.

  Each sample is flattened, centred and scaled to unit norm (docs/theory.md §5).
  """
  a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
  b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
  a /= np.linalg.norm(a, axis=1, keepdims=True)
  b /= np.linalg.norm(b, axis=1, keepdims=True)
  return a @ b.T
