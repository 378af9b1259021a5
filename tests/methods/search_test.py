"""Savani's objective and threshold search, random perturbation and layer-wise optimisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import metrics as M
from debiasjax.evaluate import fairness_summary, positive_probability
from debiasjax.methods import search
from debiasjax.methods.objective import Objective, bias_from_confusion, bootstrap_weights, \
    threshold_search


def brute_force_phi(objective, s, y, g, t, w=None):
  """Savani's code path: one threshold at a time, rates as masked means."""
  yhat = (s > t).astype(float)
  w = np.ones_like(s) if w is None else w
  priv = g == objective.privileged
  mean = lambda mask, v: (float((v * w * mask).sum() / (w * mask).sum())
                          if (w * mask).sum() > 0 else 0.0)
  sel = lambda m: mean(m, yhat)
  tpr = lambda m: mean(m & (y == 1), yhat)
  fpr = lambda m: mean(m & (y == 0), yhat)
  bias = {"statistical_parity": sel(~priv) - sel(priv),
          "equal_opportunity": tpr(~priv) - tpr(priv),
          "average_odds": 0.5 * (fpr(~priv) - fpr(priv) + tpr(~priv) - tpr(priv))}[objective.bias]
  correct = (yhat == y).astype(float)
  acc = float((correct * w).sum() / w.sum())
  ba = 0.5 * (mean(y == 1, yhat) + mean(y == 0, 1 - yhat))
  if objective.version == "v1":
    return objective.lam * abs(bias) + (1 - objective.lam) * (1 - acc)
  return ba if abs(bias) < objective.epsilon - objective.margin else 0.0


def scored(seed, n=300):
  rng = np.random.default_rng(seed)
  g = (rng.random(n) < 0.6).astype(np.int32)
  y = (rng.random(n) < 0.3 + 0.2 * g).astype(np.int32)
  s = np.clip(0.3 * y + 0.15 * g + 0.5 * rng.random(n), 0, 1).astype(np.float32)
  return s, y, g


@pytest.mark.parametrize("objective", [Objective("v1", "statistical_parity"),
                                       Objective("v1", "average_odds", lam=0.5),
                                       Objective("v2", "equal_opportunity", margin=0.01),
                                       Objective("v2", "statistical_parity", epsilon=0.1)])
def test_vectorised_threshold_search_equals_a_brute_force_loop(objective):
  s, y, g = scored(0)
  thresholds = np.linspace(0, 1, 101, dtype=np.float32)
  w = np.asarray(bootstrap_weights(jax.random.key(1), len(s), 3))
  for weights in (None, w):
    if weights is None:
      phis = np.array([brute_force_phi(objective, s, y, g, t) for t in thresholds])
    else:
      phis = np.array([np.mean([brute_force_phi(objective, s, y, g, t, wb) for wb in weights])
                       for t in thresholds])
    best = np.argmin(phis) if objective.version == "v1" else np.argmax(phis)
    got = threshold_search(objective, s, y, g, num_groups=2, thresholds=thresholds,
                           weights=weights)
    assert float(got.threshold) == pytest.approx(float(thresholds[best]))
    np.testing.assert_allclose(float(got.phi), phis[best], atol=1e-5)


def test_bias_measures_equal_the_signed_and_unsigned_metrics():
  s, y, g = scored(2)
  yhat = (s > 0.5).astype(np.float32)
  c = M.group_confusion(y, yhat, g, num_groups=2)
  assert float(bias_from_confusion(c, "statistical_parity")) == pytest.approx(
      float(M.demographic_parity_difference(yhat, g, privileged=1)), abs=1e-6)
  assert float(bias_from_confusion(c, "equal_opportunity")) == pytest.approx(
      float(M.equal_opportunity_difference(y, yhat, g, privileged=1)), abs=1e-6)
  assert float(bias_from_confusion(c, "average_odds")) == pytest.approx(
      float(M.average_odds_difference(y, yhat, g, privileged=1)), abs=1e-6)
  assert float(bias_from_confusion(c, "equalized_odds")) == pytest.approx(
      float(M.equalized_odds_difference(y, yhat, g)), abs=1e-6)
  assert float(bias_from_confusion(c, "demographic_parity")) == pytest.approx(
      float(M.demographic_parity_difference(yhat, g)), abs=1e-6)


def test_objective_rejects_bad_settings():
  s, y, g = scored(0)
  for bad, word in ((Objective("v3"), "version"), (Objective(bias="accuracy"), "bias"),
                    (Objective(lam=2.0), "lam"), (Objective("v2", margin=0.1), "margin")):
    with pytest.raises(ValueError, match=word):
      search.random_perturbation(objective=bad).search(
          lambda v, x: x[:, 0], {"params": {"w": jnp.ones(1)}},
          {"x": s[:, None], "y": y, "group": g}, jax.random.key(0))


def score_fn_of(model):
  return lambda v, x: positive_probability(model.apply(v, x))


def test_random_perturbation_picks_the_candidate_a_one_by_one_loop_picks(census_model):
  bench, model, v = census_model
  score_fn = score_fn_of(model)
  obj = Objective("v2", "statistical_parity", margin=0.01)
  key = jax.random.key(3)
  result = search.random_perturbation(objective=obj, num_candidates=12, num_thresholds=201
                                      ).search(score_fn, v, bench.debias, key)
  chunked = search.random_perturbation(objective=obj, num_candidates=12, num_thresholds=201,
                                       chunk_size=5).search(score_fn, v, bench.debias, key)
  _, cand_key = jax.random.split(key)
  loop = []
  for k in range(12):
    params = search.perturb(jax.random.fold_in(cand_key, k), v["params"], sigma=0.1)
    s = score_fn({**v, "params": params}, bench.debias.x)
    loop.append(float(threshold_search(obj, s, bench.debias.y, bench.debias.group, num_groups=2,
                                       thresholds=jnp.linspace(0, 1, 201)).score))
  assert int(result.trace["best"]) == int(np.argmax(loop)) == int(chunked.trace["best"])
  np.testing.assert_allclose(result.trace["score"], loop, atol=1e-6)
  np.testing.assert_allclose(chunked.trace["score"], loop, atol=1e-6)
  # The returned weights are the winning candidate's own (a true copy), with its threshold.
  s = score_fn(result.variables, bench.debias.x)
  again = threshold_search(obj, s, bench.debias.y, bench.debias.group, num_groups=2,
                           thresholds=jnp.linspace(0, 1, 201))
  assert float(again.score) == pytest.approx(max(loop))
  assert float(again.threshold) == pytest.approx(float(result.threshold))
  # BatchNorm statistics are not perturbed.
  np.testing.assert_array_equal(jax.tree.leaves(result.variables["batch_stats"]),
                                jax.tree.leaves(v["batch_stats"]))


def test_random_perturbation_restricted_to_layers_changes_only_them(census_model):
  bench, model, v = census_model
  r = search.random_perturbation(num_candidates=4, layers=["head"]).search(
      score_fn_of(model), v, bench.debias, jax.random.key(0))
  for name, sub in r.variables["params"].items():
    changed = any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(sub),
                                                           jax.tree.leaves(v["params"][name])))
    assert changed == (name == "head")
  with pytest.raises(ValueError, match="layers.*layer1"):
    search.random_perturbation(num_candidates=4, layers=["layer9"]).search(
        score_fn_of(model), v, bench.debias, jax.random.key(0))


def test_random_perturbation_vmaps_over_seeds(census_model):
  bench, model, v = census_model
  obj = Objective("v1", "average_odds")
  rp = search.random_perturbation(objective=obj, num_candidates=6)
  run = lambda k: rp.search(score_fn_of(model), v, bench.debias, k).score
  keys = jax.random.split(jax.random.key(5), 3)
  np.testing.assert_allclose(jax.vmap(run)(keys), [run(k) for k in keys], atol=1e-6)


def test_layerwise_optimisation_improves_only_the_named_layers_within_the_box(census_model):
  bench, model, v = census_model
  obj = Objective("v2", "statistical_parity", margin=0.01)
  r = search.layerwise_optimisation(objective=obj, layers=["layer3", "head"], population=16,
                                    generations=4).search(score_fn_of(model), v, bench.debias,
                                                          jax.random.key(0))
  original = r.trace["generation_best"]
  start = threshold_search(obj, score_fn_of(model)(v, bench.debias.x), bench.debias.y,
                           bench.debias.group, num_groups=2)
  assert float(r.score) >= float(start.score)
  assert float(r.score) == pytest.approx(max(float(start.score), float(np.max(original))))
  for name in ("layer1", "layer2"):
    for a, b in zip(jax.tree.leaves(r.variables["params"][name]),
                    jax.tree.leaves(v["params"][name])):
      np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(r.variables["params"]["head"]),
                  jax.tree.leaves(v["params"]["head"])):
    assert np.all(np.abs(np.asarray(a) - np.asarray(b)) <= 2.2 * np.std(np.asarray(b)) + 1e-6)
  s = score_fn_of(model)(r.variables, bench.debias.x)
  again = threshold_search(obj, s, bench.debias.y, bench.debias.group, num_groups=2)
  assert float(again.score) == pytest.approx(float(r.score), abs=1e-6)


def test_random_perturbation_reduces_test_bias_at_a_bounded_accuracy_cost(census_model):
  bench, model, v = census_model
  obj = Objective("v2", "statistical_parity", margin=0.01)
  r = search.random_perturbation(objective=obj, num_candidates=32).search(
      score_fn_of(model), v, bench.debias, jax.random.key(0))
  test = bench.test
  before = fairness_summary(test.y, score_fn_of(model)(v, test.x) > 0.5, test.group, privileged=1)
  after = fairness_summary(test.y, score_fn_of(model)(r.variables, test.x) > r.threshold,
                           test.group, privileged=1)
  assert abs(after["statistical_parity_difference"]) < \
      0.5 * abs(before["statistical_parity_difference"])
  assert after["accuracy"] > before["accuracy"] - 0.08


def test_random_perturbation_compiles_once_for_repeated_searches(census_model):
  from tests.compilations import count_compilations
  bench, model, v = census_model
  import chex
  rp = search.random_perturbation(objective=Objective("v2", "statistical_parity"),
                                  num_candidates=5, num_thresholds=101)
  score_fn = chex.assert_max_traces(score_fn_of(model), n=1)   # one program scores everything
  rp.search(score_fn, v, bench.debias, jax.random.key(0))
  other = jax.tree.map(lambda a: a * 1.01, v)
  with count_compilations() as lowered:
    again = rp.search(score_fn, v, bench.debias, jax.random.key(1))
    rp.search(score_fn, other, bench.debias, jax.random.key(2))
  assert lowered == [], lowered
  assert again.trace["score"].shape == (5,)


def test_random_perturbation_interrupted_resumes_to_the_same_result_and_refuses_other_searches(
    census_model, tmp_path):
  from debiasjax.checkpoint import Checkpoints
  bench, model, variables = census_model
  score_fn, data = score_fn_of(model), bench.debias
  rp = search.random_perturbation(num_candidates=7, chunk_size=2, num_thresholds=101)

  class Stop(Exception):
    pass

  class FailsAfter(Checkpoints):
    """Raises once ``limit`` chunks have been saved (a crash between chunks)."""
    def __init__(self, directory, limit):
      super().__init__(directory)
      self.limit, self.steps = limit, []

    def save(self, step, tree, **kwargs):
      super().save(step, tree, **kwargs)
      self.steps.append(step)
      if len(self.steps) == self.limit:
        raise Stop

  folder = str(tmp_path / "rp")
  with pytest.raises(Stop):
    rp.search(score_fn, variables, data, jax.random.key(3), checkpoints=FailsAfter(folder, 2))
  again = FailsAfter(folder, None)
  resumed = rp.search(score_fn, variables, data, jax.random.key(3), checkpoints=again)
  assert again.steps == [3, 4]
  whole = rp.search(score_fn, variables, data, jax.random.key(3))
  np.testing.assert_array_equal(resumed.trace["score"], whole.trace["score"])
  assert int(resumed.trace["best"]) == int(whole.trace["best"])
  for a, b in zip(jax.tree.leaves(resumed.variables), jax.tree.leaves(whole.variables)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="holds a different search"):
    rp.search(score_fn, variables, data, jax.random.key(4), checkpoints=Checkpoints(folder))
  with pytest.raises(ValueError, match="only when run eagerly"):
    jax.jit(lambda k: rp.search(score_fn, variables, data, k,
                                checkpoints=Checkpoints(folder)).score)(jax.random.key(3))
