"""Confusion tables of the rule ``score > t`` for many thresholds at once.

Sorting the scores once and accumulating each (group, label) cell's weight gives, for every
threshold, the weight of that cell above it with one binary search:

    n_{g,y}(s > t) = W_{g,y} - cumsum_{g,y}[searchsorted(sorted_scores, t, side="right")]

so T thresholds cost O(N log N + T G log N) instead of T passes over the data. Thresholds may
differ per group (shape [T, G]), as reject-option classification needs. Everything is jittable
and vmappable (e.g. over bootstrap weights or candidate models' scores).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp


def confusion_at_thresholds(scores, y_true, groups, thresholds, *, num_groups: int,
                            sample_weight: Optional[jax.Array] = None) -> jax.Array:
  """Weighted confusion tables of ``y_hat = score > t`` for every threshold.

  Args:
    scores: [N] real scores.
    y_true: [N] binary labels.
    groups: [N] group codes 0..num_groups-1.
    thresholds: [T] (one threshold for all groups) or [T, num_groups] (one per group).
    num_groups: number of groups (static).
    sample_weight: optional [N] non-negative weights (bootstrap counts, instance weights).

  Returns:
    [T, num_groups, 2, 2] array ``C[t, g, y, y_hat]``, as
    :func:`debiasjax.metrics.group_confusion` would give for each threshold.
  """
  scores = jnp.asarray(scores, jnp.float32)
  y = jnp.asarray(y_true, jnp.int32)
  w = jnp.ones_like(scores) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
  thresholds = jnp.asarray(thresholds, jnp.float32)
  if thresholds.ndim == 1:
    thresholds = jnp.broadcast_to(thresholds[:, None], (thresholds.shape[0], num_groups))
  order = jnp.argsort(scores)
  sorted_scores = scores[order]
  cell = (2 * jnp.asarray(groups, jnp.int32) + y)[order]                       # [N]
  onehot = jax.nn.one_hot(cell, 2 * num_groups, dtype=jnp.float32) * w[order][:, None]
  cum = jnp.concatenate([jnp.zeros((1, 2 * num_groups)), jnp.cumsum(onehot, axis=0)])  # [N+1, 2G]
  total = cum[-1]
  below = jnp.searchsorted(sorted_scores, thresholds, side="right")            # [T, G]
  cum = cum.reshape(-1, num_groups, 2)                                          # [N+1, G, y]
  at_or_below = cum[below, jnp.arange(num_groups)[None, :]]                      # [T, G, y]
  above = total.reshape(num_groups, 2)[None] - at_or_below                       # predicted 1
  return jnp.stack([at_or_below, above], axis=-1)                              # [T, G, y, y_hat]
