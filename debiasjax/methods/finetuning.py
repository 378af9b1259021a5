"""Training-time debiasing as :func:`debiasjax.debias` runs it: a :class:`FineTuning` recipe.

Every training-time method is a :class:`~debiasjax.train.Trainer` (``init``, ``update``), run
by :func:`debiasjax.train.fit` like any training. What a trainer needs beyond its
hyper-parameters depends on the model and the debias split (a tap at the right layer, a concept
fitted on the split's activations, a critic sized for the model's features), so the methods
that :func:`~debiasjax.debias` takes are recipes: ``trainer(context) -> Trainer`` plus how long
to train and how to pick the decision threshold. :func:`tune` runs one:

1. builds the trainer for the model (``Context``: model, variables, debias split, layer,
   objective, number of groups) and the data columns it reads beyond ``x``, ``y``, ``group``
   (``columns``: e.g. pseudo bias labels mined from the model's own predictions);
2. trains it on the debias split with :func:`~debiasjax.train.fit`;
3. picks the decision threshold on the debias split with Savani's objective
   (:func:`final_threshold`; ``objective=None`` keeps 0.5), a separate step.

Example:
  method = dj.methods.zhang_adversarial(num_steps=500)
  result = tune(method, model, variables, bench.debias, key=jax.random.key(0))
  result.variables, result.threshold
  trainer = method.trainer(Context(model, variables, bench.debias, "pool", Objective(), 2))
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks
from debiasjax.evaluate import score_function, scores_and_activations
from debiasjax.methods.objective import Objective, ThresholdChoice, WeightResult, \
    check_objective, threshold_grid, threshold_search
from debiasjax.models.taps import penultimate_layer, top_level_call_order
from debiasjax.train import Trainer, fit, variables_of

TRAINABLE = ("after", "head", "all")


class Context(NamedTuple):
  """What a recipe builds its trainer from: the trained model, its variables, the debias split,
  the layer the method acts on, the objective of the threshold (with the data's privileged
  group) and the number of groups."""
  model: nn.Module
  variables: Any
  data: Any
  layer: str
  objective: Objective
  num_groups: int


class FineTuning(NamedTuple):
  """A training-time method for :func:`debiasjax.debias` (see the module doc).

  Attributes:
    trainer: ``trainer(context) -> Trainer``.
    num_steps, batch_size: the training run on the debias split.
    objective: Savani's objective of the final threshold (None: threshold 0.5).
    layer: the module path the method acts on (None: the model's penultimate layer,
      :func:`~debiasjax.models.penultimate_layer`).
    order: the minibatch order (``"sampled"``: every step draws distinct rows at random, from
      ``(seed, step)``; ``tune`` uses seed 0, ``tune_stacked`` model k's seed k).
    trace: turns the per-step metrics of the run into the result's ``trace``.
    columns: ``columns(context) -> {name: [N, ...]}``, data columns beside ``x``, ``y`` and
      ``group`` that the trainer reads (pseudo bias labels mined from the model, sample
      weights, row indices).
  """
  trainer: Callable[[Context], Trainer]
  num_steps: int
  batch_size: int
  objective: Optional[Objective] = None
  layer: Optional[str] = None
  order: str = "sampled"
  trace: Optional[Callable[[dict], dict]] = None
  columns: Optional[Callable[[Context], dict]] = None


def check_training(num_steps, batch_size, learning_rate=None) -> None:
  """The usual run settings: positive ints and a positive learning rate."""
  _checks.check_int("num_steps", num_steps, 1)
  _checks.check_int("batch_size", batch_size, 1)
  if learning_rate is not None:
    _checks.check_positive("learning_rate", learning_rate)


def split_arrays(data) -> tuple:
  """``(x, y, group)`` of a Split or a dict."""
  if isinstance(data, dict):
    return data["x"], data["y"], data["group"]
  return data.x, data.y, data.group


def one_row_shape(ctx: Context, layer: Optional[str] = None) -> jax.ShapeDtypeStruct:
  """The shape of the model's output on one row of the split (logits), or of ``layer``'s."""
  from debiasjax.models.taps import tap
  x = split_arrays(ctx.data)[0][:1]
  if layer is None:
    return jax.eval_shape(ctx.model.apply, ctx.variables, x)
  return jax.eval_shape(tap(ctx.model, layer).activations, ctx.variables, x)


def num_groups_of(groups, num_groups: Optional[int] = None) -> int:
  return int(num_groups) if num_groups is not None else int(np.asarray(groups).max()) + 1


def trainable_modules(model: nn.Module, variables, x, layer: str, trainable: str) -> tuple:
  """The names of the top-level modules to train: those called after ``layer``'s (``after``),
  only the last one (``head``), or every one (``all``)."""
  _checks.check_option("trainable", trainable, TRAINABLE)
  order = top_level_call_order(model, variables, x[:1])
  top = layer.split("/")[0]
  if trainable == "all":
    chosen = set(order)
  elif trainable == "head":
    chosen = {order[-1]}
  else:
    chosen = set(order[order.index(top) + 1:]) if top in order else set()
  if not chosen & set(variables["params"]):
    raise ValueError(f"trainable: no parameters to train after layer {layer!r}; use "
                     "trainable='all' or an earlier layer")
  return tuple(sorted(chosen))


@functools.lru_cache(maxsize=64)
def adam_on(learning_rate: float, modules: tuple) -> optax.GradientTransformation:
  """Adam on the top-level ``modules`` of the parameters, the others frozen; one object per
  setting, so trainers built with it again share their compiled step."""
  def labels(params):
    return {k: jax.tree.map(lambda _: "train" if k in modules else "freeze", v)
            for k, v in params.items()}
  return optax.multi_transform({"train": optax.adam(learning_rate),
                                "freeze": optax.set_to_zero()}, labels)


@functools.lru_cache(maxsize=64)
def adam(learning_rate: float) -> optax.GradientTransformation:
  """``optax.adam``, one object per rate (trainers built with it again share their step)."""
  return optax.adam(learning_rate)


def final_threshold(model, variables, data, objective: Objective, *, num_thresholds: int = 1001,
                    num_groups: Optional[int] = None) -> ThresholdChoice:
  """The decision threshold of ``variables`` on ``data`` with the best objective (Savani's
  grid ``linspace(0, 1, num_thresholds)``): the step every fine-tuning method ends with."""
  objective = check_objective(objective)
  x, y, g = split_arrays(data)
  s = scores_and_activations(model, variables, x, penultimate_layer(model, variables, x[:1]))[0]
  return threshold_search(objective, jnp.asarray(s), jnp.asarray(y), jnp.asarray(g),
                          num_groups=num_groups_of(g, num_groups),
                          thresholds=threshold_grid(num_thresholds))


def _columns(method: FineTuning, context: Context) -> dict:
  """The recipe's extra data columns, checked to have one row per example."""
  if method.columns is None:
    return {}
  columns = {k: np.asarray(v) for k, v in method.columns(context).items()}
  n = len(split_arrays(context.data)[1])
  clash = set(columns) & {"x", "y", "group"}
  wrong = {k: v.shape for k, v in columns.items() if v.ndim == 0 or v.shape[0] != n}
  if clash or wrong:
    raise ValueError(f"columns: expected new names with {n} rows each, got {clash or wrong}")
  return columns


def tune(method: FineTuning, model: nn.Module, variables: Any, data: Any, *, key: jax.Array,
         layer: Optional[str] = None, privileged: Optional[int] = None,
         num_groups: Optional[int] = None, log: Optional[Callable[[int, dict], None]] = None,
         log_every: int = 50) -> WeightResult:
  """Runs a :class:`FineTuning` method on ``data`` (the debias split): builds its trainer,
  trains it (``train.fit``, key ``key``), and picks the threshold.

  Args:
    method: the recipe.
    model, variables: the trained Flax model and its variables.
    data: the debias split (``x``, ``y``, ``group``).
    key: PRNG key of the trainer's initialisation and of every step (``fold_in(key, step)``).
    layer: where the method acts when the recipe names none (default: the penultimate layer).
    privileged: the data's privileged group: when given, the objective's is replaced by it.
    num_groups: number of groups (default: inferred).
    log, log_every: progress, as :func:`~debiasjax.train.fit`.
  """
  if not isinstance(method, FineTuning):
    raise ValueError(f"method: expected a FineTuning recipe, got {type(method).__name__}")
  _checks.check_key("key", key)
  x, y, g = split_arrays(data)
  n = len(y)
  if n < 2:
    raise ValueError(f"data: expected at least 2 rows, got {n}")
  objective = method.objective
  if objective is not None:
    objective = check_objective(objective, privileged)
  groups = num_groups_of(g, num_groups)
  layer = method.layer or layer or penultimate_layer(model, variables, x[:1])
  context = Context(model, variables, data, layer,
                    objective or check_objective(Objective(), privileged), groups)
  trainer = method.trainer(context)
  batch_size = min(method.batch_size, n)
  state = trainer.init(key, variables)
  arrays = {"x": np.asarray(x), "y": np.asarray(y), "group": np.asarray(g),
            **_columns(method, context)}
  state, history = fit(trainer, state, arrays, key=key, num_steps=method.num_steps,
                       batch_size=batch_size, order=method.order, history=True, log=log,
                       log_every=log_every)
  tuned = variables_of(state)
  trace = method.trace(history) if method.trace is not None else history
  if objective is None:
    nan = jnp.float32(jnp.nan)
    return WeightResult(tuned, jnp.float32(0.5), nan, nan, nan, nan, trace, state)
  c = final_threshold(model, tuned, data, objective, num_groups=groups)
  return WeightResult(tuned, c.threshold, c.phi, c.score, c.bias, c.performance, trace, state)


def tune_stacked(method: FineTuning, model: nn.Module, variables: Any, data: Any, *,
                 keys: jax.Array, layer: Optional[str] = None, privileged: Optional[int] = None,
                 num_groups: Optional[int] = None) -> WeightResult:
  """:func:`tune` for K models at once: ``variables`` stacked along a leading axis (e.g. K seeds
  of one architecture), ``keys`` [K]; one vmapped training program
  (``train.fit(..., stacked=True)``) and one vmapped threshold search. Every field of the
  result has the leading K axis. The trainer is built from the first model's variables, so the
  recipe's trainer may depend on their shapes but not their values (Savani's, Zhang's and
  plain fine-tuning's do not; A-/RR-ClArC fit their concept on them: tune those one by one)."""
  x, y, g = split_arrays(data)
  objective = check_objective(method.objective or Objective(), privileged)
  groups = num_groups_of(g, num_groups)
  first = jax.tree.map(lambda v: v[0], variables)
  layer = method.layer or layer or penultimate_layer(model, first, x[:1])
  trainer = method.trainer(Context(model, first, data, layer, objective, groups))
  state = jax.vmap(trainer.init)(keys, variables)
  # the columns of each model (mined from its own predictions), with a model axis
  own = [_columns(method, Context(model, jax.tree.map(lambda v, k=k: v[k], variables), data,
                                  layer, objective, groups)) for k in range(keys.shape[0])]
  columns = {name: np.stack([c[name] for c in own]) for name in own[0]}
  arrays = {"x": np.asarray(x), "y": np.asarray(y), "group": np.asarray(g), **columns}
  state, history = fit(trainer, state, arrays, key=keys, num_steps=method.num_steps,
                       batch_size=min(method.batch_size, len(y)), order=method.order,
                       history=True, stacked=True, seed=list(range(keys.shape[0])),
                       per_model=tuple(columns))
  tuned = variables_of(state)
  trace = method.trace(history) if method.trace is not None else history
  if method.objective is None:
    k = keys.shape[0]
    nan = jnp.full(k, jnp.nan, jnp.float32)
    return WeightResult(tuned, jnp.full(k, 0.5, jnp.float32), nan, nan, nan, nan, trace, state)
  score = score_function(model)
  xs, ys, gs = jnp.asarray(x), jnp.asarray(y), jnp.asarray(g)
  choose = jax.jit(jax.vmap(lambda v: threshold_search(
      objective, score(v, xs), ys, gs, num_groups=groups, thresholds=threshold_grid(1001))))
  c = choose(tuned)
  return WeightResult(tuned, c.threshold, c.phi, c.score, c.bias, c.performance, trace, state)
