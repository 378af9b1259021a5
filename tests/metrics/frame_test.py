"""Per-group tables, ratio metrics and sensitive features of any kind, against fairlearn's
MetricFrame and ratio metrics and AIF360's disparate impact as oracles."""

import numpy as np
import pandas as pd
import pytest
from fairlearn import metrics as fm
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score

from debiasjax.metrics import frame


def data(seed, n=400):
  rng = np.random.default_rng(seed)
  sex = rng.choice(["F", "M"], n)
  race = rng.choice(["A", "B", "C"], n, p=[0.5, 0.3, 0.2])
  y = rng.integers(0, 2, n)
  y_hat = (rng.random(n) < 0.3 + 0.3 * (sex == "M") + 0.1 * (race == "C")).astype(int)
  w = rng.integers(1, 4, n).astype(float)
  return y, y_hat, sex, race, w


FAIRLEARN = {"count": fm.count, "selection_rate": fm.selection_rate,
             "true_positive_rate": fm.true_positive_rate,
             "false_positive_rate": fm.false_positive_rate,
             "true_negative_rate": fm.true_negative_rate,
             "false_negative_rate": fm.false_negative_rate, "accuracy": accuracy_score,
             "balanced_accuracy": balanced_accuracy_score}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_by_group_equals_metricframe_on_strings_and_intersections(seed, weighted):
  y, y_hat, sex, race, w = data(seed)
  for features, theirs_features in ((sex, sex),
                                    ({"sex": sex, "race": race},
                                     pd.DataFrame({"sex": sex, "race": race}))):
    names = [m for m in frame.BUILT_IN if not (weighted and m == "count")]
    ours = frame.by_group(y, y_hat, features, metrics=names,
                          sample_weight=w if weighted else None)
    params = ({m: {"sample_weight": w} for m in names} if weighted else None)
    mf = fm.MetricFrame(metrics={m: FAIRLEARN[m] for m in names}, y_true=y, y_pred=y_hat,
                        sensitive_features=theirs_features, sample_params=params)
    for m in names:
      np.testing.assert_allclose(ours.overall[m], mf.overall[m], rtol=1e-6)
      theirs = mf.by_group[m]
      for key, value in theirs.items():
        name = key if isinstance(key, str) else f"sex={key[0]}, race={key[1]}"
        np.testing.assert_allclose(ours.by_group[m][name], value, rtol=1e-6, err_msg=name)
      np.testing.assert_allclose(ours.difference(m), mf.difference()[m], rtol=1e-6, atol=1e-9)
      np.testing.assert_allclose(ours.ratio(m), mf.ratio()[m], rtol=1e-6, atol=1e-9)


def test_functions_are_called_per_group_like_fairlearn():
  y, y_hat, sex, race, _ = data(3)
  ours = frame.by_group(y, y_hat, race, metrics={"precision": precision_score})
  mf = fm.MetricFrame(metrics=precision_score, y_true=y, y_pred=y_hat, sensitive_features=race)
  assert ours.overall["precision"] == pytest.approx(mf.overall)
  for g, v in mf.by_group.items():
    assert ours.by_group["precision"][g] == pytest.approx(v)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ratio_metrics_equal_fairlearn_and_disparate_impact_equals_aif360(seed):
  y, y_hat, sex, race, w = data(seed)
  groups = np.char.add(sex.astype(str), race.astype(str))
  for kwargs in ({}, {"sample_weight": w}):
    assert frame.demographic_parity_ratio(y, y_hat, groups, **kwargs) == pytest.approx(
        fm.demographic_parity_ratio(y, y_hat, sensitive_features=groups, **kwargs))
    assert frame.equalized_odds_ratio(y, y_hat, groups, **kwargs) == pytest.approx(
        fm.equalized_odds_ratio(y, y_hat, sensitive_features=groups, **kwargs))
  # AIF360's BinaryLabelDatasetMetric.disparate_impact with sex = "M" privileged.
  from aif360.datasets import BinaryLabelDataset
  from aif360.metrics import BinaryLabelDatasetMetric
  df = pd.DataFrame({"sex": (sex == "M").astype(float), "label": y_hat.astype(float)})
  ds = BinaryLabelDataset(df=df, label_names=["label"], protected_attribute_names=["sex"])
  theirs = BinaryLabelDatasetMetric(ds, unprivileged_groups=[{"sex": 0.0}],
                                    privileged_groups=[{"sex": 1.0}]).disparate_impact()
  assert frame.disparate_impact(y, y_hat, sex, privileged="M") == pytest.approx(theirs)


def test_encode_groups_and_bad_sensitive_features():
  codes, names = frame.encode_groups(np.array(["b", "a", "b", "c"]))
  assert codes.tolist() == [1, 0, 1, 2] and names == ["a", "b", "c"]
  codes, names = frame.encode_groups({"s": [1, 1, 0], "t": [True, False, True]})
  assert names == ["s=0, t=True", "s=1, t=False", "s=1, t=True"] and codes.tolist() == [2, 1, 0]
  codes, names = frame.encode_groups(np.array([[1, 0], [1, 0], [0, 1]]))
  assert names == ["feature0=0, feature1=1", "feature0=1, feature1=0"]
  with pytest.raises(ValueError, match="missing values"):
    frame.encode_groups(np.array(["a", None, "b"], dtype=object))
  with pytest.raises(ValueError, match="missing values"):
    frame.encode_groups(np.array([0.0, np.nan]))
  with pytest.raises(ValueError, match="column 't' has shape"):
    frame.encode_groups({"s": [1, 0], "t": [1, 0, 1]})
  with pytest.raises(ValueError, match="not a built-in metric"):
    frame.by_group([0, 1], [0, 1], ["a", "b"], metrics=["precision"])
  with pytest.raises(ValueError, match="privileged: expected one of the groups"):
    frame.disparate_impact([0, 1], [0, 1], ["a", "b"], privileged="c")
  table = frame.by_group([0, 1, 1, 0], [0, 1, 0, 0], ["x", "x", "y", "y"])
  assert "| overall |" in table.to_markdown() and table.groups == ["x", "y"]
