"""The one confusion-table kernel under every metric, gap and objective.

A table ``C[..., g, y, y_hat]`` ([..., G, 2, 2]) holds per group the (weighted) counts of label
``y`` and decision ``y_hat``; with probabilities of a positive decision instead of hard
decisions it holds the expected counts of the randomised classifier. Leading axes are batch
axes (thresholds, bootstrap resamples, candidate models), so one function serves a single
table and a whole sweep. Everything here is jittable and vmappable; rates with an empty
denominator are 0.

* :func:`group_confusion` builds a table from labels, decisions and groups;
* :func:`rates_from_confusion` gives per-group selection rate, TPR, FPR, accuracy;
* :func:`unsigned_gap` is fairlearn's ``max - min`` over the groups present,
  :func:`signed_difference` AIF360's ``unprivileged - privileged`` (all other groups pooled);
* :func:`accuracy_from_confusion`, :func:`balanced_accuracy_from_confusion` pool the groups.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
SIGNED = ("statistical_parity", "equal_opportunity", "average_odds")
UNSIGNED = ("demographic_parity", "equalized_odds", "equal_opportunity", "average_odds")


class GroupRates(NamedTuple):
  """Per-group rates, each of shape [..., num_groups]."""
  weight: Array               # total sample weight of the group
  selection_rate: Array       # P(y_hat = 1 | g)
  true_positive_rate: Array   # P(y_hat = 1 | y = 1, g)
  false_positive_rate: Array  # P(y_hat = 1 | y = 0, g)
  accuracy: Array             # P(y_hat = y | g)


def group_confusion(y_true, y_pred, groups, *, num_groups: int, sample_weight=None) -> Array:
  """Weighted confusion table per group, [num_groups, 2, 2].

  ``C[g, t, p] = sum_i w_i 1[g_i = g] 1[y_i = t] P(y_hat_i = p)``; hard predictions give
  ordinary counts. Group codes outside ``0..num_groups-1`` contribute nothing.
  """
  y = jnp.asarray(y_true, jnp.float32)
  p = jnp.asarray(y_pred, jnp.float32)
  w = jnp.ones_like(p) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
  cells = jnp.stack([(1 - y) * (1 - p), (1 - y) * p, y * (1 - p), y * p], axis=-1) * w[:, None]
  onehot = jax.nn.one_hot(groups, num_groups, dtype=jnp.float32)
  return jnp.einsum("ng,nk->gk", onehot, cells, precision=jax.lax.Precision.HIGHEST).reshape(
      num_groups, 2, 2)


def bootstrap_weights(key: jax.Array, n: int, num_resamples: int) -> Array:
  """[B, n] multinomial counts: resampling n rows with replacement, B times (as sample
  weights, a table per resample in one vmapped call)."""
  idx = jax.random.randint(key, (num_resamples, n), 0, n)
  return jax.vmap(lambda i: jnp.zeros(n, jnp.float32).at[i].add(1.0))(idx)


def ratio(num, den):
  """``num / den``, 0 where ``den`` is 0."""
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def rates_from_confusion(c: Array) -> GroupRates:
  """Per-group rates of [..., G, 2, 2] tables (empty denominators give 0)."""
  neg, pos = c[..., 0, :].sum(-1), c[..., 1, :].sum(-1)
  total = neg + pos
  return GroupRates(
      weight=total,
      selection_rate=ratio(c[..., 0, 1] + c[..., 1, 1], total),
      true_positive_rate=ratio(c[..., 1, 1], pos),
      false_positive_rate=ratio(c[..., 0, 1], neg),
      accuracy=ratio(c[..., 0, 0] + c[..., 1, 1], total),
  )


def privileged_split(c: Array, privileged) -> Array:
  """[..., G, 2, 2] tables collapsed to [..., 2, 2, 2]: (unprivileged = every other group
  pooled, privileged)."""
  priv = jnp.take(c, privileged, axis=-3)
  return jnp.stack([c.sum(-3) - priv, priv], axis=-3)


def spread(values: Array, present: Array) -> Array:
  """``max - min`` over the last axis, counting only entries where ``present``."""
  return (jnp.where(present, values, -jnp.inf).max(-1)
          - jnp.where(present, values, jnp.inf).min(-1))


def odds_differences(c: Array, privileged) -> tuple[Array, Array]:
  """Signed (TPR, FPR) differences unprivileged - privileged of [..., G, 2, 2] tables."""
  r = rates_from_confusion(privileged_split(c, privileged))
  d = lambda v: v[..., 0] - v[..., 1]
  return d(r.true_positive_rate), d(r.false_positive_rate)


def signed_difference(name: str, c: Array, *, privileged=1) -> Array:
  """AIF360's unprivileged - privileged difference of [..., G, 2, 2] tables: SPD = sel_u -
  sel_p (``statistical_parity``), EOD = TPR_u - TPR_p (``equal_opportunity``), AOD =
  ((FPR_u - FPR_p) + (TPR_u - TPR_p)) / 2 (``average_odds``)."""
  if name not in SIGNED:
    raise ValueError(f"name: expected one of {list(SIGNED)}, got {name!r}")
  if name == "statistical_parity":
    sel = rates_from_confusion(privileged_split(c, privileged)).selection_rate
    return sel[..., 0] - sel[..., 1]
  d_tpr, d_fpr = odds_differences(c, privileged)
  return d_tpr if name == "equal_opportunity" else 0.5 * (d_tpr + d_fpr)


def unsigned_gap(name: str, c: Array) -> Array:
  """fairlearn's max - min over the groups present of [..., G, 2, 2] tables:
  ``demographic_parity`` (selection rate), ``equalized_odds`` (the larger of the TPR and FPR
  gaps), ``equal_opportunity`` (TPR), ``average_odds`` (mean of the TPR and FPR gaps)."""
  if name not in UNSIGNED:
    raise ValueError(f"name: expected one of {list(UNSIGNED)}, got {name!r}")
  r = rates_from_confusion(c)
  present = r.weight > 0
  if name == "demographic_parity":
    return spread(r.selection_rate, present)
  d_tpr = spread(r.true_positive_rate, present)
  if name == "equal_opportunity":
    return d_tpr
  d_fpr = spread(r.false_positive_rate, present)
  return jnp.maximum(d_tpr, d_fpr) if name == "equalized_odds" else 0.5 * (d_tpr + d_fpr)


def accuracy_from_confusion(c: Array) -> Array:
  """Accuracy of [..., G, 2, 2] tables, all groups pooled."""
  total = c.sum(-3)
  return ratio(total[..., 0, 0] + total[..., 1, 1], total.sum((-1, -2)))


def balanced_accuracy_from_confusion(c: Array) -> Array:
  """Balanced accuracy ``(TPR + TNR) / 2`` of [..., G, 2, 2] tables, all groups pooled
  (scikit-learn's ``balanced_accuracy_score``: a class absent from the labels is left out of
  the mean)."""
  total = c.sum(-3)
  neg, pos = total[..., 0, :].sum(-1), total[..., 1, :].sum(-1)
  tnr, tpr = ratio(total[..., 0, 0], neg), ratio(total[..., 1, 1], pos)
  has_neg, has_pos = (neg > 0).astype(c.dtype), (pos > 0).astype(c.dtype)
  return ratio(tnr * has_neg + tpr * has_pos, has_neg + has_pos)
