"""A process to kill: ``python -m tests.kill_worker train DIR`` trains the test MLP with a
checkpoint every 5 steps and prints every step; ``python -m tests.kill_worker search DIR`` runs
a layer-wise weight search on it, saving (and printing) every generation (the kill-and-resume
tests SIGKILL them)."""

import sys

import jax
import numpy as np
import optax

jax.config.update("jax_disable_most_optimizations", True)   # the suite's numerics

STEPS = 60


def setup():
  """The model, trainer, initial state and data every run of the test uses."""
  from debiasjax import models, train
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 6)).astype(np.float32)
  y = (x[:, 0] + 0.5 * rng.normal(size=256) > 0).astype(np.int32)
  model = models.MLP(num_layers=2, width=16)
  trainer = train.supervised(model, optax.adam(1e-2))
  state = trainer.init(jax.random.key(0), model.init(jax.random.key(0), x[:1]))
  return trainer, state, {"x": x, "y": y}


def fit(checkpoints=None, log=None):
  from debiasjax import train
  trainer, state, data = setup()
  return train.fit(trainer, state, data, key=jax.random.key(1), num_steps=STEPS, batch_size=32,
                   steps_per_call=1, checkpoints=checkpoints, save_every=5, log=log,
                   log_every=1)


GENERATIONS = 6        # per layer; two layers


def weight_search(checkpoints=None):
  """Layer-wise optimisation of the trained test MLP (groups from a noisy feature)."""
  from debiasjax import methods, models, train
  from debiasjax.evaluate import positive_probability
  _, _, data = setup()
  variables = train.variables_of(fit())
  rng = np.random.default_rng(1)
  group = (data["x"][:, 1] + 0.5 * rng.normal(size=len(data["y"])) > 0).astype(np.int32)
  model = models.MLP(num_layers=2, width=16)
  lw = methods.layerwise_optimisation(population=16, generations=GENERATIONS, num_thresholds=101)
  return lw.search(lambda v, x: positive_probability(model.apply(v, x)), variables,
                   {**data, "group": group}, jax.random.key(2), checkpoints=checkpoints)


class _Announced:
  """Checkpoints that print each step once it is saved."""

  def __init__(self, directory):
    from debiasjax.checkpoint import Checkpoints
    self.inner = Checkpoints(directory)

  def __getattr__(self, name):
    return getattr(self.inner, name)

  def save(self, step, tree, **kwargs):
    self.inner.save(step, tree, **kwargs)
    print(f"saved {step}", flush=True)


if __name__ == "__main__":
  from debiasjax.checkpoint import Checkpoints
  if sys.argv[1] == "search":
    weight_search(_Announced(sys.argv[2]))
  else:
    fit(Checkpoints(sys.argv[2]), log=lambda step, m: print(f"step {step}", flush=True))
