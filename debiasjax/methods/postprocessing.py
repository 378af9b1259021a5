"""Post-processors: fair decisions from a fixed model's scores, group by group.

Every method is a factory returning a :class:`PostProcessor` of pure functions:

* ``fit(scores, y, groups, *, sample_weight=None, privileged=None) -> state`` on the debias
  split (``privileged``, when given, is the data's privileged group and replaces the
  factory's, for the methods that distinguish one);
* ``probability(state, scores, groups) -> P(y_hat = 1)``, the expected decision of the (possibly
  randomised) rule, which every evaluation uses;
* ``predict(state, scores, groups, key) -> y_hat``, one random draw of it.

Scores are P(y = 1) of the model. ``fit`` jits and vmaps: over bootstrap resamples given as
``sample_weight`` (multinomial counts) or, by calling the factory inside ``jax.vmap``, over a
hyper-parameter such as ``lam``. A fit compiles once per configuration and *size bucket*: the
inputs are padded with rows of weight zero, which no method counts, to at least 64 rows and
otherwise to one of four sizes per octave (:func:`bucket_size`), so fits on 200 and 210 rows
share one program and give the results of the unpadded data. Inputs are validated when
concrete: NaN scores, non-binary labels, a group with a single label class where the method
needs both, all-equal scores where no rule exists, raise a ``ValueError`` naming the problem.

Methods:

* :func:`threshold_optimizer` -- Hardt et al. (2016) / fairlearn's ``ThresholdOptimizer``.
* :func:`reject_option` -- Kamiran, Karim & Zhang (2012), AIF360's
  ``RejectOptionClassification``.
* :func:`equalized_odds_postprocessing` -- Hardt et al.'s linear program, AIF360's
  ``EqOddsPostprocessing``.
* :func:`calibrated_equalized_odds` -- Pleiss et al. (2017), AIF360's
  ``CalibratedEqOddsPostprocessing``.
* :func:`naive_threshold` -- one global threshold for a fairness/accuracy objective.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from debiasjax import _checks
from debiasjax._checks import check_option as _check_option, check_scores as _check_scores, \
    is_concrete as _is_concrete
from debiasjax.metrics.confusion import balanced_accuracy_from_confusion, signed_difference, \
    unsigned_gap
from debiasjax.metrics import frame
from debiasjax.metrics.sweep import confusion_at_thresholds
from debiasjax.methods import group_thresholds as _to


class PostProcessor(NamedTuple):
  """``fit(scores, y, groups, *, sample_weight=None, privileged=None)``,
  ``probability(state, scores, groups)``, ``predict(state, scores, groups, key)``."""
  fit: Callable[..., Any]
  probability: Callable[[Any, Any, Any], jax.Array]
  predict: Callable[[Any, Any, Any, jax.Array], jax.Array]


@flax.struct.dataclass
class NamedGroups:
  """A rule fitted on named groups (strings, several columns): its state and the group names
  (static, so the state still jits and vmaps); ``probability`` maps names to the fitted codes."""
  state: Any
  names: tuple = flax.struct.field(pytree_node=False)


def _with_predict(fit, probability) -> PostProcessor:
  """The family's three functions; ``fit`` and ``probability`` also take sensitive features
  of any kind (encoded as :func:`debiasjax.metrics.encode_groups` does, ``privileged`` then a
  group's value or name), the fitted names kept in a :class:`NamedGroups` state."""
  def fit_any(scores, y, groups, **kwargs):
    if not frame.is_named(groups):
      return fit(scores, y, groups, **kwargs)
    codes, privileged = frame.as_codes(groups, kwargs.pop("privileged", None))
    _, names = frame.encode_groups(groups)
    return NamedGroups(fit(scores, y, codes, privileged=privileged, **kwargs), tuple(names))

  def probability_any(state, scores, groups):
    if isinstance(state, NamedGroups):
      if frame.is_named(groups):
        groups = frame.codes_for(groups, state.names)
      return probability(state.state, scores, groups)
    return probability(state, scores, groups)

  def predict(state, scores, groups, key):
    p = probability_any(state, scores, groups)
    return (jax.random.uniform(_checks.check_key("key", key), p.shape) < p).astype(jnp.int32)
  return PostProcessor(fit_any, probability_any, predict)


MIN_BUCKET = 64


def bucket_size(n: int) -> int:
  """The padded size of a fit on ``n`` rows, at least 64: the next multiple of a quarter of the
  power of two below it (four buckets per octave, at most 25 % padding; 9,000 rows -> 10,240)."""
  n = int(n)
  if n <= MIN_BUCKET:
    return MIN_BUCKET
  step = 1 << max(0, (n - 1).bit_length() - 3)
  return -(-n // step) * step


def _pad(s, y, g, w):
  """Rows of weight zero up to :func:`bucket_size` (copies of the first row, so padding adds
  no new score value: no method counts a zero-weight row, and no new threshold appears)."""
  n = s.shape[0]
  extra = bucket_size(n) - n
  if not extra:
    return s, y, g, w
  repeat = lambda v: jnp.concatenate([v, jnp.broadcast_to(v[:1], (extra,))])
  return repeat(s), repeat(y), repeat(g), jnp.concatenate([w, jnp.zeros(extra, w.dtype)])


def _inputs(scores, y, groups, sample_weight, num_groups, *, both_labels: bool = True,
            probabilities: bool = True):
  """Validates fit inputs; returns (scores, y, groups, weight, num_groups), padded to the size
  bucket. ``probabilities``: the scores must lie in [0, 1] (the method's grid or threshold is
  on that scale)."""
  s = _check_scores(scores)
  if probabilities:
    _checks.check_probabilities("scores", s)
  y = _checks.as_vector("y", y)
  g = _checks.as_vector("groups", groups)
  w = None if sample_weight is None else _checks.as_vector("sample_weight", sample_weight)
  _checks.check_lengths(scores=s, y=y, groups=g, sample_weight=w)
  _checks.check_binary("y", y)
  _checks.check_weights(w)
  n = _checks.resolve_groups(g, num_groups, w)
  if both_labels and _is_concrete(y) and _is_concrete(g) and (w is None or _is_concrete(w)):
    weight = np.ones(len(y)) if w is None else np.asarray(w, np.float64)
    yv, gv = np.asarray(y), np.asarray(g)
    for k in range(n):
      labels = set(np.unique(yv[(gv == k) & (weight > 0)]).tolist())
      if labels != {0, 1}:
        raise ValueError(f"y: group {k} has only label {labels.pop()} (degenerate labels); the "
                         "method needs positives and negatives in every group")
  w = jnp.ones_like(s) if w is None else w.astype(jnp.float32)
  s, y, g, w = _pad(s, y.astype(jnp.int32), g.astype(jnp.int32), w)
  return s, y, g, w, n


def _probability_inputs(scores, groups, num_groups: Optional[int] = None, *,
                        probabilities: bool = True):
  """Validated ``probability`` inputs: finite scores (in [0, 1] when ``probabilities``) and
  integer group codes of the same length (among ``num_groups`` when given)."""
  s = _check_scores(scores)
  if probabilities:
    _checks.check_probabilities("scores", s)
  g = _checks.group_codes(groups, num_groups)
  _checks.check_lengths(scores=s, groups=g)
  return s, g


def _privileged(factory: int, fitted: Optional[int], num_groups: int) -> int:
  """The data's privileged group given to ``fit``, else the factory's."""
  return _checks.check_privileged(factory if fitted is None else fitted, num_groups)


# ---------------------------------------------------------------------------------------------
# Threshold optimizer (Hardt et al.; fairlearn semantics)

# Compiled once per static configuration and shared by every factory call.
_fit_thresholds = jax.jit(_to.fit_thresholds, static_argnames=(
    "num_groups", "constraint", "objective", "grid_size", "flip"))


def threshold_optimizer(*, constraint: str = "demographic_parity", objective: str = "accuracy",
                        grid_size: int = 1000, flip: bool = False,
                        num_groups: Optional[int] = None) -> PostProcessor:
  """Group-specific randomised thresholds under a fairness constraint (fairlearn's
  ``ThresholdOptimizer``; see :mod:`debiasjax.methods.group_thresholds`).

  Args:
    constraint: ``"demographic_parity"``, ``"equalized_odds"``, ``"true_positive_rate_parity"``,
      ``"false_positive_rate_parity"``, ``"true_negative_rate_parity"`` or
      ``"false_negative_rate_parity"``.
    objective: ``"accuracy"`` or ``"balanced_accuracy"``.
    grid_size: the constraint values searched are ``linspace(0, 1, grid_size + 1)``.
    flip: also allow ``score < t`` rules (for groups whose scores are anti-correlated).
    num_groups: number of groups (inferred from concrete inputs when None).

  The state (:class:`~debiasjax.methods.group_thresholds.ThresholdState`) holds each
  group's two thresholds, their operators and mixing probabilities, and, for equalized odds,
  the probability of the constant prediction. It gives fairlearn's group rates on the fit data
  (480 random oracle cases) and the per-sample decisions of the rule in exact arithmetic
  (collinear hull points recognised exactly; see :mod:`~debiasjax.methods.group_thresholds`),
  up to grid points whose objectives differ by less than ``TIE_TOLERANCE`` (the first wins).
  Exact means: integer sample weights (none, counts, bootstrap resamples) and hull numerators
  below 2^24 -- a group's weighted size for every metric but balanced accuracy, whose numerator
  ``TP * N + TN * P`` is at most ``n^2 / 2`` (groups of at most 5,792 rows). Past that, or with
  fractional weights, near-collinear points are decided in float32 like any float
  implementation, fairlearn's float64 included. New scores get fairlearn's ``_pmf_predict`` of
  the same float32 values, at the rules' thresholds too: a score there is compared with the
  exact midpoint of the two fit scores, not with its float32 rounding (``tie_side``).

  Example:
    to = threshold_optimizer(constraint="equalized_odds", flip=True)
    state = to.fit(debias_scores, debias_y, debias_group)
    p = to.probability(state, test_scores, test_group)
  """
  _check_option("constraint", constraint, _to.CONSTRAINTS)
  _check_option("objective", objective, _to.OBJECTIVES)
  if not isinstance(grid_size, int) or grid_size < 1:
    raise ValueError(f"grid_size: expected a positive int, got {grid_size!r}")
  def fit(scores, y, groups, *, sample_weight=None, privileged=None):
    del privileged   # group parity has no privileged group
    s, y, g, w, n = _inputs(scores, y, groups, sample_weight, num_groups, probabilities=False)
    return _fit_thresholds(s, y, g, num_groups=n, constraint=constraint, objective=objective,
                           grid_size=grid_size, flip=flip, sample_weight=w)

  def probability(state, scores, groups):
    s, g = _probability_inputs(scores, groups, state.threshold.shape[-2], probabilities=False)
    return _to.threshold_probability(state, s, g)

  return _with_predict(fit, probability)


# ---------------------------------------------------------------------------------------------
# Reject option classification (Kamiran et al.; AIF360 semantics)

ROC_METRICS = {"statistical_parity": "Statistical parity difference",
               "average_odds": "Average odds difference",
               "equal_opportunity": "Equal opportunity difference"}


class RejectOptionState(NamedTuple):
  """``y_hat = 1`` iff ``score > t + m`` (privileged) or ``score > t - m`` (others): in the
  critical band ``t - m < score <= t + m`` the privileged group gets the unfavourable and the
  others the favourable label."""
  threshold: jax.Array
  margin: jax.Array
  metric: jax.Array            # the signed fairness metric at the chosen point
  balanced_accuracy: jax.Array
  feasible: jax.Array          # whether the point met metric_lb <= metric <= metric_ub
  privileged: jax.Array        # the privileged group code


@functools.partial(jax.jit, static_argnames=("n", "privileged", "metric", "grid", "bounds"))
def _fit_reject_option(s, y, g, w, *, n, privileged, metric, grid, bounds) -> RejectOptionState:
  """AIF360's threshold x margin search, every grid point scored at once."""
  low, high, num_thresholds, num_margins = grid
  t = np.linspace(low, high, num_thresholds)
  grid_t = jnp.asarray(np.repeat(t, num_margins), jnp.float32)
  grid_m = jnp.asarray((np.minimum(t, 1.0 - t)[:, None] * np.linspace(0.0, 1.0, num_margins)[None])
                       .ravel(), jnp.float32)
  is_priv = jnp.arange(n) == privileged
  thresholds = jnp.where(is_priv[None], grid_t[:, None] + grid_m[:, None],
                         grid_t[:, None] - grid_m[:, None])                    # [TM, G]
  c = confusion_at_thresholds(s, y, g, thresholds, num_groups=n, sample_weight=w)
  value = signed_difference(metric, c, privileged=privileged)
  bacc = balanced_accuracy_from_confusion(c)
  feasible = (value >= bounds[0]) & (value <= bounds[1])
  best_feasible = _to.first_argmax(jnp.where(feasible, bacc, -jnp.inf), 0.0)
  closest = _to.first_argmax(-jnp.abs(value) + 1e-6 * bacc, 0.0)
  best = jnp.where(feasible.any(), best_feasible, closest)
  return RejectOptionState(grid_t[best], grid_m[best], value[best], bacc[best], feasible.any(),
                           jnp.int32(privileged))


def reject_option(*, privileged: int = 1, metric: str = "statistical_parity",
                  low_threshold: float = 0.01, high_threshold: float = 0.99,
                  num_thresholds: int = 100, num_margins: int = 50, metric_lb: float = -0.05,
                  metric_ub: float = 0.05, num_groups: Optional[int] = None) -> PostProcessor:
  """Reject option classification (Kamiran, Karim & Zhang, 2012), AIF360's semantics.

  Searches classification thresholds ``t in linspace(low, high, num_thresholds)`` and, for
  each, margins ``m in linspace(0, min(t, 1 - t), num_margins)``: all 5,000 (t, m) pairs are
  scored at once from sorted cumulative counts. Among the pairs whose signed fairness metric
  (unprivileged - privileged) lies in ``[metric_lb, metric_ub]``, the one with the highest
  balanced accuracy wins (the first on ties, as in AIF360).

  When no pair is feasible AIF360 takes the pair with the *most negative signed* metric, which
  can be a strong disparity against the privileged group. We take the pair with the smallest
  ``|metric|`` (ties: higher balanced accuracy) and mark the state ``feasible=False``.

  Args:
    privileged: the privileged group code (every other group is unprivileged); ``fit``'s
      ``privileged``, when given, replaces it.
    metric: ``"statistical_parity"``, ``"average_odds"`` or ``"equal_opportunity"`` (AIF360's
      long names are accepted too).
    low_threshold, high_threshold, num_thresholds, num_margins: the search grid.
    metric_lb, metric_ub: the fairness bounds.
    num_groups: number of groups (inferred when None).
  """
  metric = {v: k for k, v in ROC_METRICS.items()}.get(metric, metric)
  _check_option("metric", metric, ROC_METRICS)
  if not (0 <= low_threshold < high_threshold <= 1) or num_thresholds < 1 or num_margins < 1:
    raise ValueError("low_threshold, high_threshold, num_thresholds, num_margins: expected "
                     "0 <= low < high <= 1 and positive counts, got "
                     f"{low_threshold}, {high_threshold}, {num_thresholds}, {num_margins}")
  low_threshold, high_threshold = float(low_threshold), float(high_threshold)
  metric_lb, metric_ub = float(metric_lb), float(metric_ub)

  factory_privileged = privileged

  def fit(scores, y, groups, *, sample_weight=None, privileged=None):
    s, y, g, w, n = _inputs(scores, y, groups, sample_weight, num_groups,
                            both_labels=metric != "statistical_parity")
    p = _privileged(factory_privileged, privileged, n)
    return _fit_reject_option(s, y, g, w, n=n, privileged=p, metric=metric,
                              grid=(low_threshold, high_threshold, num_thresholds, num_margins),
                              bounds=(metric_lb, metric_ub))

  def probability(state, scores, groups):
    s, g = _probability_inputs(scores, groups)
    priv = g == state.privileged
    cut = jnp.where(priv, state.threshold + state.margin, state.threshold - state.margin)
    return (s > cut).astype(jnp.float32)

  return _with_predict(fit, probability)


# ---------------------------------------------------------------------------------------------
# Equalized-odds post-processing (Hardt et al.; Pleiss's implementation in AIF360)

class EqOddsState(NamedTuple):
  """``x = [P(y~=1|y^=1,priv), P(y~=1|y^=0,priv), P(y~=1|y^=1,unpriv), P(y~=1|y^=0,unpriv)]``,
  AIF360's ``model_params.x``, and the linear program's optimum ``objective``."""
  x: jax.Array
  objective: jax.Array
  privileged: jax.Array


def _solve_small_lp(c, a_eq, b_eq):
  """min c.x s.t. a_eq x = b_eq, 0 <= x <= 1 for x in R^4, by enumerating the 24 basic
  solutions (two variables at a bound, two solved from the equalities)."""
  best_x, best_val = jnp.full(4, jnp.nan), jnp.inf
  for free in [(i, j) for i in range(4) for j in range(i + 1, 4)]:
    fixed = [k for k in range(4) if k not in free]
    for bounds in [(0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0)]:
      a_free = a_eq[:, free]
      rhs = b_eq - a_eq[:, fixed] @ jnp.asarray(bounds)
      det = a_free[0, 0] * a_free[1, 1] - a_free[0, 1] * a_free[1, 0]
      ok = jnp.abs(det) > 1e-9
      safe_det = jnp.where(ok, det, 1.0)
      u = (rhs[0] * a_free[1, 1] - rhs[1] * a_free[0, 1]) / safe_det
      v = (a_free[0, 0] * rhs[1] - a_free[1, 0] * rhs[0]) / safe_det
      x = jnp.zeros(4).at[jnp.asarray(free)].set(jnp.stack([u, v])).at[jnp.asarray(fixed)].set(
          jnp.asarray(bounds))
      feasible = ok & (x >= -1e-7).all() & (x <= 1 + 1e-7).all()
      val = jnp.where(feasible, c @ x, jnp.inf)
      better = val < best_val - 1e-9
      best_x = jnp.where(better, jnp.clip(x, 0.0, 1.0), best_x)
      best_val = jnp.where(better, val, best_val)
  return best_x, best_val


@functools.partial(jax.jit, static_argnames=("privileged", "threshold"))
def _fit_equalized_odds(s, y, g, w, *, privileged, threshold) -> EqOddsState:
  """AIF360's 4-variable linear program on the hard predictions ``s > threshold``."""
  priv = (g == privileged)
  yhat = (s > threshold).astype(jnp.float32)
  yf = y.astype(jnp.float32)

  def group_stats(mask):
    wm = w * mask
    total = wm.sum()
    mean = lambda v: jnp.sum(wm * v) / total
    base = mean(yf)
    tp, fp = mean(yhat * yf), mean(yhat * (1 - yf))
    fn, tn = mean((1 - yhat) * yf), mean((1 - yhat) * (1 - yf))
    rates = (fp / (1 - base), tp / base, tn / (1 - base), fn / base)   # FPR TPR TNR FNR
    return base, tp, fp, fn, tn, rates

  sbr, stp, sfp, sfn, stn, (sfpr, stpr, stnr, sfnr) = group_stats(priv)
  obr, otp, ofp, ofn, otn, (ofpr, otpr, otnr, ofnr) = group_stats(~priv)
  c = jnp.stack([sfpr - stpr, stnr - sfnr, ofpr - otpr, otnr - ofnr])
  # AIF360's equality constraints: the mixed TPRs (row 0) and FPRs (row 1) of the groups are
  # equal, e.g. x0 P(y^=1|y=1,p) + x1 P(y^=0|y=1,p) - x2 P(y^=1|y=1,u) - x3 P(y^=0|y=1,u) = 0.
  a_eq = jnp.stack([jnp.stack([stp / sbr, sfn / sbr, -otp / obr, -ofn / obr]),
                    jnp.stack([sfp / (1 - sbr), stn / (1 - sbr), -ofp / (1 - obr),
                               -otn / (1 - obr)])])
  b_eq = jnp.zeros(2)
  x, value = _solve_small_lp(c, a_eq, b_eq)
  return EqOddsState(x, value, jnp.int32(privileged))


def equalized_odds_postprocessing(*, privileged: int = 1, threshold: float = 0.5,
                                  num_groups: Optional[int] = None) -> PostProcessor:
  """Equalized-odds post-processing (Hardt, Price & Srebro, 2016), AIF360's
  ``EqOddsPostprocessing``.

  Hard predictions ``y^ = score > threshold`` are flipped at random, per group, with the four
  probabilities ``x`` of the linear program

      min  (FPR_p - TPR_p) x0 + (TNR_p - FNR_p) x1 + (FPR_u - TPR_u) x2 + (TNR_u - FNR_u) x3
      s.t. the mixed TPRs and FPRs of the two groups are equal,  0 <= x <= 1,

  solved exactly by enumerating its basic solutions (``x`` equals AIF360's ``linprog`` result
  when the optimum is unique). AIF360's ``predict`` flips exactly ``floor(n p)`` labels per
  group; ``predict`` here flips each label independently with probability ``p`` (the same
  expected rates), and ``probability`` gives those expectations.
  """
  threshold = _checks.check_threshold("threshold", threshold)
  factory_privileged = privileged

  def fit(scores, y, groups, *, sample_weight=None, privileged=None):
    s, y, g, w, n = _inputs(scores, y, groups, sample_weight, num_groups)
    p = _privileged(factory_privileged, privileged, n)
    state = _fit_equalized_odds(s, y, g, w, privileged=p, threshold=float(threshold))
    if _is_concrete(state.x) and not np.isfinite(np.asarray(state.x)).all():
      raise ValueError("equalized odds: the linear program has no feasible solution for these "
                       "predictions (the hard predictions of a group are constant)")
    return state

  def probability(state, scores, groups):
    s, g = _probability_inputs(scores, groups)
    yhat = s > threshold
    priv = g == state.privileged
    x = state.x
    return jnp.where(priv, jnp.where(yhat, x[0], x[1]), jnp.where(yhat, x[2], x[3]))

  return _with_predict(fit, probability)


# ---------------------------------------------------------------------------------------------
# Calibrated equalized odds (Pleiss et al.; AIF360 semantics)

class CalibratedEqOddsState(NamedTuple):
  """AIF360's fitted parameters; mix rates are raw (unclipped), as AIF360 stores them."""
  base_rate_priv: jax.Array
  base_rate_unpriv: jax.Array
  priv_mix_rate: jax.Array
  unpriv_mix_rate: jax.Array
  privileged: jax.Array


COST_CONSTRAINTS = {"fpr": (1.0, 0.0), "fnr": (0.0, 1.0), "weighted": (1.0, 1.0)}


@functools.partial(jax.jit, static_argnames=("privileged", "cost_constraint"))
def _fit_calibrated(s, y, g, w, *, privileged, cost_constraint) -> CalibratedEqOddsState:
  """AIF360's base rates, costs and (unclipped) mix rates."""
  fp_rate, fn_rate = COST_CONSTRAINTS[cost_constraint]
  norm = fp_rate + fn_rate if fp_rate and fn_rate else 1.0
  yf = y.astype(jnp.float32)

  def cost(mask, score):
    """(base rate, cost) of one group under the given scores."""
    wm = w * mask
    base = jnp.sum(wm * yf) / wm.sum()
    gfpr = jnp.sum(wm * (1 - yf) * score) / jnp.sum(wm * (1 - yf))
    gfnr = jnp.sum(wm * yf * (1 - score)) / jnp.sum(wm * yf)
    if cost_constraint == "fpr":
      return base, gfpr
    if cost_constraint == "fnr":
      return base, gfnr
    return base, (fp_rate / norm) * gfpr * (1 - base) + (fn_rate / norm) * gfnr * base

  priv = (g == privileged).astype(jnp.float32)
  br_p, priv_cost = cost(priv, s)
  br_u, unpriv_cost = cost(1 - priv, s)
  _, priv_trivial = cost(priv, jnp.full_like(s, br_p))
  _, unpriv_trivial = cost(1 - priv, jnp.full_like(s, br_u))
  unpriv_more = unpriv_cost > priv_cost
  priv_mix = jnp.where(unpriv_more, (unpriv_cost - priv_cost) / (priv_trivial - priv_cost), 0.0)
  unpriv_mix = jnp.where(unpriv_more, 0.0,
                         (priv_cost - unpriv_cost) / (unpriv_trivial - unpriv_cost))
  return CalibratedEqOddsState(br_p, br_u, priv_mix, unpriv_mix, jnp.int32(privileged))


def calibrated_equalized_odds(*, privileged: int = 1, cost_constraint: str = "weighted",
                              threshold: float = 0.5,
                              num_groups: Optional[int] = None) -> PostProcessor:
  """Calibrated equalized odds (Pleiss et al., 2017), AIF360's
  ``CalibratedEqOddsPostprocessing``.

  With generalized rates ``GFPR = E[score | y=0]`` and ``GFNR = E[1 - score | y=1]`` per group,
  the cost is GFPR (``"fpr"``), GFNR (``"fnr"``) or ``(GFPR (1 - br) + GFNR br) / 2``
  (``"weighted"``), ``br`` the group's base rate. The trivial classifier scores everyone with
  their group's base rate. The group with the lower cost mixes in the trivial classifier with
  probability ``(cost_other - cost_self) / (trivial_cost_self - cost_self)`` so the costs meet;
  decisions are ``mixed score >= threshold``.

  The state keeps AIF360's raw mix rates; ``probability`` clips them to [0, 1], which is what
  AIF360's ``random() <= mix_rate`` does with a negative rate (no mixing: the trivial
  classifier costs less than the model, so calibrated equalized odds cannot help).
  """
  _check_option("cost_constraint", cost_constraint, COST_CONSTRAINTS)
  threshold = _checks.check_threshold("threshold", threshold)
  factory_privileged = privileged

  def fit(scores, y, groups, *, sample_weight=None, privileged=None):
    s, y, g, w, n = _inputs(scores, y, groups, sample_weight, num_groups)
    p = _privileged(factory_privileged, privileged, n)
    state = _fit_calibrated(s, y, g, w, privileged=p, cost_constraint=cost_constraint)
    if _is_concrete(state.priv_mix_rate) and not (
        np.isfinite(float(state.priv_mix_rate)) and np.isfinite(float(state.unpriv_mix_rate))):
      raise ValueError("calibrated equalized odds: the cheaper group's trivial classifier costs "
                       "exactly as much as the model, so no mix rate equalises the costs")
    return state

  def probability(state, scores, groups):
    s, g = _probability_inputs(scores, groups)
    priv = g == state.privileged
    mix = jnp.clip(jnp.where(priv, state.priv_mix_rate, state.unpriv_mix_rate), 0.0, 1.0)
    base = jnp.where(priv, state.base_rate_priv, state.base_rate_unpriv)
    return (1 - mix) * (s >= threshold) + mix * (base >= threshold)

  return _with_predict(fit, probability)


# ---------------------------------------------------------------------------------------------
# Naive global threshold

GAPS = ("demographic_parity", "equalized_odds", "equal_opportunity", "average_odds")


class NaiveThresholdState(NamedTuple):
  threshold: jax.Array
  objective: jax.Array
  balanced_accuracy: jax.Array
  gap: jax.Array


@functools.partial(jax.jit, static_argnames=("n", "metric"))
def _fit_naive(s, y, g, w, lam_, *, n, metric) -> NaiveThresholdState:
  """Every midpoint threshold scored at once; the best by ``J (1 - gap) ** lam``."""
  sorted_s = jnp.sort(s)
  mid = 0.5 * (sorted_s[1:] + sorted_s[:-1])
  valid = sorted_s[1:] > sorted_s[:-1]
  c = confusion_at_thresholds(s, y, g, mid, num_groups=n, sample_weight=w)
  bacc = balanced_accuracy_from_confusion(c)
  gap = unsigned_gap(metric, c)
  objective = jnp.where(valid, (2 * bacc - 1) * (1 - gap) ** lam_, -jnp.inf)
  best = _to.first_argmax(objective, 0.0)
  return NaiveThresholdState(mid[best], objective[best], bacc[best], gap[best])


def naive_threshold(*, metric: str = "equalized_odds", lam: float = 1.0,
                    num_groups: Optional[int] = None) -> PostProcessor:
  """One global threshold maximising ``J * (1 - gap) ** lam``.

  ``J = TPR - FPR = 2 * balanced_accuracy - 1`` (Youden's index) is 0 for every constant or
  random classifier, so the objective is 0 for them and positive for any informative rule with a
  gap below 1: a constant classifier can never win, however much weight ``lam`` puts on the gap
  (objectives such as DetoxAI's default ``-fairness``, or ``accuracy - lam * gap``, are won by a
  constant or nearly constant rule on a biased model). ``gap`` is fairlearn's unsigned gap
  (``metric``: demographic parity, equalized odds, equal opportunity or average odds); ``lam = 0``
  gives Youden's threshold. Candidates are the midpoints between consecutive distinct scores.
  ``lam`` may be traced: ``jax.vmap(lambda l: naive_threshold(lam=l).fit(s, y, g))(lams)`` fits
  a whole trade-off curve in one call. Raises ``ValueError`` when all scores are equal.
  """
  _check_option("metric", metric, GAPS)
  if _is_concrete(lam) and not (np.isfinite(float(lam)) and float(lam) >= 0):
    raise ValueError(f"lam: expected a finite weight >= 0, got {lam}")

  def fit(scores, y, groups, *, sample_weight=None, privileged=None):
    del privileged   # group parity has no privileged group
    s, y, g, w, n = _inputs(scores, y, groups, sample_weight, num_groups, both_labels=False)
    if _is_concrete(s) and np.unique(np.asarray(s)).size < 2:
      raise ValueError("scores: all scores are equal, so every threshold gives a constant "
                       "classifier; there is no threshold to choose")
    return _fit_naive(s, y, g, w, jnp.float32(lam), n=n, metric=metric)

  def probability(state, scores, groups):
    s, _ = _probability_inputs(scores, groups)
    return (s > state.threshold).astype(jnp.float32)

  return _with_predict(fit, probability)

