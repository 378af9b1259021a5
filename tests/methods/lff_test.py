"""LfF's trainer and JTT's weights."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from debiasjax import models, train
from debiasjax.methods import lff
from tests.stacking import assert_stacked_equals_single


def test_gce_gradient_is_q_times_the_generalized_cross_entropy_gradient():
  logits = jax.random.normal(jax.random.key(0), (6, 4))
  y = jnp.asarray([0, 1, 2, 3, 0, 1])
  q = 0.7
  ours = jax.grad(lambda z: lff.generalized_cross_entropy(z, y, q).sum())(logits)

  def gce(z):
    p = jnp.take_along_axis(jax.nn.softmax(z), y[:, None], -1)[:, 0]
    return ((1 - p ** q) / q).sum()
  np.testing.assert_allclose(ours, q * jax.grad(gce)(logits), rtol=1e-5, atol=1e-7)


def _setup(n=40, k=4):
  model = models.MLP(num_layers=1, width=8, dropout=0.0, num_classes=k)
  rng = np.random.default_rng(0)
  data = {"x": rng.normal(size=(n, 5)).astype(np.float32), "y": np.arange(n) % k,
          "index": np.arange(n)}
  trainer = lff.lff_trainer(model, optax.adam(1e-2), labels=data["y"], num_classes=k)
  return model, trainer, data


def test_twin_networks_weigh_every_sample_one_half_and_averages_start_at_the_loss():
  model, trainer, data = _setup()
  key = jax.random.key(0)
  state = trainer.init(key, model.init(key, data["x"][:1]))
  batch = {k: jnp.asarray(v[:10]) for k, v in data.items()}
  new, metrics = trainer.update(state, batch, key)
  assert float(metrics["weight"]) == pytest.approx(0.5, abs=1e-6)    # same network, same loss
  logits, _ = model.apply(model.init(key, data["x"][:1]), batch["x"], train=True,
                          mutable=["batch_stats"])                   # training mode, as a step
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
  np.testing.assert_allclose(new.ema_bias[:10], ce, rtol=1e-5)       # first visit: the loss
  assert not bool(new.seen[10:].any()) and bool(new.seen[:10].all())
  again, _ = trainer.update(new, batch, key)                          # later visits: the EMA
  assert not np.allclose(np.asarray(again.ema_bias[:10]), np.asarray(new.ema_bias[:10]))
  # The biased network learns the GCE, the debiased one the weighted CE: they part.
  assert not np.allclose(np.asarray(again.params["head"]["kernel"]),
                         np.asarray(again.bias_params["head"]["kernel"]))


def test_stacked_seeds_equal_single_runs():
  model, trainer, data = _setup()
  assert_stacked_equals_single(trainer, model, data, jax.random.split(jax.random.key(1), 2),
                               num_steps=6, batch_size=10)


def test_refusals_and_jtt_weights():
  model, trainer, data = _setup()
  key = jax.random.key(0)
  state = trainer.init(key, model.init(key, data["x"][:1]))
  with pytest.raises(ValueError, match=r"data\['index'\]: expected every row's position"):
    train.fit(trainer, state, {**data, "index": data["index"][::-1].copy()}, key=key,
              num_steps=1, batch_size=8)
  with pytest.raises(ValueError, match="ema: expected a decay in"):
    lff.lff_trainer(model, optax.sgd(0.1), labels=data["y"], num_classes=4, ema=1.0)
  np.testing.assert_array_equal(lff.jtt_weights([0, 1, 1], [0, 0, 1], 50), [1, 50, 1])
  with pytest.raises(ValueError, match="lambda_up"):
    lff.jtt_weights([0], [0], 0)


def test_jtt_up_weights_the_first_runs_errors_and_stacked_seeds_equal_single_runs():
  from debiasjax import evaluate
  model, _, data = _setup()
  data["y"] = (data["x"][:, 0] > 0).astype(np.int32) * 3      # classes 0 and 3 of 4
  keys = jax.random.split(jax.random.key(1), 2)
  run = dict(first_epochs=1, num_epochs=2, lambda_up=5.0, batch_size=10, tx=optax.adam(1e-2))
  first, final, errors = lff.jtt(model, data["x"], data["y"], key=keys, **run)
  assert errors.shape == (2, 40)
  np.testing.assert_array_equal(
      errors, evaluate.predicted_classes(model, first, data["x"], stacked=True) != data["y"])
  # a single run's data order is seed 0, as stacked seed 0's
  alone = lff.jtt(model, data["x"], data["y"], key=keys[0], **run)
  np.testing.assert_array_equal(alone[2], errors[0])
  for a, b in zip(jax.tree.leaves(alone[1]), jax.tree.leaves(final)):
    np.testing.assert_allclose(np.asarray(b[0]), np.asarray(a), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="first_epochs"):
    lff.jtt(model, data["x"], data["y"], key=keys, **{**run, "first_epochs": 0})
