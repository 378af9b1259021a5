"""Inputs a new user types that used to give a silent wrong number, a NaN carried on, or a
traceback from inside JAX: each is now a ValueError naming the argument."""

import os
import stat

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import debiasjax as dj
from debiasjax import report, train
from debiasjax.methods import postprocessing as P

SCORES = np.array([0.28, 0.89, 0.21, 0.54, 0.17, 0.62, 0.90, 0.88, 0.33, 0.71], np.float32)
Y = np.array([0, 1, 0, 0, 0, 1, 1, 1, 0, 1])
G = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])


def test_post_processors_refuse_groups_they_were_not_fitted_on():
  to = P.threshold_optimizer(constraint="demographic_parity")
  state = to.fit(SCORES, Y, G)
  with pytest.raises(ValueError, match=r"groups: expected the group codes the rule was fitted "
                                       r"on \(0..1\), got \[2\]"):
    to.probability(state, SCORES[:3], np.array([0, 1, 2]))
  for bad in (np.array(["F", "M", "F"]), np.array([0.5, 1, 0])):
    with pytest.raises(ValueError, match="groups: expected"):
      to.probability(state, SCORES[:3], bad)
  with pytest.raises(ValueError, match="mismatched lengths"):
    to.probability(state, SCORES[:3], np.array([0, 1]))


def test_string_and_multi_column_groups_in_metrics_are_encoded():
  names = np.array(list("FMFMFMFMFM"))
  codes = (names == "M").astype(np.int32)
  dj_m = dj.metrics
  assert float(dj_m.demographic_parity_difference(Y, names)) == pytest.approx(
      float(dj_m.demographic_parity_difference(Y, codes)))
  assert float(dj_m.demographic_parity_difference(Y, names, privileged="M")) == pytest.approx(
      float(dj_m.demographic_parity_difference(Y, codes, privileged=1)))
  assert float(dj_m.equalized_odds_difference(Y, Y, names.astype(object))) == pytest.approx(
      float(dj_m.equalized_odds_difference(Y, Y, codes)))
  both = {"sex": names, "older": np.arange(10) > 4}          # intersectional: four groups
  rates = dj_m.group_rates(Y, Y, both)
  assert rates.selection_rate.shape == (4,)
  with pytest.raises(ValueError, match=r"privileged: expected one of the groups \['F', 'M'\]"):
    dj_m.demographic_parity_difference(Y, names, privileged="X")
  with pytest.raises(ValueError, match="missing values"):
    dj_m.demographic_parity_difference(Y, np.array(["F", None] * 5, dtype=object))
  # A rule fitted on codes is applied to codes: strings get a message that says how to map them.
  state = dj.methods.threshold_optimizer().fit(SCORES, Y, codes)
  with pytest.raises(ValueError, match=r"groups: expected numbers, got an array of dtype <U1 "
                                       r"\(map labels"):
    dj.methods.threshold_optimizer().probability(state, SCORES, names)


def test_reject_option_refuses_logits():
  with pytest.raises(ValueError, match=r"scores: expected probabilities P\(y = 1\) in \[0, 1\]"):
    P.reject_option().fit(SCORES * 6 - 3, Y, G)
  state = P.reject_option().fit(SCORES, Y, G)
  with pytest.raises(ValueError, match="scores: expected probabilities"):
    P.reject_option().probability(state, SCORES * 6 - 3, G)


def test_thresholds_outside_zero_one_are_refused():
  for build in (lambda: P.equalized_odds_postprocessing(threshold=1.5),
                lambda: P.calibrated_equalized_odds(threshold=-0.1)):
    with pytest.raises(ValueError, match="threshold: expected a threshold on P"):
      build()


def test_debias_refuses_a_string_of_methods_and_a_bad_threshold():
  bench = None           # refused before the data is read
  apply_fn = lambda v, x: jnp.stack([jnp.zeros(len(x)), x[:, 0]], -1)
  with pytest.raises(ValueError, match="methods: expected a dict"):
    dj.debias(apply_fn, {}, bench, methods="thropt_eo")
  with pytest.raises(ValueError, match="threshold: expected a threshold"):
    dj.debias(apply_fn, {}, bench, methods={"T": P.threshold_optimizer()}, threshold=1.5)


def test_int_seeds_where_keys_are_expected():
  state = P.threshold_optimizer().fit(SCORES, Y, G)
  with pytest.raises(ValueError, match=r"key: expected a PRNG key such as jax.random.key\(0\)"):
    P.threshold_optimizer().predict(state, SCORES, G, 0)


@pytest.fixture(scope="module")
def mlp():
  model = dj.models.MLP(num_layers=2, width=8)
  x = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
  return model, model.init(jax.random.key(0), x[:1]), x


def test_fit_refuses_labels_outside_the_head_nan_inputs_and_int_keys(mlp):
  model, v, x = mlp
  trainer = train.supervised(model, optax.adam(1e-2))
  state = trainer.init(jax.random.key(0), v)
  run = lambda data, key=jax.random.key(0): train.fit(trainer, state, data, key=key,
                                                      num_steps=2, batch_size=8)
  with pytest.raises(ValueError, match=r"data\['y'\]: expected class labels in 0..1 \(the "
                                       r"model has 2 outputs\), got \[2\]"):
    run({"x": x, "y": np.arange(64) % 3})
  nan = x.copy()
  nan[3, 1] = np.nan
  with pytest.raises(ValueError, match=r"data\['x'\]: expected finite values, got 1 NaN"):
    run({"x": nan, "y": np.arange(64) % 2})
  with pytest.raises(ValueError, match="key: expected a PRNG key"):
    run({"x": x, "y": np.arange(64) % 2}, key=0)
  assert int(run({"x": x, "y": np.arange(64) % 2}).step) == 2


def test_training_that_diverges_is_an_error_not_a_result(mlp):
  model, v, x = mlp
  trainer = train.supervised(model, optax.sgd(1e30))
  with pytest.raises(FloatingPointError, match="training diverged"):
    train.fit(trainer, trainer.init(None, v), {"x": x * 1e10, "y": np.arange(64) % 2},
              key=jax.random.key(0), num_steps=20, batch_size=8)


@pytest.fixture(scope="module")
def resnet():
  model = dj.models.ResNet18(num_classes=2, width=4)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 16, 16, 3)), jnp.float32)
  return model, model.init(jax.random.key(0), x), x


@pytest.mark.parametrize("explainer", ["lrp", "ig", "ig_groups"])
def test_explainers_refuse_foreign_targets_nan_pixels_and_wrong_shapes(resnet, explainer):
  model, v, x = resnet
  run = {"lrp": lambda xx, t: dj.explain.lrp(model, v, xx, t),
         "ig": lambda xx, t: dj.explain.integrated_gradients(lambda z: model.apply(v, z), xx, t,
                                                             steps=2),
         "ig_groups": lambda xx, t: dj.explain.integrated_gradients_in_groups(
             model.apply, v, xx, t, steps=2)}[explainer]
  with pytest.raises(ValueError, match=r"targets: expected class indices in 0..1 \(the model "
                                       r"has 2 outputs\), got \[2\]"):
    run(x, jnp.array([0, 2]))
  with pytest.raises(ValueError, match=r"x: expected finite values, got 1 NaN"):
    run(x.at[0, 3, 3, 0].set(jnp.nan), jnp.array([0, 1]))
  with pytest.raises(ValueError, match=r"x: the model cannot take a batch of shape \(2, 16, 16\)"):
    run(x[..., 0], jnp.array([0, 1]))
  assert run(x, jnp.array([0, 1])).shape == x.shape


def test_run_outputs_probe_first_stage_and_publish_with_normal_permissions(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  with pytest.raises(ValueError, match="workdir: cannot create or write the run directory"):
    with report.run_outputs(str(blocker / "run")):
      raise AssertionError("the body must not run")
  run = tmp_path / "run"
  with pytest.raises(RuntimeError):
    with report.run_outputs(str(run)) as stage:
      report.atomic_write(os.path.join(stage, "saliency.png"), b"png")
      raise RuntimeError("killed in the last phase")
  assert sorted(os.listdir(run)) == []                    # nothing half-written is visible
  with report.run_outputs(str(run)) as stage:
    report.atomic_write(os.path.join(stage, "saliency.png"), b"png")
    report.atomic_write(os.path.join(stage, "results.json"), "{}")
  assert sorted(os.listdir(run)) == ["results.json", "saliency.png"]
  mask = os.umask(0o022)
  os.umask(mask)
  assert stat.S_IMODE(os.stat(run / "results.json").st_mode) == 0o666 & ~mask
  with pytest.raises(FileExistsError):
    with report.run_outputs(str(run)):
      pass
  with report.run_outputs(str(run), overwrite=True) as stage:   # an earlier run's extra file goes
    report.atomic_write(os.path.join(stage, "results.json"), "{}")
  assert sorted(os.listdir(run)) == ["results.json"]


def test_checked_turns_the_value_checks_into_errors_inside_jit():
  y, p, g = np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1.0]), np.array([0, 0, 1, 2])
  gap = lambda y, p, g: dj.metrics.equalized_odds_difference(y, p, g, num_groups=2)
  assert float(jax.jit(gap)(y, p, g)) == 1.0             # traced: group 2 is not counted
  with pytest.raises(ValueError, match=r"groups: expected codes in 0..1"):
    dj.checked(gap)(y, p, g)
  ok = np.array([0, 0, 1, 1])
  with pytest.raises(ValueError, match=r"y_pred: expected predictions in \[0, 1\]"):
    dj.checked(gap)(y, np.array([np.nan, 1, 1, 1]), ok)
  with pytest.raises(ValueError, match=r"y_true: expected binary labels"):
    dj.checked(gap)(np.array([0, 2, 0, 1]), p, ok)
  np.testing.assert_array_equal(
      dj.checked(jax.vmap(gap, in_axes=(None, 0, None)))(y, np.stack([p, p]), ok), [1.0, 1.0])
  roc = P.reject_option(num_groups=2)
  with pytest.raises(ValueError, match="scores: expected finite scores"):
    dj.checked(roc.fit)(np.array([np.nan, .9, .4, .7], np.float32), y, ok)
  to = P.threshold_optimizer(num_groups=2)
  state = to.fit(SCORES, Y, G)
  with pytest.raises(ValueError, match="groups: expected group codes the rule knows"):
    dj.checked(lambda s, g: to.probability(state, s, g))(SCORES[:4], np.array([0, 1, 2, 0]))
