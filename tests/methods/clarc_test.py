"""ClArC methods on real (tiny) models: RR-ClArC's double-differentiated penalty against finite
differences, lambda sweeps by vmap, frozen layers, and the edits inside the model."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from debiasjax import models, train
from debiasjax.data.dataset import Split
from debiasjax.methods import clarc, concepts as C
from debiasjax.methods.finetuning import tune
from debiasjax.models.taps import Intervened, tap, top_level_call_order


def _tiny_mlp():
  model = models.MLP(num_layers=2, width=6, batch_norm=False, dropout=0.0)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 4)))
  return model, variables


def test_rr_penalty_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    model, variables = _tiny_mlp()
    variables = jax.tree.map(lambda v: v.astype(jnp.float64), variables)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 4)))
    y = jnp.asarray(rng.integers(0, 2, 8))
    v = rng.normal(size=6)
    cav = C.CAV(jnp.asarray(v / np.linalg.norm(v)), jnp.zeros(6), jnp.ones(6))
    t = tap(model, "layer2")

    def penalty(params):
      return clarc.rr_penalty(t, {"params": params}, x, y, jax.random.key(1), cav,
                              criterion="all_logits_random", pooling="none")[0]

    params = variables["params"]
    grad = jax.grad(penalty)(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    g = jax.flatten_util.ravel_pytree(grad)[0]
    direction = jnp.asarray(rng.normal(size=flat.shape))
    eps = 1e-6
    fd = (penalty(unravel(flat + eps * direction))
          - penalty(unravel(flat - eps * direction))) / (2 * eps)
    assert float(g @ direction) == pytest.approx(float(fd), rel=1e-6)
    assert abs(float(g @ direction)) > 1e-6


def test_rr_penalty_is_the_squared_directional_derivative():
  model, variables = _tiny_mlp()
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  y = jnp.zeros(5, jnp.int32)
  v = jnp.asarray(np.eye(6)[2], jnp.float32)
  cav = C.CAV(v, jnp.zeros(6), jnp.ones(6))
  t = tap(model, "layer2")
  penalty, logits = clarc.rr_penalty(t, variables, x, y, None, cav, criterion="all_logits",
                                     pooling="none")
  # d(sum of logits)/da = the head's kernel summed over classes, the same for every sample.
  kernel = np.asarray(variables["params"]["head"]["kernel"])
  assert float(penalty) == pytest.approx(kernel[2].sum() ** 2, rel=1e-5)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(model.apply(variables, x)), atol=1e-6)


def _split(n=64, seed=0):
  rng = np.random.default_rng(seed)
  g = rng.integers(0, 2, n).astype(np.int32)
  y = np.where(rng.uniform(size=n) < 0.8, g, 1 - g).astype(np.int32)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  x[:, 0] += 2 * g
  x[:, 1] += 2 * y
  return Split(x, y, g, None)


def test_rr_clarc_lambda_sweep_by_vmap_equals_one_run_per_lambda():
  """lam lives in the trainer state: two stacked states (lam 0 and 5) trained in one vmapped
  program equal one run per lambda."""
  model, variables = _tiny_mlp()
  split = _split()
  key = jax.random.key(3)
  cav = C.fit_cav(tap(model, "layer2").activations(variables, jnp.asarray(split.x)), split.group,
                  pooling="none")
  trainer = clarc.rr_clarc_trainer(model, "layer2", cav, optax.adam(1e-2), pooling="none")
  data = {"x": split.x, "y": split.y}
  kwargs = dict(num_steps=5, batch_size=16, order="sampled")
  lams = jnp.asarray([0.0, 5.0])
  init = jax.vmap(lambda lam: trainer.init(key, variables)._replace(lam=lam))(lams)
  swept = train.variables_of(train.fit(trainer, init, data, key=jnp.stack([key, key]),
                                       seed=[0, 0], stacked=True, **kwargs))
  for i, lam in enumerate((0.0, 5.0)):
    single = train.variables_of(train.fit(trainer, trainer.init(key, variables)._replace(
        lam=jnp.float32(lam)), data, key=key, **kwargs))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b),
                                                         atol=1e-5), swept, single)


def test_fine_tuning_trains_only_the_modules_after_the_layer():
  model, variables = _tiny_mlp()
  split = _split()
  assert top_level_call_order(model, variables, split.x) == ["layer1", "layer2", "head"]
  for method in (clarc.a_clarc, clarc.rr_clarc):
    new = tune(method(layer="layer1", num_steps=3, batch_size=16, trainable="after"), model,
               variables, split, key=jax.random.key(0)).variables["params"]
    np.testing.assert_array_equal(np.asarray(new["layer1"]["dense"]["kernel"]),
                                  np.asarray(variables["params"]["layer1"]["dense"]["kernel"]))
    assert not np.allclose(np.asarray(new["layer2"]["dense"]["kernel"]),
                           np.asarray(variables["params"]["layer2"]["dense"]["kernel"]))
  head_only = tune(clarc.a_clarc(layer="layer1", num_steps=3, batch_size=16, trainable="head"),
                   model, variables, split, key=jax.random.key(0)).variables["params"]
  np.testing.assert_array_equal(np.asarray(head_only["layer2"]["dense"]["kernel"]),
                                np.asarray(variables["params"]["layer2"]["dense"]["kernel"]))


def test_p_clarc_result_is_the_model_with_the_edit_inside():
  model, variables = _tiny_mlp()
  split = _split()
  edited_model, state = clarc.fit_edit(clarc.at_layer("layer2", C.p_clarc(), decorrelate=False),
                                       model, variables, split)
  assert isinstance(edited_model, Intervened)
  t = tap(model, "layer2")
  a = t.activations(variables, jnp.asarray(split.x))
  head = variables["params"]["head"]
  edited = C.project_to(state.cav)(a)
  expected = edited @ head["kernel"] + head["bias"][None]
  edited_variables = edited_model.with_edit(variables, state)
  np.testing.assert_allclose(np.asarray(edited_model.apply(edited_variables, jnp.asarray(split.x))),
                             np.asarray(expected), atol=1e-5)


def test_networks_edited_alike_share_one_compiled_program():
  """P-ClArC fitted on two splits, on models built apart: equal networks whose fitted edits
  are inputs, so LRP and integrated gradients lower once for both, and each explains its own
  edit (the same relevance as the network with its edit written in)."""
  from debiasjax import explain
  from tests.compilations import count_compilations
  x = jnp.asarray(_split(n=8, seed=9).x)
  targets = jnp.ones(8, jnp.int32)
  fitted = []
  for seed in (0, 1):
    model, variables = _tiny_mlp()
    edited, state = clarc.fit_edit(clarc.at_layer("layer2", C.p_clarc(), decorrelate=False),
                                   model, variables, _split(seed=seed))
    fitted.append((edited.apply, edited.with_edit(variables, state), model, variables, state))
  assert fitted[0][0].__self__ == fitted[1][0].__self__     # the Intervened networks
  with count_compilations() as lowered:
    maps = [(explain.lrp(apply, v, x, targets),
             explain.integrated_gradients_in_groups(apply, v, x, targets, steps=8))
            for apply, v, *_ in fitted]
  assert lowered.count("jit(_lrp)") == 1 and lowered.count("jit(<lambda>)") == 1, lowered
  for (lrp_map, ig_map), (_, _, model, variables, state) in zip(maps, fitted):
    written_in = lambda v, xs, s=state: tap(model, "layer2").apply(
        v, xs, lambda a: C.p_clarc().apply(s, a))
    np.testing.assert_allclose(lrp_map, explain.lrp(written_in, variables, x, targets),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ig_map, explain.integrated_gradients_in_groups(
        written_in, variables, x, targets, steps=8), rtol=1e-5, atol=1e-6)
  assert not np.allclose(maps[0][0], maps[1][0])


def test_rr_clarc_learns_to_ignore_the_concept():
  """On a table where the protected column predicts the label in training, RR-ClArC's
  fine-tuning lowers the model's reliance on it (its demographic parity gap)."""
  model, variables = _tiny_mlp()
  split = _split(n=512, seed=4)
  trainer = train.supervised(model, optax.adam(1e-2))
  state = trainer.init(jax.random.key(0), variables)
  state = train.fit(trainer, state, {"x": split.x, "y": split.y}, key=jax.random.key(0),
                    num_steps=300, batch_size=64, steps_per_call=100)
  variables = train.variables_of(state)
  test = _split(n=2000, seed=5)
  test = Split(test.x, test.y, test.group, None)
  rng = np.random.default_rng(6)
  test.y[:] = rng.integers(0, 2, 2000)
  test.x[:, 1] = rng.normal(size=2000) + 2 * test.y
  gap = lambda v: abs(float(np.mean(np.asarray(model.apply(v, test.x)).argmax(1)[test.group == 1]) -
                            np.mean(np.asarray(model.apply(v, test.x)).argmax(1)[test.group == 0])))
  before = gap(variables)
  after = gap(tune(clarc.rr_clarc(layer="layer1", num_steps=300, batch_size=64,
                                  learning_rate=1e-2, lam=50.0),
                   model, variables, split, key=jax.random.key(1)).variables)
  assert after < 0.5 * before, (before, after)


def test_bad_arguments_raise_clear_errors():
  model, variables = _tiny_mlp()
  split = _split()
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="criterion"):
    clarc.rr_clarc(criterion="max")
  with pytest.raises(ValueError, match="lam"):
    clarc.rr_clarc(lam=-1.0)
  with pytest.raises(ValueError, match="trainable"):
    clarc.a_clarc(trainable="some")
  with pytest.raises(ValueError, match="trainable"):
    tune(clarc.a_clarc(layer="head", trainable="after"), model, variables, split, key=key)
  with pytest.raises(ValueError, match="batch_size"):
    clarc.a_clarc(batch_size=0)
  with pytest.raises(ValueError, match="direction"):
    C.mass_mean(direction="svm")
