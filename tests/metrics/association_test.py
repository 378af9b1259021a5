"""Rank correlation, its bootstrap interval and the significant-test counts on hand-made cases."""

import jax
import numpy as np
import pytest
import scipy.stats

from debiasjax.metrics import association as A


def test_rank_correlation_on_known_cases_and_against_scipy():
  x = np.arange(8.0)
  assert float(A.rank_correlation(x, x ** 3)) == pytest.approx(1.0)          # monotone
  assert float(A.rank_correlation(x, -np.exp(x))) == pytest.approx(-1.0)     # reversed
  np.testing.assert_allclose(A.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1, 3.5, 2])
  assert np.isnan(float(A.rank_correlation(x, np.ones(8))))                  # constant side
  rng = np.random.default_rng(0)
  for _ in range(5):
    a = rng.integers(0, 5, 30).astype(float)                                 # many ties
    b = a + rng.normal(0, 2, 30)
    assert float(A.rank_correlation(a, b)) == pytest.approx(scipy.stats.spearmanr(a, b)[0],
                                                            abs=1e-5)


def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_cells():
  rng = np.random.default_rng(1)
  key = jax.random.key(0)
  small = rng.normal(size=12)
  big = rng.normal(size=200)
  a = A.bootstrap_rank_correlation(small, small + rng.normal(size=12), key=key)
  b = A.bootstrap_rank_correlation(big, big + rng.normal(size=200), key=key)
  for r in (a, b):
    assert r.low <= r.estimate <= r.high and r.resamples > 1900
  assert b.high - b.low < a.high - a.low
  perfect = A.bootstrap_rank_correlation(np.arange(10.0), np.arange(10.0) * 2, key=key)
  assert perfect.low == pytest.approx(1.0) and perfect.high == pytest.approx(1.0)


def test_significant_counts_and_refusals():
  counts = A.significant_counts({"LEACE": [1e-5, 0.2, 0.003, np.nan], "ThrOpt": [1.0, 1.0]},
                                alpha=0.01)
  assert counts == {"LEACE": (2, 3), "ThrOpt": (0, 2)}
  with pytest.raises(ValueError, match="p-values in"):
    A.significant_counts({"m": [1.5]})
  with pytest.raises(ValueError, match="x, y: expected two vectors"):
    A.rank_correlation([1.0, 2.0], [1.0, 2.0])
  with pytest.raises(ValueError, match="finite"):
    A.rank_correlation([1.0, np.nan, 2.0], [1.0, 2.0, 3.0])
  with pytest.raises(ValueError, match="level"):
    A.bootstrap_rank_correlation(np.arange(5.0), np.arange(5.0), key=jax.random.key(0),
                                 level=1.5)
