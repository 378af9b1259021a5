"""Containers every loader returns: a :class:`Split` of arrays and a :class:`Benchmark` of three.

Arrays are NumPy on the host; ``x`` is float32 (images NHWC in [0, 1], tables as features),
``y`` the binary target (1 = positive / favourable), ``group`` the protected attribute coded
0..G-1, and ``roi`` an optional box per image around the protected attribute's region,
``(y0, x0, y1, x1)`` in pixels with exclusive ends.

Several protected attributes are named as a conjunction, ``"a+b"`` (e.g. ``"tie+hat"``,
``"sex+race"``, ``"age+foreign_worker"``): ``group`` is then 1 where every attribute takes its
privileged value (the seed 003 setting of one sensitive label made of two attributes),
``attributes`` keeps each attribute [N, K] and ``roi`` a box per attribute [N, K, 4].
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np


class Split(NamedTuple):
  """One split: inputs, target, protected attribute and (for images) the protected region;
  with a conjunction of protected attributes also each attribute (``attributes`` [N, K])."""
  x: np.ndarray
  y: np.ndarray
  group: np.ndarray
  roi: Optional[np.ndarray] = None
  attributes: Optional[np.ndarray] = None

  def take(self, index) -> "Split":
    """The rows ``index`` of every array."""
    return Split(*(None if v is None else v[index] for v in self))

  def __len__(self) -> int:
    return int(self.y.shape[0])

  def replace(self, **changes) -> "Split":
    """This split with some arrays replaced (NamedTuple's ``_replace`` cannot serve: it checks
    ``len()``, which here counts rows, not fields)."""
    return Split(**{**self._asdict(), **changes})


class Benchmark(NamedTuple):
  """Train, debias and test splits plus ``info``: names, privileged group, split report."""
  train: Split
  debias: Split
  test: Split
  info: dict


def conjunction(protected: str, allowed, *, name: str = "protected") -> list[str]:
  """The attributes of ``"a+b+..."`` (one attribute: a list of one), each one of ``allowed``
  and none repeated."""
  parts = [p.strip() for p in str(protected).split("+")]
  bad = [p for p in parts if p not in allowed]
  if bad or len(set(parts)) != len(parts):
    raise ValueError(f"{name}: expected one of {sorted(allowed)} or a conjunction 'a+b' of "
                     f"different ones, got {protected!r}")
  return parts


def conjoined(each) -> tuple[np.ndarray, Optional[np.ndarray]]:
  """``(group, attributes)`` of the protected attributes ``each`` [N, K] (or [N]): the group is
  1 where every attribute is; the attributes are kept only when there are several."""
  each = np.asarray(each, np.int32).reshape(len(each), -1)
  return each.all(1).astype(np.int32), (each if each.shape[1] > 1 else None)


def roi_mask(roi: np.ndarray, height: int, width: int) -> np.ndarray:
  """Boolean masks [N, height, width] of boxes ``(y0, x0, y1, x1)`` (exclusive ends): ``roi``
  [N, 4], or [N, K, 4] for K protected attributes (the union of their boxes)."""
  roi = np.asarray(roi)
  if roi.ndim not in (2, 3) or roi.shape[-1] != 4:
    raise ValueError(f"roi: expected boxes of shape [N, 4] or [N, K, 4], got {roi.shape}")
  if roi.ndim == 3:
    return np.any([roi_mask(roi[:, k], height, width) for k in range(roi.shape[1])], axis=0)
  rows = np.arange(height)[None, :, None]
  cols = np.arange(width)[None, None, :]
  y0, x0, y1, x1 = (roi[:, k, None, None] for k in range(4))
  return (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
