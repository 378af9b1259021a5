"""Per-group tables of any metric (fairlearn's ``MetricFrame``), ratio metrics, and sensitive
features of any kind: strings, numbers, booleans, or several columns at once (intersectional
groups).

* :func:`encode_groups` turns sensitive features into integer codes and group names: one column
  of any values, or several (a 2-D array, a dict or a DataFrame of columns), whose every
  combination present is one group (``"sex=F, race=B"``).
* :func:`by_group` computes metrics overall and per group from one confusion table (the
  built-in names) or by calling a metric function on each group's rows (any
  ``fn(y_true, y_pred)``, as fairlearn does); :class:`GroupTable` gives ``difference``
  (``max - min``), ``ratio`` (``min / max``) and a markdown table.
* :func:`demographic_parity_ratio`, :func:`equalized_odds_ratio` (fairlearn) and
  :func:`disparate_impact` (AIF360: unprivileged / privileged selection rate).

Example:
  table = by_group(y, y_hat, {"sex": sex, "race": race})       # intersectional groups
  table.by_group["selection_rate"]                              # {"sex=F, race=A": 0.31, ...}
  table.difference("true_positive_rate"), table.ratio("selection_rate")
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Sequence, Union

import jax
import numpy as np

from debiasjax import _checks
from debiasjax.metrics import confusion as C

# Metrics read off the per-group confusion table (one pass over the data for all of them).
BUILT_IN = ("count", "selection_rate", "true_positive_rate", "false_positive_rate",
            "true_negative_rate", "false_negative_rate", "accuracy", "balanced_accuracy")


def _columns(sensitive_features) -> tuple[list[str], list[np.ndarray]]:
  """(column names, columns) of one or several sensitive features."""
  if hasattr(sensitive_features, "columns") and hasattr(sensitive_features, "__getitem__"):
    names = [str(c) for c in sensitive_features.columns]           # a pandas DataFrame
    return names, [np.asarray(sensitive_features[c]) for c in sensitive_features.columns]
  if isinstance(sensitive_features, Mapping):
    return ([str(k) for k in sensitive_features],
            [np.asarray(v) for v in sensitive_features.values()])
  a = np.asarray(sensitive_features)
  if a.ndim == 1:
    return [], [a]
  if a.ndim == 2:
    return [f"feature{i}" for i in range(a.shape[1])], [a[:, i] for i in range(a.shape[1])]
  raise ValueError(f"sensitive_features: expected one column [N], several [N, K] or a dict / "
                   f"DataFrame of columns, got shape {a.shape}")


def _missing(column: np.ndarray) -> np.ndarray:
  if column.dtype.kind == "f":
    return np.isnan(column)
  if column.dtype.kind == "O":
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in column])
  return np.zeros(column.shape, bool)


def encode_groups(sensitive_features) -> tuple[np.ndarray, list[str]]:
  """Integer codes [N] and the group names of ``sensitive_features``.

  One column: its distinct values (strings, integers, booleans, ...) in sorted order, named by
  their ``str``. Several columns (2-D, dict or DataFrame): every combination present is a group,
  named ``"col=value, col=value"`` (fairlearn's intersectional ``MetricFrame`` index). Missing
  values (None, NaN) are refused.
  """
  names, columns = _columns(sensitive_features)
  if not columns:
    raise ValueError("sensitive_features: expected at least one column, got none")
  n = len(columns[0])
  for name, column in zip(names or ["sensitive_features"], columns):
    if column.ndim != 1 or len(column) != n:
      raise ValueError(f"sensitive_features: column {name!r} has shape {column.shape}; "
                       f"expected ({n},)")
    if _missing(column).any():
      raise ValueError(f"sensitive_features: column {name!r} has missing values (None or NaN) "
                       f"in rows {np.flatnonzero(_missing(column))[:10].tolist()}; give them a "
                       "value (e.g. 'unknown') or drop the rows")
  per_column = [np.unique(c.astype(str) if c.dtype.kind == "O" else c, return_inverse=True)
                for c in columns]
  if len(columns) == 1:
    values, codes = per_column[0]
    return codes.astype(np.int32).reshape(-1), [str(v) for v in values]
  combined = np.stack([inv.reshape(-1) for _, inv in per_column], axis=1)
  present, codes = np.unique(combined, axis=0, return_inverse=True)
  labels = [", ".join(f"{name}={values[i]}" for name, (values, _), i in
                      zip(names, per_column, row)) for row in present]
  return codes.astype(np.int32).reshape(-1), labels


def is_named(groups) -> bool:
  """Whether ``groups`` are sensitive features to encode rather than integer codes (strings,
  objects, several columns as a 2-D array, a dict or a DataFrame)."""
  if isinstance(groups, jax.Array):
    return False
  if isinstance(groups, Mapping) or hasattr(groups, "columns"):
    return True
  a = np.asarray(groups)
  return not (a.ndim == 1 and a.dtype.kind in "biuf")


def codes_for(groups, names: Sequence[str], name: str = "groups") -> np.ndarray:
  """Codes of ``groups`` (sensitive features) in a fitted list of group ``names``; a group the
  fit never saw is refused, naming it."""
  codes, seen = encode_groups(groups)
  unknown = [g for g in seen if g not in names]
  if unknown:
    raise ValueError(f"{name}: {unknown[:10]} not among the groups the rule was fitted on "
                     f"{list(names)}")
  return np.array([list(names).index(g) for g in seen], np.int32)[codes]


def as_codes(groups, privileged=None):
  """``(codes, privileged code)`` for the group metrics: integer codes (and traced arrays) pass
  unchanged; strings, objects, 2-D arrays, dicts and DataFrames are encoded
  (:func:`encode_groups`), and ``privileged`` is then a group's value or name (``"M"``,
  ``"sex=M, race=A"``), mapped to its code."""
  if not is_named(groups):
    return groups, privileged
  codes, names = encode_groups(groups)
  if privileged is not None:
    if str(privileged) not in names:
      raise ValueError(f"privileged: expected one of the groups {names}, got {privileged!r}")
    privileged = names.index(str(privileged))
  return codes, privileged


def _codes(groups) -> tuple[np.ndarray, list[str]]:
  """Codes and names: integer codes >= 0 are kept (named by their value), any other sensitive
  features encoded (:func:`encode_groups`)."""
  if not is_named(groups):
    a = np.asarray(groups)
    if a.size and a.dtype.kind in "iu" and a.min() >= 0:
      return a.astype(np.int32), [str(v) for v in range(int(a.max()) + 1)]
  return encode_groups(groups)


class GroupTable(NamedTuple):
  """Metrics overall and per group: ``overall[metric]``, ``by_group[metric][group name]``."""
  overall: dict
  by_group: dict
  groups: list

  def difference(self, metric: str) -> float:
    """``max - min`` of ``metric`` over the groups (fairlearn's ``difference()``)."""
    values = self._values(metric)
    return float(values.max() - values.min())

  def ratio(self, metric: str) -> float:
    """``min / max`` of ``metric`` over the groups (fairlearn's ``ratio()``; 0 when max = 0)."""
    values = self._values(metric)
    top = values.max()
    return float(values.min() / top) if top > 0 else 0.0

  def _values(self, metric: str) -> np.ndarray:
    if metric not in self.by_group:
      raise ValueError(f"metric: expected one of {list(self.by_group)}, got {metric!r}")
    return np.array([v for v in self.by_group[metric].values()], np.float64)

  def to_markdown(self, digits: int = 3) -> str:
    """The table as markdown: a row per group, then ``overall``, a column per metric."""
    metrics = list(self.by_group)
    fmt = lambda v: str(int(v)) if float(v).is_integer() and abs(v) > 1 else f"{v:.{digits}f}"
    lines = ["| group | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for g in self.groups:
      lines.append(f"| {g} | " + " | ".join(fmt(self.by_group[m][g]) for m in metrics) + " |")
    lines.append("| overall | " + " | ".join(fmt(self.overall[m]) for m in metrics) + " |")
    return "\n".join(lines)


def _from_confusion(c: np.ndarray) -> dict:
  """The built-in metrics of tables [..., 2, 2] (empty denominators give 0)."""
  neg, pos = c[..., 0, :].sum(-1), c[..., 1, :].sum(-1)
  div = lambda a, b: np.where(b > 0, a / np.where(b > 0, b, 1), 0.0)
  tpr, fpr = div(c[..., 1, 1], pos), div(c[..., 0, 1], neg)
  tnr, fnr = div(c[..., 0, 0], neg), div(c[..., 1, 0], pos)
  has = (neg > 0).astype(float) + (pos > 0).astype(float)
  return {"count": neg + pos, "selection_rate": div(c[..., 0, 1] + c[..., 1, 1], neg + pos),
          "true_positive_rate": tpr, "false_positive_rate": fpr, "true_negative_rate": tnr,
          "false_negative_rate": fnr, "accuracy": div(c[..., 0, 0] + c[..., 1, 1], neg + pos),
          "balanced_accuracy": div(tnr * (neg > 0) + tpr * (pos > 0), has)}


def by_group(y_true, y_pred, sensitive_features, *,
             metrics: Union[Sequence[Union[str, Callable]], Mapping[str, Callable]] = (
                 "count", "selection_rate", "true_positive_rate", "false_positive_rate",
                 "accuracy", "balanced_accuracy"),
             sample_weight=None) -> GroupTable:
  """Every metric overall and per group (fairlearn's ``MetricFrame``).

  Args:
    y_true: binary labels [N].
    y_pred: decisions or probabilities of a positive decision [N] (probabilities give the
      randomised classifier's expected rates).
    sensitive_features: integer codes, or any values (see :func:`encode_groups`; several
      columns give intersectional groups).
    metrics: names of :data:`BUILT_IN` (one confusion table for all), functions
      ``fn(y_true, y_pred)`` called on each group's rows (named by ``__name__``), or a dict
      ``{name: name or fn}``. Functions get no weights; with ``sample_weight`` use built-ins.
    sample_weight: optional non-negative weights [N].
  """
  codes, names = _codes(sensitive_features)
  y, p, g, w, n = _checks.metric_inputs(y_true, y_pred, codes, sample_weight, len(names), None)
  items = (list(metrics.items()) if isinstance(metrics, Mapping) else
           [(m if isinstance(m, str) else getattr(m, "__name__", repr(m)), m) for m in metrics])
  for label, m in items:
    if isinstance(m, str) and m not in BUILT_IN:
      raise ValueError(f"metrics: {m!r} is not a built-in metric ({', '.join(BUILT_IN)}); pass "
                       "a function fn(y_true, y_pred) for any other")
    if not isinstance(m, str) and not callable(m):
      raise ValueError(f"metrics: {label!r} is neither a built-in name nor a function")
    if not isinstance(m, str) and sample_weight is not None:
      raise ValueError(f"metrics: {label!r} is a function, which takes no sample weights; "
                       "use the built-in metrics with sample_weight")
  c = np.asarray(C.group_confusion(y, p, g, num_groups=n, sample_weight=w), np.float64)
  per_group, overall_c = _from_confusion(c), _from_confusion(c.sum(0))
  y_np, p_np, g_np = np.asarray(y), np.asarray(p), np.asarray(g)
  overall, table = {}, {}
  for label, m in items:
    if isinstance(m, str):
      overall[label] = float(overall_c[m])
      table[label] = {names[k]: float(per_group[m][k]) for k in range(n)}
    else:
      overall[label] = float(m(y_np, p_np))
      table[label] = {names[k]: float(m(y_np[g_np == k], p_np[g_np == k])) for k in range(n)}
  present = [names[k] for k in range(n) if (g_np == k).any()]
  table = {label: {name: v for name, v in values.items() if name in present}
           for label, values in table.items()}
  return GroupTable(overall, table, present)


def demographic_parity_ratio(y_true, y_pred, sensitive_features, *, sample_weight=None) -> float:
  """fairlearn's ``demographic_parity_ratio``: the smallest group selection rate over the
  largest (1 = parity)."""
  return by_group(y_true, y_pred, sensitive_features, metrics=["selection_rate"],
                  sample_weight=sample_weight).ratio("selection_rate")


def equalized_odds_ratio(y_true, y_pred, sensitive_features, *, sample_weight=None) -> float:
  """fairlearn's ``equalized_odds_ratio``: the smaller of the TPR ratio and the FPR ratio
  (``min / max`` over the groups; 1 = equalized odds)."""
  t = by_group(y_true, y_pred, sensitive_features,
               metrics=["true_positive_rate", "false_positive_rate"],
               sample_weight=sample_weight)
  return min(t.ratio("true_positive_rate"), t.ratio("false_positive_rate"))


def disparate_impact(y_true, y_pred, groups, *, privileged: Any, sample_weight=None) -> float:
  """AIF360's disparate impact: the unprivileged groups' (pooled) selection rate over the
  privileged group's; 1 = parity, below 0.8 fails the four-fifths rule. ``privileged`` is a
  group code or name (a value of ``groups``); NaN when the privileged rate is 0, as AIF360."""
  codes, names = _codes(groups)
  key = str(privileged)
  if key not in names:
    raise ValueError(f"privileged: expected one of the groups {names}, got {privileged!r}")
  k = names.index(key)
  y, p, g, w, n = _checks.metric_inputs(y_true, y_pred, codes, sample_weight, len(names), None)
  c = np.asarray(C.group_confusion(y, p, g, num_groups=n, sample_weight=w), np.float64)
  split = np.stack([c.sum(0) - c[k], c[k]])
  rates = _from_confusion(split)["selection_rate"]
  return float(rates[0] / rates[1]) if rates[1] > 0 else float("nan")


__all__ = ["BUILT_IN", "GroupTable", "as_codes", "by_group", "codes_for",
           "demographic_parity_ratio", "disparate_impact", "encode_groups", "equalized_odds_ratio",
           "is_named"]
