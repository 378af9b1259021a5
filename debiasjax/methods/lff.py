"""LfF, Learning from Failure (Nam et al., NeurIPS 2020; ``alinlab/LfF``) and JTT, Just Train
Twice (Liu et al., ICML 2021): the unsupervised baselines of the online debiaser.

LfF trains two networks of one architecture on every batch, in one compiled step. The biased
one ``f_B`` minimises the generalized cross-entropy ``GCE = CE * q * p_y^q`` (``p_y`` detached;
gradient-equal to ``(1 - p_y^q) / q`` up to the factor q, as the reference implements it), which
makes it fit the easy (bias-aligned) samples first; the debiased one ``f_D`` minimises the
cross-entropy weighted by each sample's relative difficulty ``W = L_B / (L_B + L_D + 1e-8)``,
where ``L_B`` and ``L_D`` are exponential moving averages (``ema = 0.7``, indexed by sample)
of the two networks' per-sample losses, each divided by the largest average of the sample's
class. Defaults are the reference's (q 0.7, EMA 0.7, Adam 1e-3).

JTT needs no new trainer: :func:`jtt_weights` turns a first ERM run's errors into the second
run's sample weights (``lambda_up`` for the error set, 1 elsewhere), which
:func:`debiasjax.train.supervised` reads from the batch's ``weight``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks
from debiasjax.methods.adversarial import _model_state, _train_forward
from debiasjax.methods.finetuning import FineTuning
from debiasjax.train import Trainer, check_labels_fit_head


class LfFState(NamedTuple):
  """The debiased network's state (what :func:`~debiasjax.train.variables_of` reads), the biased
  network's, and the two per-sample loss averages [N]."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  bias_params: Any
  bias_model_state: Any
  bias_opt_state: Any
  ema_bias: jax.Array
  ema_debiased: jax.Array
  seen: jax.Array


def generalized_cross_entropy(logits: jax.Array, labels: jax.Array, q: float) -> jax.Array:
  """Per-sample ``CE * q * p_y^q`` with ``p_y`` detached (the reference's GCE)."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  p_y = jnp.take_along_axis(jax.nn.softmax(logits), labels[:, None], -1)[:, 0]
  return ce * q * jax.lax.stop_gradient(p_y) ** q


def lff_trainer(model, tx: optax.GradientTransformation, *, labels, num_classes: int,
                q: float = 0.7, ema: float = 0.7, train_kwargs=None) -> Trainer:
  """LfF as a :class:`~debiasjax.train.Trainer`: ``init(key, variables)`` starts both networks
  from ``variables`` (:func:`init_biased` starts the biased one elsewhere, as the reference's
  independent initialisations); batches carry ``x``, ``y`` and ``index`` (rows' positions in
  the training set: the averages' keys). One forward and backward pass per network and step.

  Args:
    model: the Flax module of both networks.
    tx: the optimizer of both (the reference: Adam 1e-3).
    labels: the training set's labels [N] (for the per-class maxima of the averages).
    num_classes: K.
    q: the GCE exponent; ema: the averages' decay.
  """
  labels = np.asarray(labels)
  _checks.check_int("num_classes", num_classes, 2)
  for name, value in (("q", q), ("ema", ema)):
    _checks.check_positive(name, value)
  if not ema < 1:
    raise ValueError(f"ema: expected a decay in (0, 1), got {ema}")
  train_kwargs = {"train": True} if train_kwargs is None else dict(train_kwargs)
  all_labels, n, k = jnp.asarray(labels, jnp.int32), labels.shape[0], int(num_classes)

  def init(key, variables):
    del key
    params, model_state = variables["params"], _model_state(variables)
    zeros = jnp.zeros(n, jnp.float32)
    return LfFState(jnp.zeros((), jnp.int32), params, model_state, tx.init(params), params,
                    model_state, tx.init(params), zeros, zeros, jnp.zeros(n, bool))

  def update(st: LfFState, batch, key):
    k_b, k_d = jax.random.split(key)
    x, y, index = batch["x"], batch["y"], batch["index"]
    seen = st.seen[index]

    def averaged(table, loss):
      """The sample's new average (its first visit sets it) and the updated table."""
      value = jnp.where(seen, ema * table[index] + (1 - ema) * loss, loss)
      return value, table.at[index].set(value)

    def forward(params, model_state, k_drop):
      logits, new_state, _ = _train_forward(model, {"params": params, **model_state}, x, k_drop,
                                            train_kwargs)
      return logits, new_state

    def loss_b(params):
      logits, new_state = forward(params, st.bias_model_state, k_b)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      return jnp.mean(generalized_cross_entropy(logits, y, q)), (new_state, ce, logits)

    (gce, (state_b, ce_b, logits_b)), grads_b = jax.value_and_grad(
        loss_b, has_aux=True)(st.bias_params)
    l_b, ema_b = averaged(st.ema_bias, jax.lax.stop_gradient(ce_b))

    def loss_d(params):
      logits, new_state = forward(params, st.model_state, k_d)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      l_d, ema_d = averaged(st.ema_debiased, jax.lax.stop_gradient(ce))
      # Each average relative to the largest of the sample's class.
      rel_b = l_b / jnp.maximum(jax.ops.segment_max(ema_b, all_labels, k)[y], 1e-8)
      rel_d = l_d / jnp.maximum(jax.ops.segment_max(ema_d, all_labels, k)[y], 1e-8)
      weight = rel_b / (rel_b + rel_d + 1e-8)
      return jnp.mean(ce * weight), (new_state, logits, weight, ema_d)

    (wce, (state_d, logits, weight, ema_d)), grads_d = jax.value_and_grad(
        loss_d, has_aux=True)(st.params)
    up_b, opt_b = tx.update(grads_b, st.bias_opt_state, st.bias_params)
    up_d, opt_d = tx.update(grads_d, st.opt_state, st.params)
    new = LfFState(st.step + 1, optax.apply_updates(st.params, up_d), state_d, opt_d,
                   optax.apply_updates(st.bias_params, up_b), state_b, opt_b, ema_b, ema_d,
                   st.seen.at[index].set(True))
    return new, {"loss": wce, "gce": gce, "weight": jnp.mean(weight),
                 "accuracy": jnp.mean(jnp.argmax(logits, -1) == y),
                 "bias_accuracy": jnp.mean(jnp.argmax(logits_b, -1) == y)}

  def check(state, data):
    check_labels_fit_head(model, {"params": state.params, **state.model_state}, data)
    index = data.get("index")
    if index is None or len(index) != n or \
        not np.array_equal(np.asarray(data["y"]), labels[np.asarray(index)]):
      raise ValueError("data['index']: expected every row's position in the training set whose "
                       f"labels the trainer was built with ({n} rows)")
  return Trainer(init, update, check=check)


def init_biased(state: LfFState, variables) -> LfFState:
  """``state`` with the biased network started from other ``variables``."""
  return state._replace(bias_params=variables["params"], bias_model_state=_model_state(variables))


def jtt_weights(y, pred, lambda_up: float) -> np.ndarray:
  """JTT's second-run sample weights: ``lambda_up`` for the first run's errors (``pred != y``),
  1 elsewhere (up-weighting, the expectation of the reference's up-sampling)."""
  _checks.check_positive("lambda_up", lambda_up)
  return np.where(np.asarray(pred) != np.asarray(y), float(lambda_up), 1.0).astype(np.float32)


def jtt(model, x, y, *, key, first_epochs: int, num_epochs: int, lambda_up: float,
        batch_size: int, tx: optax.GradientTransformation, steps_per_call=None):
  """JTT end to end: ERM for ``first_epochs``, its training errors up-weighted ``lambda_up``
  times in a second ERM run of ``num_epochs`` from the same initialisation. ``key``: one PRNG
  key, or [K] keys for K seeds in one vmapped program per run (each seed its own error set).

  Returns ``(first-run variables, final variables, error set [(K,) N] bool)``.
  """
  from debiasjax import evaluate, train
  for name, value in (("first_epochs", first_epochs), ("num_epochs", num_epochs)):
    _checks.check_int(name, value, 1)
  _checks.check_key("key", key)
  x, y = np.asarray(x), np.asarray(y)
  stacked = key.ndim == 1
  steps = len(y) // batch_size
  variables = train.initial_variables(model, key, x)
  erm = train.supervised(model, tx)
  states = (jax.vmap(erm.init) if stacked else erm.init)(key, variables)
  run = dict(key=key, batch_size=batch_size, steps_per_call=steps_per_call, stacked=stacked,
             seed=list(range(key.shape[0])) if stacked else 0)
  first = train.variables_of(train.fit(erm, states, {"x": x, "y": y},
                                       num_steps=first_epochs * steps, **run))
  errors = evaluate.predicted_classes(model, first, x, stacked=stacked) != y
  weight = jtt_weights(np.zeros_like(errors), errors, lambda_up)
  final = train.fit(erm, states, {"x": x, "y": y, "weight": weight},
                    per_model=("weight",) if stacked else (), num_steps=num_epochs * steps, **run)
  return first, train.variables_of(final), errors


def learning_from_failure(*, num_steps: int = 500, batch_size: int = 64, q: float = 0.7,
                          ema: float = 0.7, learning_rate: float = 1e-4, objective=None,
                          train_kwargs: Optional[dict] = None) -> FineTuning:
  """LfF as post-hoc fine-tuning for :func:`debiasjax.debias`: both networks start from the
  trained model (already biased: the biased one goes on with GCE) and train on the debias split
  (Adam at ``learning_rate``); the debiased one is the result, threshold by ``objective`` (None:
  0.5). Reads no group label."""
  from debiasjax.methods.finetuning import adam, check_training, one_row_shape, split_arrays
  check_training(num_steps, batch_size, learning_rate)

  def trainer(ctx) -> Trainer:
    return lff_trainer(ctx.model, adam(float(learning_rate)), labels=split_arrays(ctx.data)[1],
                       num_classes=one_row_shape(ctx).shape[-1], q=q, ema=ema,
                       train_kwargs=train_kwargs)

  def columns(ctx) -> dict:
    return {"index": np.arange(len(split_arrays(ctx.data)[1]))}

  return FineTuning(trainer, num_steps, batch_size, objective=objective, columns=columns)


def just_train_twice(*, num_steps: int = 500, batch_size: int = 64, lambda_up: float = 50.0,
                     learning_rate: float = 1e-4, objective=None,
                     train_kwargs: Optional[dict] = None) -> FineTuning:
  """JTT's second run as post-hoc fine-tuning for :func:`debiasjax.debias`: the trained model
  is the first run; its errors on the debias split are up-weighted ``lambda_up`` times (the
  reference's CelebA value: 50) in more cross-entropy training there (Adam at
  ``learning_rate``), then the threshold (``objective`` None: 0.5). Reads no group label."""
  from debiasjax.evaluate import predicted_classes
  from debiasjax.methods.finetuning import adam, check_training, split_arrays
  from debiasjax.train import supervised
  check_training(num_steps, batch_size, learning_rate)
  _checks.check_positive("lambda_up", lambda_up)

  def trainer(ctx) -> Trainer:
    return supervised(ctx.model, adam(float(learning_rate)), apply_kwargs=train_kwargs)

  def columns(ctx) -> dict:
    x, y, _ = split_arrays(ctx.data)
    return {"weight": jtt_weights(y, predicted_classes(ctx.model, ctx.variables, x), lambda_up)}

  return FineTuning(trainer, num_steps, batch_size, objective=objective, columns=columns)
