"""Group fairness and performance metrics, jittable and vmappable.

Every gap is computed from one helper, :func:`group_confusion`, the weighted 2x2 confusion
table of each group. Predictions may be hard labels or probabilities of a positive decision
(the expected rates of a randomised classifier).

Two conventions, chosen with ``privileged``:

* ``privileged=None`` -- fairlearn: the unsigned gap ``max_g r_g - min_g r_g`` over the groups
  present, for any number of groups. A rate whose denominator is empty (TPR of a group without
  positives) counts as 0, as in fairlearn.
* ``privileged=p`` -- AIF360: the signed difference ``r(unprivileged) - r(privileged)`` where
  the privileged group is ``group == p`` and the unprivileged group pools all other samples
  (AIF360's ``privileged_groups=[{attr: p}]``). AIF360 returns NaN where a rate is undefined;
  called eagerly these functions raise a ``ValueError`` instead, and under ``jit`` the rate
  counts as 0.

Inputs are validated when they are concrete (a ``ValueError`` names the argument, what was
expected and what came); under tracing only shapes are checked, so pass ``num_groups`` there.

Example:
  demographic_parity_difference(y_pred, group)                  # fairlearn, >= 0
  equal_opportunity_difference(y, y_pred, group, privileged=1)  # AIF360, signed
  jax.vmap(lambda p: equalized_odds_difference(y, p, group, num_groups=2))(candidate_preds)
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class GroupRates(NamedTuple):
  """Per-group rates, each of shape [num_groups]."""
  weight: Array               # total sample weight of the group
  selection_rate: Array       # P(y_hat = 1 | g)
  true_positive_rate: Array   # P(y_hat = 1 | y = 1, g)
  false_positive_rate: Array  # P(y_hat = 1 | y = 0, g)
  accuracy: Array             # P(y_hat = y | g)


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _as_vector(name: str, x) -> Array:
  if x is None:
    raise ValueError(f"{name}: expected a 1-D array, got None")
  arr = jnp.asarray(x)
  if arr.ndim != 1:
    raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
  if arr.shape[0] == 0:
    raise ValueError(f"{name}: expected at least one sample, got an empty array")
  return arr


def _check_lengths(**arrays) -> None:
  lengths = {k: v.shape[0] for k, v in arrays.items() if v is not None}
  if len(set(lengths.values())) > 1:
    raise ValueError("mismatched lengths: " + ", ".join(f"{k} has {n}" for k, n in lengths.items()))


def _check_binary(name: str, x: Array) -> None:
  if _is_concrete(x):
    values = np.unique(np.asarray(x))
    if not np.isin(values, (0, 1)).all():
      raise ValueError(f"{name}: expected binary labels in {{0, 1}}, got values {values[:10].tolist()}")


def _check_predictions(name: str, x: Array) -> None:
  if _is_concrete(x):
    v = np.asarray(x, dtype=np.float64)
    if np.isnan(v).any():
      raise ValueError(f"{name}: expected predictions in [0, 1], got {int(np.isnan(v).sum())} NaN values")
    if v.min() < 0 or v.max() > 1:
      raise ValueError(f"{name}: expected hard labels or probabilities in [0, 1], "
                       f"got values in [{v.min():g}, {v.max():g}]")


def _check_weights(w: Optional[Array]) -> None:
  if w is not None and _is_concrete(w):
    v = np.asarray(w, dtype=np.float64)
    if not np.isfinite(v).all() or (v < 0).any():
      raise ValueError("sample_weight: expected finite non-negative weights, got "
                       f"{int((~np.isfinite(v)).sum())} non-finite and {int((v < 0).sum())} negative")
    if v.sum() <= 0:
      raise ValueError("sample_weight: expected a positive total weight, got 0")


def _resolve_groups(groups: Array, num_groups: Optional[int], weight: Optional[Array]) -> int:
  """Checks group codes and returns the (static) number of groups."""
  if num_groups is not None and (not isinstance(num_groups, (int, np.integer)) or num_groups < 1):
    raise ValueError(f"num_groups: expected a positive int, got {num_groups!r}")
  if not _is_concrete(groups):
    if num_groups is None:
      raise ValueError("num_groups: groups are traced (inside jit/vmap), so pass num_groups "
                       "explicitly; got None")
    return int(num_groups)
  g = np.asarray(groups)
  if g.dtype.kind == "f":
    if np.isnan(g).any() or (g != np.round(g)).any():
      raise ValueError("groups: expected integer group codes 0..G-1, got non-integer values")
  elif g.dtype.kind not in "biu":
    raise ValueError(f"groups: expected integer group codes 0..G-1, got dtype {g.dtype}")
  if g.min() < 0:
    raise ValueError(f"groups: expected codes >= 0, got {int(g.min())}")
  n = int(g.max()) + 1 if num_groups is None else int(num_groups)
  if g.max() >= n:
    raise ValueError(f"groups: expected codes < num_groups={n}, got {int(g.max())}")
  w = np.ones(g.shape) if weight is None or not _is_concrete(weight) else np.asarray(weight)
  totals = np.bincount(g.astype(np.int64), weights=w, minlength=n)
  empty = np.flatnonzero(totals <= 0)
  if empty.size:
    raise ValueError(f"groups: expected every group in 0..{n - 1} to have samples, "
                     f"but group(s) {empty.tolist()} are empty")
  return n


def _prepare(y_true, y_pred, groups, sample_weight, num_groups, privileged):
  y_pred = _as_vector("y_pred", y_pred)
  groups = _as_vector("groups", groups)
  y_true = None if y_true is None else _as_vector("y_true", y_true)
  w = None if sample_weight is None else _as_vector("sample_weight", sample_weight)
  _check_lengths(y_true=y_true, y_pred=y_pred, groups=groups, sample_weight=w)
  if y_true is not None:
    _check_binary("y_true", y_true)
  _check_predictions("y_pred", y_pred)
  _check_weights(w)
  n = _resolve_groups(groups, num_groups, w)
  if privileged is not None:
    if not isinstance(privileged, (int, np.integer)) or not 0 <= privileged < n:
      raise ValueError(f"privileged: expected a group code in 0..{n - 1}, got {privileged!r}")
    if n < 2:
      raise ValueError("privileged: needs at least two groups, got 1")
  y_true = jnp.zeros_like(y_pred) if y_true is None else y_true
  return y_true, y_pred, groups, w, n


def group_confusion(y_true, y_pred, groups, *, num_groups: int, sample_weight=None) -> Array:
  """Weighted confusion table per group.

  Returns an array ``C`` of shape [num_groups, 2, 2] with ``C[g, t, p] = sum_i w_i 1[g_i = g]
  1[y_i = t] P(y_hat_i = p)``; hard predictions give ordinary counts.
  """
  y = jnp.asarray(y_true, jnp.float32)
  p = jnp.asarray(y_pred, jnp.float32)
  w = jnp.ones_like(p) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
  cells = jnp.stack([(1 - y) * (1 - p), (1 - y) * p, y * (1 - p), y * p], axis=-1) * w[:, None]
  onehot = jax.nn.one_hot(groups, num_groups, dtype=jnp.float32)
  return jnp.einsum("ng,nk->gk", onehot, cells, precision=jax.lax.Precision.HIGHEST).reshape(
      num_groups, 2, 2)


def _ratio(num, den):
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def rates_from_confusion(c: Array) -> GroupRates:
  """Per-group rates from a [G, 2, 2] confusion table (empty denominators give 0)."""
  neg, pos = c[:, 0].sum(-1), c[:, 1].sum(-1)
  total = neg + pos
  return GroupRates(
      weight=total,
      selection_rate=_ratio(c[:, 0, 1] + c[:, 1, 1], total),
      true_positive_rate=_ratio(c[:, 1, 1], pos),
      false_positive_rate=_ratio(c[:, 0, 1], neg),
      accuracy=_ratio(c[:, 0, 0] + c[:, 1, 1], total),
  )


def group_rates(y_true, y_pred, groups, *, num_groups: Optional[int] = None,
                sample_weight=None) -> GroupRates:
  """Selection rate, TPR, FPR and accuracy of every group (arrays of shape [num_groups])."""
  y_true, y_pred, groups, w, n = _prepare(y_true, y_pred, groups, sample_weight, num_groups, None)
  return rates_from_confusion(group_confusion(y_true, y_pred, groups, num_groups=n, sample_weight=w))


def _privileged_confusion(c: Array, privileged: int) -> Array:
  """Collapses [G, 2, 2] into [unprivileged, privileged]."""
  priv = c[privileged]
  return jnp.stack([c.sum(0) - priv, priv])


def _spread(rate: Array, present: Array) -> Array:
  hi = jnp.max(jnp.where(present, rate, -jnp.inf))
  lo = jnp.min(jnp.where(present, rate, jnp.inf))
  return hi - lo


def _check_defined(c: Array, what: str, metric: str) -> None:
  """AIF360 mode, eager only: a rate with an empty denominator is undefined (NaN in AIF360)."""
  if not _is_concrete(c):
    return
  c = np.asarray(c)
  for idx, name in ((0, "unprivileged"), (1, "privileged")):
    if what in ("tpr", "both") and c[idx, 1].sum() <= 0:
      raise ValueError(f"{metric}: the {name} group has no positive labels (y_true == 1), so its "
                       "true positive rate is undefined (AIF360 returns NaN)")
    if what in ("fpr", "both") and c[idx, 0].sum() <= 0:
      raise ValueError(f"{metric}: the {name} group has no negative labels (y_true == 0), so its "
                       "false positive rate is undefined (AIF360 returns NaN)")


def demographic_parity_difference(y_pred, groups, *, privileged: Optional[int] = None,
                                  sample_weight=None, num_groups: Optional[int] = None) -> Array:
  """Demographic (statistical) parity difference.

  ``privileged=None``: ``max_g P(y_hat=1|g) - min_g P(y_hat=1|g)`` (fairlearn
  ``demographic_parity_difference``). ``privileged=p``: ``P(y_hat=1|unpriv) - P(y_hat=1|priv)``
  (AIF360 ``statistical_parity_difference``).
  """
  y_true, y_pred, groups, w, n = _prepare(None, y_pred, groups, sample_weight, num_groups, privileged)
  c = group_confusion(y_true, y_pred, groups, num_groups=n, sample_weight=w)
  if privileged is None:
    r = rates_from_confusion(c)
    return _spread(r.selection_rate, r.weight > 0)
  r = rates_from_confusion(_privileged_confusion(c, privileged))
  return r.selection_rate[0] - r.selection_rate[1]


def _odds(y_true, y_pred, groups, sample_weight, num_groups, privileged, metric, need):
  y_true, y_pred, groups, w, n = _prepare(y_true, y_pred, groups, sample_weight, num_groups, privileged)
  c = group_confusion(y_true, y_pred, groups, num_groups=n, sample_weight=w)
  if privileged is None:
    r = rates_from_confusion(c)
    present = r.weight > 0
    return _spread(r.true_positive_rate, present), _spread(r.false_positive_rate, present)
  c2 = _privileged_confusion(c, privileged)
  _check_defined(c2, need, metric)
  r = rates_from_confusion(c2)
  return (r.true_positive_rate[0] - r.true_positive_rate[1],
          r.false_positive_rate[0] - r.false_positive_rate[1])


def equalized_odds_difference(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                              sample_weight=None, num_groups: Optional[int] = None) -> Array:
  """Equalized odds difference ``max(|dTPR|, |dFPR|)``.

  ``privileged=None``: each gap is max - min over groups (fairlearn ``equalized_odds_difference``,
  ``agg="worst_case"``). ``privileged=p``: the gaps are unprivileged minus privileged (AIF360
  ``equalized_odds_difference``, which is unsigned).
  """
  d_tpr, d_fpr = _odds(y_true, y_pred, groups, sample_weight, num_groups, privileged,
                       "equalized_odds_difference", "both")
  return jnp.maximum(jnp.abs(d_tpr), jnp.abs(d_fpr))


def equal_opportunity_difference(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                                 sample_weight=None, num_groups: Optional[int] = None) -> Array:
  """Equal opportunity difference (true positive rate gap).

  ``privileged=None``: ``max_g TPR_g - min_g TPR_g`` (fairlearn ``equal_opportunity_difference``).
  ``privileged=p``: ``TPR_unpriv - TPR_priv`` (AIF360 ``equal_opportunity_difference``).
  """
  y_true, y_pred, groups, w, n = _prepare(y_true, y_pred, groups, sample_weight, num_groups, privileged)
  c = group_confusion(y_true, y_pred, groups, num_groups=n, sample_weight=w)
  if privileged is None:
    r = rates_from_confusion(c)
    return _spread(r.true_positive_rate, r.weight > 0)
  c2 = _privileged_confusion(c, privileged)
  _check_defined(c2, "tpr", "equal_opportunity_difference")
  r = rates_from_confusion(c2)
  return r.true_positive_rate[0] - r.true_positive_rate[1]


def average_odds_difference(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                            sample_weight=None, num_groups: Optional[int] = None) -> Array:
  """Average odds difference.

  ``privileged=p``: ``((FPR_u - FPR_p) + (TPR_u - TPR_p)) / 2`` (AIF360
  ``average_odds_difference``, signed). ``privileged=None``: the mean of the unsigned TPR and FPR
  gaps over all groups (fairlearn ``equalized_odds_difference(agg="mean")``; AIF360's
  ``average_abs_odds_difference`` for two groups).
  """
  d_tpr, d_fpr = _odds(y_true, y_pred, groups, sample_weight, num_groups, privileged,
                       "average_odds_difference", "both")
  return 0.5 * (d_tpr + d_fpr)


def accuracy(y_true, y_pred, *, sample_weight=None) -> Array:
  """Weighted accuracy ``sum_i w_i 1[y_hat_i = y_i] / sum_i w_i`` (expected accuracy for
  probabilities)."""
  groups = jnp.zeros(jnp.shape(y_pred), jnp.int32)
  y_true, y_pred, groups, w, _ = _prepare(y_true, y_pred, groups, sample_weight, 1, None)
  c = group_confusion(y_true, y_pred, groups, num_groups=1, sample_weight=w)[0]
  return (c[0, 0] + c[1, 1]) / c.sum()


def balanced_accuracy(y_true, y_pred, *, sample_weight=None) -> Array:
  """Balanced accuracy ``(TPR + TNR) / 2`` (scikit-learn ``balanced_accuracy_score``: a class
  absent from ``y_true`` is left out of the mean)."""
  groups = jnp.zeros(jnp.shape(y_pred), jnp.int32)
  y_true, y_pred, groups, w, _ = _prepare(y_true, y_pred, groups, sample_weight, 1, None)
  c = group_confusion(y_true, y_pred, groups, num_groups=1, sample_weight=w)[0]
  neg, pos = c[0].sum(), c[1].sum()
  tnr, tpr = _ratio(c[0, 0], neg), _ratio(c[1, 1], pos)
  has_neg, has_pos = (neg > 0).astype(jnp.float32), (pos > 0).astype(jnp.float32)
  return (tnr * has_neg + tpr * has_pos) / (has_neg + has_pos)


def savani_objective_v1(bias, accuracy_, *, lam: float = 0.75) -> Array:
  """Savani et al. (arXiv v1) objective ``lam |bias| + (1 - lam)(1 - accuracy)``; lower is better.

  A constant classifier scores ``(1 - lam) * minority_rate`` (0.062 on Adult), so compare
  against that floor, not against 0.
  """
  if not 0.0 <= lam <= 1.0:
    raise ValueError(f"lam: expected a value in [0, 1], got {lam}")
  return lam * jnp.abs(bias) + (1.0 - lam) * (1.0 - accuracy_)


def savani_objective_v2(bias, balanced_accuracy_, *, epsilon: float = 0.05) -> Array:
  """Savani et al. (NeurIPS 2020) objective: balanced accuracy if ``|bias| < epsilon`` else 0;
  higher is better. A constant classifier scores 0.5."""
  if epsilon <= 0:
    raise ValueError(f"epsilon: expected a positive bound on |bias|, got {epsilon}")
  return jnp.where(jnp.abs(bias) < epsilon, balanced_accuracy_, 0.0)
