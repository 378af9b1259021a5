"""Fairness metrics against fairlearn and AIF360 as oracles, identities, jit/vmap, bad input."""

import warnings

import fairlearn.metrics as flm
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm

from debiasjax import metrics as M

warnings.filterwarnings("ignore")


def random_case(seed):
  """Random labels, predictions, groups and weights, with the edge cases the oracles must cover:
  groups without positives (or negatives), groups of one sample, weights."""
  rng = np.random.default_rng(seed)
  num_groups = int(rng.integers(2, 5))
  n = int(rng.integers(num_groups, 80))
  groups = np.concatenate([np.arange(num_groups), rng.integers(0, num_groups, n - num_groups)])
  rng.shuffle(groups)
  y = rng.integers(0, 2, n)
  if seed % 3 == 0:                       # a group with no positives
    y[groups == 0] = 0
  if seed % 5 == 0:                       # a group with no negatives
    y[groups == num_groups - 1] = 1
  if seed % 4 == 0:                       # a group of exactly one sample
    groups[groups == 1] = 0
    groups[rng.integers(n)] = 1
    for g in range(num_groups):           # keep every group non-empty
      if not (groups == g).any():
        groups[np.flatnonzero(groups != 1)[0]] = g
  y_pred = rng.integers(0, 2, n)
  weights = rng.uniform(0.1, 3.0, n) if seed % 2 else None
  return y, y_pred, groups, weights, num_groups


SEEDS = range(60)


@pytest.mark.parametrize("seed", SEEDS)
def test_unsigned_gaps_match_fairlearn(seed):
  y, p, g, w, _ = random_case(seed)
  kw = dict(sensitive_features=g, sample_weight=w)
  np.testing.assert_allclose(M.demographic_parity_difference(p, g, sample_weight=w),
                             flm.demographic_parity_difference(y, p, **kw), atol=1e-6)
  np.testing.assert_allclose(M.equalized_odds_difference(y, p, g, sample_weight=w),
                             flm.equalized_odds_difference(y, p, **kw), atol=1e-6)
  np.testing.assert_allclose(M.equal_opportunity_difference(y, p, g, sample_weight=w),
                             flm.equal_opportunity_difference(y, p, **kw), atol=1e-6)
  np.testing.assert_allclose(M.average_odds_difference(y, p, g, sample_weight=w),
                             flm.equalized_odds_difference(y, p, agg="mean", **kw), atol=1e-6)


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracies_match_sklearn(seed):
  y, p, _, w, _ = random_case(seed)
  np.testing.assert_allclose(M.accuracy(y, p, sample_weight=w),
                             skm.accuracy_score(y, p, sample_weight=w), atol=1e-6)
  np.testing.assert_allclose(M.balanced_accuracy(y, p, sample_weight=w),
                             skm.balanced_accuracy_score(y, p, sample_weight=w), atol=1e-6)


def aif360_metric(y, p, g, w, privileged):
  from aif360.datasets import BinaryLabelDataset
  from aif360.metrics import ClassificationMetric
  w = np.ones(len(y)) if w is None else w
  def dataset(labels):
    frame = pd.DataFrame({"group": g.astype(float), "label": labels.astype(float)})
    return BinaryLabelDataset(df=frame, label_names=["label"], protected_attribute_names=["group"],
                              instance_weights_name=None, favorable_label=1.0,
                              unfavorable_label=0.0)
  truth, pred = dataset(y), dataset(p)
  truth.instance_weights = w.astype(float)
  pred.instance_weights = w.astype(float)
  others = [{"group": float(v)} for v in np.unique(g) if v != privileged]
  return ClassificationMetric(truth, pred, unprivileged_groups=others,
                              privileged_groups=[{"group": float(privileged)}])


@pytest.mark.parametrize("seed", SEEDS)
def test_signed_differences_match_aif360(seed):
  y, p, g, w, num_groups = random_case(seed)
  privileged = seed % num_groups
  oracle = aif360_metric(y, p, g, w, privileged)
  kw = dict(privileged=privileged, sample_weight=w)
  np.testing.assert_allclose(M.demographic_parity_difference(p, g, **kw),
                             oracle.statistical_parity_difference(), atol=1e-6)
  d_tpr = oracle.true_positive_rate_difference()
  d_fpr = oracle.false_positive_rate_difference()
  # AIF360's equalized_odds_difference is Python's max(|dFPR|, |dTPR|), which silently drops a
  # NaN second argument; it is undefined whenever either gap is.
  eo = np.nan if np.isnan(d_tpr) or np.isnan(d_fpr) else oracle.equalized_odds_difference()
  checks = [(M.equal_opportunity_difference, oracle.equal_opportunity_difference()),
            (M.average_odds_difference, oracle.average_odds_difference()),
            (M.equalized_odds_difference, eo)]
  for fn, expected in checks:
    if np.isnan(expected):
      # AIF360 returns NaN for an undefined rate; we say why instead.
      with pytest.raises(ValueError, match="undefined"):
        fn(y, p, g, **kw)
    else:
      np.testing.assert_allclose(fn(y, p, g, **kw), expected, atol=1e-6)


def test_oracle_cases_cover_the_edge_cases():
  cases = [random_case(s) for s in SEEDS]
  no_pos = sum(any((y[g == k] == 0).all() for k in range(G)) for y, _, g, _, G in cases)
  single = sum(any((g == k).sum() == 1 for k in range(G)) for _, _, g, _, G in cases)
  weighted = sum(w is not None for *_, w, _ in cases)
  assert no_pos >= 10 and single >= 10 and weighted >= 20


def test_hand_built_table():
  # group 0: y=[1,1,0,0], pred=[1,0,1,0] -> TPR .5 FPR .5 sel .5
  # group 1: y=[1,1,0,0], pred=[1,1,1,0] -> TPR 1  FPR .5 sel .75
  y = np.array([1, 1, 0, 0, 1, 1, 0, 0])
  p = np.array([1, 0, 1, 0, 1, 1, 1, 0])
  g = np.array([0, 0, 0, 0, 1, 1, 1, 1])
  assert np.isclose(M.demographic_parity_difference(p, g), 0.25)
  assert np.isclose(M.demographic_parity_difference(p, g, privileged=1), -0.25)
  assert np.isclose(M.equalized_odds_difference(y, p, g), 0.5)
  assert np.isclose(M.equal_opportunity_difference(y, p, g, privileged=1), -0.5)
  assert np.isclose(M.average_odds_difference(y, p, g, privileged=1), -0.25)
  c = M.group_confusion(y, p, g, num_groups=2)
  np.testing.assert_array_equal(c, [[[1, 1], [1, 1]], [[1, 1], [0, 2]]])


def test_probabilities_are_expected_rates():
  """A randomised classifier's expected rates equal the mean over its realisations."""
  rng = np.random.default_rng(0)
  y, g = rng.integers(0, 2, 50), rng.integers(0, 3, 50)
  probs = rng.uniform(size=50)
  draws = rng.uniform(size=(20000, 50)) < probs
  expected = np.mean([M.equal_opportunity_difference(y, d, g, privileged=0) for d in draws[:300]])
  np.testing.assert_allclose(M.equal_opportunity_difference(y, probs, g, privileged=0), expected,
                             atol=0.03)
  np.testing.assert_allclose(M.accuracy(y, probs), np.mean(draws == y), atol=2e-3)


def test_jit_and_vmap_equal_eager():
  rng = np.random.default_rng(1)
  y, g = rng.integers(0, 2, 40), rng.integers(0, 3, 40)
  preds = rng.integers(0, 2, (7, 40)).astype(np.float32)
  fns = {
      "dp": lambda p: M.demographic_parity_difference(p, g, num_groups=3),
      "eo": lambda p: M.equalized_odds_difference(y, p, g, num_groups=3),
      "eopp_priv": lambda p: M.equal_opportunity_difference(y, p, g, privileged=2, num_groups=3),
      "aod_priv": lambda p: M.average_odds_difference(y, p, g, privileged=0, num_groups=3),
      "bacc": lambda p: M.balanced_accuracy(y, p),
  }
  for name, fn in fns.items():
    loop = np.array([fn(p) for p in preds])
    np.testing.assert_allclose(jax.vmap(fn)(preds), loop, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(jax.jit(fn)(preds[0]), loop[0], atol=1e-6, err_msg=name)
  traced = jax.jit(lambda y, p, g: M.equalized_odds_difference(y, p, g, num_groups=3))
  np.testing.assert_allclose(traced(y, preds[0], g), fns["eo"](preds[0]), atol=1e-6)


def test_savani_objectives():
  assert np.isclose(M.savani_objective_v1(-0.2, 0.8), 0.75 * 0.2 + 0.25 * 0.2)
  assert np.isclose(M.savani_objective_v1(0.0, 0.752, lam=0.75), 0.062)   # constant on Adult
  assert M.savani_objective_v2(0.04, 0.9) == pytest.approx(0.9)
  assert M.savani_objective_v2(-0.06, 0.9) == 0.0
  np.testing.assert_allclose(jax.vmap(M.savani_objective_v2)(jnp.array([0.0, 0.1]),
                                                             jnp.array([0.7, 0.8])), [0.7, 0.0])


@pytest.mark.parametrize("call, message", [
    (lambda: M.equalized_odds_difference([0, 2, 1], [0, 1, 1], [0, 1, 0]),
     "y_true: expected binary"),
    (lambda: M.equalized_odds_difference([0, 1, 1], [0, 1], [0, 1, 0]), "mismatched lengths"),
    (lambda: M.demographic_parity_difference([0.1, np.nan, 1.0], [0, 1, 0]), "y_pred: .* NaN"),
    (lambda: M.demographic_parity_difference([0.1, 1.5, 1.0], [0, 1, 0]), r"y_pred: .*\[0, 1\]"),
    (lambda: M.demographic_parity_difference([0, 1, 1], [0, 2, 0]), r"group\(s\) \[1\] are empty"),
    (lambda: M.demographic_parity_difference([0, 1, 1], [0, 1, 0], num_groups=3), "empty"),
    (lambda: M.demographic_parity_difference([0, 1, 1], [0, -1, 0]), "groups: expected codes >= 0"),
    (lambda: M.demographic_parity_difference([0, 1, 1], [0, 0.5, 0]), "non-integer"),
    (lambda: M.demographic_parity_difference([0, 1, 1], [0, 1, 0], privileged=2), "privileged"),
    (lambda: M.demographic_parity_difference([0, 1], [0, 1], sample_weight=[1, -1]),
     "sample_weight"),
    (lambda: M.demographic_parity_difference([[0, 1]], [0, 1]), "y_pred: expected a 1-D array"),
    (lambda: M.accuracy([], []), "empty array"),
    (lambda: jax.jit(lambda p: M.demographic_parity_difference(p, p))(jnp.ones(3)), "num_groups"),
    (lambda: M.savani_objective_v1(0.1, 0.9, lam=1.5), "lam"),
])
def test_bad_input_raises_clear_value_error(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_roc_auc_equals_scikit_learn_with_ties():
  rng = np.random.default_rng(3)
  y = rng.integers(0, 2, 300)
  scores = np.round(rng.uniform(size=300) + 0.3 * y, 1)        # many ties
  np.testing.assert_allclose(M.roc_auc(y, scores), skm.roc_auc_score(y, scores), atol=1e-6)
  assert float(M.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4])) == 1.0
  assert float(M.roc_auc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5])) == 0.5
  with pytest.raises(ValueError, match="y_true, scores"):
    M.roc_auc([0, 1], [0.5])
