"""A small trained census MLP shared by the weight-search and fine-tuning tests."""

import jax
import optax
import pytest

from debiasjax import data, models, train


@pytest.fixture(scope="session")
def census_model():
  bench = data.table_benchmark(data.census(4000, seed=0), seed=0)
  model = models.MLP(num_layers=3, width=16)
  key = jax.random.key(0)
  trainer = train.supervised(model, optax.adam(3e-3))
  state = trainer.init(key, model.init(key, bench.train.x[:1]))
  state = train.fit(trainer, state, {"x": bench.train.x, "y": bench.train.y}, key=key,
                    num_steps=600, batch_size=64, steps_per_call=200)
  return bench, model, train.variables_of(state)


