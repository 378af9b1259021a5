"""Gradient-based fine-tuning: Savani's adversarial fine-tuning, Zhang et al.'s adversarial
learning, and plain fine-tuning as their baseline.

All three fine-tune a trained Flax model on the debias split and end, like the weight searches,
with Savani's threshold search (:mod:`debiasjax.methods.objective`), returning a
:class:`~debiasjax.methods.search.SearchResult`. Steps run in ``lax.scan`` for dense models and
as separately jitted steps for convolutional ones (XLA:CPU runs convolution gradients inside
loops far below speed); either way a whole run is pure and vmaps over seeds.

* :func:`savani_adversarial` -- Savani et al. (2020), Algorithm 3: a critic reads a bootstrapped
  minibatch's penultimate features *as one input* and regresses the minibatch's soft bias (the
  bias measure on P(y = 1) instead of decisions); the model is then trained against the critic:
  v1 loss ``lam |critic| + (1 - lam) CE`` (the code's form of Algorithm 3 line 11), v2 loss
  ``max(1, lam (|critic| - epsilon + margin) + 1) CE``.
* :func:`zhang_adversarial` -- Zhang, Lemoine & Mitchell (2018): an adversary predicts the
  protected attribute from the logit (and the label, for equalized odds); the predictor steps
  along ``g_P - (g_P . u) u - alpha g_A`` with ``u = g_A / ||g_A||`` over the whole parameter
  pytree, both gradients from one forward pass; ``alpha = sqrt(t)``, learning rate ~ 1 / t.
* :func:`fine_tune` -- more cross-entropy training on the debias split, then the same threshold
  search: what the adversarial terms must beat.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from debiasjax.evaluate import positive_probability, score_function
from debiasjax.methods.objective import Objective, bias_from_confusion, check_objective, \
    threshold_grid, threshold_search
from debiasjax.methods.search import SearchResult, _num_groups, _split_arrays, check_int
from debiasjax.metrics.fairness import group_confusion
from debiasjax.models.taps import tap
from debiasjax.train import supervised, variables_of, weighted_cross_entropy


# ---------------------------------------------------------------------------------------------
# Shared pieces

def _model_state(variables) -> dict:
  return {k: v for k, v in variables.items() if k != "params"}


def _train_forward(model, variables, x, key, train_kwargs, layer_tap=None):
  """Training-mode forward (dropout from ``key``, BatchNorm statistics updated):
  ``(logits, new model state[, activations])``."""
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


def _repeat(step: Callable, state, key, num: int, scan: bool):
  """``num`` applications of ``step(state, key) -> (state, metric)``; metrics stacked."""
  keys = jax.random.split(key, num)
  if scan:
    return jax.lax.scan(step, state, keys)
  metrics = []
  for k in keys:
    state, m = step(state, k)
    metrics.append(m)
  return state, jnp.stack(metrics)


def _use_scan(scan: Optional[bool], x) -> bool:
  return bool(jnp.ndim(x) <= 2) if scan is None else bool(scan)


def _check_batch(batch_size: int, n: int) -> None:
  check_int("batch_size", batch_size, 1)
  if n < 2:
    raise ValueError(f"data: expected at least 2 rows, got {n}")


def chunked_scores(model, variables, x, *, batch_size: int = 512) -> jax.Array:
  """P(y = 1) of every row of ``x`` (eval mode), in chunks of ``batch_size`` (traceable)."""
  score = _eval_scorer(model)
  return jnp.concatenate([score(variables, x[i:i + batch_size])
                          for i in range(0, jnp.shape(x)[0], batch_size)])


@functools.lru_cache(maxsize=32)
def _eval_scorer(model):
  return jax.jit(score_function(model))


def final_threshold(model, variables, data, objective: Objective, *, num_thresholds: int = 1001,
                    num_groups: Optional[int] = None) -> SearchResult:
  """The threshold search of every fine-tuning method, as a :class:`SearchResult`."""
  objective = check_objective(objective)
  x, y, g = _split_arrays(data)
  s = chunked_scores(model, variables, jnp.asarray(x))
  c = threshold_search(objective, s, jnp.asarray(y), jnp.asarray(g),
                       num_groups=_num_groups(g, num_groups),
                       thresholds=threshold_grid(num_thresholds))
  return SearchResult(variables, c.threshold, c.phi, c.score, c.bias, c.performance, {})


# ---------------------------------------------------------------------------------------------
# Savani et al.: adversarial fine-tuning

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


class AdversarialState(NamedTuple):
  params: Any
  model_state: Any
  opt_state: Any
  critic_params: Any
  critic_opt_state: Any


def savani_adversarial(model: nn.Module, variables: Any, data: Any, *, key: jax.Array,
                       layer: str, objective: Objective = Objective(),
                       critic: Optional[nn.Module] = None, epochs: int = 16,
                       critic_steps: int = 201, actor_steps: int = 101, batch_size: int = 64,
                       lam: Optional[float] = None, critic_lr: float = 1e-3,
                       actor_lr: Optional[float] = None, train_kwargs: Optional[dict] = None,
                       num_thresholds: int = 1001, scan: Optional[bool] = None,
                       num_groups: Optional[int] = None) -> SearchResult:
  """Savani et al.'s adversarial fine-tuning (Algorithm 3).

  Each of ``epochs`` rounds: ``critic_steps`` critic updates (a minibatch drawn with
  replacement; target its soft bias under the frozen model; MSE, Adam) then ``actor_steps``
  model updates against the frozen critic (training mode: dropout on, BatchNorm statistics
  updated, as the paper's code). v1 (``objective.version``) minimises
  ``lam |critic(f'(X))| + (1 - lam) CE(Y, f(X))``, ``lam = objective.lam``; v2 minimises
  ``max(1, lam (|critic| - epsilon + margin) + 1) CE``, ``lam = 1``. Finally the threshold on
  the debias split (``linspace(0, 1, num_thresholds)``).

  Args:
    model: the Flax module; ``layer``: the module path of its penultimate features (``"layer10"``
      for the MLP; ``"stage4"`` maps or ``"pool"`` vectors for the ResNets).
    variables, data, key, objective: trained variables, debias split, PRNG key, objective.
    critic: the critic module (default :class:`Critic`, with a ``(16, 32)`` convolutional
      encoder when the features are maps).
    epochs, critic_steps, actor_steps, batch_size: the schedule (v1 configs: 16, 201, 101, 64;
      v2: 32, 201, 301, 64).
    lam: weight of the critic term (default: see above).
    critic_lr, actor_lr: Adam learning rates (actor: 1e-3 for v1, 1e-4 for v2).
    train_kwargs: keyword arguments of the training-mode forward (default ``{"train": True}``;
      ``{}`` fine-tunes in eval mode).
    scan: run steps in ``lax.scan`` (default: for inputs of rank <= 2, i.e. tables).

  Returns:
    :class:`SearchResult`; ``trace`` has the mean critic loss, critic term and cross-entropy of
    every round.
  """
  objective = check_objective(objective)
  for name, value in (("epochs", epochs), ("critic_steps", critic_steps), ("actor_steps", actor_steps)):
    check_int(name, value, 1)
  num_groups = _num_groups(_split_arrays(data)[2], num_groups)
  x, y, g = (jnp.asarray(a) for a in _split_arrays(data))
  n = x.shape[0]
  _check_batch(batch_size, n)
  lam = (objective.lam if objective.version == "v1" else 1.0) if lam is None else float(lam)
  actor_lr = (1e-3 if objective.version == "v1" else 1e-4) if actor_lr is None else actor_lr
  train_kwargs = {"train": True} if train_kwargs is None else dict(train_kwargs)
  layer_tap = tap(model, layer)
  features_shape = jax.eval_shape(lambda v: layer_tap.activations(v, x[:batch_size]), variables)
  if critic is None:
    critic = Critic(conv=(16, 32) if len(features_shape.shape) == 4 else ())
  actor_tx, critic_tx = optax.adam(actor_lr), optax.adam(critic_lr)
  init_key, run_key = jax.random.split(key)
  critic_params = critic.init(init_key, jnp.zeros(features_shape.shape, features_shape.dtype))
  params = variables["params"]
  state = AdversarialState(params, _model_state(variables), actor_tx.init(params), critic_params,
                           critic_tx.init(critic_params))
  sample = lambda k: jax.random.randint(k, (batch_size,), 0, n)
  bias_of = functools.partial(soft_bias, bias=objective.bias, privileged=objective.privileged,
                              num_groups=num_groups)

  def critic_step(st: AdversarialState, k):
    k_idx, k_drop = jax.random.split(k)
    idx = sample(k_idx)
    logits, acts = layer_tap.forward({"params": st.params, **st.model_state}, x[idx])
    target = jax.lax.stop_gradient(bias_of(positive_probability(logits), y[idx], g[idx]))
    acts = jax.lax.stop_gradient(acts)

    def loss_fn(cp):
      pred = critic.apply(cp, acts, train=True, rngs={"dropout": k_drop})
      return (pred - target) ** 2

    loss, grads = jax.value_and_grad(loss_fn)(st.critic_params)
    updates, opt = critic_tx.update(grads, st.critic_opt_state, st.critic_params)
    return st._replace(critic_params=optax.apply_updates(st.critic_params, updates),
                       critic_opt_state=opt), loss

  def actor_step(st: AdversarialState, k):
    k_idx, k_drop = jax.random.split(k)
    idx = sample(k_idx)

    def loss_fn(p):
      logits, new_state, acts = _train_forward(model, {"params": p, **st.model_state}, x[idx],
                                               k_drop, train_kwargs, layer_tap)
      predicted = jnp.abs(critic.apply(st.critic_params, acts))
      ce = weighted_cross_entropy(logits, y[idx])
      if objective.version == "v1":
        loss = lam * predicted + (1.0 - lam) * ce
      else:
        loss = jnp.maximum(1.0, lam * (predicted - objective.epsilon + objective.margin) + 1.0) * ce
      return loss, (new_state, predicted, ce)

    (_, (new_state, predicted, ce)), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
    updates, opt = actor_tx.update(grads, st.opt_state, st.params)
    return st._replace(params=optax.apply_updates(st.params, updates), model_state=new_state,
                       opt_state=opt), jnp.stack([predicted, ce])

  use_scan = _use_scan(scan, x)
  if not use_scan:
    critic_step, actor_step = jax.jit(critic_step), jax.jit(actor_step)

  def round_(st, k):
    k_critic, k_actor = jax.random.split(k)
    st, critic_loss = _repeat(critic_step, st, k_critic, critic_steps, use_scan)
    st, actor = _repeat(actor_step, st, k_actor, actor_steps, use_scan)
    return st, jnp.stack([critic_loss.mean(), *actor.mean(0)])

  state, history = _repeat(round_, state, run_key, epochs, use_scan)
  tuned = {"params": state.params, **state.model_state}
  result = final_threshold(model, tuned, data, objective, num_thresholds=num_thresholds,
                           num_groups=num_groups)
  trace = {"critic_loss": history[:, 0], "critic_term": history[:, 1],
           "cross_entropy": history[:, 2]}
  return result._replace(trace=trace)


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
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  adversary_params: Any
  adversary_opt_state: Any


def _binary_logit(logits):
  return logits[..., 0] if logits.shape[-1] == 1 else logits[..., 1] - logits[..., 0]


def zhang_adversarial(model: nn.Module, variables: Any, data: Any, *, key: jax.Array,
                      constraint: str = "equalized_odds", objective: Objective = Objective(),
                      num_steps: int = 1000, batch_size: int = 128,
                      alpha: Union[str, float] = "sqrt", learning_rate: float = 0.01,
                      decay_steps: float = 100.0, adversary_lr: float = 0.01,
                      optimizer: str = "sgd", warmup_steps: int = 500,
                      per_leaf: bool = False, train_kwargs: Optional[dict] = None,
                      num_thresholds: int = 1001, scan: Optional[bool] = None,
                      num_groups: Optional[int] = None) -> SearchResult:
  """Zhang, Lemoine & Mitchell's adversarial learning as fine-tuning of a trained model.

  Every step draws a minibatch; the adversary (:class:`ZhangAdversary`) takes a gradient step on
  its loss ``L_A`` (cross-entropy of "privileged" given the logit, and the label for
  ``"equalized_odds"``; only positives for ``"equal_opportunity"``); the predictor steps along
  :func:`projected_update` of ``g_P = dL_P/dW`` (cross-entropy) and ``g_A = dL_A/dW``, both
  from one forward pass (``jax.jacrev`` of the loss pair). The paper's schedules: ``alpha_t =
  sqrt(t)`` (or a fixed float, AIF360's 0.1) and ``lr_t = learning_rate / (1 + t / decay_steps)``
  (~ 1 / t) with plain SGD steps (``optimizer="adam"`` applies the schedule through Adam, as
  AIF360 does; then prefer a fixed ``alpha`` such as 0.3: Adam's per-coordinate scaling makes
  ``sqrt(t)`` overshoot into the opposite disparity). Finally the threshold search with
  ``objective``.

  Args:
    constraint: ``"demographic_parity"``, ``"equalized_odds"`` or ``"equal_opportunity"``.
    num_steps, batch_size: steps and minibatch size.
    alpha: ``"sqrt"`` or a fixed weight of the ``-alpha g_A`` term.
    learning_rate, decay_steps, optimizer: the predictor's schedule and optimizer ("adam" or
      "sgd"); adversary_lr: the adversary's Adam rate.
    per_leaf: project per tensor instead of over the whole pytree.
    warmup_steps: adversary-only steps first. A fresh adversary's random weights point either
      way, and pushing the predictor against them can *raise* the bias; the paper trains both
      from scratch, where this matters less.
    Others as :func:`savani_adversarial`.

  Returns:
    :class:`SearchResult`; ``trace`` holds per step the predictor and adversary losses.
  """
  if constraint not in ZHANG_CONSTRAINTS:
    raise ValueError(f"constraint: expected one of {list(ZHANG_CONSTRAINTS)}, got {constraint!r}")
  check_int("warmup_steps", warmup_steps, 0)
  if not (alpha == "sqrt" or (isinstance(alpha, (int, float)) and alpha >= 0)):
    raise ValueError(f"alpha: expected 'sqrt' or a number >= 0, got {alpha!r}")
  objective = check_objective(objective)
  check_int("num_steps", num_steps, 1)
  num_groups = _num_groups(_split_arrays(data)[2], num_groups)
  x, y, g = (jnp.asarray(a) for a in _split_arrays(data))
  n = x.shape[0]
  _check_batch(batch_size, n)
  train_kwargs = {"train": True} if train_kwargs is None else dict(train_kwargs)
  adversary = ZhangAdversary(use_label=constraint != "demographic_parity")
  adv_tx = optax.adam(adversary_lr)
  init_key, run_key = jax.random.split(key)
  adv_params = adversary.init(init_key, jnp.zeros(2), jnp.zeros(2, jnp.int32))
  params = variables["params"]
  if optimizer not in ("adam", "sgd"):
    raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
  schedule = lambda t: learning_rate / (1.0 + t / decay_steps)
  tx = (optax.adam if optimizer == "adam" else optax.sgd)(schedule)
  state = ZhangState(jnp.zeros((), jnp.int32), params, _model_state(variables), tx.init(params),
                     adv_params, adv_tx.init(adv_params))
  privileged = (g == objective.privileged).astype(jnp.float32)

  def minibatch(k):
    idx = jax.random.randint(k, (batch_size,), 0, n)
    yb, zb = y[idx], privileged[idx]
    rows = (yb == 1).astype(jnp.float32) if constraint == "equal_opportunity" else jnp.ones_like(zb)
    return x[idx], yb, zb, rows

  def adversary_loss(ap, logits, yb, zb, rows):
    z_logit = adversary.apply(ap, _binary_logit(logits), yb)
    return jnp.sum(optax.sigmoid_binary_cross_entropy(z_logit, zb) * rows) / jnp.maximum(
        rows.sum(), 1.0)

  def step(st: ZhangState, k):
    k_idx, k_drop = jax.random.split(k)
    xb, yb, zb, rows = minibatch(k_idx)

    def losses(p, ap):
      logits, new_state, _ = _train_forward(model, {"params": p, **st.model_state}, xb, k_drop,
                                            train_kwargs)
      l_pred = weighted_cross_entropy(logits, yb)
      return jnp.stack([l_pred, adversary_loss(ap, logits, yb, zb, rows)]), new_state

    # One forward pass; the backward of both losses batched over the two cotangents.
    values, pullback, new_state = jax.vjp(losses, st.params, st.adversary_params, has_aux=True)
    jac_p, jac_a = jax.vmap(pullback)(jnp.eye(2, dtype=values.dtype))
    g_pred = jax.tree.map(lambda j: j[0], jac_p)
    g_adv = jax.tree.map(lambda j: j[1], jac_p)
    t = (st.step + 1).astype(jnp.float32)
    a = jnp.sqrt(t) if alpha == "sqrt" else jnp.float32(alpha)
    direction = projected_update(g_pred, g_adv, a, per_leaf=per_leaf)
    updates, opt = tx.update(direction, st.opt_state, st.params)
    adv_updates, adv_opt = adv_tx.update(jax.tree.map(lambda j: j[1], jac_a),
                                         st.adversary_opt_state, st.adversary_params)
    new = ZhangState(st.step + 1, optax.apply_updates(st.params, updates), new_state, opt,
                     optax.apply_updates(st.adversary_params, adv_updates), adv_opt)
    return new, values

  def warmup_step(st: ZhangState, k):
    k_idx, _ = jax.random.split(k)
    xb, yb, zb, rows = minibatch(k_idx)
    logits = model.apply({"params": st.params, **st.model_state}, xb)
    loss, grads = jax.value_and_grad(adversary_loss)(st.adversary_params, logits, yb, zb, rows)
    updates, adv_opt = adv_tx.update(grads, st.adversary_opt_state, st.adversary_params)
    return st._replace(adversary_params=optax.apply_updates(st.adversary_params, updates),
                       adversary_opt_state=adv_opt), loss

  use_scan = _use_scan(scan, x)
  warm_key, run_key = jax.random.split(run_key)
  if warmup_steps:
    state, _ = _repeat(warmup_step if use_scan else jax.jit(warmup_step), state, warm_key,
                       warmup_steps, use_scan)
  state, history = _repeat(step if use_scan else jax.jit(step), state, run_key, num_steps, use_scan)
  tuned = {"params": state.params, **state.model_state}
  result = final_threshold(model, tuned, data, objective, num_thresholds=num_thresholds,
                           num_groups=num_groups)
  return result._replace(trace={"predictor_loss": history[:, 0], "adversary_loss": history[:, 1]})


# ---------------------------------------------------------------------------------------------
# Baseline: plain fine-tuning

def fine_tune(model: nn.Module, variables: Any, data: Any, *, key: jax.Array,
              objective: Objective = Objective(), num_steps: int = 500, batch_size: int = 64,
              learning_rate: float = 1e-4, train_kwargs: Optional[dict] = None,
              num_thresholds: int = 1001, scan: Optional[bool] = None,
              num_groups: Optional[int] = None) -> SearchResult:
  """More cross-entropy training on the debias split (Adam, minibatches with replacement), then
  the threshold search: the baseline the adversarial methods must beat."""
  objective = check_objective(objective)
  check_int("num_steps", num_steps, 1)
  x, y, _ = (jnp.asarray(a) for a in _split_arrays(data))
  n = x.shape[0]
  _check_batch(batch_size, n)
  trainer = supervised(model, optax.adam(learning_rate), apply_kwargs=train_kwargs)
  state = trainer.init(key, variables)

  def step(st, k):
    k_idx, k_drop = jax.random.split(k)
    idx = jax.random.randint(k_idx, (batch_size,), 0, n)
    st, metrics = trainer.update(st, {"x": x[idx], "y": y[idx]}, k_drop)
    return st, metrics["loss"]

  use_scan = _use_scan(scan, x)
  state, losses = _repeat(step if use_scan else jax.jit(step), state, key, num_steps, use_scan)
  result = final_threshold(model, variables_of(state), data, objective,
                           num_thresholds=num_thresholds, num_groups=num_groups)
  return result._replace(trace={"loss": losses})
