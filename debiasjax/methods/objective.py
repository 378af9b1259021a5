"""Savani et al.'s objective phi and the threshold search every weight-changing method ends with.

Savani, White & Govindarajulu (2020) score a model with decisions ``score > tau`` by

* **v1** (arXiv v1, the seed paper, Eq. 1): ``phi = lam |bias| + (1 - lam)(1 - accuracy)``,
  minimised, ``lam = 0.75``;
* **v2** (NeurIPS 2020): ``phi = balanced_accuracy if |bias| < epsilon else 0``, maximised,
  ``epsilon = 0.05``, searched with ``epsilon - margin`` and averaged over bootstrap resamples
  of the validation set.

:class:`Objective` holds either; its :meth:`~Objective.score` is "higher is better" for both
(``-phi`` for v1) so every search maximises. The bias is AIF360's signed difference
(unprivileged - privileged: ``statistical_parity``, ``equal_opportunity``, ``average_odds``) or
fairlearn's unsigned gap (``demographic_parity``, ``equalized_odds``); it is computed from
confusion tables, which may hold probabilities (the *soft* bias the adversarial critic regresses).

:func:`threshold_search` scores every threshold of a grid at once from sorted cumulative counts
(:func:`debiasjax.metrics.sweep.confusion_at_thresholds`) and, for bootstraps, from a [B, N]
matrix of multinomial counts; it jits and vmaps over candidate models.

Example:
  obj = Objective(version="v1", bias="statistical_parity")
  best = threshold_search(obj, scores, y, groups, num_groups=2)
  best.threshold, best.phi, best.bias, best.performance
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from debiasjax.metrics.confusion import SIGNED as SIGNED_BIASES, accuracy_from_confusion, \
    balanced_accuracy_from_confusion, signed_difference, unsigned_gap
from debiasjax.metrics.confusion import bootstrap_weights  # noqa: F401 -- part of this API
from debiasjax.metrics.fairness import savani_objective_v1, savani_objective_v2
from debiasjax.metrics.sweep import confusion_at_thresholds

UNSIGNED_BIASES = ("demographic_parity", "equalized_odds")
BIASES = SIGNED_BIASES + UNSIGNED_BIASES
SHORT = {"statistical_parity": "SPD", "equal_opportunity": "EOD", "average_odds": "AOD",
         "demographic_parity": "DP", "equalized_odds": "EO"}


def bias_from_confusion(c: jax.Array, bias: str, *, privileged: int = 1) -> jax.Array:
  """The bias measure of [..., G, 2, 2] confusion tables ``C[g, y, y_hat]``: AIF360's
  :func:`~debiasjax.metrics.signed_difference` for :data:`SIGNED_BIASES`, fairlearn's
  :func:`~debiasjax.metrics.unsigned_gap` for :data:`UNSIGNED_BIASES`."""
  if bias not in BIASES:
    raise ValueError(f"bias: expected one of {list(BIASES)}, got {bias!r}")
  num_groups = c.shape[-3]
  if not 0 <= privileged < num_groups:
    raise ValueError(f"privileged: expected a group code in 0..{num_groups - 1}, got {privileged}")
  if bias in SIGNED_BIASES:
    return signed_difference(bias, c, privileged=privileged)
  return unsigned_gap(bias, c)


def performance_from_confusion(c: jax.Array, performance: str) -> jax.Array:
  """Accuracy or balanced accuracy of [..., G, 2, 2] confusions, all groups pooled."""
  if performance == "accuracy":
    return accuracy_from_confusion(c)
  return balanced_accuracy_from_confusion(c)


class Objective(NamedTuple):
  """Savani's phi (hashable, so it can be a static argument).

  Attributes:
    version: ``"v1"`` (``lam |bias| + (1 - lam)(1 - accuracy)``, minimised) or ``"v2"``
      (``balanced accuracy if |bias| < epsilon else 0``, maximised).
    bias: the bias measure (see :data:`BIASES`).
    lam: v1's weight of the bias (0.75).
    epsilon: v2's bias bound (0.05).
    margin: v2 searches with ``epsilon - margin`` (0.01 for random / layer-wise, 0.02 for
      adversarial in the paper's code); final scores use ``epsilon``.
    privileged: privileged group code of the signed measures (the data's, when a caller gives
      it: :func:`check_objective`).
  """
  version: str = "v1"
  bias: str = "statistical_parity"
  lam: float = 0.75
  epsilon: float = 0.05
  margin: float = 0.0
  privileged: int = 1

  @property
  def performance(self) -> str:
    return "accuracy" if self.version == "v1" else "balanced_accuracy"

  def check(self) -> "Objective":
    if self.version not in ("v1", "v2"):
      raise ValueError(f"version: expected 'v1' or 'v2', got {self.version!r}")
    if self.bias not in BIASES:
      raise ValueError(f"bias: expected one of {list(BIASES)}, got {self.bias!r}")
    if not 0.0 <= self.lam <= 1.0:
      raise ValueError(f"lam: expected a value in [0, 1], got {self.lam}")
    if not 0.0 <= self.margin < self.epsilon:
      raise ValueError(f"epsilon, margin: expected 0 <= margin < epsilon, got {self.margin}, "
                       f"{self.epsilon}")
    if isinstance(self.privileged, bool) or not isinstance(self.privileged, int) \
        or self.privileged < 0:
      raise ValueError(f"privileged: expected a group code (int >= 0), got {self.privileged!r}")
    return self

  def phi(self, bias, performance, *, search: bool = False) -> jax.Array:
    """The paper's phi (v1: lower is better; v2: higher is better)."""
    if self.version == "v1":
      return savani_objective_v1(bias, performance, lam=self.lam)
    return savani_objective_v2(bias, performance,
                               epsilon=self.epsilon - (self.margin if search else 0.0))

  def score(self, phi) -> jax.Array:
    """Higher is better: ``-phi`` for v1, ``phi`` for v2."""
    return -phi if self.version == "v1" else phi

  def evaluate(self, c: jax.Array, *, search: bool = False) -> dict:
    """phi, score, bias and performance of [..., G, 2, 2] confusion tables."""
    bias = bias_from_confusion(c, self.bias, privileged=self.privileged)
    perf = performance_from_confusion(c, self.performance)
    phi = self.phi(bias, perf, search=search)
    return {"phi": phi, "score": self.score(phi), "bias": bias, "performance": perf}


class WeightResult(NamedTuple):
  """New weights (from a search or fine-tuning), their threshold with its objective on the
  debias split (``phi``, ``score``, ``bias``, ``performance``; NaN without an objective), a
  trace, and the trainer's final state (fine-tuning)."""
  variables: Any
  threshold: jax.Array
  phi: jax.Array
  score: jax.Array
  bias: jax.Array
  performance: jax.Array
  trace: dict
  state: Any = None


class ThresholdChoice(NamedTuple):
  threshold: jax.Array
  phi: jax.Array              # the paper's phi at the threshold (bootstrap mean if any)
  score: jax.Array            # higher is better
  bias: jax.Array
  performance: jax.Array


def threshold_grid(num: int) -> jax.Array:
  """``linspace(0, 1, num)``: Savani's grids (501 for random / layer-wise, 1001 otherwise)."""
  return jnp.linspace(0.0, 1.0, num, dtype=jnp.float32)


def threshold_search(objective: Objective, scores, y, groups, *, num_groups: int,
                     thresholds: Optional[jax.Array] = None,
                     weights: Optional[jax.Array] = None, search: bool = True) -> ThresholdChoice:
  """The threshold of ``y_hat = score > tau`` with the best objective, all thresholds at once.

  Args:
    objective: the :class:`Objective`.
    scores, y, groups: [N] P(y = 1), labels and group codes.
    num_groups: number of groups (static).
    thresholds: the grid (default ``linspace(0, 1, 501)``).
    weights: optional [N] sample weights or [B, N] bootstrap counts; with B resamples phi, bias
      and performance are their means over the resamples (Savani v2's validation estimate).
    search: use v2's ``epsilon - margin`` (True while searching).

  Returns:
    The first best threshold (ties go to the lowest) and its phi, score, bias, performance.
  """
  thresholds = threshold_grid(501) if thresholds is None else jnp.asarray(thresholds, jnp.float32)
  if weights is None:
    weights = jnp.ones((1, jnp.shape(scores)[0]), jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.ndim == 1:
    weights = weights[None]
  sweep = lambda w: confusion_at_thresholds(scores, y, groups, thresholds, num_groups=num_groups,
                                            sample_weight=w)
  c = jax.vmap(sweep)(weights)                                      # [B, T, G, 2, 2]
  ev = objective.evaluate(c, search=search)
  phi = ev["phi"].mean(0)
  score = objective.score(phi)
  best = jnp.argmax(score)
  return ThresholdChoice(thresholds[best], phi[best], score[best], ev["bias"].mean(0)[best],
                         ev["performance"].mean(0)[best])


def as_objective(objective) -> Objective:
  """Accepts an :class:`Objective` or a dict of its fields; validates it."""
  if isinstance(objective, dict):
    objective = Objective(**objective)
  if not isinstance(objective, Objective):
    raise ValueError(f"objective: expected an Objective or a dict of its fields, got {objective!r}")
  return objective.check()


def check_objective(objective, privileged: Optional[int] = None) -> Objective:
  """:func:`as_objective`, with the data's ``privileged`` group when given (it is a property of
  the data: :func:`debiasjax.debias` passes the benchmark's)."""
  objective = as_objective(objective)
  return objective if privileged is None else objective._replace(privileged=int(privileged))
