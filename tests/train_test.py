"""Training: learning, exact resume, vmapped seeds equal single runs, data order, devices."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from debiasjax import models, train
from debiasjax.checkpoint import Checkpoints


def toy_table(n=256, d=6, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32)
  return {"x": x, "y": y}


def mlp_setup(seed=0):
  model = models.MLP(num_layers=2, width=8, dropout=0.2)
  trainer = train.supervised(model, optax.adam(1e-2))
  key = jax.random.key(seed)
  return model, trainer, key, trainer.init(key, model.init(key, jnp.zeros((1, 6))))


def assert_trees_close(a, b, **tol):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tol)


def test_supervised_training_learns():
  model, trainer, key, state = mlp_setup()
  data = toy_table()
  state = train.fit(trainer, state, data, key=key, num_steps=200, batch_size=32, steps_per_call=50)
  logits = model.apply(train.variables_of(state), data["x"])
  assert (np.argmax(logits, -1) == data["y"]).mean() > 0.9
  assert int(state.step) == 200


def test_batch_indices_are_epoch_permutations():
  idx = train.batch_indices(10, 3, seed=7, start=0, stop=9)     # 3 steps per epoch, 1 dropped
  for epoch in range(3):
    block = idx[3 * epoch:3 * epoch + 3].ravel()
    assert len(set(block)) == 9 and set(block) <= set(range(10))
  np.testing.assert_array_equal(idx[4:7], train.batch_indices(10, 3, seed=7, start=4, stop=7))
  assert not np.array_equal(idx, train.batch_indices(10, 3, seed=8, start=0, stop=9))


@pytest.mark.parametrize("steps_per_call", [1, 4])
def test_resumed_run_equals_uninterrupted_run(tmp_path, steps_per_call):
  """Dropout keys, BatchNorm statistics, Adam moments and the data order all resume exactly."""
  _, trainer, key, init = mlp_setup()
  data = toy_table()
  kw = dict(key=key, batch_size=32, steps_per_call=steps_per_call, seed=3)
  full = train.fit(trainer, init, data, num_steps=24, **kw)
  ckpt = Checkpoints(str(tmp_path / "run"))
  train.fit(trainer, init, data, num_steps=10, checkpoints=ckpt, save_every=5, **kw)  # "killed"
  assert ckpt.latest_step() == 10
  resumed = train.fit(trainer, init, data, num_steps=24,
                      checkpoints=Checkpoints(str(tmp_path / "run")), **kw)
  assert int(resumed.step) == 24
  assert_trees_close(resumed, full, rtol=0, atol=0)


def test_resume_with_a_resnet(tmp_path):
  model = models.ResNet(stage_sizes=(1, 1), block_cls=models.BasicBlock, width=4)
  trainer = train.supervised(model, optax.adam(1e-3))
  key = jax.random.key(1)
  rng = np.random.default_rng(0)
  data = {"x": rng.uniform(size=(64, 16, 16, 3)).astype(np.float32), "y": rng.integers(0, 2, 64)}
  init = trainer.init(key, model.init(key, data["x"][:1]))
  full = train.fit(trainer, init, data, key=key, num_steps=6, batch_size=16)
  train.fit(trainer, init, data, key=key, num_steps=3, batch_size=16,
            checkpoints=Checkpoints(str(tmp_path / "r")))
  resumed = train.fit(trainer, init, data, key=key, num_steps=6, batch_size=16,
                      checkpoints=Checkpoints(str(tmp_path / "r")))
  assert_trees_close(resumed, full, rtol=0, atol=0)


def test_vmapped_seeds_equal_training_each_seed_alone():
  model = models.MLP(num_layers=2, width=8, dropout=0.2)
  trainer = train.supervised(model, optax.adam(1e-2))
  data = toy_table()
  seeds = [0, 1, 2, 3]
  keys = jax.random.split(jax.random.key(42), len(seeds))
  init = jax.vmap(lambda k: trainer.init(k, model.init(k, jnp.zeros((1, 6)))))(keys)
  stacked = train.fit(trainer, init, data, key=keys, seed=seeds, num_steps=30, batch_size=32,
                      stacked=True, steps_per_call=10)
  assert stacked.step.shape == (4,)
  for i, s in enumerate(seeds):
    alone = train.fit(trainer, jax.tree.map(lambda a: a[i], init), data, key=keys[i], seed=s,
                      num_steps=30, batch_size=32, steps_per_call=10)
    assert_trees_close(jax.tree.map(lambda a: a[i], stacked), alone, rtol=1e-5, atol=1e-6)
  p0, p1 = (jax.tree.leaves(jax.tree.map(lambda a: a[i], stacked.params))[0] for i in (0, 1))
  assert not np.allclose(p0, p1)


def test_log_every_reports_means():
  _, trainer, key, state = mlp_setup()
  seen = []
  train.fit(trainer, state, toy_table(), key=key, num_steps=25, batch_size=32, log_every=10,
            log=lambda step, m: seen.append((step, float(m["loss"]))))
  assert [s for s, _ in seen] == [10, 20, 25]


@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=1000), "batch_size: expected 1..256"),
    (dict(num_steps=-1), "num_steps: expected a non-negative int"),
    (dict(steps_per_call=0), "steps_per_call: expected a positive int"),
    (dict(save_every=-5), "save_every: expected a positive int"),
])
def test_fit_bad_input(kwargs, message):
  _, trainer, key, state = mlp_setup()
  with pytest.raises(ValueError, match=message):
    train.fit(trainer, state, toy_table(), key=key, **{"num_steps": 2, "batch_size": 8, **kwargs})


def test_stacked_fit_needs_one_seed_per_key():
  model, trainer, _, _ = mlp_setup()
  keys = jax.random.split(jax.random.key(0), 2)
  init = jax.vmap(lambda k: trainer.init(k, model.init(k, jnp.zeros((1, 6)))))(keys)
  with pytest.raises(ValueError, match="seed: expected 2 seeds"):
    train.fit(trainer, init, toy_table(), key=keys, seed=[0], num_steps=1, batch_size=8,
              stacked=True)


def test_fit_compiles_once_and_refits_share_the_step():
  """A second fit (a new initial state, another key) and a trainer built again for the same
  model and optimizer reuse the compiled step; a two-phase trainer compiles one step per
  phase."""
  from tests.compilations import count_compilations
  model, trainer, key, state = mlp_setup()
  data = toy_table()
  kw = dict(num_steps=6, batch_size=32, steps_per_call=3)
  train.fit(trainer, state, data, key=key, **kw)
  with count_compilations() as lowered:
    train.fit(trainer, trainer.init(key, model.init(jax.random.key(5), jnp.zeros((1, 6)))),
              data, key=jax.random.key(7), **kw)
  assert [f for f in lowered if "run" in f] == [], lowered
  tx = optax.sgd(0.1)
  one = train.supervised(model, tx)
  two = train.supervised(model, tx)
  assert one.update is two.update                  # built again: the same update, one program

  updates = []

  def counting(label):
    def update(state, batch, key):
      updates.append(label)
      return trainer.update(state, batch, key)
    return update

  phased = train.Trainer(trainer.init, (counting("a"), counting("b")),
                         phase=lambda step: 0 if step % 5 < 3 else 1)
  with count_compilations() as lowered:
    train.fit(phased, state, data, key=key, num_steps=10, batch_size=32, steps_per_call=1)
  assert sorted(set(updates)) == ["a", "b"] and len(updates) == 2   # each traced once
  assert len([f for f in lowered if "run" in f]) == 2


@pytest.mark.parametrize("stacked", [False, True])
def test_data_fed_from_the_host_trains_as_data_on_the_device(monkeypatch, stacked):
  """Data larger than DEVICE_DATA_BYTES stays on the host and every batch is sent: the same
  batches, the same parameters."""
  model, trainer, key, state = mlp_setup()
  data = toy_table()
  kw = dict(num_steps=5, batch_size=16, steps_per_call=2)
  if stacked:
    keys = jax.random.split(key, 2)
    state = jax.vmap(lambda k: trainer.init(k, model.init(k, jnp.zeros((1, 6)))))(keys)
    kw.update(key=keys, seed=[0, 1], stacked=True)
  else:
    kw.update(key=key)
  on_device = train.fit(trainer, state, data, **kw)
  monkeypatch.setattr(train, "DEVICE_DATA_BYTES", 0)
  fed = train.fit(trainer, state, data, **kw)
  for a, b in zip(jax.tree.leaves(on_device), jax.tree.leaves(fed)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("host_fed", [False, True])
def test_per_model_columns_give_each_stacked_model_its_own(monkeypatch, host_fed):
  """A column with a model axis (each seed's own sample weights): the stacked run equals each
  seed trained alone on its own row, with the data on the device or fed from the host."""
  from tests.stacking import assert_stacked_equals_single
  if host_fed:
    monkeypatch.setattr(train, "DEVICE_DATA_BYTES", 0)
  model, trainer, key, _ = mlp_setup()
  data = toy_table()
  weight = np.random.default_rng(1).uniform(0, 4, size=(3, 256)).astype(np.float32)
  assert_stacked_equals_single(trainer, model, data, jax.random.split(key, 3),
                               per_model={"weight": weight}, num_steps=5, batch_size=16,
                               steps_per_call=2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(stacked=False), "per_model: columns per model need stacked=True"),
    (dict(per_model=("w",)), "per_model: expected keys of data"),
    (dict(weight=np.ones((3, 256), np.float32)), r"per_model: expected columns \[K, N"),
])
def test_per_model_bad_input(kwargs, message):
  model, trainer, key, _ = mlp_setup()
  keys = jax.random.split(key, 2)
  states = jax.vmap(lambda k: trainer.init(k, model.init(k, jnp.zeros((1, 6)))))(keys)
  weight = kwargs.pop("weight", np.ones((2, 256), np.float32))
  kw = {**dict(key=keys, seed=[0, 1], num_steps=1, batch_size=8, stacked=True,
               per_model=("weight",)), **kwargs}
  if not kw["stacked"]:
    states, kw["key"], kw["seed"] = jax.tree.map(lambda a: a[0], states), keys[0], 0
  with pytest.raises(ValueError, match=message):
    train.fit(trainer, states, {**toy_table(), "weight": weight}, **kw)
