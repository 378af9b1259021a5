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

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from debiasjax.metrics.fairness import rates_from_confusion
from debiasjax.metrics.sweep import confusion_at_thresholds

SIGNED_BIASES = ("statistical_parity", "equal_opportunity", "average_odds")
UNSIGNED_BIASES = ("demographic_parity", "equalized_odds")
BIASES = SIGNED_BIASES + UNSIGNED_BIASES
SHORT = {"statistical_parity": "SPD", "equal_opportunity": "EOD", "average_odds": "AOD",
         "demographic_parity": "DP", "equalized_odds": "EO"}


def _rates(c: jax.Array) -> tuple:
  """Selection rate, TPR, FPR and weight of [..., K, 2, 2] confusions, each [..., K]."""
  r = rates_from_confusion(c.reshape(-1, 2, 2))
  return tuple(v.reshape(c.shape[:-2]) for v in (
      r.selection_rate, r.true_positive_rate, r.false_positive_rate, r.weight))


def signed_difference(name: str, c: jax.Array, *, privileged: int = 1) -> jax.Array:
  """AIF360's unprivileged - privileged difference of [..., G, 2, 2] confusions, every group
  but ``privileged`` pooled: SPD = sel_u - sel_p (``statistical_parity``), EOD = TPR_u - TPR_p
  (``equal_opportunity``), AOD = ((FPR_u - FPR_p) + (TPR_u - TPR_p)) / 2 (``average_odds``).
  An empty group gives rate 0 (Savani's code)."""
  priv = c[..., privileged, :, :]
  sel, tpr, fpr, _ = _rates(jnp.stack([c.sum(-3) - priv, priv], axis=-3))
  d = lambda v: v[..., 0] - v[..., 1]
  if name == "statistical_parity":
    return d(sel)
  if name == "equal_opportunity":
    return d(tpr)
  return 0.5 * (d(fpr) + d(tpr))


def unsigned_gap(name: str, c: jax.Array) -> jax.Array:
  """fairlearn's max - min over the groups present of [..., G, 2, 2] confusions:
  ``demographic_parity`` (selection rate), ``equalized_odds`` (the larger of the TPR and FPR
  gaps), ``equal_opportunity`` (TPR), ``average_odds`` (mean of the TPR and FPR gaps)."""
  sel, tpr, fpr, weight = _rates(c)
  present = weight > 0
  spread = lambda v: (jnp.where(present, v, -jnp.inf).max(-1) - jnp.where(present, v, jnp.inf).min(-1))
  if name == "demographic_parity":
    return spread(sel)
  d_tpr, d_fpr = spread(tpr), spread(fpr)
  return {"equalized_odds": jnp.maximum(d_tpr, d_fpr), "equal_opportunity": d_tpr,
          "average_odds": 0.5 * (d_tpr + d_fpr)}[name]


def bias_from_confusion(c: jax.Array, bias: str, *, privileged: int = 1) -> jax.Array:
  """The bias measure of [..., G, 2, 2] confusion tables ``C[g, y, y_hat]``: a
  :func:`signed_difference` for :data:`SIGNED_BIASES`, an :func:`unsigned_gap` for
  :data:`UNSIGNED_BIASES`."""
  if bias not in BIASES:
    raise ValueError(f"bias: expected one of {list(BIASES)}, got {bias!r}")
  num_groups = c.shape[-3]
  if not 0 <= privileged < num_groups:
    raise ValueError(f"privileged: expected a group code in 0..{num_groups - 1}, got {privileged}")
  if bias in SIGNED_BIASES:
    return signed_difference(bias, c, privileged=privileged)
  return unsigned_gap(bias, c)


def performance_from_confusion(c: jax.Array, performance: str) -> jax.Array:
  """Accuracy or balanced accuracy (0.5 (TPR + TNR)) of [..., G, 2, 2] confusions, all groups."""
  total = c.sum(-3)
  if performance == "accuracy":
    return (total[..., 0, 0] + total[..., 1, 1]) / jnp.maximum(total.sum((-1, -2)), 1e-12)
  tpr = total[..., 1, 1] / jnp.maximum(total[..., 1, :].sum(-1), 1e-12)
  tnr = total[..., 0, 0] / jnp.maximum(total[..., 0, :].sum(-1), 1e-12)
  return 0.5 * (tpr + tnr)


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
    privileged: privileged group code of the signed measures.
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
    return self

  def phi(self, bias, performance, *, search: bool = False) -> jax.Array:
    """The paper's phi (v1: lower is better; v2: higher is better)."""
    if self.version == "v1":
      return self.lam * jnp.abs(bias) + (1.0 - self.lam) * (1.0 - performance)
    bound = self.epsilon - (self.margin if search else 0.0)
    return jnp.where(jnp.abs(bias) < bound, performance, 0.0)

  def score(self, phi) -> jax.Array:
    """Higher is better: ``-phi`` for v1, ``phi`` for v2."""
    return -phi if self.version == "v1" else phi

  def evaluate(self, c: jax.Array, *, search: bool = False) -> dict:
    """phi, score, bias and performance of [..., G, 2, 2] confusion tables."""
    bias = bias_from_confusion(c, self.bias, privileged=self.privileged)
    perf = performance_from_confusion(c, self.performance)
    phi = self.phi(bias, perf, search=search)
    return {"phi": phi, "score": self.score(phi), "bias": bias, "performance": perf}


class ThresholdChoice(NamedTuple):
  threshold: jax.Array
  phi: jax.Array              # the paper's phi at the threshold (bootstrap mean if any)
  score: jax.Array            # higher is better
  bias: jax.Array
  performance: jax.Array


def bootstrap_weights(key: jax.Array, n: int, num_resamples: int) -> jax.Array:
  """[B, n] multinomial counts: resampling n rows with replacement, B times."""
  idx = jax.random.randint(key, (num_resamples, n), 0, n)
  return jax.vmap(lambda i: jnp.zeros(n, jnp.float32).at[i].add(1.0))(idx)


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


def check_objective(objective) -> Objective:
  """Accepts an :class:`Objective` or a dict of its fields; validates it."""
  if isinstance(objective, dict):
    objective = Objective(**objective)
  if not isinstance(objective, Objective):
    raise ValueError(f"objective: expected an Objective or a dict of its fields, got {objective!r}")
  return objective.check()

