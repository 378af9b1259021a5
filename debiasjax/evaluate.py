"""Scores of a model on a split, and the performance/fairness summary every result row uses."""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from debiasjax import metrics as M


def positive_probability(logits: jax.Array) -> jax.Array:
  """P(y = 1) from logits: softmax column 1 for two logits, sigmoid for one."""
  if logits.shape[-1] == 1:
    return jax.nn.sigmoid(logits[..., 0])
  if logits.shape[-1] != 2:
    raise ValueError(f"logits: expected 1 or 2 outputs for a binary task, got {logits.shape[-1]}")
  return jax.nn.softmax(logits, axis=-1)[..., 1]


@functools.lru_cache(maxsize=32)
def score_function(model) -> Callable[[Any, jax.Array], jax.Array]:
  """``(variables, x) -> P(y = 1)`` of a Flax model in eval mode, cached per model so searches
  and evaluations that take it reuse their compilations."""
  return lambda variables, x: positive_probability(model.apply(variables, x))


def map_batches(fn: Callable[[Any, jax.Array], jax.Array], variables: Any, x: np.ndarray, *,
                batch_size: int = 512) -> np.ndarray:
  """``fn(variables, batch)`` over the rows of ``x`` in jitted batches of one fixed size (the
  last one padded with zeros), so one compilation serves any N; a NumPy array."""
  n = len(x)
  if n == 0:
    raise ValueError("x: expected at least one row, got 0")
  size = min(batch_size, n)
  f = jax.jit(fn)
  out = []
  for start in range(0, n, size):
    xb = np.asarray(x[start:start + size])
    pad = size - len(xb)
    if pad:
      xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
    out.append(np.asarray(f(variables, jnp.asarray(xb)))[:size - pad])
  return np.concatenate(out)


@functools.lru_cache(maxsize=64)
def _probability_of(apply_fn):
  """One function object per ``apply_fn``, so jit reuses its compilation across calls."""
  return lambda variables, x: positive_probability(apply_fn(variables, x))


def predict_scores(apply_fn: Callable[[Any, jax.Array], jax.Array], variables: Any,
                   x: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
  """P(y = 1) of every row of ``x`` under ``apply_fn(variables, x) -> logits``
  (:func:`map_batches`). Raises ``ValueError`` if the model produces NaN or infinite logits.
  """
  scores = map_batches(_probability_of(apply_fn), variables, x, batch_size=batch_size)
  if not np.isfinite(scores).all():
    raise ValueError(f"model scores: {int((~np.isfinite(scores)).sum())} of {len(x)} are NaN "
                     "or infinite; the model's parameters or inputs are not finite")
  return scores


def _signed(fn, *args, **kwargs) -> Optional[float]:
  try:
    return float(fn(*args, **kwargs))
  except ValueError:   # a rate is undefined (e.g. a group without positives): no signed value
    return None


def fairness_summary(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                     sample_weight=None) -> dict:
  """Accuracy, balanced accuracy, the unsigned fairlearn gaps and, when ``privileged`` is
  given, AIF360's signed differences, plus per-group rates.

  Keys: ``accuracy``, ``balanced_accuracy``, ``demographic_parity``, ``equalized_odds``,
  ``equal_opportunity``, ``average_odds`` (unsigned, max - min over groups), and
  ``statistical_parity_difference``, ``equal_opportunity_difference``,
  ``average_odds_difference`` (signed, unprivileged - privileged; None where undefined), and
  ``groups``: per group ``selection_rate``, ``tpr``, ``fpr``, ``accuracy``, ``count``.
  """
  kw = dict(sample_weight=sample_weight)
  out = {
      "accuracy": float(M.accuracy(y_true, y_pred, **kw)),
      "balanced_accuracy": float(M.balanced_accuracy(y_true, y_pred, **kw)),
      "demographic_parity": float(M.demographic_parity_difference(y_pred, groups, **kw)),
      "equalized_odds": float(M.equalized_odds_difference(y_true, y_pred, groups, **kw)),
      "equal_opportunity": float(M.equal_opportunity_difference(y_true, y_pred, groups, **kw)),
      "average_odds": float(M.average_odds_difference(y_true, y_pred, groups, **kw)),
  }
  if privileged is not None:
    kw["privileged"] = privileged
    out["statistical_parity_difference"] = float(M.demographic_parity_difference(y_pred, groups, **kw))
    out["equal_opportunity_difference"] = _signed(M.equal_opportunity_difference, y_true, y_pred,
                                                  groups, **kw)
    out["average_odds_difference"] = _signed(M.average_odds_difference, y_true, y_pred, groups, **kw)
  rates = M.group_rates(y_true, y_pred, groups, sample_weight=sample_weight)
  counts = np.bincount(np.asarray(groups, np.int64), minlength=len(rates.weight))
  out["groups"] = [{"count": int(c), "selection_rate": float(s), "tpr": float(t), "fpr": float(f),
                    "accuracy": float(a)}
                   for c, s, t, f, a in zip(counts, rates.selection_rate, rates.true_positive_rate,
                                            rates.false_positive_rate, rates.accuracy)]
  return out
