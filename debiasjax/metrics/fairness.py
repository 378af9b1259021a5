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

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from debiasjax import _checks
from debiasjax.metrics.confusion import (GroupRates, accuracy_from_confusion,
                                         balanced_accuracy_from_confusion, group_confusion,
                                         odds_differences, privileged_split, rates_from_confusion,
                                         spread, unsigned_gap)
from debiasjax.metrics.frame import as_codes

Array = jax.Array


def _prepare(y_true, y_pred, groups, sample_weight, num_groups, privileged):
  """Validated inputs and the table ``C[g, y, y_hat]``: ``(c, privileged code)``; named or
  multi-column groups are encoded first (:func:`~debiasjax.metrics.frame.as_codes`)."""
  groups, privileged = as_codes(groups, privileged)
  y_true, y_pred, groups, w, n = _checks.metric_inputs(y_true, y_pred, groups, sample_weight,
                                                       num_groups, privileged)
  y_true = jnp.zeros_like(y_pred) if y_true is None else y_true
  return group_confusion(y_true, y_pred, groups, num_groups=n, sample_weight=w), privileged


def group_rates(y_true, y_pred, groups, *, num_groups: Optional[int] = None,
                sample_weight=None) -> GroupRates:
  """Selection rate, TPR, FPR and accuracy of every group (arrays of shape [num_groups])."""
  c, _ = _prepare(y_true, y_pred, groups, sample_weight, num_groups, None)
  return rates_from_confusion(c)


def _check_defined(c: Array, privileged: int, what: str, metric: str) -> None:
  """AIF360 mode, eager only: a rate with an empty denominator is undefined (NaN in AIF360)."""
  if not _checks.is_concrete(c):
    return
  c = np.asarray(privileged_split(c, privileged))
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
  c, privileged = _prepare(None, y_pred, groups, sample_weight, num_groups, privileged)
  if privileged is None:
    return unsigned_gap("demographic_parity", c)
  sel = rates_from_confusion(privileged_split(c, privileged)).selection_rate
  return sel[0] - sel[1]


def _odds(y_true, y_pred, groups, sample_weight, num_groups, privileged, metric):
  """(TPR gap, FPR gap): unsigned max - min, or signed unprivileged - privileged."""
  c, privileged = _prepare(y_true, y_pred, groups, sample_weight, num_groups, privileged)
  if privileged is None:
    r = rates_from_confusion(c)
    present = r.weight > 0
    return spread(r.true_positive_rate, present), spread(r.false_positive_rate, present)
  _check_defined(c, privileged, "tpr" if metric == "equal_opportunity_difference" else "both",
                 metric)
  return odds_differences(c, privileged)


def equalized_odds_difference(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                              sample_weight=None, num_groups: Optional[int] = None) -> Array:
  """Equalized odds difference ``max(|dTPR|, |dFPR|)``.

  ``privileged=None``: each gap is max - min over groups (fairlearn ``equalized_odds_difference``,
  ``agg="worst_case"``). ``privileged=p``: the gaps are unprivileged minus privileged (AIF360
  ``equalized_odds_difference``, which is unsigned).
  """
  d_tpr, d_fpr = _odds(y_true, y_pred, groups, sample_weight, num_groups, privileged,
                       "equalized_odds_difference")
  return jnp.maximum(jnp.abs(d_tpr), jnp.abs(d_fpr))


def equal_opportunity_difference(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                                 sample_weight=None, num_groups: Optional[int] = None) -> Array:
  """Equal opportunity difference (true positive rate gap).

  ``privileged=None``: ``max_g TPR_g - min_g TPR_g`` (fairlearn ``equal_opportunity_difference``).
  ``privileged=p``: ``TPR_unpriv - TPR_priv`` (AIF360 ``equal_opportunity_difference``).
  """
  return _odds(y_true, y_pred, groups, sample_weight, num_groups, privileged,
               "equal_opportunity_difference")[0]


def average_odds_difference(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                            sample_weight=None, num_groups: Optional[int] = None) -> Array:
  """Average odds difference.

  ``privileged=p``: ``((FPR_u - FPR_p) + (TPR_u - TPR_p)) / 2`` (AIF360
  ``average_odds_difference``, signed). ``privileged=None``: the mean of the unsigned TPR and FPR
  gaps over all groups (fairlearn ``equalized_odds_difference(agg="mean")``; AIF360's
  ``average_abs_odds_difference`` for two groups).
  """
  d_tpr, d_fpr = _odds(y_true, y_pred, groups, sample_weight, num_groups, privileged,
                       "average_odds_difference")
  return 0.5 * (d_tpr + d_fpr)


def _overall(y_true, y_pred, sample_weight):
  groups = jnp.zeros(jnp.shape(y_pred), jnp.int32)
  return _prepare(y_true, y_pred, groups, sample_weight, 1, None)[0]


def accuracy(y_true, y_pred, *, sample_weight=None) -> Array:
  """Weighted accuracy ``sum_i w_i 1[y_hat_i = y_i] / sum_i w_i`` (expected accuracy for
  probabilities)."""
  return accuracy_from_confusion(_overall(y_true, y_pred, sample_weight))


def balanced_accuracy(y_true, y_pred, *, sample_weight=None) -> Array:
  """Balanced accuracy ``(TPR + TNR) / 2`` (scikit-learn ``balanced_accuracy_score``: a class
  absent from ``y_true`` is left out of the mean)."""
  return balanced_accuracy_from_confusion(_overall(y_true, y_pred, sample_weight))


def roc_auc(y_true, scores) -> Array:
  """Area under the ROC curve of ``scores`` for binary ``y_true``: the chance that a random
  positive scores above a random negative, ties counting one half (Mann-Whitney U over average
  ranks; scikit-learn ``roc_auc_score``). Threshold-free: whether a network still ranks the
  target, whatever its decision threshold. NaN when a class is absent."""
  y = jnp.asarray(y_true).astype(jnp.float32)
  s = jnp.asarray(scores, jnp.float32)
  if y.shape != s.shape or y.ndim != 1:
    raise ValueError(f"y_true, scores: expected two vectors of one length, got {y.shape} and "
                     f"{s.shape}")
  ordered = jnp.sort(s)
  ranks = (jnp.searchsorted(ordered, s, side="left") + jnp.searchsorted(ordered, s, side="right")
           + 1) / 2.0
  positives = jnp.sum(y)
  negatives = y.size - positives
  u = jnp.sum(ranks * y) - positives * (positives + 1) / 2
  return u / (positives * negatives)


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
