"""Adversarial fine-tuning: Savani's critic, Zhang et al.'s projected gradients, and plain
fine-tuning as their baseline.

Each is a pure :class:`~debiasjax.train.Trainer` factory (``savani_trainer``,
``zhang_trainer``, ``train.supervised``) and a :class:`~debiasjax.methods.finetuning.FineTuning`
recipe of the same name without the suffix, which :func:`~debiasjax.methods.finetuning.tune`
(and :func:`debiasjax.debias`) trains on the debias split with :func:`debiasjax.train.fit` and
ends, like the weight searches, with Savani's threshold search. The alternating steps (critic /
model, adversary warm-up / joint) are phases of one trainer, so :func:`~debiasjax.train.fit`
compiles each once, K seeds stack into one vmapped program, and a run resumes exactly.

* Savani et al. (2020), Algorithm 3: a critic reads a minibatch's penultimate features *as
  one input* and regresses the minibatch's soft bias (the bias measure on P(y = 1) instead of
  decisions); the model is then trained against the critic: v1 loss ``lam |critic| + (1 - lam)
  CE`` (the code's form of Algorithm 3 line 11), v2 loss ``max(1, lam (|critic| - epsilon +
  margin) + 1) CE``.
* Zhang, Lemoine & Mitchell (2018): an adversary predicts the protected attribute from the
  logit (and the label, for equalized odds); the predictor steps along ``g_P - (g_P . u) u -
  alpha g_A`` with ``u = g_A / ||g_A||`` over the whole parameter pytree, both gradients from
  one forward pass; ``alpha = sqrt(t)``, learning rate ~ 1 / t.
* :func:`fine_tune` -- more cross-entropy training on the debias split, then the same threshold
  search: what the adversarial terms must beat.
"""

from __future__ import annotations

import functools

from typing import Any, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks
from debiasjax.evaluate import positive_probability
from debiasjax.methods.finetuning import Context, FineTuning, adam, check_training
from debiasjax.methods.objective import Objective, as_objective, bias_from_confusion, \
    check_objective
from debiasjax.metrics.confusion import group_confusion
from debiasjax.models.taps import tap
from debiasjax.train import CriticState, Trainer, supervised, weighted_cross_entropy


def _model_state(variables) -> dict:
  return {k: v for k, v in variables.items() if k != "params"}


def _train_forward(model, variables, x, key, train_kwargs, layer_tap=None):
  """Training-mode forward (dropout from ``key``, BatchNorm statistics updated):
  ``(logits, new model state, activations or None)``."""
  state = _model_state(variables)
  mutable = list(state) or False
  kwargs = dict(train_kwargs, rngs={"dropout": key}, mutable=mutable)
  if layer_tap is None:
    out = model.apply(variables, x, **kwargs)
    acts = None
  else:
    out, acts = layer_tap.forward(variables, x, **kwargs)
  logits, updates = out if mutable else (out, {})
  return logits, {**state, **updates}, acts


class Critic(nn.Module):
  """Savani et al.'s critic: one scalar, the predicted bias of a whole minibatch.

  The minibatch's features ``[B, D]`` are concatenated into one vector (the "first layer
  concatenates the minibatch"), mapped linearly to ``width`` units, then ``depth`` blocks of
  Dense -> ReLU -> Dropout and a scalar output. For image models the features are maps
  ``[B, H, W, C]``: a per-sample convolutional encoder (``conv`` channels, stride 2 after the
  first, then spatial mean) turns each into a vector first.
  """
  width: int = 32
  depth: int = 3
  dropout: float = 0.2
  conv: Sequence[int] = ()

  @nn.compact
  def __call__(self, a, train: bool = False):
    if a.ndim == 4:
      for i, channels in enumerate(self.conv):
        a = nn.relu(nn.Conv(channels, (3, 3), strides=2 if i else 1, name=f"conv{i + 1}")(a))
      a = a.mean((1, 2))
    h = nn.Dense(self.width, name="concat")(a.reshape(1, -1))
    for i in range(self.depth):
      h = nn.relu(nn.Dense(self.width, name=f"dense{i + 1}")(h))
      h = nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.Dense(1, name="out")(h)[0, 0]


def soft_bias(probability, y, groups, *, bias: str, privileged: int, num_groups: int):
  """The bias measure with P(y_hat = 1) in place of decisions (Savani's critic target)."""
  c = group_confusion(y, probability, groups, num_groups=num_groups)
  return bias_from_confusion(c, bias, privileged=privileged)


SavaniState = CriticState    # the model's parameters, other collections and optimizer state,
                             # and the critic's


def savani_trainer(model: nn.Module, layer: str, features: jax.ShapeDtypeStruct, *,
                   objective: Objective, num_groups: int, critic: Optional[nn.Module] = None,
                   critic_steps: int = 201, actor_steps: int = 101, lam: Optional[float] = None,
                   critic_lr: float = 1e-3, actor_lr: Optional[float] = None,
                   train_kwargs: Optional[dict] = None) -> Trainer:
  """Savani et al.'s adversarial fine-tuning (Algorithm 3) as a two-phase trainer.

  Every round of ``critic_steps + actor_steps`` steps: ``critic_steps`` critic updates (target:
  the minibatch's soft bias under the frozen model, eval mode; MSE, Adam) then ``actor_steps``
  model updates against the frozen critic (training mode: dropout on, BatchNorm statistics
  updated, as the paper's code). v1 (``objective.version``) minimises ``lam |critic(f'(X))| +
  (1 - lam) CE(Y, f(X))``, ``lam = objective.lam``; v2 minimises ``max(1, lam (|critic| -
  epsilon + margin) + 1) CE``, ``lam = 1``.

  Args:
    model, layer: the Flax module and the module path of the features the critic reads.
    features: shape of one minibatch's features at ``layer`` (the critic reads it whole).
    objective: the bias measure, version and privileged group.
    num_groups: number of groups.
    critic: the critic module (default :class:`Critic`, with a ``(16, 32)`` convolutional
      encoder when the features are maps).
    critic_steps, actor_steps: the schedule (v1 configs: 201, 101; v2: 201, 301).
    lam: weight of the critic term (default: see above).
    critic_lr, actor_lr: Adam learning rates (actor: 1e-3 for v1, 1e-4 for v2).
    train_kwargs: keyword arguments of the training-mode forward (default ``{"train": True}``;
      ``{}`` fine-tunes in eval mode).

  Batches: ``x``, ``y``, ``group``.
  """
  objective = check_objective(objective)
  _checks.check_int("critic_steps", critic_steps, 1)
  _checks.check_int("actor_steps", actor_steps, 1)
  lam = (objective.lam if objective.version == "v1" else 1.0) if lam is None else float(lam)
  actor_lr = (1e-3 if objective.version == "v1" else 1e-4) if actor_lr is None else actor_lr
  train_kwargs = {"train": True} if train_kwargs is None else dict(train_kwargs)
  critic = critic or Critic(conv=(16, 32) if len(features.shape) == 4 else ())
  init, critic_update, actor_update = _savani_steps(
      model, layer, features, objective, num_groups, critic, lam, float(critic_lr),
      float(actor_lr), tuple(sorted(train_kwargs.items())))
  period = critic_steps + actor_steps
  return Trainer(init, (critic_update, actor_update),
                 phase=lambda step: 0 if step % period < critic_steps else 1)


@functools.lru_cache(maxsize=32)
def _savani_steps(model, layer, features, objective, num_groups, critic, lam, critic_lr,
                  actor_lr, train_kwargs):
  """Savani's init and two update functions, one set per setting (so a recipe built again
  reuses the compiled steps)."""
  train_kwargs = dict(train_kwargs)
  layer_tap = tap(model, layer)
  actor_tx, critic_tx = optax.adam(actor_lr), optax.adam(critic_lr)

  def init(key, variables):
    critic_params = critic.init(key, jnp.zeros(features.shape, features.dtype))
    params = variables["params"]
    return SavaniState(jnp.zeros((), jnp.int32), params, _model_state(variables),
                       actor_tx.init(params), critic_params, critic_tx.init(critic_params))

  def critic_update(st: SavaniState, batch, key):
    _, k_drop = jax.random.split(key)
    logits, acts = layer_tap.forward({"params": st.params, **st.model_state}, batch["x"])
    target = jax.lax.stop_gradient(soft_bias(
        positive_probability(logits), batch["y"], batch["group"], bias=objective.bias,
        privileged=objective.privileged, num_groups=num_groups))
    acts = jax.lax.stop_gradient(acts)

    def loss_fn(cp):
      pred = critic.apply(cp, acts, train=True, rngs={"dropout": k_drop})
      return (pred - target) ** 2

    loss, grads = jax.value_and_grad(loss_fn)(st.critic_params)
    updates, opt = critic_tx.update(grads, st.critic_opt_state, st.critic_params)
    return st._replace(step=st.step + 1, critic_params=optax.apply_updates(st.critic_params,
                                                                           updates),
                       critic_opt_state=opt), {"critic_loss": loss}

  def actor_update(st: SavaniState, batch, key):
    _, k_drop = jax.random.split(key)

    def loss_fn(p):
      logits, new_state, acts = _train_forward(model, {"params": p, **st.model_state}, batch["x"],
                                               k_drop, train_kwargs, layer_tap)
      predicted = jnp.abs(critic.apply(st.critic_params, acts))
      ce = weighted_cross_entropy(logits, batch["y"])
      if objective.version == "v1":
        loss = lam * predicted + (1.0 - lam) * ce
      else:
        loss = jnp.maximum(1.0, lam * (predicted - objective.epsilon + objective.margin) + 1.0) * ce
      return loss, (new_state, predicted, ce)

    (_, (new_state, predicted, ce)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    updates, opt = actor_tx.update(grads, st.opt_state, st.params)
    return st._replace(step=st.step + 1, params=optax.apply_updates(st.params, updates),
                       model_state=new_state, opt_state=opt), {"critic_term": predicted,
                                                              "cross_entropy": ce}

  return init, critic_update, actor_update


def savani_adversarial(*, objective: Objective = Objective(), critic: Optional[nn.Module] = None,
                       epochs: int = 16, critic_steps: int = 201, actor_steps: int = 101,
                       batch_size: int = 64, lam: Optional[float] = None, critic_lr: float = 1e-3,
                       actor_lr: Optional[float] = None, train_kwargs: Optional[dict] = None,
                       layer: Optional[str] = None) -> FineTuning:
  """Savani et al.'s adversarial fine-tuning (:func:`savani_trainer`) for ``epochs`` rounds on
  the debias split, then the threshold with ``objective``; the critic reads ``layer`` (default:
  the penultimate layer). The trace holds per round the mean critic loss, critic term and
  cross-entropy. The paper's v1 configs: 16 rounds of 201 critic and 101 actor steps, batch 64;
  v2: 32, 201, 301."""
  objective = as_objective(objective)
  for name, value in (("epochs", epochs), ("critic_steps", critic_steps),
                      ("actor_steps", actor_steps)):
    _checks.check_int(name, value, 1)
  check_training(epochs, batch_size)

  def trainer(ctx: Context) -> Trainer:
    n = min(batch_size, len(ctx.data.y))
    x = jnp.asarray(ctx.data.x[:n])
    features = jax.eval_shape(lambda v: tap(ctx.model, ctx.layer).activations(v, x),
                              ctx.variables)
    return savani_trainer(ctx.model, ctx.layer, features, objective=ctx.objective,
                          num_groups=ctx.num_groups, critic=critic, critic_steps=critic_steps,
                          actor_steps=actor_steps, lam=lam, critic_lr=critic_lr,
                          actor_lr=actor_lr, train_kwargs=train_kwargs)

  def per_round(history: dict) -> dict:
    mean = lambda v, steps: np.asarray(v).reshape(v.shape[:-1] + (epochs, steps)).mean(-1)
    return {"critic_loss": mean(history["critic_loss"], critic_steps),
            "critic_term": mean(history["critic_term"], actor_steps),
            "cross_entropy": mean(history["cross_entropy"], actor_steps)}

  return FineTuning(trainer, epochs * (critic_steps + actor_steps), batch_size,
                    objective=objective, layer=layer, trace=per_round)


# ---------------------------------------------------------------------------------------------
# Zhang, Lemoine & Mitchell: adversarial learning with projected gradients

ZHANG_CONSTRAINTS = ("demographic_parity", "equalized_odds", "equal_opportunity")


class ZhangAdversary(nn.Module):
  """Predicts the protected attribute's logit from the predictor's logit ``l`` (and ``y``).

  As AIF360: ``s = sigmoid((1 + |c|) l)`` with a learnable ``c``, then a linear map of ``[s]``
  (demographic parity) or ``[s, s y, s (1 - y)]`` (equalized odds / opportunity).
  """
  use_label: bool

  @nn.compact
  def __call__(self, logit, y):
    c = self.param("c", nn.initializers.ones, ())
    s = jax.nn.sigmoid((1.0 + jnp.abs(c)) * logit)
    yf = y.astype(s.dtype)
    feats = jnp.stack([s, s * yf, s * (1.0 - yf)] if self.use_label else [s], axis=-1)
    return nn.Dense(1, name="linear")(feats)[:, 0]


def _vdot(a, b) -> jax.Array:
  return sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def projected_update(g_pred, g_adv, alpha, *, per_leaf: bool = False, eps: float = 1e-12):
  """Zhang et al.'s predictor direction ``g_P - (g_P . u) u - alpha g_A``, ``u = g_A / ||g_A||``.

  ``g_P - (g_P . u) u`` is orthogonal to ``g_A``: the step cannot help the adversary, and
  ``- alpha g_A`` actively hurts it. The inner products run over the whole parameter pytree
  (the paper's W) or, with ``per_leaf=True``, per tensor (AIF360's per-variable form).
  """
  if per_leaf:
    def leaf(gp, ga):
      u = ga / (jnp.linalg.norm(ga.ravel()) + eps)
      return gp - jnp.vdot(gp, u) * u - alpha * ga
    return jax.tree.map(leaf, g_pred, g_adv)
  norm = jnp.sqrt(_vdot(g_adv, g_adv))
  coef = _vdot(g_pred, g_adv) / (norm + eps) ** 2
  return jax.tree.map(lambda gp, ga: gp - coef * ga - alpha * ga, g_pred, g_adv)


class ZhangState(NamedTuple):
  """The predictor's parameters, other collections and optimizer state, and the adversary's."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  adversary_params: Any
  adversary_opt_state: Any


def _binary_logit(logits):
  return logits[..., 0] if logits.shape[-1] == 1 else logits[..., 1] - logits[..., 0]


def _check_zhang(constraint, alpha, optimizer, warmup_steps) -> None:
  _checks.check_option("constraint", constraint, ZHANG_CONSTRAINTS)
  _checks.check_int("warmup_steps", warmup_steps, 0)
  if not (alpha == "sqrt" or (isinstance(alpha, (int, float)) and not isinstance(alpha, bool)
                              and alpha >= 0)):
    raise ValueError(f"alpha: expected 'sqrt' or a number >= 0, got {alpha!r}")
  _checks.check_option("optimizer", optimizer, ("adam", "sgd"))


def zhang_trainer(model: nn.Module, *, constraint: str = "equalized_odds", privileged: int = 1,
                  alpha: Union[str, float] = "sqrt", learning_rate: float = 0.01,
                  decay_steps: float = 100.0, adversary_lr: float = 0.01, optimizer: str = "sgd",
                  warmup_steps: int = 500, per_leaf: bool = False,
                  train_kwargs: Optional[dict] = None) -> Trainer:
  """Zhang, Lemoine & Mitchell's adversarial learning as fine-tuning, a two-phase trainer.

  The first ``warmup_steps`` steps train only the adversary (a fresh adversary's random weights
  point either way, and pushing the predictor against them can *raise* the bias; the paper
  trains both from scratch, where this matters less). Every later step: the adversary
  (:class:`ZhangAdversary`) takes a gradient step on its loss ``L_A`` (cross-entropy of
  "group == privileged" given the logit, and the label for ``"equalized_odds"``; only
  positives for ``"equal_opportunity"``); the predictor steps along :func:`projected_update` of
  ``g_P = dL_P/dW`` (cross-entropy) and ``g_A = dL_A/dW``, both from one forward pass
  (``jax.vjp`` of the loss pair). The paper's schedules: ``alpha_t = sqrt(t)`` (or a fixed
  float, AIF360's 0.1) and ``lr_t = learning_rate / (1 + t / decay_steps)`` (~ 1 / t) with
  plain SGD steps (``optimizer="adam"`` applies the schedule through Adam, as AIF360 does; then
  prefer a fixed ``alpha`` such as 0.3: Adam's per-coordinate scaling makes ``sqrt(t)``
  overshoot into the opposite disparity). Batches: ``x``, ``y``, ``group``.
  """
  _check_zhang(constraint, alpha, optimizer, warmup_steps)
  train_kwargs = {"train": True} if train_kwargs is None else dict(train_kwargs)
  init, warmup_update, joint_update = _zhang_steps(
      model, constraint, privileged, alpha if alpha == "sqrt" else float(alpha),
      float(learning_rate), float(decay_steps), float(adversary_lr), optimizer, warmup_steps,
      per_leaf, tuple(sorted(train_kwargs.items())))
  return Trainer(init, (warmup_update, joint_update),
                 phase=lambda step: 0 if step < warmup_steps else 1)


@functools.lru_cache(maxsize=32)
def _zhang_steps(model, constraint, privileged, alpha, learning_rate, decay_steps, adversary_lr,
                 optimizer, warmup_steps, per_leaf, train_kwargs):
  """Zhang's init and two update functions, one set per setting."""
  train_kwargs = dict(train_kwargs)
  adversary = ZhangAdversary(use_label=constraint != "demographic_parity")
  adv_tx = optax.adam(adversary_lr)
  schedule = lambda t: learning_rate / (1.0 + t / decay_steps)
  tx = (optax.adam if optimizer == "adam" else optax.sgd)(schedule)

  def init(key, variables):
    adv_params = adversary.init(key, jnp.zeros(2), jnp.zeros(2, jnp.int32))
    params = variables["params"]
    return ZhangState(jnp.zeros((), jnp.int32), params, _model_state(variables), tx.init(params),
                      adv_params, adv_tx.init(adv_params))

  def targets(batch):
    z = (batch["group"] == privileged).astype(jnp.float32)
    rows = ((batch["y"] == 1).astype(jnp.float32) if constraint == "equal_opportunity"
            else jnp.ones_like(z))
    return z, rows

  def adversary_loss(ap, logits, y, z, rows):
    z_logit = adversary.apply(ap, _binary_logit(logits), y)
    return jnp.sum(optax.sigmoid_binary_cross_entropy(z_logit, z) * rows) / jnp.maximum(
        rows.sum(), 1.0)

  def warmup_update(st: ZhangState, batch, key):
    del key
    z, rows = targets(batch)
    logits = model.apply({"params": st.params, **st.model_state}, batch["x"])
    loss, grads = jax.value_and_grad(adversary_loss)(st.adversary_params, logits, batch["y"], z,
                                                      rows)
    updates, adv_opt = adv_tx.update(grads, st.adversary_opt_state, st.adversary_params)
    return st._replace(step=st.step + 1,
                       adversary_params=optax.apply_updates(st.adversary_params, updates),
                       adversary_opt_state=adv_opt), {"warmup_adversary_loss": loss}

  def joint_update(st: ZhangState, batch, key):
    _, k_drop = jax.random.split(key)
    z, rows = targets(batch)

    def losses(p, ap):
      logits, new_state, _ = _train_forward(model, {"params": p, **st.model_state}, batch["x"],
                                            k_drop, train_kwargs)
      l_pred = weighted_cross_entropy(logits, batch["y"])
      return jnp.stack([l_pred, adversary_loss(ap, logits, batch["y"], z, rows)]), new_state

    # One forward pass; the backward of both losses batched over the two cotangents.
    values, pullback, new_state = jax.vjp(losses, st.params, st.adversary_params, has_aux=True)
    jac_p, jac_a = jax.vmap(pullback)(jnp.eye(2, dtype=values.dtype))
    g_pred = jax.tree.map(lambda j: j[0], jac_p)
    g_adv = jax.tree.map(lambda j: j[1], jac_p)
    t = (st.step - warmup_steps + 1).astype(jnp.float32)
    a = jnp.sqrt(t) if alpha == "sqrt" else jnp.float32(alpha)
    direction = projected_update(g_pred, g_adv, a, per_leaf=per_leaf)
    updates, opt = tx.update(direction, st.opt_state, st.params)
    adv_updates, adv_opt = adv_tx.update(jax.tree.map(lambda j: j[1], jac_a),
                                         st.adversary_opt_state, st.adversary_params)
    new = ZhangState(st.step + 1, optax.apply_updates(st.params, updates), new_state, opt,
                     optax.apply_updates(st.adversary_params, adv_updates), adv_opt)
    return new, {"predictor_loss": values[0], "adversary_loss": values[1]}

  return init, warmup_update, joint_update


def zhang_adversarial(*, constraint: str = "equalized_odds", objective: Objective = Objective(),
                      num_steps: int = 1000, batch_size: int = 128,
                      alpha: Union[str, float] = "sqrt", learning_rate: float = 0.01,
                      decay_steps: float = 100.0, adversary_lr: float = 0.01,
                      optimizer: str = "sgd", warmup_steps: int = 500, per_leaf: bool = False,
                      train_kwargs: Optional[dict] = None) -> FineTuning:
  """Zhang et al.'s adversarial learning (:func:`zhang_trainer`) for ``warmup_steps`` adversary
  steps and ``num_steps`` joint steps on the debias split, then the threshold with
  ``objective`` (whose ``privileged`` group is the adversary's target). The trace holds the
  predictor and adversary losses of every joint step."""
  _check_zhang(constraint, alpha, optimizer, warmup_steps)
  objective = as_objective(objective)
  check_training(num_steps, batch_size, learning_rate)

  def trainer(ctx: Context) -> Trainer:
    return zhang_trainer(ctx.model, constraint=constraint, privileged=ctx.objective.privileged,
                         alpha=alpha, learning_rate=learning_rate, decay_steps=decay_steps,
                         adversary_lr=adversary_lr, optimizer=optimizer,
                         warmup_steps=warmup_steps, per_leaf=per_leaf, train_kwargs=train_kwargs)

  def joint(history: dict) -> dict:
    return {k: history[k] for k in ("predictor_loss", "adversary_loss")}

  return FineTuning(trainer, warmup_steps + num_steps, batch_size, objective=objective,
                    trace=joint)


# ---------------------------------------------------------------------------------------------
# Baseline: plain fine-tuning

def fine_tune(*, objective: Optional[Objective] = Objective(), num_steps: int = 500,
              batch_size: int = 64, learning_rate: float = 1e-4,
              train_kwargs: Optional[dict] = None) -> FineTuning:
  """More cross-entropy training on the debias split (Adam, :func:`debiasjax.train.supervised`),
  then the threshold search (``objective=None``: threshold 0.5): the baseline the adversarial
  methods must beat."""
  objective = None if objective is None else as_objective(objective)
  check_training(num_steps, batch_size, learning_rate)

  def trainer(ctx: Context) -> Trainer:
    return supervised(ctx.model, adam(float(learning_rate)), apply_kwargs=train_kwargs)

  return FineTuning(trainer, num_steps, batch_size, objective=objective)
