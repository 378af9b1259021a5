"""Training: a pure ``Trainer(init, update)`` pair and a run loop with checkpoints and resume.

A :class:`Trainer` is optax's idea one level up: ``init(key, variables) -> state`` and
``update(state, batch, key) -> (state, metrics)``, both pure. :func:`fit` runs ``update`` in
compiled chunks of steps (``lax.scan`` over batches gathered on the device), so a step costs no
Python dispatch. Everything a step depends on is a function of its number: the batch comes
from the permutation of epoch ``step // steps_per_epoch`` drawn from ``(seed, epoch)``, the key
is ``fold_in(key, step)``. Hence a run resumed from a checkpoint ends with exactly the
parameters of an uninterrupted run, and training K seeds with :func:`fit` on stacked states
(``jax.vmap`` over the chunk) gives every seed the parameters of training it alone.

Example:
  trainer = supervised(model, optax.adam(1e-3))
  state = trainer.init(key, model.init(key, x[:1]))
  state = fit(trainer, state, {"x": x, "y": y}, key=key, num_steps=500, batch_size=64)
  logits = model.apply(variables_of(state), x_test)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from debiasjax.checkpoint import Checkpoints

Batch = dict


class TrainState(NamedTuple):
  """Step counter, trainable parameters, other model collections (BatchNorm statistics), and
  optimizer state."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any


class Trainer(NamedTuple):
  """``init(key, variables) -> state`` and ``update(state, batch, key) -> (state, metrics)``."""
  init: Callable[[jax.Array, Any], Any]
  update: Callable[[Any, Batch, jax.Array], tuple[Any, dict]]


def variables_of(state: TrainState) -> dict:
  """The Flax variables ``{"params": ..., "batch_stats": ...}`` of a training state."""
  return {"params": state.params, **state.model_state}


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array,
                           weight: Optional[jax.Array] = None) -> jax.Array:
  """Softmax cross-entropy with integer labels, averaged with optional sample weights."""
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  if weight is None:
    return losses.mean()
  return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1e-12)


def supervised(model, tx: optax.GradientTransformation, *,
               apply_kwargs: Optional[dict] = None) -> Trainer:
  """Plain supervised training of a Flax model with softmax cross-entropy.

  Args:
    model: a Linen module called as ``model.apply(variables, x, **apply_kwargs)``.
    tx: the optax optimizer.
    apply_kwargs: keyword arguments of the training-mode forward pass (default
      ``{"train": True}``, as our models take). Dropout draws from the step's key; every
      non-parameter collection (BatchNorm statistics) is updated.

  Batches are dicts with ``"x"``, ``"y"`` (integer labels) and optionally ``"weight"``.
  """
  apply_kwargs = {"train": True} if apply_kwargs is None else apply_kwargs

  def init(key, variables):
    del key
    params = variables["params"]
    model_state = {k: v for k, v in variables.items() if k != "params"}
    return TrainState(jnp.zeros((), jnp.int32), params, model_state, tx.init(params))

  def update(state, batch, key):
    mutable = list(state.model_state)

    def loss_fn(params):
      out = model.apply({"params": params, **state.model_state}, batch["x"],
                        mutable=mutable or False, rngs={"dropout": key}, **apply_kwargs)
      logits, new_model_state = out if mutable else (out, {})
      return weighted_cross_entropy(logits, batch["y"], batch.get("weight")), (logits, new_model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}
    return TrainState(state.step + 1, params, dict(model_state), opt_state), metrics

  return Trainer(init, update)


def batch_indices(num_examples: int, batch_size: int, seed: int, start: int, stop: int) -> np.ndarray:
  """Indices [stop - start, batch_size] of the batches of steps ``start..stop-1``.

  Step s uses slice ``s % steps_per_epoch`` of the permutation of epoch ``s // steps_per_epoch``,
  drawn from ``np.random.default_rng((seed, epoch))``; the last partial batch of an epoch is
  dropped.
  """
  if not 0 < batch_size <= num_examples:
    raise ValueError(f"batch_size: expected 1..{num_examples} (the number of examples), "
                     f"got {batch_size}")
  per_epoch = num_examples // batch_size
  out = np.empty((stop - start, batch_size), np.int32)
  perms = {}
  for row, step in enumerate(range(start, stop)):
    epoch, pos = divmod(step, per_epoch)
    if epoch not in perms:
      perms[epoch] = np.random.default_rng((seed, epoch)).permutation(num_examples)
    out[row] = perms[epoch][pos * batch_size:(pos + 1) * batch_size]
  return out


def data_parallel_mesh(devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices)."""
  return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


@functools.lru_cache(maxsize=16)
def _compiled_chunk(trainer: Trainer, mesh: Optional[Mesh], stacked: bool):
  """The jitted chunk, cached so repeated ``fit`` calls with one trainer compile once."""
  chunk = _chunk_fn(trainer, mesh)
  return jax.jit(jax.vmap(chunk, in_axes=(0, None, 0, 0)) if stacked else chunk)


def _chunk_fn(trainer: Trainer, mesh: Optional[Mesh]):
  """Compiled ``(state, data, indices [T, B], key) -> (state, metrics [T])``."""
  def run(state, data, indices, key):
    def body(state, idx):
      batch = jax.tree.map(lambda a: a[idx], data)
      if mesh is not None:
        batch = jax.lax.with_sharding_constraint(batch, NamedSharding(mesh, PartitionSpec("data")))
      return trainer.update(state, batch, jax.random.fold_in(key, state.step))
    if indices.shape[0] == 1:
      # No loop at all for one step: XLA:CPU runs convolution gradients inside a while loop (even
      # one of trip count 1) up to 270x slower than outside one (3x3 weight gradient: 8.1 s vs
      # 34 ms), and lax.scan keeps the loop even when fully unrolled.
      state, metrics = body(state, indices[0])
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(body, state, indices)
  return run


def fit(trainer: Trainer, state: Any, data: dict, *, key: jax.Array, num_steps: int,
        batch_size: int, seed: Any = 0, steps_per_call: int = 1,
        checkpoints: Optional[Checkpoints] = None, save_every: Optional[int] = None,
        log: Optional[Callable[[int, dict], None]] = None, log_every: int = 50,
        stacked: bool = False,
        mesh: Optional[Mesh] = None, metadata: Optional[dict] = None) -> Any:
  """Trains ``state`` for ``num_steps`` steps in total, resuming from ``checkpoints``.

  Args:
    trainer: the Trainer whose ``update`` is applied.
    state: initial state (or stacked states with a leading model axis when ``stacked``).
    data: dict of arrays with a common leading axis (``"x"``, ``"y"``, optional ``"weight"``).
    key: PRNG key (``[K]`` keys when ``stacked``); step s uses ``fold_in(key, s)``.
    num_steps: total number of steps; a resumed run continues to this count.
    batch_size: examples per step (divisible by the number of devices in ``mesh``).
    seed: seed of the data order (a sequence of K seeds when ``stacked``).
    steps_per_call: steps per compiled call. 1 (the default) dispatches every step from Python,
      right for convolutional models on CPU; several steps run as one ``lax.scan``, which saves
      dispatch time for small models (the MLP) but is slow for convolution gradients on CPU.
    checkpoints: where to save and resume from; the latest checkpoint is restored first.
    save_every: save every this many steps (default: only at the end).
    log: called as ``log(step, metrics)`` every ``log_every`` steps and at the end, with the
      metrics averaged since the previous call (per model when ``stacked``).
    stacked: train K models of the same architecture in one program (``jax.vmap``).
    mesh: shard every batch over the ``"data"`` axis of this mesh (data parallelism); by
      default a mesh over all devices when there is more than one.
    metadata: JSON-serialisable dict saved with every checkpoint.

  Returns:
    The final state.
  """
  if not isinstance(num_steps, (int, np.integer)) or num_steps < 0:
    raise ValueError(f"num_steps: expected a non-negative int, got {num_steps!r}")
  for name, value in (("steps_per_call", steps_per_call), ("log_every", log_every),
                      ("save_every", save_every or 1)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name}: expected a positive int, got {value!r}")
  sizes = {k: np.shape(v)[0] for k, v in data.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"data: expected arrays with one leading size, got {sizes}")
  num_examples = next(iter(sizes.values()))
  seeds = list(seed) if stacked else [seed]
  if stacked and len(seeds) != key.shape[0]:
    raise ValueError(f"seed: expected {key.shape[0]} seeds (one per key), got {len(seeds)}")
  if mesh is None and jax.device_count() > 1:
    mesh = data_parallel_mesh()
  if mesh is not None and batch_size % mesh.size:
    raise ValueError(f"batch_size: expected a multiple of the {mesh.size} devices, got {batch_size}")

  if checkpoints is not None and checkpoints.latest_step() is not None:
    state = checkpoints.restore(state)
  step = int(np.ravel(jax.device_get(state.step))[0])
  if mesh is not None:
    replicated = NamedSharding(mesh, PartitionSpec())
    data, state = jax.device_put((data, state), replicated)
  else:
    data = jax.device_put(data)
  chunk = _compiled_chunk(trainer, mesh, stacked)

  pending = []
  while step < num_steps:
    stop = min(num_steps, step + steps_per_call)
    if log is not None:
      stop = min(stop, (step // log_every + 1) * log_every)
    if save_every:
      stop = min(stop, (step // save_every + 1) * save_every)
    idx = np.stack([batch_indices(num_examples, batch_size, s, step, stop) for s in seeds])
    state, metrics = chunk(state, data, idx if stacked else idx[0], key)
    step = stop
    if log is not None:
      pending.append(metrics)
      if step % log_every == 0 or step == num_steps:
        merged = jax.tree.map(lambda *m: np.concatenate(m, axis=-1), *jax.device_get(pending))
        log(step, jax.tree.map(lambda m: m.mean(axis=-1), merged))
        pending = []
    if checkpoints is not None and (step == num_steps or (save_every and step % save_every == 0)):
      checkpoints.save(step, state, metadata=metadata)
  return state
