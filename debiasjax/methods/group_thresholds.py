"""Hardt et al. (2016) group-specific randomised thresholds, with fairlearn's semantics.

For every group g, every cut of its scores sorted in decreasing order is a rule ``score > t``
(and, with ``flip``, ``score < t``), with ``t`` the midpoint between consecutive distinct scores
(``+inf`` / ``-inf`` at the ends). New scores are compared with the exact midpoint ``m = (a +
b) / 2``, as fairlearn's float64 midpoint of float32 scores is: ``t`` is ``m`` rounded to float32
and ``tie_side = sign(m - t)`` (from the exact error of ``a + b``, Knuth's TwoSum) decides a
score equal to ``t``. Each rule is a point ``(x, y)`` = (constraint metric,
objective metric); the upper convex hull of the points (Andrew's monotone chain, built on the
rates' count numerators so that collinear points are dropped exactly, as in exact arithmetic,
for integer weights while the numerators stay below 2^24) is every trade-off a randomised
mixture of two rules reaches, and it is interpolated onto the grid ``x in linspace(0, 1,
grid_size + 1)``.

* Simple constraints (demographic parity, TPR / FPR / TNR / FNR parity): all groups share the
  constraint value x; pick the x maximising ``sum_g p_g y_g(x)`` (``p_g`` the group's share).
* Equalized odds (x = FPR, y = TPR): the feasible curve is ``y_min(x) = min_g TPR_g(x)``;
  pick the x maximising accuracy or balanced accuracy of ``(x, y_min(x))``, and mix each group
  whose hull lies above ``y_min`` with the constant "positive with probability x" until its TPR
  equals ``y_min`` (``p_ignore = (y_g - y*) / (y_g - x*)``).

This is fairlearn's ``ThresholdOptimizer`` (0.15) decision rule, computed with fixed shapes so
``fit`` jits and vmaps (e.g. over bootstrap resamples given as ``sample_weight``).

If some group's hull is the diagonal (its scores carry no information, or are anti-correlated
with the label and ``flip=False``), equalized odds can only be met on the diagonal: the
optimiser collapses to a constant or random classifier with balanced accuracy 0.5 and zero
gaps. ``flip=True`` lets anti-correlated groups use ``score < t`` and avoids that case.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from debiasjax.metrics.confusion import accuracy_from_confusion, \
    balanced_accuracy_from_confusion, rates_from_confusion, ratio

SIMPLE_CONSTRAINTS = {
    "demographic_parity": "selection_rate", "selection_rate_parity": "selection_rate",
    "true_positive_rate_parity": "true_positive_rate",
    "false_positive_rate_parity": "false_positive_rate",
    "true_negative_rate_parity": "true_negative_rate",
    "false_negative_rate_parity": "false_negative_rate",
}
CONSTRAINTS = tuple(SIMPLE_CONSTRAINTS) + ("equalized_odds",)
OBJECTIVES = ("accuracy", "balanced_accuracy")
# Objectives closer than this count as equal and the first grid point wins, as the first
# maximum wins in exact arithmetic: plateaus of the objective (exact ties, e.g. balanced
# accuracy 0.5 along the diagonal, or a flat hull segment) are common, and float32 sums would
# otherwise rank their points by rounding (fairlearn rounds equalized-odds objectives to 15
# decimals for the same reason).
TIE_TOLERANCE = 5e-7


class ThresholdState(NamedTuple):
  """A fitted rule: group g predicts positive with probability
  ``p_ignore[g] * constant + (1 - p_ignore[g]) * sum_k weight[g, k] * op_k(score)``, where
  ``op_k(s) = s > m[g, k]`` if ``greater[g, k]`` else ``s < m[g, k]``, with ``m`` the exact
  midpoint that ``threshold`` rounds and ``tie_side`` says on which side of it ``m`` lies."""
  threshold: jax.Array   # [G, 2] the rules' midpoints rounded to float32
  greater: jax.Array     # [G, 2] bool
  tie_side: jax.Array    # [G, 2] sign(exact midpoint - threshold): decides a score equal to it
  weight: jax.Array      # [G, 2] mixing probabilities p0, p1
  p_ignore: jax.Array    # [G] probability of the constant prediction (equalized odds only)
  constant: jax.Array    # [] positive probability of the constant prediction
  x_best: jax.Array      # [] the chosen constraint value (FPR for equalized odds)
  y_best: jax.Array      # [] the objective there (TPR shared by all groups for equalized odds)


def _metric(name, tp, fp, tn, fn):
  """A rate of (elementwise) counts, through the confusion-table kernel."""
  c = jnp.stack([jnp.stack([tn, fp], -1), jnp.stack([fn, tp], -1)], -2)[..., None, :, :]
  if name == "accuracy":
    return accuracy_from_confusion(c)
  if name == "balanced_accuracy":
    return balanced_accuracy_from_confusion(c)
  if name == "true_negative_rate":
    return ratio(tn, tn + fp)
  if name == "false_negative_rate":
    return ratio(fn, fn + tp)
  return getattr(rates_from_confusion(c), name)[..., 0]


def _numerator(name, tp, fp, tn, fn, n_pos, n_neg):
  """The metric times its (per-group constant) denominator: an integer for integer weights."""
  return {"selection_rate": lambda: tp + fp, "true_positive_rate": lambda: tp,
          "false_positive_rate": lambda: fp, "true_negative_rate": lambda: tn,
          "false_negative_rate": lambda: fn, "accuracy": lambda: tp + tn,
          "balanced_accuracy": lambda: tp * n_neg + tn * n_pos}[name]()


def _two_product(a, b):
  """``a * b`` as ``p + e`` exactly (Dekker's product with Veltkamp's float32 split)."""
  def split(v):
    c = v * 4097.0
    hi = c - (c - v)
    return hi, v - hi
  p = a * b
  (ah, al), (bh, bl) = split(a), split(b)
  return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def products_at_least(a, b, c, d):
  """``a * b >= c * d`` decided exactly for float32 integers below 2^24 (the two products are
  compared through their exact two-term expansions, not their roundings)."""
  p1, e1 = _two_product(a, b)
  p2, e2 = _two_product(c, d)
  return (p1 > p2) | ((p1 == p2) & (e1 >= e2))


def _two_sum(a, b):
  """``a + b`` as ``s + e`` exactly (Knuth's TwoSum)."""
  s = a + b
  v = s - a
  return s, (a - (s - v)) + (b - v)


def _upper_hull(x, y, valid):
  """Indices (into x, y) of the upper convex hull of the valid points, which must be sorted by
  (x, y); returns (indices [P], count). Andrew's monotone chain, dropping collinear points,
  which it recognises exactly when x and y are integers below 2^24 (count numerators)."""
  num = x.shape[0]

  def push(carry, i):
    stack, h = carry

    def must_pop(state):
      stack, h = state
      i0, i1 = stack[jnp.maximum(h - 2, 0)], stack[jnp.maximum(h - 1, 0)]
      cross_ok = products_at_least(y[i] - y[i0], x[i1] - x[i0], y[i1] - y[i0], x[i] - x[i0])
      return (h >= 2) & cross_ok

    stack, h = jax.lax.while_loop(must_pop, lambda s: (s[0], s[1] - 1), (stack, h))
    stack = stack.at[h].set(i)
    new = (stack, h + 1)
    return jax.tree.map(lambda a, b: jnp.where(valid[i], a, b), new, carry), None

  (stack, h), _ = jax.lax.scan(push, (jnp.zeros(num, jnp.int32), jnp.int32(0)), jnp.arange(num))
  return stack, h


def _group_curve(scores, y, w, grid, *, x_metric, y_metric, flip):
  """The interpolated hull of one group (members: w > 0) on the grid, with its operations."""
  member = w > 0
  key = jnp.where(member, scores, -jnp.inf)
  order = jnp.argsort(-key, stable=True)
  s, yy, ww = key[order], y[order].astype(jnp.float32), w[order]
  n_members = member.sum()
  zero = jnp.zeros(1)
  cum_pos = jnp.concatenate([zero, jnp.cumsum(ww * yy)])
  cum_neg = jnp.concatenate([zero, jnp.cumsum(ww * (1 - yy))])
  n_pos, n_neg = cum_pos[-1], cum_neg[-1]
  k = jnp.arange(s.shape[0] + 1)
  prev = jnp.concatenate([jnp.full(1, jnp.inf), s])             # s[k-1]
  nxt = jnp.concatenate([s, jnp.full(1, -jnp.inf)])              # s[k]
  valid = (k <= n_members) & ((k == 0) | (k == n_members) | (prev != nxt))
  inner = (k > 0) & (k < n_members)
  total, error = _two_sum(jnp.where(inner, prev, 0.0), jnp.where(inner, nxt, 0.0))
  threshold = jnp.where(k == 0, jnp.inf, jnp.where(k == n_members, -jnp.inf, 0.5 * total))
  tie_side = jnp.where(inner, jnp.sign(error), 0.0)           # m - t = error / 2

  ops = [(cum_pos, cum_neg, n_neg - cum_neg, n_pos - cum_pos, True)]
  if flip:
    ops.append((n_pos - cum_pos, n_neg - cum_neg, cum_neg, cum_pos, False))
  # Points in fairlearn's order, cut by cut and within a cut ">" before "<": the stable sort
  # below then keeps its order among identical points (the later one stays on the hull).
  interleave = lambda per_op: jnp.stack(per_op, axis=1).reshape(-1)
  px = interleave([_metric(x_metric, tp, fp, tn, fn) for tp, fp, tn, fn, _ in ops])
  py = interleave([_metric(y_metric, tp, fp, tn, fn) for tp, fp, tn, fn, _ in ops])
  # The hull is found on the numerators (counts; the denominators are the group's constants),
  # so that collinear points are recognised exactly, as in exact arithmetic.
  nx = interleave([_numerator(x_metric, tp, fp, tn, fn, n_pos, n_neg)
                   for tp, fp, tn, fn, _ in ops])
  ny = interleave([_numerator(y_metric, tp, fp, tn, fn, n_pos, n_neg)
                   for tp, fp, tn, fn, _ in ops])
  pvalid = interleave([valid] * len(ops))
  pthreshold = interleave([threshold] * len(ops))
  ptie = interleave([tie_side] * len(ops))
  pgreater = interleave([jnp.full(k.shape, g) for *_, g in ops])

  nx_sort = jnp.where(pvalid, nx, jnp.inf)
  by_xy = jnp.lexsort((ny, nx_sort))
  hull, h = _upper_hull(nx_sort[by_xy], ny[by_xy], pvalid[by_xy])
  in_hull = jnp.arange(hull.shape[0]) < h
  point = by_xy[hull]
  hx = jnp.where(in_hull, px[point], jnp.inf)
  hy = jnp.where(in_hull, py[point], 0.0)

  # fairlearn's _get_interpolation_indices: x[i] < grid <= x[i + 1] (first grid point:
  # x[i] <= grid).
  idx = jnp.searchsorted(hx, grid, side="right") - 1
  idx = jnp.where((jnp.arange(grid.shape[0]) > 0) & (grid == hx[idx]), idx - 1, idx)
  idx = jnp.clip(idx, 0, jnp.maximum(h - 2, 0))
  x0, x1 = hx[idx], hx[idx + 1]
  p0 = jnp.where(x1 > x0, (x1 - grid) / jnp.where(x1 > x0, x1 - x0, 1.0), 1.0)
  curve = p0 * hy[idx] + (1 - p0) * hy[idx + 1]
  ops0 = (pthreshold[point[idx]], pgreater[point[idx]], ptie[point[idx]])
  ops1 = (pthreshold[point[idx + 1]], pgreater[point[idx + 1]], ptie[point[idx + 1]])
  return curve, p0, ops0, ops1, n_pos, n_neg, w.sum()


def first_argmax(values, tolerance: float):
  """Index of the first value within ``tolerance`` of the maximum."""
  return jnp.argmax(values >= values.max() - tolerance)


def fit_thresholds(scores, y_true, groups, *, num_groups: int, constraint: str, objective: str,
                   grid_size: int, flip: bool, sample_weight=None) -> ThresholdState:
  """Fits the randomised group thresholds (inputs already validated; jittable)."""
  scores = jnp.asarray(scores, jnp.float32)
  y = jnp.asarray(y_true, jnp.int32)
  w = jnp.ones_like(scores) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
  member = jax.nn.one_hot(groups, num_groups, dtype=jnp.float32).T * w[None]       # [G, N]
  grid = jnp.linspace(0.0, 1.0, grid_size + 1, dtype=jnp.float32)
  odds = constraint == "equalized_odds"
  x_metric = "false_positive_rate" if odds else SIMPLE_CONSTRAINTS[constraint]
  y_metric = "true_positive_rate" if odds else objective
  curve_fn = lambda wg: _group_curve(scores, y, wg, grid, x_metric=x_metric, y_metric=y_metric,
                                     flip=flip)
  curve, p0, (t0, g0, e0), (t1, g1, e1), n_pos, n_neg, size = jax.vmap(curve_fn)(member)
  if not odds:
    best = first_argmax(jnp.sum(size[:, None] / size.sum() * curve, axis=0), TIE_TOLERANCE)
    p_ignore = jnp.zeros(num_groups)
    y_best = jnp.sum(size / size.sum() * curve[:, best])
  else:
    y_min = curve.min(axis=0)
    tp, fn = n_pos.sum() * y_min, n_pos.sum() * (1 - y_min)
    fp, tn = n_neg.sum() * grid, n_neg.sum() * (1 - grid)
    best = first_argmax(_metric(objective, tp, fp, tn, fn), TIE_TOLERANCE)
    y_best = y_min[best]
    y_g = curve[:, best]
    lift = y_g - grid[best]
    p_ignore = jnp.where(jnp.abs(lift) > 1e-7, (y_g - y_best) / jnp.where(lift != 0, lift, 1.0),
                         0.0)
  return ThresholdState(
      threshold=jnp.stack([t0[:, best], t1[:, best]], -1),
      greater=jnp.stack([g0[:, best], g1[:, best]], -1),
      tie_side=jnp.stack([e0[:, best], e1[:, best]], -1),
      weight=jnp.stack([p0[:, best], 1 - p0[:, best]], -1),
      p_ignore=p_ignore, constant=grid[best], x_best=grid[best], y_best=y_best)


def threshold_probability(state: ThresholdState, scores, groups) -> jax.Array:
  """P(y_hat = 1) of every sample under the fitted rule."""
  s = jnp.asarray(scores, jnp.float32)[:, None]
  t, side = state.threshold[groups], state.tie_side[groups]             # [N, 2]
  above = (s > t) | ((s == t) & (side < 0))                            # s > the exact midpoint
  below = (s < t) | ((s == t) & (side > 0))
  fires = jnp.where(state.greater[groups], above, below).astype(jnp.float32)
  mixed = jnp.sum(state.weight[groups] * fires, axis=-1)
  p_ignore = state.p_ignore[groups]
  return p_ignore * state.constant + (1 - p_ignore) * mixed


def roc_auc(scores, y_true) -> float:
  """Area under the ROC curve, P(score_pos > score_neg) + P(tie) / 2 (rank formula)."""
  s = np.asarray(scores, np.float64)
  y = np.asarray(y_true).astype(bool)
  pos, neg = int(y.sum()), int((~y).sum())
  if pos == 0 or neg == 0:
    raise ValueError("y_true: the ROC AUC needs positives and negatives")
  order = np.argsort(s, kind="stable")
  ranks = np.empty(len(s))
  sorted_s = s[order]
  # average ranks over ties
  boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
  starts = np.concatenate([[0], boundaries])
  ends = np.concatenate([boundaries, [len(s)]])
  for a, b in zip(starts, ends):
    ranks[order[a:b]] = 0.5 * (a + b + 1)
  return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def hull_lift(scores, y_true, groups, *, num_groups: int, flip: bool) -> np.ndarray:
  """Per group, the area between the upper ROC hull (the trade-offs the threshold optimizer can
  reach, with ``score < t`` rules too when ``flip``) and the diagonal: 0 for uninformative
  scores, 0.5 for perfect ones. Equalized odds is confined to the intersection of the hulls, so
  a group with lift ~0 collapses the optimizer to chance."""
  grid = jnp.linspace(0.0, 1.0, 1001, dtype=jnp.float32)
  member = jax.nn.one_hot(jnp.asarray(groups), num_groups, dtype=jnp.float32).T
  curve_fn = lambda w: _group_curve(jnp.asarray(scores, jnp.float32), jnp.asarray(y_true), w, grid,
                                    x_metric="false_positive_rate",
                                    y_metric="true_positive_rate", flip=flip)[0]
  curves = np.asarray(jax.jit(jax.vmap(curve_fn))(member))
  area = 0.5 * (curves[:, 1:] + curves[:, :-1]).mean(axis=1)
  return area - 0.5
