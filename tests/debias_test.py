"""debias(): method resolution, identical evaluation, Pareto front, faces and tabular data."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import data, evaluate, methods as dm
from debiasjax.debias import debias, pareto_front


def linear_model(split):
  """A least-squares linear scorer: a stand-in for any trained model (apply_fn, variables)."""
  x = split.x.reshape(len(split), -1)
  x1 = np.concatenate([x, np.ones((len(x), 1), np.float32)], 1)
  w = np.linalg.lstsq(x1, 2.0 * split.y - 1, rcond=None)[0].astype(np.float32)
  apply = lambda v, xb: jnp.stack([jnp.zeros(len(xb)), 3 * (xb.reshape(len(xb),
                                                                       -1) @ v[:-1] + v[-1])], -1)
  return apply, jnp.asarray(w)


ALL_POSTPROCESSORS = {
    "ThrOpt (DP)": dm.threshold_optimizer(constraint="demographic_parity"),
    "ThrOpt (EO, flip)": dm.threshold_optimizer(constraint="equalized_odds", flip=True),
    "ROC (AOD)": dm.reject_option(metric="average_odds", num_thresholds=20, num_margins=10),
    "EqOdds": dm.equalized_odds_postprocessing(),
    "CalibEqOdds (fnr)": dm.calibrated_equalized_odds(cost_constraint="fnr"),
    "NaiveThr (DP)": dm.naive_threshold(metric="demographic_parity")}


@pytest.fixture(scope="module")
def faces():
  return data.faces_benchmark(phi=0.8, n_train=400, n_debias=400, n_test=400, image_size=16, seed=0)


@pytest.fixture(scope="module")
def census():
  return data.table_benchmark(data.census(3000, seed=0), seed=0)


@pytest.mark.parametrize("bench_name", ["faces", "census"])
def test_every_postprocessor_runs_and_is_evaluated_like_vanilla(request, bench_name):
  bench = request.getfixturevalue(bench_name)
  apply, w = linear_model(bench.train)
  result = debias(apply, w, bench, methods=ALL_POSTPROCESSORS)
  labels = [r["method"] for r in result.rows]
  assert labels[0] == "Vanilla" and len(labels) == 1 + len(ALL_POSTPROCESSORS)
  # Vanilla's row is the standard summary of the model's thresholded test scores.
  scores = evaluate.predict_scores(apply, w, bench.test.x)
  expected = evaluate.fairness_summary(bench.test.y, (scores > 0.5).astype(np.float32),
                                       bench.test.group, privileged=bench.info["privileged"])
  assert result.rows[0]["equalized_odds"] == pytest.approx(expected["equalized_odds"])
  for row in result.rows:
    for key in ("accuracy", "balanced_accuracy", "demographic_parity", "equalized_odds",
                "equal_opportunity", "statistical_parity_difference"):
      assert np.isfinite(row[key])
  assert set(result.pareto) <= set(labels) and result.pareto
  assert sum(r["pareto"] for r in result.rows) == len(result.pareto)
  # Each post-processor row is its probability on the test split, summarised the same way.
  label, state = "ThrOpt (DP)", result.debiased["ThrOpt (DP)"].state
  from debiasjax.methods import threshold_optimizer
  p = threshold_optimizer(constraint="demographic_parity").probability(state, scores,
                                                                       bench.test.group)
  row = next(r for r in result.rows if r["method"] == label)
  assert row["demographic_parity"] == pytest.approx(
      evaluate.fairness_summary(bench.test.y, np.asarray(p),
                                bench.test.group)["demographic_parity"])


def test_pareto_front():
  rows = [{"method": "A", "balanced_accuracy": 0.6, "equalized_odds": 0.5},
          {"method": "B", "balanced_accuracy": 0.7, "equalized_odds": 0.3},
          {"method": "C", "balanced_accuracy": 0.5, "equalized_odds": 0.0},
          {"method": "D", "balanced_accuracy": 0.65, "equalized_odds": 0.3},
          {"method": "E", "balanced_accuracy": 0.7, "equalized_odds": 0.3}]
  assert pareto_front(rows) == ["B", "C", "E"]      # A and D are dominated by B; B, E tie


@pytest.mark.parametrize("methods, message", [
    ({"FineTune": dm.fine_tune()},
     r"model: \['FineTune'\] change the weights and need the Flax module"),
    ([dm.reject_option()], r"methods: expected a dict \{label: method\}"),
    ({"ROC": "reject_option"}, r"methods: 'ROC' is a str; expected a PostProcessor"),
    ({"Vanilla": dm.reject_option()}, "labels must be non-empty strings other than 'Vanilla'"),
])
def test_bad_methods(faces, methods, message):
  apply, w = linear_model(faces.train)
  with pytest.raises(ValueError, match=message):
    debias(apply, w, faces, methods=methods)


# Every weight-changing method, tiny settings: (name, kwargs).
def weight_methods():
  """Every weight-changing family, tiny settings: label -> method."""
  return {
      "Random": dm.random_perturbation(num_candidates=4, num_thresholds=51),
      "LayerwiseOpt": dm.layerwise_optimisation(population=4, generations=2, layers=["head"]),
      "Adversarial": dm.savani_adversarial(epochs=1, critic_steps=2, actor_steps=2, batch_size=16),
      "Zhang (EO)": dm.zhang_adversarial(num_steps=2, warmup_steps=1, constraint="equalized_odds"),
      "FineTune (AOD, v1)": dm.fine_tune(num_steps=2, objective=dm.Objective("v1", "average_odds")),
      "A-ClArC": dm.a_clarc(num_steps=2, batch_size=16),
      "RR-ClArC": dm.rr_clarc(num_steps=2, batch_size=16)}


@pytest.mark.parametrize("bench_name", ["faces", "census"])
def test_every_weight_method_runs_in_debias_and_is_evaluated_at_its_threshold(request, bench_name):
  import jax
  from debiasjax import models
  bench = request.getfixturevalue(bench_name)
  model = (models.ResNet18(width=4, small_images=True) if bench_name == "faces"
           else models.MLP(num_layers=2, width=8))
  variables = model.init(jax.random.key(0), bench.train.x[:1])
  result = debias(model, variables, bench, methods={
      **weight_methods(), "ThrOpt": dm.threshold_optimizer(), "LEACE": dm.leace(),
      "P-ClArC": dm.at_layer("head", dm.p_clarc())})
  labels = [r["method"] for r in result.rows]
  assert labels == ["Vanilla", "Random", "LayerwiseOpt", "Adversarial", "Zhang (EO)",
                    "FineTune (AOD, v1)", "A-ClArC", "RR-ClArC", "ThrOpt", "LEACE", "P-ClArC"]
  for label in labels[1:8]:
    d = result.debiased[label]
    scores = evaluate.predict_scores(model.apply, d.variables, bench.test.x)
    expected = evaluate.fairness_summary(bench.test.y,
                                         (scores > float(d.state.threshold)).astype(np.float32),
                                         bench.test.group, privileged=1)
    row = result.rows[labels.index(label)]
    assert row["accuracy"] == pytest.approx(expected["accuracy"])
    assert row["equalized_odds"] == pytest.approx(expected["equalized_odds"])
  # Erasers are compiled into the network they are evaluated with.
  leace = result.debiased["LEACE"]
  scores = evaluate.predict_scores(leace.apply_fn, leace.variables, bench.test.x)
  row = result.rows[labels.index("LEACE")]
  assert row["accuracy"] == pytest.approx(evaluate.fairness_summary(
      bench.test.y, (scores > 0.5).astype(np.float32), bench.test.group)["accuracy"])


def test_searches_save_in_the_checkpoint_dir_and_a_rerun_resumes_them(census, tmp_path):
  import jax
  from debiasjax import models
  from debiasjax.checkpoint import Checkpoints
  model = models.MLP(num_layers=2, width=8)
  variables = model.init(jax.random.key(0), census.train.x[:1])
  methods = {k: weight_methods()[k] for k in ("Random", "LayerwiseOpt", "FineTune (AOD, v1)")}
  methods["ThrOpt (EO)"] = dm.threshold_optimizer(constraint="equalized_odds")
  calls = []
  first = debias(model, variables, census, methods=methods, checkpoint_dir=str(tmp_path),
                 progress=lambda task, done, total: calls.append((task, done, total)))
  # Every task counts up from 0 to its total; the methods one by one.
  tasks = {}
  for task, done, total in calls:
    tasks.setdefault(task, []).append((done, total))
  assert set(tasks) == {"methods", "Random: candidates", "LayerwiseOpt: generations",
                        "FineTune (AOD, v1): training steps"}
  assert tasks["methods"] == [(i, 4) for i in range(1, 5)]
  assert tasks["LayerwiseOpt: generations"] == [(i, 2) for i in range(3)]
  for seen in tasks.values():
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == seen[-1][1] and len({t for _, t in seen}) == 1
  assert sorted(os.listdir(tmp_path)) == ["LayerwiseOpt", "Random"]
  assert Checkpoints(str(tmp_path / "LayerwiseOpt")).latest_step() == 2    # 1 layer x 2 gens
  again = debias(model, variables, census, methods=methods, checkpoint_dir=str(tmp_path))
  strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
  assert strip(again.rows) == strip(first.rows)
