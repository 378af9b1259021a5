"""Scores of a model on a split, and the performance/fairness summary every result row uses."""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from debiasjax import _checks, parallel
from debiasjax.metrics import confusion as C
from debiasjax.metrics.frame import as_codes


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


BATCH = 256   # rows per compiled forward pass, one size for every scoring and activation pass


def map_batches(fn: Callable[[Any, jax.Array], Any], variables: Any, x: np.ndarray, *,
                batch_size: int = BATCH):
  """``fn(variables, batch)`` over the rows of ``x`` in jitted batches of one fixed size (the
  last one padded with zeros), so one compilation serves any N; NumPy arrays (a pytree of
  them when ``fn`` returns one).

  On several devices (:func:`debiasjax.parallel.current`) each batch is split over the mesh's
  ``"data"`` axis (its size rounded up to a multiple of it) with ``variables`` replicated; with
  several processes each one puts only its own rows on its devices.
  """
  n = len(x)
  if n == 0:
    raise ValueError("x: expected at least one row, got 0")
  size = parallel.row_multiple(min(batch_size, n))
  f = jax.jit(fn)
  variables = parallel.put(variables)
  out = []
  for start in range(0, n, size):
    xb = np.asarray(x[start:start + size])
    pad = size - len(xb)
    if pad:
      xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
    out.append(jax.tree.map(lambda v: v[:size - pad],
                            parallel.to_host(f(variables, parallel.global_rows(xb)))))
  return jax.tree.map(lambda *parts: np.concatenate(parts), *out)


def predicted_classes(model, variables: Any, x: np.ndarray, *, stacked: bool = False,
                      batch_size: int = BATCH) -> np.ndarray:
  """The argmax class of every row of ``x`` [N] (eval mode), or [K, N] for K models stacked
  in ``variables`` (one vmapped program), in batches (:func:`map_batches`)."""
  def classes(v, xb):
    return jnp.argmax(model.apply(v, xb), -1).astype(jnp.int32)

  if not stacked:
    return map_batches(classes, variables, x, batch_size=batch_size)
  return map_batches(lambda v, xb: jax.vmap(classes, (0, None), 1)(v, xb), variables, x,
                     batch_size=batch_size).T


@functools.lru_cache(maxsize=64)
def _probability_of(apply_fn):
  """One function object per ``apply_fn``, so jit reuses its compilation across calls."""
  return lambda variables, x: positive_probability(apply_fn(variables, x))


@functools.lru_cache(maxsize=64)
def _forward_at(model, layer: str):
  from debiasjax.models.taps import tap
  t = tap(model, layer)

  def forward(variables, x):
    logits, acts = t.forward(variables, x)
    return positive_probability(logits), acts

  return forward


def _check_finite(scores: np.ndarray) -> np.ndarray:
  if not np.isfinite(scores).all():
    raise ValueError(f"model scores: {int((~np.isfinite(scores)).sum())} of {len(scores)} are "
                     "NaN or infinite; the model's parameters or inputs are not finite")
  return scores


def scores_and_activations(model, variables: Any, x: np.ndarray, layer: str, *,
                           batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
  """P(y = 1) of every row of ``x`` under the Flax ``model`` and the outputs of its module
  ``layer``, from one pass. One compiled program per (model, layer, batch shape) serves the
  vanilla scores, the activations the concept methods fit on, and the scores of every model
  with new weights, so :func:`debiasjax.debias` compiles its forward pass once."""
  scores, acts = map_batches(_forward_at(model, layer), variables, x, batch_size=batch_size)
  return _check_finite(scores), acts


def predict_scores(apply_fn: Callable[[Any, jax.Array], jax.Array], variables: Any,
                   x: np.ndarray, *, batch_size: int = BATCH) -> np.ndarray:
  """P(y = 1) of every row of ``x`` under ``apply_fn(variables, x) -> logits``
  (:func:`map_batches`). Raises ``ValueError`` if the model produces NaN or infinite logits.
  """
  return _check_finite(map_batches(_probability_of(apply_fn), variables, x,
                                   batch_size=batch_size))


@functools.partial(jax.jit, static_argnames=("num_groups", "privileged"))
def _summary(y, p, g, w, *, num_groups: int, privileged: Optional[int]) -> dict:
  """Every number of :func:`fairness_summary` from one confusion table, in one program."""
  c = C.group_confusion(y, p, g, num_groups=num_groups, sample_weight=w)
  out = {"accuracy": C.accuracy_from_confusion(c),
         "balanced_accuracy": C.balanced_accuracy_from_confusion(c),
         **{gap: C.unsigned_gap(gap, c) for gap in C.UNSIGNED},
         "rates": C.rates_from_confusion(c)}
  if privileged is not None:
    out["signed"] = {name: C.signed_difference(name, c, privileged=privileged)
                     for name in C.SIGNED}
    out["split"] = C.privileged_split(c, privileged)
  return out


@functools.partial(jax.jit, static_argnames=("num_groups", "privileged", "num_resamples"))
def _bootstrap_values(y, p, g, key, *, num_groups: int, privileged: Optional[int],
                      num_resamples: int) -> dict:
  """The summary's scalar metrics on ``num_resamples`` resamples of the rows (with
  replacement, as multinomial counts), one vmapped program."""
  weights = parallel.constrain(C.bootstrap_weights(key, y.shape[0], num_resamples),
                               parallel.EVERY)

  def one(w):
    s = _summary(y, p, g, w, num_groups=num_groups, privileged=privileged)
    out = {k: s[k] for k in ("accuracy", "balanced_accuracy", *C.UNSIGNED)}
    if privileged is not None:
      out.update({f"{k}_difference": v for k, v in s["signed"].items()})
    return out
  return jax.vmap(one)(weights)


def bootstrap_intervals(y_true, y_pred, groups, *, key: jax.Array, num_resamples: int = 200,
                        level: float = 0.95, privileged: Optional[int] = None) -> dict:
  """Percentile bootstrap intervals ``{metric: [low, high]}`` of :func:`fairness_summary`'s
  scalar metrics (signed ones too when ``privileged`` is given): the rows resampled with
  replacement ``num_resamples`` times, every resample scored in one vmapped program; resamples
  where a metric is undefined (a group without positives) are left out of its interval."""
  _checks.check_key("key", key)
  _checks.check_int("num_resamples", num_resamples, 2)
  if not 0 < level < 1:
    raise ValueError(f"level: expected a coverage in (0, 1), got {level}")
  groups, privileged = as_codes(groups, privileged)
  y, p, g, _, n = _checks.metric_inputs(y_true, y_pred, groups, None, None, privileged)
  values = parallel.to_host(_bootstrap_values(y, p, g, key, num_groups=n, privileged=privileged,
                                            num_resamples=num_resamples))
  tail = 100 * (1 - level) / 2
  out = {}
  for name, v in values.items():
    v = np.asarray(v, np.float64)
    v = v[np.isfinite(v)]
    out[name] = ([float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail))]
                 if v.size else [None, None])
  return out


def fairness_summary(y_true, y_pred, groups, *, privileged: Optional[int] = None,
                     sample_weight=None) -> dict:
  """Accuracy, balanced accuracy, the unsigned fairlearn gaps and, when ``privileged`` is
  given, AIF360's signed differences, plus per-group rates; all from one confusion table
  (:mod:`debiasjax.metrics.confusion`), the values of the metric functions of
  :mod:`debiasjax.metrics`.

  Keys: ``accuracy``, ``balanced_accuracy``, ``demographic_parity``, ``equalized_odds``,
  ``equal_opportunity``, ``average_odds`` (unsigned, max - min over groups), and
  ``statistical_parity_difference``, ``equal_opportunity_difference``,
  ``average_odds_difference`` (signed, unprivileged - privileged; None where undefined, as
  AIF360's NaN), and ``groups``: per group ``selection_rate``, ``tpr``, ``fpr``, ``accuracy``,
  ``count``.
  """
  groups, privileged = as_codes(groups, privileged)
  y, p, g, w, n = _checks.metric_inputs(y_true, y_pred, groups, sample_weight, None, privileged)
  values = jax.device_get(_summary(y, p, g, w, num_groups=n, privileged=privileged))
  out = {k: float(values[k]) for k in ("accuracy", "balanced_accuracy", *C.UNSIGNED)}
  if privileged is not None:
    split = values["split"]                     # [unprivileged, privileged][y, y_hat]
    has_pos, has_neg = split[:, 1].sum(-1) > 0, split[:, 0].sum(-1) > 0
    signed = values["signed"]
    out["statistical_parity_difference"] = float(signed["statistical_parity"])
    out["equal_opportunity_difference"] = (float(signed["equal_opportunity"]) if has_pos.all()
                                           else None)
    out["average_odds_difference"] = (float(signed["average_odds"])
                                      if has_pos.all() and has_neg.all() else None)
  rates = values["rates"]
  counts = np.bincount(np.asarray(g, np.int64), minlength=n)
  out["groups"] = [{"count": int(c), "selection_rate": float(s), "tpr": float(t), "fpr": float(f),
                    "accuracy": float(a)}
                   for c, s, t, f, a in zip(counts, rates.selection_rate, rates.true_positive_rate,
                                            rates.false_positive_rate, rates.accuracy)]
  return out
