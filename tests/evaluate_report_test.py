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


def test_bootstrap_intervals_equal_percentiles_of_summaries_on_the_same_resamples():
  rng = np.random.default_rng(0)
  n, b = 300, 40
  y, g = rng.integers(0, 2, n), rng.integers(0, 2, n)
  p = (rng.random(n) < 0.3 + 0.3 * g).astype(np.float32)
  key = jax.random.key(5)
  got = evaluate.bootstrap_intervals(y, p, g, key=key, num_resamples=b, level=0.9, privileged=1)
  idx = np.asarray(jax.random.randint(key, (b, n), 0, n))
  runs = [evaluate.fairness_summary(y, p, g, privileged=1,
                                    sample_weight=np.bincount(i, minlength=n).astype(np.float32))
          for i in idx]
  for name in ("balanced_accuracy", "equalized_odds", "statistical_parity_difference"):
    values = [r[name] for r in runs]
    np.testing.assert_allclose(got[name], np.percentile(values, [5, 95]), rtol=1e-5, atol=1e-6)
  point = evaluate.fairness_summary(y, p, g, privileged=1)
  assert got["demographic_parity"][0] < point["demographic_parity"] < got["demographic_parity"][1]
  with pytest.raises(ValueError, match="level"):
    evaluate.bootstrap_intervals(y, p, g, key=key, level=95)


def test_constant_classifiers_are_flagged_and_kept_off_the_pareto_front(tmp_path):
  from debiasjax.debias import pareto_front
  rows = [{"method": "Vanilla", "accuracy": 0.7, "balanced_accuracy": 0.70,
           "demographic_parity": 0.3, "statistical_parity_difference": -0.3,
           "equalized_odds": 0.4, "equal_opportunity": 0.3, "positive_rate": 0.4,
           "constant": False, "ci": {"balanced_accuracy": [0.68, 0.72]}},
          {"method": "All yes", "accuracy": 0.5, "balanced_accuracy": 0.50,
           "demographic_parity": 0.0, "statistical_parity_difference": 0.0,
           "equalized_odds": 0.0, "equal_opportunity": 0.0, "positive_rate": 0.998,
           "constant": True, "ci": {}}]
  assert pareto_front(rows) == ["Vanilla"]
  assert pareto_front([{**r, "constant": False} for r in rows]) == ["Vanilla", "All yes"]
  assert "All yes (constant)" in report.format_table(rows)
  assert "99.8 % of the test rows" in report.constant_note(rows[1])
  for r in rows:
    r["pareto"] = r["method"] in pareto_front(rows)
  report.write_results(str(tmp_path), rows=rows, config={}, info={"groups": ["a", "b"]},
                       command="cmd")
  text = (tmp_path / "report.md").read_text()
  assert "| SPD |" in text and "[0.680, 0.720]" in text and "kept off the Pareto front" in text
  table = list(csv.DictReader(open(tmp_path / "results.csv")))
  assert table[0]["ci_balanced_accuracy_low"] == "0.68"
  saved = json.loads((tmp_path / "results.json").read_text())
  assert set(saved["provenance"]) >= {"versions", "git", "python", "devices"}
  assert saved["provenance"]["versions"]["jax"] == jax.__version__
  report.pareto_plot(rows, str(tmp_path / "pareto.png"))
  assert (tmp_path / "pareto.png").stat().st_size > 10_000


def test_run_folders_are_named_by_what_differs_from_the_defaults(monkeypatch):
  from experiments import cli
  argv = ["main.py", "--config=experiments/configs/main.py:census,tiny", "--config.data.phi=0.9",
          "--config.cache_dir=/tmp/c", "--workdir=x"]
  assert cli.overrides(argv) == ["census", "tiny", "phi=0.9"]
  assert cli.default_workdir("census-mlp", argv).endswith("-census-mlp-tiny-phi=0.9")
  monkeypatch.setenv("DEBIASJAX_COMMAND", "bash scripts/main.sh --config.seed=3")
  assert cli.command_line() == "bash scripts/main.sh --config.seed=3"


def test_progress_printer_shows_the_time_left_and_the_time_taken():
  from debiasjax.progress import printer
  lines, now = [], [0.0]
  show = printer(lines.append, every=5.0, clock=lambda: now[0])
  show("search", 0, 10)
  for done, t in ((1, 30.0), (2, 32.0), (3, 34.0), (4, 40.0), (10, 52.0)):
    now[0] = t
    show("search", done, 10)
  # The rate counts from the first unit (which paid for compilation): 3 units in 10 s, 6 left;
  # 2/10 and 3/10 come within 5 s of the last line and are not shown.
  assert lines == ["  search: 1/10 (10 %)", "  search: 4/10 (40 %), about 20 s left",
                   "  search: 10/10 (100 %) in 52 s"]
