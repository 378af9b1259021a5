"""Training: a pure ``Trainer(init, update)`` pair and a run loop with checkpoints and resume.

A :class:`Trainer` is optax's idea one level up: ``init(key, variables) -> state`` and
``update(state, batch, key) -> (state, metrics)``, both pure. Every training-time method is
one (plain training, fine-tuning, A-/RR-ClArC, Savani's critic and actor, Zhang's adversary and
predictor) and :func:`fit` runs them all: one loop, one CPU policy, checkpoints with exact
resume, K models stacked in one vmapped program. Methods that alternate two kinds of step (a
critic's and the model's) give ``update`` as a tuple and say which one step ``s`` takes with
``phase(s)``; :func:`fit` compiles each kind once and never puts the choice inside the program
(XLA:CPU runs convolutions inside ``cond`` far below speed).

Everything a step depends on is a function of its number: its key is ``fold_in(key, step)``
and its batch the slice of epoch ``step // steps_per_epoch``'s permutation drawn from
``(seed, epoch)`` (``order="epochs"``) or ``batch_size`` distinct rows drawn from
``(seed, step)`` (``order="sampled"``, the fine-tuning methods' minibatches).
Hence a run resumed from a checkpoint ends with exactly the parameters of an uninterrupted
run, and K seeds trained on stacked states give every seed the parameters of training it
alone.

Example:
  trainer = supervised(model, optax.adam(1e-3))
  state = trainer.init(key, model.init(key, x[:1]))
  state = fit(trainer, state, {"x": x, "y": y}, key=key, num_steps=500, batch_size=64)
  logits = model.apply(variables_of(state), x_test)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from debiasjax import _checks, parallel
from debiasjax.checkpoint import Checkpoints

Batch = dict


class TrainState(NamedTuple):
  """Step counter, trainable parameters, other model collections (BatchNorm statistics), and
  optimizer state."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any


class CriticState(NamedTuple):
  """A training state with a second network trained alongside (an adversarial critic, a
  total-correlation discriminator): its parameters and optimizer state after the model's."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  critic_params: Any
  critic_opt_state: Any


class Trainer(NamedTuple):
  """``init(key, variables) -> state`` and ``update(state, batch, key) -> (state, metrics)``.

  A trainer of alternating steps gives ``update`` as a tuple of such functions and
  ``phase(step) -> index`` (a Python function of the step number) choosing the one step
  ``step`` takes. States carry ``step`` (an int32 counter every update increments); those with
  ``params`` and ``model_state`` give the model's variables through :func:`variables_of`.
  """
  init: Callable[[jax.Array, Any], Any]
  update: Union[Callable[[Any, Batch, jax.Array], tuple[Any, dict]], Sequence[Callable]]
  phase: Optional[Callable[[int], int]] = None
  check: Optional[Callable[[Any, dict], None]] = None   # check(state, data): ValueError on data
                                                        # the trainer cannot train on


def _update_of(trainer: Trainer, index: int) -> Callable:
  return trainer.update[index] if trainer.phase is not None else trainer.update


def variables_of(state: TrainState) -> dict:
  """The Flax variables ``{"params": ..., "batch_stats": ...}`` of a training state."""
  return {"params": state.params, **state.model_state}


def initial_variables(model, key: jax.Array, x) -> dict:
  """``model``'s variables initialised on one row of ``x``: from one PRNG key, or stacked along
  K for [K] keys (the initial states of K seeds)."""
  init = lambda k: model.init(k, x[:1])   # noqa: E731
  return jax.vmap(init)(key) if key.ndim == 1 else init(key)


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

  def check(state, data):
    check_labels_fit_head(model, variables_of(state), data)

  return Trainer(init, _supervised_update(model, tx, tuple(sorted(apply_kwargs.items()))),
                 check=check)


def check_labels_fit_head(model, variables, data: dict) -> None:
  """Integer labels ``data["y"]`` in 0..C-1 for a model with C outputs (C from one traced
  forward pass); a label outside makes the cross-entropy NaN."""
  y = np.asarray(data["y"])
  if y.dtype.kind not in "iub":
    raise ValueError(f"data['y']: expected integer class labels, got dtype {y.dtype}")
  out = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                       jax.ShapeDtypeStruct((1,) + np.shape(data["x"])[1:],
                                            np.asarray(data["x"][:1]).dtype))
  classes = out.shape[-1]
  bad = np.unique(y[(y < 0) | (y >= classes)])
  if bad.size:
    raise ValueError(f"data['y']: expected class labels in 0..{classes - 1} (the model has "
                     f"{classes} outputs), got {bad[:10].tolist()}")


@functools.lru_cache(maxsize=32)
def _supervised_update(model, tx, apply_kwargs: tuple):
  """One update function per (model, optimizer, forward arguments): trainers built again for
  the same model share it, hence its compiled program."""
  apply_kwargs = dict(apply_kwargs)

  def update(state, batch, key):
    mutable = list(state.model_state)

    def loss_fn(params):
      out = model.apply({"params": params, **state.model_state}, batch["x"],
                        mutable=mutable or False, rngs={"dropout": key}, **apply_kwargs)
      logits, new_model_state = out if mutable else (out, {})
      return weighted_cross_entropy(logits, batch["y"], batch.get("weight")), (logits,
                                                                               new_model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}
    return TrainState(state.step + 1, params, dict(model_state), opt_state), metrics

  return update


def batch_indices(num_examples: int, batch_size: int, seed: int, start: int,
                  stop: int) -> np.ndarray:
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


@functools.lru_cache(maxsize=32)
def _compiled_chunk(update: Callable, mesh: Optional[Mesh], stacked: bool, host_fed: bool,
                    data_axes: Optional[tuple] = None):
  """The jitted chunk of one update function, cached so repeated ``fit`` calls (and trainers
  that share an update, e.g. refits with a new initial state) compile once. Stacked models are
  split over the mesh's ``"models"`` axis (``spmd_axis_name``); ``data_axes``: ``(key, axis)``
  pairs, 0 for the columns with a model axis, None for the shared ones."""
  chunk = _chunk_fn(update, mesh, host_fed)
  if not stacked:
    return jax.jit(chunk)
  models = parallel.MODELS if mesh is not None and parallel.size(parallel.MODELS, mesh) > 1 \
      else None
  data_in = None if host_fed or data_axes is None else dict(data_axes)
  return jax.jit(jax.vmap(chunk, in_axes=(0, data_in, 0, 0), spmd_axis_name=models))


def _chunk_fn(update: Callable, mesh: Optional[Mesh], host_fed: bool):
  """Compiled ``(state, data, indices [T, B], key) -> (state, metrics [T])``; ``host_fed``:
  ``(state, None, batches [T, B, ...], key)``, the batches built by the processes."""
  rows = None if mesh is None else parallel.sharding(parallel.DATA, m=mesh)

  def run(state, data, indices, key):
    def body(state, idx):
      batch = idx if host_fed else jax.tree.map(lambda a: a[idx], data)
      if rows is not None:
        batch = jax.lax.with_sharding_constraint(batch, rows)
      return update(state, batch, jax.random.fold_in(key, state.step))
    if jax.tree.leaves(indices)[0].shape[0] == 1:
      # No loop at all for one step: XLA:CPU runs convolution gradients inside a while loop (even
      # one of trip count 1) up to 270x slower than outside one (3x3 weight gradient: 8.1 s vs
      # 34 ms), and lax.scan keeps the loop even when fully unrolled.
      state, metrics = body(state, jax.tree.map(lambda a: a[0], indices))
      return state, jax.tree.map(lambda m: m[None], metrics)
    return jax.lax.scan(body, state, indices)
  return run


def _host_batches(data: dict, idx: np.ndarray, mesh: Optional[Mesh], models: tuple,
                  per_model: Sequence[str] = ()) -> dict:
  """The batches [(K,) T, B, ...] of indices ``idx`` gathered on the host, each process putting
  only its own block of them on its devices (``make_array_from_process_local_data``);
  ``models`` is the stack axis's spec (``()`` unstacked); the ``per_model`` columns are
  [K, N, ...], model k's batches taken from its own row."""
  block = (tuple(slice(0, n) for n in idx.shape) if mesh is None else
           parallel.local_block(parallel.sharding(*models, None, parallel.DATA, m=mesh),
                                idx.shape))
  mine = idx[block]
  owner = np.arange(idx.shape[0])[block[0]][:, None, None] if per_model else None
  local = {k: np.asarray(v)[owner, mine] if k in per_model else np.asarray(v)[mine]
           for k, v in data.items()}
  if mesh is None:
    return jax.device_put(local)
  sharding = parallel.sharding(*models, None, parallel.DATA, m=mesh)
  return {k: jax.make_array_from_process_local_data(
      sharding, a, (*idx.shape, *a.shape[len(idx.shape):])) for k, a in local.items()}


DEVICE_DATA_BYTES = 2**30   # training data up to this size lives on every device; more is fed


def _nbytes(data: dict) -> int:
  return sum(np.asarray(v).nbytes for v in data.values())


def sampled_indices(num_examples: int, batch_size: int, seed: int, start: int,
                    stop: int) -> np.ndarray:
  """Indices [stop - start, batch_size]: step s takes ``batch_size`` distinct rows drawn with
  ``np.random.default_rng((seed, s))`` (a function of the step, so runs resume exactly)."""
  return np.stack([np.random.default_rng((seed, step)).choice(num_examples, batch_size,
                                                               replace=False)
                   for step in range(start, stop)]).astype(np.int32)


def _indices(order, num_examples, batch_size, seeds, start, stop) -> np.ndarray:
  """[K, T, B] batch indices of steps ``start..stop-1`` for each of K models."""
  draw = batch_indices if order == "epochs" else sampled_indices
  return np.stack([draw(num_examples, batch_size, s, start, stop) for s in seeds])


def _concatenate(chunks: Sequence[dict]) -> dict:
  """Per-step metrics of several chunks joined along the step axis (the last), key by key (the
  phases of a trainer may report different metrics)."""
  keys = dict.fromkeys(k for c in chunks for k in c)
  return {k: np.concatenate([np.asarray(c[k]) for c in chunks if k in c], axis=-1) for k in keys}


def default_steps_per_call(data: dict) -> int:
  """The CPU policy: 1 step per call when any input has more than two axes (images: XLA:CPU
  runs convolution gradients inside loops far below speed), else 128 steps in one scan."""
  return 1 if any(np.ndim(v) > 2 for v in data.values()) else 128


def fit(trainer: Trainer, state: Any, data: dict, *, key: jax.Array, num_steps: int,
        batch_size: int, seed: Any = 0, steps_per_call: Optional[int] = None,
        order: str = "epochs",
        checkpoints: Optional[Checkpoints] = None, save_every: Optional[int] = None,
        log: Optional[Callable[[int, dict], None]] = None, log_every: int = 50,
        history: bool = False, stacked: bool = False, per_model: Sequence[str] = (),
        mesh: Optional[Mesh] = None, metadata: Optional[dict] = None) -> Any:
  """Trains ``state`` for ``num_steps`` steps in total, resuming from ``checkpoints``.

  Args:
    trainer: the Trainer whose ``update`` is applied.
    state: initial state (or stacked states with a leading model axis when ``stacked``).
    data: dict of arrays with a common leading axis (``"x"``, ``"y"``, optional ``"weight"``,
      ``"group"``: whatever ``update`` reads).
    key: PRNG key (``[K]`` keys when ``stacked``); step s uses ``fold_in(key, s)``.
    num_steps: total number of steps; a resumed run continues to this count.
    batch_size: examples per step (divisible by the number of devices in ``mesh``).
    seed: seed of the data order (a sequence of K seeds when ``stacked``).
    steps_per_call: steps per compiled call. 1 dispatches every step from Python, right for
      convolutional models on CPU; several steps run as one ``lax.scan``, which saves dispatch
      time for small models (the MLP) but is slow for convolution gradients on CPU. Default
      (:func:`default_steps_per_call`): 1 for images, 128 for tables.
    order: ``"epochs"`` (a permutation per epoch, from ``seed``) or ``"sampled"`` (every step
      draws ``batch_size`` distinct rows, from ``(seed, step)``).
    checkpoints: where to save and resume from; the latest checkpoint is restored first.
    save_every: save every this many steps (default: only at the end).
    log: called as ``log(step, metrics)`` every ``log_every`` steps and at the end, with the
      metrics averaged since the previous call (per model when ``stacked``).
    history: also return every step's metrics (``{name: [..., steps]}``, the steps of this
      call; a metric only some phases report has the steps of those phases).
    stacked: train K models of the same architecture in one program (``jax.vmap``).
    per_model: with ``stacked``, the keys of ``data`` whose arrays are [K, N, ...], a column
      of its own per model (e.g. the sample weights each seed's first run mined).
    mesh: split every batch over the ``"data"`` axis of this mesh (data parallelism) and
      stacked models over its ``"models"`` axis (default: :func:`debiasjax.parallel.current`,
      the mesh set with ``jax.set_mesh``, else every device on ``"data"``). With several
      processes every process puts only its own rows of each batch on its devices.
      Training data up to ``DEVICE_DATA_BYTES`` (1 GiB) is put on every device once and each
      batch gathered there; larger data (CelebA at full size) and multi-process runs stay on
      the host and every step's batch is sent (the same batches, the same result).
    metadata: JSON-serialisable dict saved with every checkpoint.

  Returns:
    The final state, or ``(state, history)`` with ``history=True``.
  """
  if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 0:
    raise ValueError(f"num_steps: expected a non-negative int, got {num_steps!r}")
  if steps_per_call is None:
    steps_per_call = default_steps_per_call(data)
  for name, value in (("steps_per_call", steps_per_call), ("log_every", log_every),
                      ("save_every", save_every or 1)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name}: expected a positive int, got {value!r}")
  if order not in ("epochs", "sampled"):
    raise ValueError(f"order: expected 'epochs' or 'sampled', got {order!r}")
  _checks.check_key("key", key)
  if not isinstance(data, dict) or not data:
    raise ValueError(f"data: expected a dict of arrays, got {type(data).__name__}")
  for name, value in data.items():
    _checks.check_numeric(f"data[{name!r}]", value)
    _checks.check_finite(f"data[{name!r}]", value)
  per_model = tuple(per_model)
  if per_model and not stacked:
    raise ValueError(f"per_model: columns per model need stacked=True, got {per_model}")
  if set(per_model) - set(data):
    raise ValueError(f"per_model: expected keys of data ({sorted(data)}), got {per_model}")
  models_in = {np.shape(data[k])[0] for k in per_model} | ({key.shape[0]} if per_model else set())
  if len(models_in) > 1:
    raise ValueError(f"per_model: expected columns [K, N, ...] with K = {key.shape[0]} (the "
                     f"keys), got {[np.shape(data[k]) for k in per_model]}")
  sizes = {k: np.shape(v)[1 if k in per_model else 0] for k, v in data.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"data: expected arrays with one leading size (per_model columns: the "
                     f"second), got {sizes}")
  num_examples = next(iter(sizes.values()))
  if not isinstance(batch_size, (int, np.integer)) or not 0 < batch_size <= num_examples:
    raise ValueError(f"batch_size: expected 1..{num_examples} (the number of examples), "
                     f"got {batch_size}")
  seeds = list(seed) if stacked else [seed]
  if stacked and len(seeds) != key.shape[0]:
    raise ValueError(f"seed: expected {key.shape[0]} seeds (one per key), got {len(seeds)}")
  if mesh is None:
    mesh = parallel.current()
  rows = parallel.size(parallel.DATA, mesh) if mesh is not None else 1
  if batch_size % rows:
    raise ValueError(f"batch_size: expected a multiple of the {rows} devices of the 'data' "
                     f"axis, got {batch_size}")

  if trainer.check is not None:
    first = jax.tree.map(lambda a: a[0], state) if stacked else state
    for k in range(key.shape[0] if per_model else 1):
      trainer.check(first, {n: v[k] if n in per_model else v for n, v in data.items()})
  host_fed = jax.process_count() > 1 or _nbytes(data) > DEVICE_DATA_BYTES
  # The spec of the stack axis: split over "models" when the stack divides it evenly.
  splits = mesh is not None and len(seeds) % parallel.size(parallel.MODELS, mesh) == 0
  models = ((parallel.MODELS if splits else None,) if stacked else ())
  if mesh is not None:
    with jax.set_mesh(mesh):
      state = parallel.put(state, *models)
      if not host_fed:
        data = parallel.put(data)
  elif not host_fed:
    data = jax.device_put(data)
  if checkpoints is not None and checkpoints.latest_step() is not None:
    state = checkpoints.restore(state)
  step = int(np.ravel(parallel.to_host(state.step))[0])
  phase_of = trainer.phase or (lambda s: 0)

  pending, everything = [], []
  while step < num_steps:
    stop = min(num_steps, step + steps_per_call)
    if log is not None:
      stop = min(stop, (step // log_every + 1) * log_every)
    if save_every:
      stop = min(stop, (step // save_every + 1) * save_every)
    phase = phase_of(step)
    for s in range(step + 1, stop):
      if phase_of(s) != phase:
        stop = s
        break
    idx = _indices(order, num_examples, batch_size, seeds, step, stop)
    idx = idx if stacked else idx[0]
    chunk = _compiled_chunk(_update_of(trainer, phase), mesh, stacked, host_fed,
                            tuple((k, 0 if k in per_model else None) for k in sorted(data))
                            if per_model else None)
    if host_fed:
      state, metrics = chunk(state, None, _host_batches(data, idx, mesh, models, per_model),
                             key)
    else:
      state, metrics = chunk(state, data, idx, key)
    step = stop
    if log is not None or history:
      metrics = parallel.to_host(metrics)
      if log is not None:
        pending.append(metrics)
      if history:
        everything.append(metrics)
    if log is not None and (step % log_every == 0 or step == num_steps):
      log(step, {k: v.mean(axis=-1) for k, v in _concatenate(pending).items()})
      pending = []
    if checkpoints is not None and (step == num_steps or (save_every and step % save_every == 0)):
      checkpoints.save(step, state, metadata=metadata)
  _check_diverged(state, step)
  return (state, _concatenate(everything)) if history else state


def _check_diverged(state, step: int) -> None:
  """A NaN or infinite parameter after training is an error, not a result."""
  params = getattr(state, "params", None)
  leaves = jax.tree.leaves(parallel.to_host(params))
  bad = sum(int((~np.isfinite(a)).sum()) for a in leaves if a.dtype.kind == "f")
  if bad:
    raise FloatingPointError(f"training diverged: {bad} parameters are NaN or infinite after "
                             f"step {step} (a learning rate too high for the model, or a loss "
                             "that cannot be computed on this data)")
