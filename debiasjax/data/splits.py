"""Train / debias / test splits with a controlled target-protected correlation.

Protocol of Sztukiewicz et al. (2025), "Towards Fairness for the Right Reasons", Sec. 4.2: the
train and debias splits are disjoint samples of one distribution whose target-protected
correlation is set by Yule's phi; the test split is balanced over the four (protected, target)
cells, so performance and fairness are measured without the training bias.

Counts are indexed ``counts[a, t]`` (a = protected attribute, t = target) and

    phi = (n11 n00 - n10 n01) / sqrt((n11 + n10)(n11 + n01)(n00 + n10)(n00 + n01)).

For a requested phi and marginals ``P(a=1) = p_a``, ``P(t=1) = p_t`` the cell proportions are
``p11 = p_a p_t + d``, ``p10 = p_a (1 - p_t) - d``, ``p01 = (1 - p_a) p_t - d``,
``p00 = (1 - p_a)(1 - p_t) + d`` with ``d = phi sqrt(p_a (1 - p_a) p_t (1 - p_t))``; a pool is
rebalanced by undersampling each cell to those proportions.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from debiasjax._checks import binary_vector, check_phi

DEBIAS_FRACTION = 0.4   # train : debias = 0.30 : 0.20 of the biased data, as in DetoxAI's configs


def cell_table(target, protected) -> np.ndarray:
  """2x2 counts ``[a, t]`` of a protected attribute ``a`` and a target ``t``."""
  t = binary_vector("target", target)
  a = binary_vector("protected", protected)
  if t.shape != a.shape:
    raise ValueError(f"mismatched lengths: target has {t.size}, protected has {a.size}")
  return np.bincount(2 * a + t, minlength=4).reshape(2, 2)


def yule_phi(counts) -> float:
  """Yule's phi (the phi coefficient) of a 2x2 table ``counts[a, t]``; in [-1, 1]."""
  c = np.asarray(counts, dtype=np.float64)
  if c.shape != (2, 2) or (c < 0).any() or not np.isfinite(c).all():
    raise ValueError(f"counts: expected a 2x2 table of non-negative counts, got {c.tolist()}")
  margins = np.concatenate([c.sum(0), c.sum(1)])
  if (margins <= 0).any():
    raise ValueError(f"counts: phi is undefined when a row or column is empty, got {c.tolist()}")
  return float((c[1, 1] * c[0, 0] - c[1, 0] * c[0, 1]) / math.sqrt(np.prod(margins)))


def cell_proportions(phi: float, *, p_protected: float = 0.5, p_target: float = 0.5) -> np.ndarray:
  """Cell proportions ``[a, t]`` with correlation ``phi`` and the given marginals."""
  phi = check_phi(phi)
  for name, p in (("p_protected", p_protected), ("p_target", p_target)):
    if not 0.0 < p < 1.0:
      raise ValueError(f"{name}: expected a probability in (0, 1), got {p!r}")
  pa, pt = p_protected, p_target
  scale = math.sqrt(pa * (1 - pa) * pt * (1 - pt))
  lo = -min(pa * pt, (1 - pa) * (1 - pt)) / scale
  hi = min(pa * (1 - pt), (1 - pa) * pt) / scale
  if not lo - 1e-12 <= phi <= hi + 1e-12:
    raise ValueError(f"phi: {phi} is not reachable with p_protected={pa}, p_target={pt}; "
                     f"the reachable range is [{lo:.3f}, {hi:.3f}]")
  d = phi * scale
  p = np.array([[(1 - pa) * (1 - pt) + d, (1 - pa) * pt - d],
                [pa * (1 - pt) - d, pa * pt + d]])
  return np.clip(p, 0.0, 1.0)


def cell_counts(total: int, phi: float, *, p_protected: float = 0.5,
                p_target: float = 0.5) -> np.ndarray:
  """Integer cell counts ``[a, t]`` summing to ``total`` (largest-remainder rounding)."""
  return rounded_counts(cell_proportions(phi, p_protected=p_protected, p_target=p_target), total)


def rounded_counts(proportions: np.ndarray, total: int) -> np.ndarray:
  """Integer counts of the shape of ``proportions`` (summing to 1) that sum to ``total``:
  largest-remainder rounding of ``proportions * total``."""
  if not isinstance(total, (int, np.integer)) or total < 0:
    raise ValueError(f"total: expected a non-negative int, got {total!r}")
  exact = np.asarray(proportions, np.float64).ravel() * total
  counts = np.floor(exact).astype(np.int64)
  remainder = int(total - counts.sum())
  counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
  return counts.reshape(np.shape(proportions))


class Splits(NamedTuple):
  """Index arrays into a pool, and a report of counts and achieved phi per split."""
  train: np.ndarray
  debias: np.ndarray
  test: np.ndarray
  report: dict


def split_report(phi_requested: Optional[float], debias_phi_requested: Optional[float] = None,
                 **splits) -> dict:
  """Counts and achieved phi of each split, given ``name=(target, protected)`` pairs."""
  report = {"phi_requested": phi_requested,
            "debias_phi_requested": phi_requested if debias_phi_requested is None
            else debias_phi_requested}
  for name, (t, a) in splits.items():
    counts = cell_table(t, a)
    report[name] = {"size": int(counts.sum()), "counts": counts.tolist(), "phi": yule_phi(counts)}
  return report


def make_splits(target, protected, *, phi: float, n_test: int, n_train: Optional[int] = None,
                n_debias: Optional[int] = None, seed: int = 0, p_protected: float = 0.5,
                p_target: float = 0.5, debias_phi: Optional[float] = None) -> Splits:
  """Splits a labelled pool into biased train/debias splits and a balanced test split.

  The test split takes ``n_test`` samples spread evenly over the four cells. From the rest,
  train and debias are undersampled to Yule's ``phi`` with the given marginals. Without
  ``n_train``/``n_debias`` they take as much of the pool as the proportions allow, split
  60:40 (train:debias).

  Args:
    target, protected: binary labels of the pool, shape [N].
    phi: requested Yule's phi of train (and of debias without ``debias_phi``), in [-1, 1].
    debias_phi: requested Yule's phi of the debias split, when it differs from train's (as in
      DetoxAI's CelebA variants: a maximally biased train split, a milder debias split).
    n_test: size of the balanced test split.
    n_train, n_debias: sizes of the biased splits (both or neither).
    seed: seed of the sampling.
    p_protected, p_target: marginals of the biased splits.

  Returns:
    :class:`Splits` of disjoint index arrays and a report with the achieved phi of each split.

  Raises:
    ValueError: bad labels, phi out of range, or sizes the pool cannot supply (the message
      gives the largest feasible sizes).
  """
  phi = check_phi(phi)
  debias_phi = phi if debias_phi is None else check_phi(debias_phi, "debias_phi")
  for name, n in (("n_test", n_test), ("n_train", n_train), ("n_debias", n_debias)):
    if n is not None and (not isinstance(n, (int, np.integer)) or n < 4):
      raise ValueError(f"{name}: expected an int >= 4, got {n!r}")
  table = cell_table(target, protected)
  t, a = np.asarray(target, np.int64), np.asarray(protected, np.int64)
  if (n_train is None) != (n_debias is None):
    raise ValueError(f"n_train, n_debias: give both or neither, got {n_train!r} and {n_debias!r}")
  rng = np.random.default_rng(seed)
  pools = [[rng.permutation(np.flatnonzero((a == i) & (t == j))) for j in (0, 1)] for i in (0, 1)]

  test_cells = cell_counts(n_test, 0.0)
  if (test_cells > table).any():
    raise ValueError(f"n_test: {n_test} needs {test_cells.tolist()} samples per cell [a, t] but "
                     f"the pool has {table.tolist()}; the largest balanced test split is "
                     f"{4 * int(table.min())}")
  left = table - test_cells
  marginals = {"p_protected": p_protected, "p_target": p_target}
  proportions = ((1 - DEBIAS_FRACTION) * cell_proportions(phi, **marginals)
                 + DEBIAS_FRACTION * cell_proportions(debias_phi, **marginals))
  usable = min(left[c] / proportions[c] for c in np.ndindex(2, 2) if proportions[c] > 0)

  def cells(n_train, n_debias):
    return cell_counts(n_train, phi, **marginals), cell_counts(n_debias, debias_phi, **marginals)

  if n_train is None:       # the largest total whose rounded cells fit (rounding may cost one)
    for total in range(int(math.floor(usable + 1e-9)), -1, -1):
      n_debias = int(round(total * DEBIAS_FRACTION))
      n_train = total - n_debias
      if (sum(cells(n_train, n_debias)) <= left).all():
        break
  train_cells, debias_cells = cells(n_train, n_debias)
  if (train_cells + debias_cells > left).any():
    at = f"phi={phi}" if debias_phi == phi else f"phi={phi} / {debias_phi}"
    raise ValueError(f"n_train, n_debias: {n_train} + {n_debias} samples at {at} need "
                     f"{(train_cells + debias_cells).tolist()} per cell [a, t], but after the test "
                     f"split the pool has {left.tolist()}; at most {int(usable)} in total fit")

  chosen = {"test": [], "train": [], "debias": []}
  for i, j in np.ndindex(2, 2):
    cuts = np.cumsum([test_cells[i, j], train_cells[i, j], debias_cells[i, j]])
    for name, part in zip(chosen, np.split(pools[i][j], cuts)[:3]):
      chosen[name].append(part)
  idx = {name: rng.permutation(np.concatenate(parts)) for name, parts in chosen.items()}
  report = split_report(phi, debias_phi, **{k: (t[v], a[v]) for k, v in idx.items()})
  return Splits(idx["train"], idx["debias"], idx["test"], report)
