"""The bottleneck family as post-hoc recipes (IRENE, the Voronoi method, LfF, JTT): what each
reads from the debias split, stacked equals single, and bad columns refused."""

import jax
import numpy as np
import optax
import pytest

from debiasjax import methods, models, train
from debiasjax.data.dataset import Split
from debiasjax.methods.finetuning import FineTuning, tune, tune_stacked


def _trained(seed=0, n=200):
  """A small MLP trained on a table whose label follows a protected column 90 % of the time."""
  rng = np.random.default_rng(seed)
  group = rng.integers(0, 2, n).astype(np.int32)
  y = np.where(rng.random(n) < 0.9, group, 1 - group).astype(np.int32)
  x = np.concatenate([group[:, None] + 0.1 * rng.normal(size=(n, 1)),
                      y[:, None] + 1.0 * rng.normal(size=(n, 3))], 1).astype(np.float32)
  model = models.MLP(num_layers=2, width=8, dropout=0.0)
  trainer = train.supervised(model, optax.adam(1e-2))
  key = jax.random.key(seed)
  state = train.fit(trainer, trainer.init(key, model.init(key, x[:1])), {"x": x, "y": y},
                    key=key, num_steps=40, batch_size=50)
  return model, train.variables_of(state), Split(x, y, group)


UNSUPERVISED = {"voronoi": lambda: methods.voronoi_debiasing(num_steps=6, batch_size=50),
                "lff": lambda: methods.learning_from_failure(num_steps=6, batch_size=50),
                "jtt": lambda: methods.just_train_twice(num_steps=6, batch_size=50)}


@pytest.mark.parametrize("name", list(UNSUPERVISED))
def test_unsupervised_recipes_never_read_the_protected_attribute(name):
  """The same result with the group labels scrambled; and a change of the weights."""
  model, variables, split = _trained()
  method = UNSUPERVISED[name]()
  key = jax.random.key(1)
  a = tune(method, model, variables, split, key=key)
  scrambled = split.replace(group=np.random.default_rng(5).permutation(split.group))
  b = tune(method, model, variables, scrambled, key=key)
  for u, v, w in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables),
                     jax.tree.leaves(variables)):
    np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
  assert any(not np.allclose(u, w) for u, w in zip(jax.tree.leaves(a.variables),
                                                   jax.tree.leaves(variables)))


def test_mined_columns_are_the_models_errors_on_the_debias_split():
  from debiasjax.evaluate import predicted_classes
  from debiasjax.methods.finetuning import Context
  model, variables, split = _trained()
  pred = predicted_classes(model, variables, split.x)
  ctx = Context(model, variables, split, "layer2", methods.Objective(), 2)
  cols = methods.voronoi_debiasing().columns(ctx)
  np.testing.assert_array_equal(cols["private"], pred)
  np.testing.assert_array_equal(cols["mi_mask"], (pred != split.y).astype(np.float32))
  rho = [np.mean(pred[split.y == t] == t) for t in (0, 1)]
  wrong = pred != split.y
  np.testing.assert_allclose(cols["weight"], np.where(
      wrong, 1 / (1 - np.take(rho, split.y)), 1 / np.take(rho, split.y)), rtol=1e-6)
  jtt = methods.just_train_twice(lambda_up=7.0).columns(ctx)
  np.testing.assert_array_equal(jtt["weight"], np.where(wrong, 7.0, 1.0))
  np.testing.assert_array_equal(methods.information_removal().columns(ctx)["private"],
                                split.group)


def test_information_removal_reads_the_group_and_stacked_recipes_equal_single_ones():
  """IRENE's result depends on the group labels; the Voronoi recipe over two stacked models,
  each mining its own columns, equals each tuned alone."""
  model, variables, split = _trained()
  key = jax.random.key(1)
  irene = methods.information_removal(num_steps=6, batch_size=50, gamma=5.0)
  a = tune(irene, model, variables, split, key=key)
  b = tune(irene, model, variables, split.replace(group=1 - split.group[::-1]), key=key)
  assert any(not np.allclose(u, v) for u, v in zip(jax.tree.leaves(a.variables),
                                                   jax.tree.leaves(b.variables)))
  other = _trained(seed=3)[1]
  stacked_vars = jax.tree.map(lambda u, v: np.stack([u, v]), variables, other)
  keys = jax.random.split(key, 2)
  method = methods.voronoi_debiasing(num_steps=4, batch_size=50)
  stacked = tune_stacked(method, model, stacked_vars, split, keys=keys)
  alone = tune(method, model, variables, split, key=keys[0])   # data order seed 0, as model 0's
  for u, w in zip(jax.tree.leaves(alone.variables), jax.tree.leaves(stacked.variables)):
    np.testing.assert_allclose(np.asarray(w[0]), np.asarray(u), rtol=1e-5, atol=1e-6)


def test_columns_must_be_new_names_with_a_row_per_example():
  model, variables, split = _trained()
  base = methods.just_train_twice(num_steps=1, batch_size=50)
  for bad in ({"weight": np.ones(3)}, {"y": split.y}):
    method = FineTuning(base.trainer, 1, 50, columns=lambda ctx, bad=bad: bad)
    with pytest.raises(ValueError, match="columns: expected new names with 200 rows each"):
      tune(method, model, variables, split, key=jax.random.key(0))


def test_an_eraser_on_the_mined_concept_fits_the_models_predictions_not_the_group():
  from debiasjax.evaluate import predicted_classes
  from debiasjax.methods.clarc import fit_edit
  model, variables, split = _trained()
  mined = methods.at_layer(None, methods.leace(), concept="mined")
  _, state = fit_edit(mined, model, variables, split)
  by_hand = split.replace(group=predicted_classes(model, variables, split.x))
  _, expected = fit_edit(methods.at_layer(None, methods.leace()), model, variables, by_hand)
  _, scrambled = fit_edit(mined, model, variables,
                          split.replace(group=np.random.default_rng(2).permutation(split.group)))
  for a, b, c in zip(jax.tree.leaves(state), jax.tree.leaves(expected),
                     jax.tree.leaves(scrambled)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
  with pytest.raises(ValueError, match="concept"):
    methods.at_layer(None, methods.leace(), concept="colour")
