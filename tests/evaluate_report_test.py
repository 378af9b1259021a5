"""Scores, summaries and run outputs."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import evaluate, metrics, report


def test_positive_probability():
  logits = jnp.array([[0.0, 0.0], [0.0, 2.0]])
  np.testing.assert_allclose(evaluate.positive_probability(logits), [0.5, 1 / (1 + np.exp(-2))],
                             rtol=1e-6)
  np.testing.assert_allclose(evaluate.positive_probability(jnp.array([[0.0], [2.0]])),
                             [0.5, 1 / (1 + np.exp(-2))], rtol=1e-6)
  with pytest.raises(ValueError, match="logits: expected 1 or 2 outputs"):
    evaluate.positive_probability(jnp.zeros((2, 3)))


def test_predict_scores_batches_and_pads():
  w = jnp.array([[1.0, -1.0], [0.5, 2.0]])
  apply = lambda v, x: x @ v
  x = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
  expected = jax.nn.softmax(x @ np.asarray(w), -1)[:, 1]
  np.testing.assert_allclose(evaluate.predict_scores(apply, w, x, batch_size=3), expected,
                             rtol=1e-6)


def test_predict_scores_refuses_nan():
  with pytest.raises(ValueError, match="model scores: 2 of 2 are NaN"):
    evaluate.predict_scores(lambda v, x: x * v, jnp.nan, np.ones((2, 2), np.float32))


@pytest.mark.parametrize("privileged", [None, 0, 1])
def test_every_summary_number_equals_its_metric_function(privileged):
  """The one-program summary gives each metric function's value, signed and unsigned alike."""
  rng = np.random.default_rng(3)
  y, g = rng.integers(0, 2, 200), rng.integers(0, 3, 200)
  p = rng.random(200).astype(np.float32)
  s = evaluate.fairness_summary(y, p, g, privileged=privileged)
  unsigned = {"demographic_parity": metrics.demographic_parity_difference(p, g),
              "equalized_odds": metrics.equalized_odds_difference(y, p, g),
              "equal_opportunity": metrics.equal_opportunity_difference(y, p, g),
              "average_odds": metrics.average_odds_difference(y, p, g),
              "accuracy": metrics.accuracy(y, p),
              "balanced_accuracy": metrics.balanced_accuracy(y, p)}
  for key, value in unsigned.items():
    assert s[key] == pytest.approx(float(value), abs=1e-6), key
  if privileged is not None:
    kw = dict(privileged=privileged)
    signed = {"statistical_parity_difference": metrics.demographic_parity_difference(p, g, **kw),
              "equal_opportunity_difference": metrics.equal_opportunity_difference(y, p, g, **kw),
              "average_odds_difference": metrics.average_odds_difference(y, p, g, **kw)}
    for key, value in signed.items():
      assert s[key] == pytest.approx(float(value), abs=1e-6), key


def test_fairness_summary_matches_the_metrics():
  rng = np.random.default_rng(0)
  y, p, g = rng.integers(0, 2, 300), rng.integers(0, 2, 300), rng.integers(0, 2, 300)
  s = evaluate.fairness_summary(y, p, g, privileged=1)
  assert s["equalized_odds"] == pytest.approx(float(metrics.equalized_odds_difference(y, p, g)))
  assert s["average_odds_difference"] == pytest.approx(
      float(metrics.average_odds_difference(y, p, g, privileged=1)))
  assert abs(s["statistical_parity_difference"]) == pytest.approx(s["demographic_parity"])
  assert [grp["count"] for grp in s["groups"]] == [int((g == 0).sum()), int((g == 1).sum())]
  # A group without positives: the signed TPR-based differences are undefined, reported as None.
  y_none = np.where(g == 0, 0, y)
  assert evaluate.fairness_summary(y_none, p, g,
                                   privileged=1)["equal_opportunity_difference"] is None


def test_atomic_write_and_run_dir_protection(tmp_path):
  run = tmp_path / "run"
  report.check_run_dir(str(run))
  assert not run.exists()
  rows = [{"method": "Vanilla", "accuracy": 0.8, "balanced_accuracy": 0.75,
           "demographic_parity": 0.3,
           "equalized_odds": 0.4, "equal_opportunity": 0.35,
           "groups": [{"count": 5, "selection_rate": 0.2, "tpr": 0.3, "fpr": 0.1, "accuracy": 0.8},
                      {"count": 5, "selection_rate": 0.5, "tpr": 0.7, "fpr": 0.4,
                       "accuracy": 0.7}]},
          {"method": "Other", "accuracy": 0.7, "balanced_accuracy": 0.7, "demographic_parity": 0.1,
           "equalized_odds": 0.1, "equal_opportunity": 0.05, "groups": []}]
  info = {"name": "toy", "target": "t", "protected": "a", "groups": ["g0", "g1"], "privileged": 1,
          "splits": {"phi_requested": 0.8, "train": {"size": 10, "counts": [[4, 1], [1, 4]],
                                                     "phi": 0.6}}}
  report.write_results(str(run), rows=rows, config={"seed": 0}, info=info, command="cmd")
  payload = json.loads((run / "results.json").read_text())
  assert payload["results"][0]["equalized_odds"] == 0.4 and payload["command"] == "cmd"
  with open(run / "results.csv") as f:
    table = list(csv.DictReader(f))
  assert [r["method"] for r in table] == ["Vanilla", "Other"]
  md = (run / "report.md").read_text()
  assert "| Other | 0.700 (-0.100)" in md and "true positive rate 0.700 for 'g1'" in md
  assert not [f for f in os.listdir(run) if f.startswith(".tmp-")]
  with pytest.raises(FileExistsError, match="already holds results.json"):
    report.check_run_dir(str(run))
  report.check_run_dir(str(run), overwrite=True)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
  path = tmp_path / "results.json"
  report.atomic_write(str(path), "old")

  with pytest.raises(TypeError):
    report.atomic_write(str(path), 42)          # not str/bytes: nothing replaced
  assert path.read_text() == "old"
  assert os.listdir(tmp_path) == ["results.json"]


def test_format_table_shows_deltas():
  rows = [{"method": "Vanilla", "accuracy": 0.5, "balanced_accuracy": 0.5,
           "demographic_parity": 0.7,
           "equalized_odds": 0.7, "equal_opportunity": 0.7},
          {"method": "Fix", "accuracy": 0.9, "balanced_accuracy": 0.9, "demographic_parity": 0.1,
           "equalized_odds": 0.05, "equal_opportunity": 0.02}]
  text = report.format_table(rows)
  assert "0.900 (+0.400)" in text and "0.050 (-0.650)" in text


def _rows(vanilla_ba, method_ba, adr, rddt):
  return [{"method": "Vanilla", "balanced_accuracy": vanilla_ba, "equalized_odds": 0.4},
          {"method": "M", "balanced_accuracy": method_ba, "equalized_odds": 0.1, "adr": adr,
           "rddt": rddt}]


def test_seed_summary_means_changes_and_improvement_counts():
  runs = [_rows(0.70, 0.75, 0.01, True), _rows(0.72, 0.71, -0.02, False),
          _rows(0.74, 0.80, 1e-9, True)]
  summary = report.seed_summary(runs, ["balanced_accuracy", "equalized_odds", "adr", "rddt"])
  vanilla, m = summary
  assert vanilla["method"] == "Vanilla" and vanilla["seeds"] == 3
  assert vanilla["balanced_accuracy"] == pytest.approx({"mean": 0.72, "sd": 0.02})
  assert "adr" not in vanilla and "rddt" not in vanilla            # Vanilla has neither
  ba = m["balanced_accuracy"]
  changes = [0.05, -0.01, 0.06]
  assert ba["mean"] == pytest.approx(np.mean([0.75, 0.71, 0.80]))
  assert ba["change_mean"] == pytest.approx(np.mean(changes))
  assert ba["change_sd"] == pytest.approx(np.std(changes, ddof=1))
  assert ba["better"] == 2
  assert m["equalized_odds"]["better"] == 3                         # a gap: lower is better
  assert m["equalized_odds"]["change_sd"] == pytest.approx(0)
  # ADR is itself a change against Vanilla: counted where it is > 0 beyond float noise
  assert m["adr"]["better"] == 1 and "change_mean" not in m["adr"]
  assert m["rddt"] == {"true": 2}
  table = report.seed_table(summary, ["balanced_accuracy", "adr", "rddt"], ["BA", "ADR", "RDDT"])
  assert "| Vanilla | 0.720 ± 0.020 | - | - |" in table
  assert "| M | 0.753 ± 0.045 (+0.033 ± 0.038, 2/3) | -0.003 ± 0.015 (1/3) | 2/3 |" in table


@pytest.mark.parametrize("runs, baseline, message", [
    ([_rows(0.7, 0.7, 0, True)], "Vanilla", "at least 2 seeds"),
    ([_rows(0.7, 0.7, 0, True), _rows(0.7, 0.7, 0, True)[::-1]], "Vanilla", "same methods"),
    ([_rows(0.7, 0.7, 0, True)] * 2, "Base", "'Base' is not among"),
])
def test_seed_summary_rejects_mismatched_runs(runs, baseline, message):
  with pytest.raises(ValueError, match=message):
    report.seed_summary(runs, ["balanced_accuracy"], baseline=baseline)
