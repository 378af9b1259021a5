"""IRENE's normalised mutual information and trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from debiasjax import models, train
from debiasjax.methods import irene
from tests.stacking import assert_stacked_equals_single


def _mi_by_hand(q, labels, k):
  joint = np.zeros((k, q.shape[1]))
  for row, label in zip(q, labels):
    joint[label] += row / len(labels)
  joint = np.maximum(joint, 1e-15)
  outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
  return float((joint * np.log(joint / outer)).sum() / np.log(k))


def test_mutual_information_on_hand_built_joints():
  labels = jnp.asarray(np.repeat(np.arange(4), 25))
  same_row = jnp.tile(jnp.asarray([[0.1, 0.2, 0.3, 0.4]]), (100, 1))      # independent of labels
  assert abs(float(irene.mutual_information(same_row, labels, 4))) < 1e-6
  assert float(irene.mutual_information(jax.nn.one_hot(labels, 4), labels, 4)) \
      == pytest.approx(1.0, abs=1e-5)
  permuted = jax.nn.one_hot((labels + 1) % 4, 4)                           # a deterministic map
  assert float(irene.mutual_information(permuted, labels, 4)) == pytest.approx(1.0, abs=1e-5)
  q = jax.nn.softmax(jax.random.normal(jax.random.key(0), (100, 4)) * 2)
  assert float(irene.mutual_information(q, labels, 4)) \
      == pytest.approx(_mi_by_hand(np.asarray(q), np.asarray(labels), 4), abs=1e-5)
  mask = jnp.arange(100) % 3 == 0
  assert float(irene.mutual_information(q, labels, 4, mask)) == pytest.approx(
      _mi_by_hand(np.asarray(q)[::3], np.asarray(labels)[::3], 4), abs=1e-5)
  assert float(irene.mutual_information(q, labels, 4, jnp.zeros(100, bool))) == 0.0
  # Finite gradients everywhere, also with an empty mask (a batch without misaligned samples).
  for mask in (None, jnp.zeros(100, bool), mask):
    grad = jax.grad(lambda q: irene.mutual_information(q, labels, 4, mask))(q)
    assert bool(jnp.isfinite(grad).all())


def _setup(gamma, alpha=0.5):
  model = models.MLP(num_layers=2, width=8, dropout=0.0, num_classes=2)
  features = jax.ShapeDtypeStruct((1, 8), jnp.float32)
  trainer = irene.irene_trainer(model, "layer2", features, num_private=3, alpha=alpha,
                                gamma=gamma, tx=optax.sgd(0.1), head_tx=optax.sgd(0.1))
  rng = np.random.default_rng(0)
  batch = {"x": jnp.asarray(rng.normal(size=(32, 5)), jnp.float32),
           "y": jnp.asarray(rng.integers(0, 2, 32)), "private": jnp.asarray(rng.integers(0, 3, 32))}
  key = jax.random.key(0)
  state = trainer.init(key, model.init(key, batch["x"][:1]))
  return trainer, state, batch, key


def test_the_mi_term_moves_the_backbone_and_never_the_head():
  trainer0, state, batch, key = _setup(gamma=0.0)
  trainer1, _, _, _ = _setup(gamma=1.0)
  without, m0 = trainer0.update(state, batch, key)
  with_mi, m1 = trainer1.update(state, batch, key)
  for a, b in zip(jax.tree.leaves(without.critic_params), jax.tree.leaves(with_mi.critic_params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))             # the head: same step
  moved = [float(jnp.abs(a - b).max()) for a, b in
           zip(jax.tree.leaves(without.params), jax.tree.leaves(with_mi.params))]
  assert max(moved) > 1e-6                                                 # the backbone: not
  assert float(m1["mi"]) > 0 and float(m1["loss"]) > float(m0["loss"])
  # With alpha = 0 only the MI term drives the backbone, and it lowers the MI.
  trainer, state, batch, key = _setup(gamma=1.0, alpha=0.0)
  update = jax.jit(trainer.update)
  before = float(update(state, batch, key)[1]["mi"])
  for step in range(20):
    state, metrics = update(state, batch, jax.random.fold_in(key, step))
  assert float(metrics["mi"]) < before


def test_stacked_seeds_equal_single_runs():
  trainer, state, batch, key = _setup(gamma=0.5)
  data = {k: np.asarray(v) for k, v in batch.items()}
  model = models.MLP(num_layers=2, width=8, dropout=0.0, num_classes=2)
  assert_stacked_equals_single(trainer, model, data, jax.random.split(key, 2), num_steps=4,
                               batch_size=16)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_private=1), "num_private: expected an int >= 2"),
    (dict(num_private=3, gamma=-1.0), "gamma: expected a non-negative number"),
    (dict(num_private=3, alpha=float("nan")), "alpha: expected a non-negative number")])
def test_bad_settings_are_refused(kwargs, message):
  with pytest.raises(ValueError, match=message):
    irene.irene_trainer(models.MLP(), "layer2", jax.ShapeDtypeStruct((1, 8), jnp.float32),
                        **kwargs)


def test_fit_refuses_data_without_a_valid_private_label():
  trainer, state, batch, key = _setup(gamma=0.5)
  data = {k: np.asarray(v) for k, v in batch.items()}
  with pytest.raises(ValueError, match="expected the private label 'private'"):
    train.fit(trainer, state, {"x": data["x"], "y": data["y"]}, key=key, num_steps=1,
              batch_size=8)
  with pytest.raises(ValueError, match=r"data\['private'\]: expected integers in 0..2"):
    train.fit(trainer, state, {**data, "private": data["private"] + 1}, key=key, num_steps=1,
              batch_size=8)
