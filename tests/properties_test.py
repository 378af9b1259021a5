"""Property-based tests (hypothesis, a fixed number of derandomised examples): random valid
inputs give the answer of a slow reference or keep an invariant; random invalid inputs give the
documented ValueError, never a NaN or an error from inside JAX."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from debiasjax import metrics as M
from debiasjax.data import splits as S
from debiasjax.methods import concepts as C, postprocessing as P

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
SIZES = (24, 60)          # few distinct shapes, so the eager kernels compile a few times only


@st.composite
def labelled(draw, groups=2):
  """Labels, hard predictions, scores, group codes (every group holds both labels) and
  integer weights."""
  n = draw(st.sampled_from(SIZES))
  seed = draw(st.integers(0, 2 ** 31 - 1))
  rng = np.random.default_rng(seed)
  g = np.arange(n) % groups
  y = rng.integers(0, 2, n)
  y[:2 * groups] = np.repeat([0, 1], groups)                  # both labels in every group
  scores = rng.uniform(size=n).astype(np.float32)
  weights = rng.integers(1, 4, n).astype(np.float32)
  return y, (scores > 0.5).astype(np.int32), scores, g, weights


def reference_gaps(y, pred, g, w):
  """Slow NumPy reference: fairlearn's DP and EO differences with sample weights."""
  sel, tpr, fpr = [], [], []
  for k in np.unique(g):
    m = g == k
    sel.append((w * pred)[m].sum() / w[m].sum())
    pos, neg = m & (y == 1), m & (y == 0)
    tpr.append((w * pred)[pos].sum() / w[pos].sum())
    fpr.append((w * pred)[neg].sum() / w[neg].sum())
  gap = lambda v: max(v) - min(v)
  return gap(sel), max(gap(tpr), gap(fpr))


@SETTINGS
@given(labelled())
def test_gaps_equal_a_slow_reference(case):
  y, pred, _, g, w = case
  dp, eo = reference_gaps(y, pred, g, w)
  np.testing.assert_allclose(float(M.demographic_parity_difference(pred, g, sample_weight=w)),
                             dp, atol=1e-6)
  np.testing.assert_allclose(float(M.equalized_odds_difference(y, pred, g, sample_weight=w)),
                             eo, atol=1e-6)


INVALID = st.sampled_from(["nan_pred", "pred_above_one", "negative_group", "short_groups",
                           "missing_groups", "negative_weight", "labels_2"])


def corrupt(kind, y, pred, g, w):
  y, pred, g, w = y.copy(), pred.astype(np.float32), g.copy(), w.copy()
  if kind == "nan_pred":
    pred[1] = np.nan
  elif kind == "pred_above_one":
    pred[0] = 1.5
  elif kind == "negative_group":
    g[2] = -1
  elif kind == "short_groups":
    g = g[:-1]
  elif kind == "missing_groups":                  # named groups are encoded; a missing one is not
    g = np.where(g == 0, "F", None).astype(object)
  elif kind == "negative_weight":
    w[0] = -1.0
  else:
    y[0] = 2
  return y, pred, g, w


@SETTINGS
@given(labelled(), INVALID)
def test_metrics_refuse_invalid_inputs_with_a_value_error(case, kind):
  y, pred, g, w = corrupt(kind, *[case[i] for i in (0, 1, 3, 4)])
  with pytest.raises(ValueError):
    M.equalized_odds_difference(y, pred, g, sample_weight=w)


@SETTINGS
@given(labelled(), st.sampled_from(["demographic_parity", "true_positive_rate_parity"]))
def test_threshold_optimizer_meets_its_constraint_on_the_fit_data(case, constraint):
  y, _, scores, g, _ = case
  to = P.threshold_optimizer(constraint=constraint)
  p = np.asarray(to.probability(to.fit(scores, y, g), scores, g), np.float64)
  assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
  rates = [p[(g == k) & ((y == 1) if constraint != "demographic_parity" else True)].mean()
           for k in (0, 1)]
  assert abs(rates[0] - rates[1]) < 2e-3                        # the grid's resolution


POST = {"thropt": lambda: P.threshold_optimizer(), "roc": lambda: P.reject_option(),
        "eqodds": lambda: P.equalized_odds_postprocessing(),
        "naive": lambda: P.naive_threshold()}


@SETTINGS
@given(labelled(), st.sampled_from(sorted(POST)),
       st.sampled_from(["nan_scores", "inf_scores", "negative_group", "short_groups",
                        "missing_groups", "labels_2", "negative_weight"]))
def test_post_processor_fits_refuse_invalid_inputs(case, name, kind):
  y, _, scores, g, w = case
  s = scores.copy()
  if kind == "nan_scores":
    s[0] = np.nan
  elif kind == "inf_scores":
    s[0] = np.inf
  else:
    y, _, g, w = corrupt(kind, y, s, g, w)
  with pytest.raises(ValueError):
    POST[name]().fit(s, y, g, sample_weight=w)


@SETTINGS
@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([4, 9]))
def test_leace_leaves_no_linear_trace_of_the_concept(seed, dim):
  rng = np.random.default_rng(seed)
  z = rng.integers(0, 2, 80)
  z[:2] = [0, 1]
  a = rng.normal(size=(80, dim)) + np.outer(z, rng.normal(size=dim)) * 2
  weights = rng.integers(1, 4, 80).astype(np.float32)
  state = C.fit_leace(a.astype(np.float32), z, weights=weights)
  erased = np.asarray(C.erase(state, a.astype(np.float32)), np.float64)
  zc = z - np.average(z, weights=weights)
  cross = (erased * (weights * zc)[:, None]).sum(0) / weights.sum()
  assert np.abs(cross).max() < 1e-4 * (1 + np.abs(a).max())


@SETTINGS
@given(st.integers(0, 2 ** 31 - 1), st.floats(-0.9, 0.9), st.floats(-0.9, 0.9))
def test_splits_are_disjoint_balanced_and_biased_as_asked(seed, phi, debias_phi):
  rng = np.random.default_rng(seed)
  target, protected = rng.integers(0, 2, 4000), rng.integers(0, 2, 4000)
  sp = S.make_splits(target, protected, phi=phi, debias_phi=debias_phi, n_test=200,
                     n_train=600, n_debias=400, seed=seed)
  parts = [sp.train, sp.debias, sp.test]
  assert sum(len(p) for p in parts) == len(np.unique(np.concatenate(parts)))
  test_cells = np.bincount(2 * protected[sp.test] + target[sp.test], minlength=4)
  assert (test_cells == 50).all()
  for split, wanted in ((sp.train, phi), (sp.debias, debias_phi)):
    counts = np.bincount(2 * protected[split] + target[split], minlength=4).reshape(2, 2)
    assert abs(S.yule_phi(counts) - wanted) < 0.02


@SETTINGS
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda v: not -1 <= v <= 1), st.just(True), st.text(max_size=3)))
def test_splits_refuse_a_phi_out_of_range(phi):
  with pytest.raises(ValueError, match="phi"):
    S.make_splits(np.arange(100) % 2, np.arange(100) // 50, phi=phi, n_test=8)
