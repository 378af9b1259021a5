"""IRENE: information removal at the bottleneck (Tartaglione, BMVC 2022; ``enzotarta/irene``).

A privacy head PH (linear, bottleneck -> K private classes) learns to read the private label
from a *detached* copy of the bottleneck ``z`` (a pure probe, trained by cross-entropy). On the
*attached* bottleneck, the head's softmax ``q = softmax(PH(z))`` and the one-hot private labels
``G`` give the empirical joint ``P = G^T q / B`` (entries clamped at 1e-15) and the normalised
mutual information

    I(private; z) = sum_ij P_ij log(P_ij / (P_i. P_.j)) / log K,

0 when the head's output is independent of the label and 1 when it determines a uniform label.
The backbone minimises ``alpha CE(task) + gamma I``; the MI term never moves the head (the
reference's latest commit zeroes the head's MI gradients; here the head enters the term through
``stop_gradient``). Defaults are the paper's (alpha 0.5, gamma 0.2; Biased-MNIST: SGD 0.1,
momentum 0.9, weight decay 1e-4 for both).

:func:`irene_trainer` is a :class:`~debiasjax.train.Trainer` (from scratch or from trained
variables: post-hoc fine-tuning) whose batches carry ``x``, ``y``, ``private`` and optionally
``weight`` (per-sample task weights) and ``mi_mask`` (which samples enter the MI term: the
Voronoi method's pseudo-misaligned ones).
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks
from debiasjax.methods.adversarial import _model_state, _train_forward
from debiasjax.methods.finetuning import FineTuning
from debiasjax.models.taps import tap
from debiasjax.train import CriticState, Trainer, weighted_cross_entropy

IreneState = CriticState   # the backbone's state, then the privacy head's parameters and
                           # optimizer state


def mutual_information(q: jax.Array, labels: jax.Array, num_classes: int,
                       mask: Optional[jax.Array] = None) -> jax.Array:
  """IRENE's normalised MI between integer ``labels`` [B] and the head's probabilities ``q``
  [B, K]: ``sum P log(P / (P_row P_col)) / log K`` with ``P = G^T q / n`` over the rows where
  ``mask`` (default all) is set; 0 when no row is."""
  g = jax.nn.one_hot(labels, num_classes, dtype=q.dtype)
  w = jnp.ones(q.shape[0], q.dtype) if mask is None else mask.astype(q.dtype)
  n = jnp.sum(w)
  joint = jnp.maximum((g * w[:, None]).T @ q / jnp.maximum(n, 1.0), 1e-15)
  rows, cols = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
  # log P - log P_row - log P_col, not log(P / (P_row P_col)): the quotient's gradient squares
  # P_row P_col, which underflows for clamped entries (1e-30 squared) and gives NaN.
  mi = jnp.sum(joint * (jnp.log(joint) - jnp.log(rows) - jnp.log(cols))) / np.log(num_classes)
  return jnp.where(n > 0, mi, 0.0)


class PrivacyHead(nn.Module):
  """The linear privacy head: bottleneck -> ``num_classes`` logits."""
  num_classes: int

  @nn.compact
  def __call__(self, z):
    return nn.Dense(self.num_classes, name="dense")(z.reshape(z.shape[0], -1))


@functools.lru_cache(maxsize=32)
def sgd(learning_rate: float = 0.1, *, momentum: float = 0.9,
        weight_decay: float = 1e-4) -> optax.GradientTransformation:
  """The reference's optimizer: SGD with momentum and (coupled) weight decay."""
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum=momentum))


def irene_trainer(model: nn.Module, layer: str, features: jax.ShapeDtypeStruct, *,
                  num_private: int, alpha: float = 0.5, gamma: float = 0.2,
                  tx: Optional[optax.GradientTransformation] = None,
                  head_tx: Optional[optax.GradientTransformation] = None,
                  train_kwargs: Optional[dict] = None) -> Trainer:
  """IRENE as a trainer: each step one backbone update (``alpha CE + gamma I``) and one privacy
  head update (CE on the detached bottleneck), from the same forward pass.

  Args:
    model, layer: the Flax module and its bottleneck's module path (e.g. ``"pool"``).
    features: shape of one sample's bottleneck (``[1, D]``), to initialise the head.
    num_private: classes of the private label (the bias: 10 colours on biased digits).
    alpha, gamma: weights of the task cross-entropy and of the MI term.
    tx, head_tx: optimizers of the backbone and the head (default :func:`sgd`).
    train_kwargs: the training-mode forward's keyword arguments (default ``{"train": True}``).

  Batches: ``x``, ``y``, ``private`` [B]; optional ``weight`` [B] (task CE weights) and
  ``mi_mask`` [B] (rows of the MI term). Metrics: ``loss``, ``cross_entropy``, ``mi``,
  ``head_loss``, ``head_accuracy``.
  """
  _checks.check_int("num_private", num_private, 2)
  for name, value in (("alpha", alpha), ("gamma", gamma)):
    _checks.check_nonnegative(name, value)
  train_kwargs = {"train": True} if train_kwargs is None else dict(train_kwargs)
  init, update = _irene_steps(model, layer, features, int(num_private), float(alpha),
                              float(gamma), tx or sgd(), head_tx or sgd(),
                              tuple(sorted(train_kwargs.items())))

  def check(state, data):
    private = data.get("private")
    if private is None:
      raise ValueError(f"data: expected the private label 'private' beside {sorted(data)}")
    private = np.asarray(private)
    if not np.issubdtype(private.dtype, np.integer) or private.min() < 0 \
        or private.max() >= num_private:
      raise ValueError(f"data['private']: expected integers in 0..{num_private - 1}, got values "
                       f"in [{private.min()}, {private.max()}] of dtype {private.dtype}")
  return Trainer(init, update, check=check)


@functools.lru_cache(maxsize=32)
def _irene_steps(model, layer, features, num_private, alpha, gamma, tx, head_tx, train_kwargs):
  train_kwargs = dict(train_kwargs)
  layer_tap = tap(model, layer)
  head = PrivacyHead(num_private)

  def init(key, variables):
    head_params = head.init(key, jnp.zeros(features.shape, features.dtype))
    params = variables["params"]
    return IreneState(jnp.zeros((), jnp.int32), params, _model_state(variables), tx.init(params),
                      head_params, head_tx.init(head_params))

  def update(st: IreneState, batch, key):
    _, k_drop = jax.random.split(key)
    fixed_head = jax.lax.stop_gradient(st.critic_params)

    def backbone_loss(p):
      logits, new_state, z = _train_forward(model, {"params": p, **st.model_state}, batch["x"],
                                            k_drop, train_kwargs, layer_tap)
      ce = weighted_cross_entropy(logits, batch["y"], batch.get("weight"))
      q = jax.nn.softmax(head.apply(fixed_head, z))
      mi = mutual_information(q, batch["private"], num_private, batch.get("mi_mask"))
      return alpha * ce + gamma * mi, (new_state, z, ce, mi)

    (loss, (new_state, z, ce, mi)), grads = jax.value_and_grad(backbone_loss,
                                                               has_aux=True)(st.params)
    updates, opt = tx.update(grads, st.opt_state, st.params)

    def head_loss(hp):
      out = head.apply(hp, jax.lax.stop_gradient(z))
      return weighted_cross_entropy(out, batch["private"]), out

    (h_loss, out), h_grads = jax.value_and_grad(head_loss, has_aux=True)(st.critic_params)
    h_updates, h_opt = head_tx.update(h_grads, st.critic_opt_state, st.critic_params)
    new = IreneState(st.step + 1, optax.apply_updates(st.params, updates), new_state, opt,
                     optax.apply_updates(st.critic_params, h_updates), h_opt)
    return new, {"loss": loss, "cross_entropy": ce, "mi": mi, "head_loss": h_loss,
                 "head_accuracy": jnp.mean(jnp.argmax(out, -1) == batch["private"])}

  return init, update


def information_removal(*, num_steps: int = 500, batch_size: int = 64, alpha: float = 0.5,
                        gamma: float = 0.2, learning_rate: float = 1e-4,
                        head_learning_rate: float = 0.1, objective=None,
                        layer: Optional[str] = None,
                        train_kwargs: Optional[dict] = None) -> FineTuning:
  """IRENE as post-hoc fine-tuning for :func:`debiasjax.debias`: on the debias split, the privacy
  head reads the protected group from the detached bottleneck (``layer``, default the
  penultimate: the pooled features) and the model minimises ``alpha CE + gamma I`` (Adam at
  ``learning_rate``; the head SGD at ``head_learning_rate``); then the threshold (``objective``
  None: 0.5). Supervised: it reads the group labels."""
  from debiasjax.methods.finetuning import adam, check_training, one_row_shape, split_arrays
  check_training(num_steps, batch_size, learning_rate)
  for name, value in (("alpha", alpha), ("gamma", gamma)):
    _checks.check_nonnegative(name, value)

  def trainer(ctx) -> Trainer:
    return irene_trainer(ctx.model, ctx.layer, one_row_shape(ctx, ctx.layer),
                         num_private=max(ctx.num_groups, 2), alpha=alpha, gamma=gamma,
                         tx=adam(float(learning_rate)), head_tx=sgd(float(head_learning_rate)),
                         train_kwargs=train_kwargs)

  def columns(ctx) -> dict:
    return {"private": np.asarray(split_arrays(ctx.data)[2]).astype(np.int32)}

  return FineTuning(trainer, num_steps, batch_size, objective=objective, layer=layer,
                    columns=columns)
