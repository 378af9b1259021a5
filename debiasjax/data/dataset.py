"""Containers every loader returns: a :class:`Split` of arrays and a :class:`Benchmark` of three.

Arrays are NumPy on the host; ``x`` is float32 (images NHWC in [0, 1], tables as features),
``y`` the binary target (1 = positive / favourable), ``group`` the protected attribute coded
0..G-1, and ``roi`` an optional box per image around the protected attribute's region,
``(y0, x0, y1, x1)`` in pixels with exclusive ends.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class Split(NamedTuple):
  """One split: inputs, target, protected attribute and (for images) the protected region."""
  x: np.ndarray
  y: np.ndarray
  group: np.ndarray
  roi: Optional[np.ndarray] = None

  def take(self, index) -> "Split":
    """The rows ``index`` of every array."""
    return Split(*(None if v is None else v[index] for v in self))

  def __len__(self) -> int:
    return int(self.y.shape[0])


class Benchmark(NamedTuple):
  """Train, debias and test splits plus ``info``: names, privileged group, split report."""
  train: Split
  debias: Split
  test: Split
  info: dict


def roi_mask(roi: np.ndarray, height: int, width: int) -> np.ndarray:
  """Boolean masks [N, height, width] of boxes ``(y0, x0, y1, x1)`` (exclusive ends)."""
  roi = np.asarray(roi)
  if roi.ndim != 2 or roi.shape[1] != 4:
    raise ValueError(f"roi: expected boxes of shape [N, 4], got {roi.shape}")
  rows = np.arange(height)[None, :, None]
  cols = np.arange(width)[None, None, :]
  y0, x0, y1, x1 = (roi[:, k, None, None] for k in range(4))
  return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
