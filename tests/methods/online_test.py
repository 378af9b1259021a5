"""Voronoi-cell bias mining: centroids, boundary distances, e*, pseudo labels and weights,
checked on hand-built geometry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax.methods import online
from tests.stacking import assert_stacked_equals_single


def test_centroids_use_only_correctly_classified_samples():
  z = jnp.asarray([[0., 0.], [2., 0.], [10., 10.], [0., 4.], [0., 6.]])
  y = jnp.asarray([0, 0, 0, 1, 1])
  pred = jnp.asarray([0, 0, 1, 1, 1])
  centroids, counts = online.class_centroids(z, y, pred, 3)
  np.testing.assert_allclose(centroids, [[1, 0], [0, 5], [0, 0]])
  np.testing.assert_array_equal(counts, [2, 2, 0])


def test_distance_to_the_bisector_by_hand():
  """Centroids (0, 0) and (4, 0): the bisector is x = 2; a class-0 sample at (3, 1) predicted
  as class 1 lies 1 beyond it; normalised by K / sum |c_k| = 2 / 4."""
  centroids = jnp.asarray([[0., 0.], [4., 0.]])
  z = jnp.asarray([[3., 1.], [0.5, 0.], [3.5, 7.]])
  y, pred = jnp.asarray([0, 0, 1]), jnp.asarray([1, 0, 1])
  rel = online.boundary_distances(z, y, pred, centroids)
  np.testing.assert_allclose(rel, [0.5, 0.0, 0.0], atol=1e-6)


def test_epoch_score_and_peak():
  z = jnp.asarray([[0., 0.], [4., 0.], [3., 1.], [3.5, -2.]])
  y, pred = jnp.asarray([0, 1, 0, 0]), jnp.asarray([0, 1, 1, 1])
  # misclassified at x = 3 and 3.5: distances 1 and 1.5 beyond x = 2, scaled by 2 / 4
  assert float(online.epoch_score(z, y, pred, 2)) == pytest.approx((0.5 + 0.75) / 2)
  assert float(online.epoch_score(z, y, y, 2)) == 0.0                        # nothing wrong
  assert int(online.peak_epoch(jnp.asarray([9., 1., 3., 2.]))) == 2          # epoch 0 skipped
  assert int(online.peak_epoch(jnp.asarray([9., 1., 3., 2.]), skip=0)) == 0


def test_mined_weights_by_hand():
  y = jnp.asarray([0, 0, 0, 0, 1, 1])
  pred = jnp.asarray([0, 0, 0, 1, 1, 0])            # class 0: 1 of 4 misaligned; class 1: 1 of 2
  m = online.mine(y, pred, 2)
  np.testing.assert_allclose(m.rho, [0.75, 0.5])
  np.testing.assert_allclose(m.weight, [4 / 3, 4 / 3, 4 / 3, 4, 2, 2])
  np.testing.assert_array_equal(m.bias, pred)
  np.testing.assert_array_equal(m.misaligned, [0, 0, 0, 1, 0, 1])
  # A class without misaligned samples (rho = 1): the reference leaves every weight at 1.
  none_wrong = online.mine(y, jnp.asarray([0, 0, 0, 0, 1, 0]), 2)
  np.testing.assert_allclose(none_wrong.weight, np.ones(6))


def test_precision_recall_and_vmap_over_seeds():
  flagged, truth = jnp.asarray([1, 1, 0, 0, 1]), jnp.asarray([1, 0, 0, 1, 1])
  p, r = online.precision_recall(flagged, truth)
  assert float(p) == pytest.approx(2 / 3) and float(r) == pytest.approx(2 / 3)
  zs = jax.random.normal(jax.random.key(0), (3, 40, 4))
  y = jnp.arange(40) % 4
  preds = jax.random.randint(jax.random.key(1), (3, 40), 0, 4)
  stacked = jax.vmap(lambda z, p: online.epoch_score(z, y, p, 4))(zs, preds)
  np.testing.assert_allclose(stacked, [float(online.epoch_score(zs[i], y, preds[i], 4))
                                       for i in range(3)], rtol=1e-6)


def test_mining_inside_training_finds_the_bias_conflicting_digits():
  """A vanilla MLP on biased digits (rho = 0.99: 20 of 2000 images conflict) mines, with no bias
  label, the conflicting images and their colours. Floor 0.9 for precision and recall: at
  rho = 0.99 the colour explains 99 % of the labels and is learned first, so at e* the network
  misclassifies the conflicting images and little else; 0.9 leaves room for two images of the
  twenty to be learned from their shape early or lost otherwise (the run gives 1.0 and 1.0)."""
  import optax
  from debiasjax import models, train
  from debiasjax.data.digits import biased_digits, hide_bias
  bench = biased_digits(rho=0.99, n_train=2000, n_debias=20, n_test=20, seed=1)
  given = hide_bias(bench.train)                       # what the method may read
  model = models.MLP(num_layers=2, width=32, dropout=0.0, num_classes=10)
  key = jax.random.key(0)
  variables = model.init(key, given.x[:1])
  spe, epochs = 20, 4
  trainer = online.mining_trainer(model, "layer2", jax.ShapeDtypeStruct((1, 32), jnp.float32),
                                  optax.adam(1e-3), num_classes=10, num_examples=2000,
                                  steps_per_epoch=spe, num_epochs=epochs)
  state = train.fit(trainer, trainer.init(key, variables),
                    {"x": given.x, "y": given.y, "index": np.arange(2000)}, key=key,
                    num_steps=spe * epochs, batch_size=100, steps_per_call=spe)
  m, e_star, scores = online.mined(state, given.y, 10, spe)
  truth = bench.train.y != bench.train.group
  precision, recall = online.precision_recall(m.misaligned, jnp.asarray(truth))
  assert float(precision) >= 0.9 and float(recall) >= 0.9, (precision, recall)
  flagged = np.asarray(m.misaligned)
  assert (np.asarray(m.bias)[flagged] == bench.train.group[flagged]).mean() >= 0.9
  assert 1 <= int(e_star) < epochs and float(scores[int(e_star)]) == float(np.max(scores))
  assert np.all(np.asarray(m.weight)[flagged] > 10)    # 1 / (1 - rho_t), rho_t about 0.99


def test_mining_trainer_refuses_rows_without_their_index():
  import optax
  from debiasjax import models, train
  model = models.MLP(num_layers=1, width=4, dropout=0.0, num_classes=3)
  trainer = online.mining_trainer(model, "layer1", jax.ShapeDtypeStruct((1, 4), jnp.float32),
                                  optax.sgd(0.1), num_classes=3, num_examples=12,
                                  steps_per_epoch=3, num_epochs=1)
  key = jax.random.key(0)
  state = trainer.init(key, model.init(key, jnp.zeros((1, 2))))
  data = {"x": np.zeros((12, 2), np.float32), "y": np.arange(12) % 3}
  with pytest.raises(ValueError, match=r"data\['index'\]: expected every row's position"):
    train.fit(trainer, state, data, key=key, num_steps=1, batch_size=4)


def test_mining_over_stacked_seeds_equals_single_runs():
  import optax
  from debiasjax import models
  model = models.MLP(num_layers=1, width=8, dropout=0.0, num_classes=3)
  trainer = online.mining_trainer(model, "layer1", jax.ShapeDtypeStruct((1, 8), jnp.float32),
                                  optax.adam(1e-2), num_classes=3, num_examples=48,
                                  steps_per_epoch=4, num_epochs=3)
  rng = np.random.default_rng(0)
  data = {"x": rng.normal(size=(48, 5)).astype(np.float32), "y": np.arange(48) % 3,
          "index": np.arange(48)}
  assert_stacked_equals_single(trainer, model, data, jax.random.split(jax.random.key(2), 2),
                               num_steps=12, batch_size=12)


def test_post_hoc_mining_from_the_checkpoints_of_a_vanilla_run(tmp_path):
  """The reference's eval-mode procedure on a finished run's per-epoch checkpoints flags the
  conflicting digits as the in-loop mining does (same floor)."""
  import optax
  from debiasjax import models, train
  from debiasjax.checkpoint import Checkpoints
  from debiasjax.data.digits import biased_digits, hide_bias
  bench = biased_digits(rho=0.99, n_train=2000, n_debias=20, n_test=20, seed=1)
  given = hide_bias(bench.train)
  model = models.MLP(num_layers=2, width=32, dropout=0.0, num_classes=10)
  trainer = train.supervised(model, optax.adam(1e-3))
  key = jax.random.key(0)
  state = trainer.init(key, model.init(key, given.x[:1]))
  checkpoints = Checkpoints(str(tmp_path / "run"), max_to_keep=None)
  train.fit(trainer, state, {"x": given.x, "y": given.y}, key=key, num_steps=80, batch_size=100,
            steps_per_call=20, checkpoints=checkpoints, save_every=20)
  assert checkpoints.all_steps() == [20, 40, 60, 80]
  m, step, scores = online.mined_from_checkpoints(model, "layer2", checkpoints, state, given.x,
                                                  given.y, num_classes=10)
  truth = bench.train.y != bench.train.group
  precision, recall = online.precision_recall(m.misaligned, jnp.asarray(truth))
  assert float(precision) >= 0.9 and float(recall) >= 0.9, (precision, recall, scores)
  assert step in (40, 60, 80) and scores[step] == max(scores[s] for s in (40, 60, 80))
  with pytest.raises(ValueError, match="checkpoints: expected more than skip=4"):
    online.mined_from_checkpoints(model, "layer2", checkpoints, state, given.x, given.y,
                                  num_classes=10, skip=4)


def test_two_runs_beat_vanilla_on_the_unbiased_digits_without_bias_labels():
  """Mining then reweighting with IRENE's head on b*: the unbiased-test accuracy of an MLP on
  rho = 0.99 digits rises above the vanilla run's in each of two seeds stacked in one program
  (measured: 0.12 -> 0.16-0.19; the floor, +0.03, is half the smallest gain); without
  BatchNorm, seed 0 of the stack equals the single run from its key (with it, the Dense biases
  before BatchNorm get gradients of pure rounding noise, which Adam scales up to steps of ~lr,
  so stacked and single runs part in those biases)."""
  import optax
  from debiasjax import models
  from debiasjax.data.digits import biased_digits, hide_bias
  bench = biased_digits(rho=0.99, n_train=2000, n_debias=20, n_test=500, seed=0)
  given = hide_bias(bench.train)
  model = models.MLP(num_layers=2, width=128, dropout=0.0, num_classes=10)
  keys = jax.random.split(jax.random.key(0), 2)
  run = dict(num_classes=10, num_epochs=8, batch_size=100, tx=optax.adam(1e-3))
  vanilla, debiased, found, _ = online.two_runs(model, "layer2", given.x, given.y, key=keys,
                                                **run)
  accuracy = lambda v: (np.argmax(np.asarray(jax.vmap(model.apply, (0, None))(
      v, bench.test.x)), -1) == bench.test.y).mean(-1)
  assert np.all(accuracy(debiased) > accuracy(vanilla) + 0.03), (accuracy(vanilla),
                                                                  accuracy(debiased))
  assert np.asarray(found.misaligned).sum(-1).tolist() == [20, 20]
  plain = models.MLP(num_layers=2, width=32, dropout=0.0, batch_norm=False, num_classes=10)
  short = {**run, "num_epochs": 3}
  x, y = given.x[:600], given.y[:600]
  stacked = online.two_runs(plain, "layer2", x, y, key=keys, **short)
  single = online.two_runs(plain, "layer2", x, y, key=keys[0], **short)
  for a, b in zip(jax.tree.leaves(single[:2]), jax.tree.leaves(stacked[:2])):
    np.testing.assert_allclose(np.asarray(b[0]), np.asarray(a), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(single[2].bias), np.asarray(stacked[2].bias[0]))
