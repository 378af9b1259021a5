"""Post-processors against fairlearn and AIF360, jit/vmap, and degenerate inputs."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import metrics as M
from debiasjax.methods import group_thresholds, postprocessing as P
from debiasjax.metrics.sweep import confusion_at_thresholds
from tests.peers import aif360_datasets, fairlearn_threshold_optimizer

warnings.filterwarnings("ignore")

FACTORIES = {"threshold_optimizer": P.threshold_optimizer, "reject_option": P.reject_option,
             "equalized_odds": P.equalized_odds_postprocessing,
             "calibrated_equalized_odds": P.calibrated_equalized_odds,
             "naive_threshold": P.naive_threshold}


def scored_case(seed, *, groups=None, n=None, ties=False):
  """Scores informative to a group-dependent degree (sometimes anti-correlated)."""
  rng = np.random.default_rng(seed)
  num_groups = groups or int(rng.integers(2, 4))
  n = n or int(rng.integers(40, 300))
  g = rng.integers(0, num_groups, n)
  y = rng.integers(0, 2, n)
  strength = rng.normal(1.0, 1.0, num_groups)
  s = np.clip(0.5 + 0.3 * (y - 0.5) * strength[g] + 0.25 * rng.normal(size=n) + 0.1 * g, 0, 1)
  if ties:
    s = np.round(s, 1)
  return s.astype(np.float32), y, g, num_groups


def test_confusion_at_thresholds_equals_one_threshold_at_a_time():
  s, y, g, G = scored_case(0, ties=True)
  w = np.random.default_rng(1).integers(0, 3, len(y)).astype(np.float32)
  thresholds = np.array([-1.0, 0.0, 0.3, 0.5, 0.55, 1.0, 2.0], np.float32)
  swept = confusion_at_thresholds(s, y, g, thresholds, num_groups=G, sample_weight=w)
  for t, c in zip(thresholds, swept):
    np.testing.assert_array_equal(c, M.group_confusion(y, s > t, g, num_groups=G, sample_weight=w))
  per_group = np.random.default_rng(2).uniform(size=(5, G)).astype(np.float32)
  swept = confusion_at_thresholds(s, y, g, per_group, num_groups=G)
  for t, c in zip(per_group, swept):
    np.testing.assert_array_equal(c, M.group_confusion(y, s > t[g], g, num_groups=G))


# ------------------------------------------------------------------ threshold optimizer / fairlearn

def fairlearn_fit(s, y, g, constraint, objective, flip, grid_size):
  to = fairlearn_threshold_optimizer(constraint, objective=objective, flip=flip,
                                     grid_size=grid_size)
  return to.fit(s[:, None].astype(np.float64), y, sensitive_features=g)


def fairlearn_objective(to):
  """fairlearn's objective along its grid (the curve it maximised)."""
  if to.constraints == "equalized_odds":
    n, pos = len(to._fit_y), to._fit_y.sum()
    x, y_min = to._x_grid, np.asarray(to._y_min)
    tp, tn = pos * y_min, (n - pos) * (1 - x)
    if to.objective == "accuracy_score":
      return (tp + tn) / n
    return 0.5 * tp / pos + 0.5 * tn / (n - pos)
  return to._overall_tradeoff_curve["y"].to_numpy()


CONFIGS = [(c, o, f) for c in ("demographic_parity", "equalized_odds", "true_positive_rate_parity",
                               "false_positive_rate_parity")
           for o in ("accuracy", "balanced_accuracy") for f in (False, True)]


@pytest.mark.parametrize("seed", range(12))
def test_threshold_optimizer_gives_fairlearns_decision_rule(seed):
  s, y, g, G = scored_case(seed, groups=2 + seed % 2, n=200, ties=seed % 3 == 0)
  for constraint, objective, flip in CONFIGS:
    to = fairlearn_fit(s, y, g, constraint, objective, flip, 1000)
    to._fit_y = y
    ref = to._pmf_predict(s[:, None].astype(np.float64), sensitive_features=g)[:, 1]
    pp = P.threshold_optimizer(constraint=constraint, objective=objective, flip=flip)
    state = pp.fit(s, y, g)
    ours = np.asarray(pp.probability(state, s, g))
    rates = np.asarray(M.group_rates(y, ours, g)[1:4])
    expected = np.asarray(M.group_rates(y, ref, g)[1:4])
    if np.abs(rates - expected).max() > 1e-4:
      # Only a float32 near-tie may pick another grid point: fairlearn's own objective there
      # must equal its maximum to float32 resolution.
      curve = fairlearn_objective(to)
      chosen = int(round(float(state.x_best) * 1000))
      assert curve.max() - curve[chosen] < 1e-6, (constraint, objective, flip)
    # Randomised predictions realise the probabilities.
    keys = jax.random.split(jax.random.key(seed), 400)
    draws = jax.vmap(lambda k: pp.predict(state, s, g, k))(keys).mean(0)
    assert np.abs(draws - ours).max() < 0.15


def test_threshold_optimizer_state_exposes_the_rule():
  s, y, g, G = scored_case(3, groups=2)
  state = P.threshold_optimizer(constraint="equalized_odds").fit(s, y, g)
  assert state.threshold.shape == (2, 2) and state.weight.shape == (2, 2)
  np.testing.assert_allclose(state.weight.sum(-1), 1.0, atol=1e-6)
  assert ((state.p_ignore >= 0) & (state.p_ignore <= 1)).all()
  # Equalized odds holds on the fitting data in expectation.
  p = P.threshold_optimizer(constraint="equalized_odds").probability(state, s, g)
  assert float(M.equalized_odds_difference(y, p, g)) < 0.02


def test_equalized_odds_collapses_on_an_anticorrelated_group_and_flip_avoids_it():
  rng = np.random.default_rng(0)
  n = 4000
  g, y = rng.integers(0, 2, n), rng.integers(0, 2, n)
  signal = np.where(g == 0, 1 - y, y)             # group 0's scores point the wrong way
  s = np.clip(0.5 + 0.35 * (signal - 0.5) + 0.15 * rng.normal(size=n), 0, 1).astype(np.float32)
  results = {}
  for flip in (False, True):
    pp = P.threshold_optimizer(constraint="equalized_odds", objective="balanced_accuracy",
                               flip=flip)
    p = pp.probability(pp.fit(s, y, g), s, g)
    results[flip] = (float(M.balanced_accuracy(y, p)), float(M.equalized_odds_difference(y, p, g)))
  assert results[False][0] == pytest.approx(0.5, abs=0.01) and results[False][1] < 0.02
  assert results[True][0] > 0.8 and results[True][1] < 0.05


# ------------------------------------------------------------------ AIF360 oracles

def aif360_pair(s, y, g, privileged):
  return aif360_datasets(s, y, g, privileged)


@pytest.mark.parametrize("seed", range(20))
def test_equalized_odds_lp_equals_aif360(seed):
  from aif360.algorithms.postprocessing import EqOddsPostprocessing
  s, y, g, G = scored_case(seed)
  privileged = seed % G
  truth, pred, groups = aif360_pair(s, y, g, privileged)
  theirs = EqOddsPostprocessing(**groups).fit(truth, pred).model_params
  state = P.equalized_odds_postprocessing(privileged=privileged).fit(s, y, g)
  np.testing.assert_allclose(state.objective, theirs.fun, atol=1e-6)
  np.testing.assert_allclose(state.x, theirs.x, atol=1e-5)


@pytest.mark.parametrize("cost", ["weighted", "fpr", "fnr"])
@pytest.mark.parametrize("seed", range(10))
def test_calibrated_equalized_odds_equals_aif360(seed, cost):
  from aif360.algorithms.postprocessing import CalibratedEqOddsPostprocessing
  s, y, g, G = scored_case(seed)
  privileged = (seed + 1) % G
  truth, pred, groups = aif360_pair(s, y, g, privileged)
  theirs = CalibratedEqOddsPostprocessing(cost_constraint=cost, **groups).fit(truth, pred)
  state = P.calibrated_equalized_odds(privileged=privileged, cost_constraint=cost).fit(s, y, g)
  for ours, ref in [(state.base_rate_priv, theirs.base_rate_priv),
                    (state.base_rate_unpriv, theirs.base_rate_unpriv),
                    (state.priv_mix_rate, theirs.priv_mix_rate),
                    (state.unpriv_mix_rate, theirs.unpriv_mix_rate)]:
    np.testing.assert_allclose(float(ours), float(ref), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("metric", list(P.ROC_METRICS))
@pytest.mark.parametrize("seed", range(6))
def test_reject_option_equals_aif360(seed, metric):
  from aif360.algorithms.postprocessing import RejectOptionClassification
  s, y, g, G = scored_case(seed, n=150)
  privileged = seed % G
  truth, pred, groups = aif360_pair(s, y, g, privileged)
  kw = dict(num_thresholds=20, num_margins=10, metric_lb=-0.1, metric_ub=0.1)
  theirs = RejectOptionClassification(num_class_thresh=20, num_ROC_margin=10,
                                      metric_name=P.ROC_METRICS[metric], metric_lb=-0.1,
                                      metric_ub=0.1, **groups).fit(truth, pred)
  state = P.reject_option(privileged=privileged, metric=metric, **kw).fit(s, y, g)
  if bool(state.feasible):
    np.testing.assert_allclose(state.threshold, theirs.classification_threshold, atol=1e-6)
    np.testing.assert_allclose(state.margin, theirs.ROC_margin, atol=1e-6)
    labels = theirs.predict(pred).labels.ravel()
    np.testing.assert_array_equal(P.reject_option(privileged=privileged).probability(state, s, g),
                                  labels)


def test_reject_option_default_grid_equals_aif360():
  from aif360.algorithms.postprocessing import RejectOptionClassification
  s, y, g, _ = scored_case(7, groups=2, n=120)
  truth, pred, groups = aif360_pair(s, y, g, 1)
  theirs = RejectOptionClassification(**groups).fit(truth, pred)
  state = P.reject_option(privileged=1).fit(s, y, g)
  assert bool(state.feasible)
  np.testing.assert_allclose([state.threshold, state.margin],
                             [theirs.classification_threshold, theirs.ROC_margin], atol=1e-6)


def test_reject_option_infeasible_picks_the_smallest_disparity():
  # The unprivileged group's scores are 0: never above t - m >= 0, so its selection rate is 0
  # and statistical parity is 0 or -1 (privileged all positive); [0.1, 0.2] is unreachable.
  rng = np.random.default_rng(0)
  g = np.repeat([0, 1], 100)
  y = rng.integers(0, 2, 200)
  s = np.where(g == 0, 0.0, 0.9999).astype(np.float32)
  kw = dict(privileged=1, metric_lb=0.1, metric_ub=0.2, num_thresholds=20, num_margins=5)
  state = P.reject_option(**kw).fit(s, y, g)
  assert not bool(state.feasible)
  # AIF360 would take the most negative signed metric (-1: everyone privileged selected, nobody
  # else); we take the smallest |metric| (0: nobody selected).
  from aif360.algorithms.postprocessing import RejectOptionClassification
  truth, pred, groups = aif360_pair(s, y, g, 1)
  theirs = RejectOptionClassification(num_class_thresh=20, num_ROC_margin=5, metric_lb=0.1,
                                      metric_ub=0.2, **groups).fit(truth, pred)
  their_labels = theirs.predict(pred).labels.ravel()
  assert float(M.demographic_parity_difference(their_labels, g, privileged=1)) == -1.0
  assert float(state.metric) == 0.0
  p = P.reject_option(**kw).probability(state, s, g)
  assert float(M.demographic_parity_difference(p, g, privileged=1)) == 0.0


# ------------------------------------------------------------------ naive threshold

def test_naive_threshold_maximises_its_objective_and_never_returns_a_constant():
  s, y, g, G = scored_case(5, groups=2)
  distinct = np.unique(s)
  for lam in (0.0, 1.0, 50.0):
    state = P.naive_threshold(metric="equalized_odds", lam=lam).fit(s, y, g)
    def objective(t):
      j = 2 * float(M.balanced_accuracy(y, s > t)) - 1
      return j * (1 - float(M.equalized_odds_difference(y, s > t, g))) ** lam
    best = max(objective(t) for t in (distinct[1:] + distinct[:-1]) / 2)
    assert float(state.objective) == pytest.approx(best, abs=1e-5)
    assert float(state.objective) > 0                  # a constant classifier would score 0


def test_naive_threshold_is_not_won_by_a_near_constant_rule_on_a_shortcut_model():
  """A model that scores by group: accuracy - lam * gap objectives pick a near-constant rule."""
  rng = np.random.default_rng(0)
  g = rng.integers(0, 2, 2000)
  y = (rng.uniform(size=2000) < np.where(g == 1, 0.9, 0.1)).astype(int)
  s = np.clip(0.2 + 0.6 * g + 0.05 * rng.normal(size=2000) + 0.03 * (y - 0.5), 0,
              1).astype(np.float32)
  state = P.naive_threshold(metric="equalized_odds", lam=1.0).fit(s, y, g)
  p = np.asarray(P.naive_threshold().probability(state, s, g))
  assert 0.2 < p.mean() < 0.8                          # a real split, not everyone on one side
  assert float(M.balanced_accuracy(y, p)) > 0.6                 # a constant scores 0.5


def test_naive_threshold_vmaps_over_lam():
  s, y, g, G = scored_case(6, groups=2)
  lams = jnp.array([0.0, 0.5, 2.0])
  fit = lambda lam: P.naive_threshold(lam=lam, num_groups=2).fit(s, y, g)
  batched = jax.vmap(fit)(lams)
  for i, lam in enumerate([0.0, 0.5, 2.0]):
    np.testing.assert_allclose(batched.threshold[i], fit(lam).threshold)
  assert (np.diff(np.asarray(batched.gap)) <= 1e-6).all()      # more weight, smaller gap


# ------------------------------------------------------------------ jit, vmap, bootstrap

@pytest.mark.parametrize("name, kwargs", [
    ("threshold_optimizer", dict(constraint="equalized_odds")),
    ("threshold_optimizer", dict(constraint="demographic_parity", flip=True)),
    ("reject_option", dict(num_thresholds=10, num_margins=5)),
    ("equalized_odds", {}), ("calibrated_equalized_odds", {}), ("naive_threshold", {})])
def test_bootstrap_fits_vmap_equals_loop(name, kwargs):
  s, y, g, G = scored_case(11, groups=2, n=200)
  pp = FACTORIES[name](num_groups=2, **kwargs)
  rng = np.random.default_rng(0)
  weights = rng.multinomial(len(y), np.ones(len(y)) / len(y), size=4).astype(np.float32)
  batched = jax.jit(jax.vmap(lambda w: pp.fit(s, y, g, sample_weight=w)))(weights)
  for i, w in enumerate(weights):
    one = pp.fit(s, y, g, sample_weight=w)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(jax.tree.map(lambda v: v[i], batched))):
      np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-6)


def test_sample_weights_equal_repeated_rows():
  s, y, g, G = scored_case(12, groups=2, n=150)
  w = np.random.default_rng(3).integers(0, 3, len(y))
  rep = np.repeat(np.arange(len(y)), w)
  for name in ("threshold_optimizer", "equalized_odds", "calibrated_equalized_odds"):
    pp = FACTORIES[name]()
    a, b = pp.fit(s, y, g, sample_weight=w.astype(np.float32)), pp.fit(s[rep], y[rep], g[rep])
    np.testing.assert_allclose(pp.probability(a, s, g), pp.probability(b, s, g), atol=1e-5)


# ------------------------------------------------------------------ degenerate inputs

@pytest.mark.parametrize("name", list(FACTORIES))
def test_nan_scores_raise(name):
  s, y, g, _ = scored_case(0, groups=2)
  s[3] = np.nan
  with pytest.raises(ValueError, match="scores: expected finite scores, got 1 NaN"):
    FACTORIES[name]().fit(s, y, g)


@pytest.mark.parametrize("name", ["threshold_optimizer", "equalized_odds",
                                  "calibrated_equalized_odds"])
def test_group_with_one_label_class_raises(name):
  s, y, g, _ = scored_case(0, groups=2)
  y = np.where(g == 1, 1, y)
  with pytest.raises(ValueError, match="group 1 has only label 1 \\(degenerate labels\\)"):
    FACTORIES[name]().fit(s, y, g)


def test_one_label_class_is_fine_where_the_method_needs_none():
  s, y, g, _ = scored_case(0, groups=2)
  y = np.where(g == 1, 1, y)
  state = P.reject_option(metric="statistical_parity", num_thresholds=10, num_margins=5).fit(s, y,
                                                                                             g)
  assert np.isfinite(float(state.threshold))
  state = P.naive_threshold(metric="demographic_parity").fit(s, y, g)
  assert np.isfinite(float(state.objective))


def test_all_equal_scores():
  _, y, g, _ = scored_case(0, groups=2)
  s = np.full(len(y), 0.7, np.float32)
  with pytest.raises(ValueError, match="all scores are equal"):
    P.naive_threshold().fit(s, y, g)
  # The threshold optimizer can only randomise between "all negative" and "all positive":
  # every group gets the same positive probability, so every gap is 0.
  pp = P.threshold_optimizer(constraint="equalized_odds")
  p = np.asarray(pp.probability(pp.fit(s, y, g), s, g))
  assert np.ptp(p) < 1e-6 and float(M.equalized_odds_difference(y, p, g)) < 1e-6
  pp = P.threshold_optimizer(constraint="demographic_parity")
  p = np.asarray(pp.probability(pp.fit(s, y, g), s, g))
  assert float(M.demographic_parity_difference(p, g)) < 1e-6


@pytest.mark.parametrize("factory, kwargs, message", [
    (P.threshold_optimizer, dict(constraint="parity"), "constraint: expected one of"),
    (P.threshold_optimizer, dict(objective="f1"), "objective: expected one of"),
    (P.reject_option, dict(metric="disparate_impact"), "metric: expected one of"),
    (P.reject_option, dict(low_threshold=0.9, high_threshold=0.1), "low_threshold"),
    (P.calibrated_equalized_odds, dict(cost_constraint="for"), "cost_constraint"),
    (P.naive_threshold, dict(metric="accuracy"), "metric: expected one of"),
])
def test_bad_hyperparameters(factory, kwargs, message):
  with pytest.raises(ValueError, match=message):
    factory(**kwargs)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_fits_compile_once_per_size_bucket(name):
  """Fits on 200 and 210 rows share one program (both padded to 224 rows of which the extra
  have weight zero) and equal the fits of the unpadded data."""
  from tests.compilations import count_compilations
  pp = FACTORIES[name]()
  s, y, g, _ = scored_case(21, groups=2, n=210)
  pp.fit(s[:200], y[:200], g[:200])
  with count_compilations() as lowered:
    state = pp.fit(s, y, g)
  assert not [f for f in lowered if "fit" in f], lowered
  assert P.bucket_size(200) == P.bucket_size(210) == 224 and P.bucket_size(3) == 64
  # Padding is exact: the rule of the padded fit equals one fitted on 224 explicit rows whose
  # last 14 have weight zero.
  pad = lambda v: np.concatenate([v, np.repeat(v[:1], 14)])
  weights = np.concatenate([np.ones(210), np.zeros(14)]).astype(np.float32)
  explicit = pp.fit(pad(s), pad(y), pad(g), sample_weight=weights)
  np.testing.assert_array_equal(np.asarray(pp.probability(state, s, g)),
                                np.asarray(pp.probability(explicit, s, g)))


def collinear_case(seed):
  """Few distinct scores in small groups: many of a group's points lie on one line."""
  rng = np.random.default_rng(seed)
  n = int(rng.integers(8, 40))
  s = (rng.integers(0, 6, n) / 6 + 0.01).astype(np.float32)
  y = rng.integers(0, 2, n)
  y[:4] = [0, 0, 1, 1]
  return s, y, np.arange(n) % 2


@pytest.mark.parametrize("flip", [False, True])
def test_threshold_optimizer_decisions_equal_the_exact_rule(flip):
  """Per-sample decisions, not only rates, equal a rational-arithmetic reference of the rule:
  collinear hull points are dropped exactly, and the grid point is the reference's first
  maximum, or one whose exact objective is within TIE_TOLERANCE of it (float32 sums cannot
  rank closer points), where the decisions equal the reference's at that point."""
  from debiasjax.methods.group_thresholds import TIE_TOLERANCE
  from tests.exact_thresholds import exact_threshold_probability
  exact_choice = 0
  for seed in range(24):
    s, y, g = collinear_case(seed)
    for constraint in ("demographic_parity", "true_positive_rate_parity"):
      for objective in ("accuracy", "balanced_accuracy"):
        pp = P.threshold_optimizer(constraint=constraint, objective=objective, flip=flip)
        state = pp.fit(s, y, g)
        ours = np.asarray(pp.probability(state, s, g))
        at = int(round(float(state.x_best) * 1000))
        _, best, overall = exact_threshold_probability(s, y, g, constraint=constraint,
                                                       objective=objective, flip=flip)
        assert best - overall[at] <= TIE_TOLERANCE, (seed, constraint, objective)
        exact_choice += overall.index(best) == at
        exact, _, _ = exact_threshold_probability(s, y, g, constraint=constraint,
                                                  objective=objective, flip=flip, at=at)
        np.testing.assert_allclose(ours, exact, atol=1e-4,
                                   err_msg=f"{seed} {constraint} {objective}")
  assert exact_choice >= 0.95 * 24 * 4


def test_threshold_optimizer_decides_the_reported_collinear_case_as_fairlearn():
  s = np.array([0.28, 0.89, 0.21, 0.54, 0.17, 0.62, 0.90, 0.88], np.float32)
  y, g = np.array([0, 1, 0, 0, 0, 1, 1, 1]), np.array([0, 0, 0, 0, 1, 1, 1, 1])
  to = fairlearn_fit(s, y, g, "demographic_parity", "balanced_accuracy", False, 1000)
  ref = to._pmf_predict(s[:, None].astype(np.float64), sensitive_features=g)[:, 1]
  pp = P.threshold_optimizer(constraint="demographic_parity", objective="balanced_accuracy")
  ours = np.asarray(pp.probability(pp.fit(s, y, g), s, g))
  np.testing.assert_allclose(ours, ref, atol=1e-5)
  assert ours[5] == ours[6] == ours[7]          # the three on one line are mixed alike


def fresh_scores_case(seed):
  """Four groups of float32 scores on a coarse grid (many ties) with integer weights."""
  rng = np.random.default_rng(seed)
  n = 48
  g = np.arange(n) % 4
  y = rng.integers(0, 2, n)
  y[:8] = [0, 0, 0, 0, 1, 1, 1, 1]                     # both labels in every group
  s = (rng.integers(0, 6, n) / 5).astype(np.float32)
  return s, y, g, rng.integers(1, 4, n)


def fresh_scores(s):
  """Scores a fit never saw: the fit values, the midpoints between them (where the rules'
  thresholds lie, some not representable in float32), points beside those, and beyond both
  ends of the fit range."""
  u = np.unique(s).astype(np.float64)
  mids = (u[1:] + u[:-1]) / 2
  return np.concatenate([u, mids, mids + 0.01, mids - 0.01, [-0.5, 1.5]]).astype(np.float32)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("objective", ["accuracy", "balanced_accuracy"])
@pytest.mark.parametrize("constraint", list(group_thresholds.CONSTRAINTS))
def test_threshold_optimizer_decides_fresh_scores_as_fairlearn(constraint, objective, flip):
  """New scores get fairlearn's ``_pmf_predict`` (on the same float32 values): at a rule's
  threshold the exact midpoint of two fit scores decides, as fairlearn's float64 midpoint of
  float32 scores does. Compared wherever both fitted rules decide the fit rows alike (where
  fairlearn's float64 hull keeps a collinear point that ours drops exactly, both reach the same
  rates with other per-sample decisions)."""
  pp = P.threshold_optimizer(constraint=constraint, objective=objective, flip=flip,
                             num_groups=4)
  compared = 0
  for seed in range(3):
    s, y, g, w = fresh_scores_case(seed)
    rows = np.repeat(np.arange(len(s)), w)
    to = fairlearn_fit(s[rows], y[rows], g[rows], constraint, objective, flip, 1000)
    state = pp.fit(s, y, g, sample_weight=w)
    fit_ref = to._pmf_predict(s[:, None].astype(np.float64), sensitive_features=g)[:, 1]
    if np.abs(np.asarray(pp.probability(state, s, g)) - fit_ref).max() > 1e-4:
      continue
    compared += 1
    fresh = fresh_scores(s)
    for k in range(4):
      groups = np.full(len(fresh), k)
      ref = to._pmf_predict(fresh[:, None].astype(np.float64), sensitive_features=groups)[:, 1]
      np.testing.assert_allclose(pp.probability(state, fresh, groups), ref, atol=1e-4,
                                 err_msg=f"seed {seed}, group {k}, scores {fresh}")
  assert compared >= 2


@pytest.mark.parametrize("factory", [
    lambda: P.threshold_optimizer(constraint="equalized_odds"), P.reject_option,
    P.equalized_odds_postprocessing, P.calibrated_equalized_odds, P.naive_threshold])
def test_named_and_intersectional_groups_decide_as_their_codes(factory):
  rng = np.random.default_rng(4)
  n = 500
  sex, age = rng.choice(["F", "M"], n), rng.choice(["young", "old"], n)
  y = rng.integers(0, 2, n)
  s = np.clip(0.3 * y + 0.2 * (sex == "M") + 0.5 * rng.random(n), 0, 1).astype(np.float32)
  method = factory()
  for groups, privileged, codes, code in (
      (sex, "M", (sex == "M").astype(np.int32), 1),
      ({"age": age, "sex": sex}, "age=old, sex=M",        # encode_groups order: sorted combos
       2 * (age == "young") + (sex == "M"), 1)):
    named = method.fit(s, y, groups, privileged=privileged)
    plain = method.fit(s, y, codes, privileged=code)
    assert isinstance(named, P.NamedGroups)
    np.testing.assert_array_equal(method.probability(named, s, groups),
                                  method.probability(plain, s, codes))
    np.testing.assert_array_equal(method.predict(named, s, groups, jax.random.key(0)),
                                  method.predict(plain, s, codes, jax.random.key(0)))
  with pytest.raises(ValueError, match=r"\['X'\] not among the groups the rule was fitted on"):
    method.probability(method.fit(s, y, sex), s[:2], np.array(["F", "X"]))
