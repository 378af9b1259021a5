r"""DVGE: debiasing via gradient-based explanation on VAE latents (Zhang et al., 2023).

An encoder ``f`` (a VAE's mean; disentangled, FactorVAE: DVGE-D, or plain: DVGE-N) maps inputs
to latents ``z``. A sensitive classifier ``d(z)`` is trained and frozen; the task classifier
``g`` is trained on latents pushed along the two models' explanations,

    z' = z + Clip_ε(η1 ∇_z d_ŝ(z) − η2 ∇_z g_ŷ(z)),

where ``∇_z m_ĉ(z)`` is the gradient of the model's predicted-class logit (the reference
code's "focus": FullGrad reduced to the raw input gradient), detached; ``g``'s own focus is
recomputed at every step. ``g`` is evaluated on unperturbed latents. Pushing ``z`` along the
sensitive focus teaches ``g`` to ignore what ``d`` reads (η1); pushing it against ``g``'s own
focus is an adversarial augmentation that keeps the task information (η2).

The clip, three ways (``clip=``):

* ``"symmetric"`` (default): ``clip(v, −ε, ε)`` per coordinate, what "prevent introducing too
  much distortion" needs;
* ``"literal"``: the formula as the seed prints it, ``v if v > ε else max(v, −ε)``, which bounds
  ``v`` only from below;
* ``"none"``: no clip, what the reference code (``DexterJZ/DVGE``) does.

The step (``step=``): ``"gradient"`` (the paper) uses the raw focus, whose size is the
classifier's logit gradient and can dwarf the latents' spread (then any η saturates the clip);
``"unit"`` uses its direction ``F / ‖F‖`` per row, so that η is the step's length in latent
units, whatever the classifiers' scale.

Also here: the VAE objectives (ELBO with a Bernoulli or Gaussian likelihood, β-VAE, FactorVAE's
total-correlation penalty with its permuted-code critic) and their :class:`Trainer`.

Example:
  trainer = vae_trainer(vae, kind="factor")                 # DVGE-D's encoder
  state = train.fit(trainer, trainer.init(key, vae.init(key, x[:1], key)), {"x": x}, ...)
  z = encode(vae, variables_of(state), x)
  d = train_classifier(sensitive_mlp, z, s, key=key, num_steps=2000)
  g = dvge_trainer(task_mlp, sensitive_mlp, d, eta1=0.5, eta2=0.4)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks
from debiasjax.models.vae import VAE, Discriminator
from debiasjax.train import CriticState, Trainer, weighted_cross_entropy

CLIPS = ("symmetric", "literal", "none")
DIRECTIONS = ("toward", "away")
STEPS = ("gradient", "unit")
KINDS = ("vae", "beta", "factor")


# --- VAE objectives ----------------------------------------------------------------------------

def reconstruction_loss(likelihood: str, decoded, x: jax.Array) -> jax.Array:
  """``−log p(x | z)`` summed over a row's values and averaged over rows: Bernoulli with
  ``decoded`` as logits (binary cross-entropy, x in [0, 1]) or Gaussian with ``decoded`` =
  ``(means, log-variances)`` (``½ Σ_j (x_j − μ_j)² / σ_j² + log σ_j²``, the constant ½ log 2π
  dropped; a bare array of means is read as unit variance)."""
  if likelihood == "bernoulli":
    x = x.reshape(decoded.shape)
    per = optax.sigmoid_binary_cross_entropy(decoded, x)
  else:
    mean, logvar = decoded if isinstance(decoded, tuple) else (decoded, jnp.zeros(()))
    x = x.reshape(mean.shape)
    logvar = jnp.broadcast_to(logvar, mean.shape)
    per = 0.5 * (jnp.square(x - mean) * jnp.exp(-logvar) + logvar)
  return jnp.mean(jnp.sum(per.reshape(per.shape[0], -1), axis=1))


def kl_divergence(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """``KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ_j (μ_j² + σ_j² − log σ_j² − 1)``, averaged over rows."""
  return jnp.mean(0.5 * jnp.sum(jnp.square(mu) + jnp.exp(logvar) - logvar - 1.0, axis=-1))


def permute_dims(key: jax.Array, z: jax.Array) -> jax.Array:
  """Each latent dimension permuted across the batch independently (Kim & Mnih 2018, Alg. 1):
  samples of ``∏_j q(z_j)`` with every marginal kept and the dependence between dimensions
  broken."""
  keys = jax.random.split(key, z.shape[1])
  return jax.vmap(jax.random.permutation, in_axes=(0, 1), out_axes=1)(keys, z)


def total_correlation(critic_logits: jax.Array) -> jax.Array:
  """The density-ratio estimate ``TC(z) ≈ E[log D(z) − log (1 − D(z))]`` from the critic's two
  logits (class 0: ``q(z)``), the term FactorVAE adds with weight γ."""
  return jnp.mean(critic_logits[:, 0] - critic_logits[:, 1])


VAEState = CriticState       # FactorVAE's critic in critic_params / critic_opt_state (empty
                             # tuples for the other kinds)


def vae_trainer(vae: VAE, *, kind: str = "vae", beta: float = 4.0, gamma: float = 6.4,
                learning_rate: float = 1e-4, critic: Optional[nn.Module] = None,
                critic_learning_rate: float = 1e-5) -> Trainer:
  """Trains a VAE on batches ``{"x": ...}``.

  Args:
    vae: the model (:func:`~debiasjax.models.vae.conv_vae`, :func:`~debiasjax.models.vae.mlp_vae`).
    kind: ``"vae"`` (ELBO: reconstruction + KL), ``"beta"`` (β-VAE, Higgins et al. 2017:
      reconstruction + β·KL) or ``"factor"`` (FactorVAE, Kim & Mnih 2018: ELBO + γ·TC, with a
      critic trained in the same step on the step's codes against their dimension-wise
      permutation, cross-entropy ½(CE(D(z), 0) + CE(D(perm z), 1)); the VAE sees the critic of
      the step before, as in the reference code).
    beta, gamma: the β-VAE and FactorVAE weights (the DVGE scripts: β = 4, γ = 6.4).
    learning_rate: Adam (β = 0.9, 0.999) of the VAE (the reference: 1e-4).
    critic: FactorVAE's critic (default :class:`~debiasjax.models.vae.Discriminator`: 5 × 1000).
    critic_learning_rate: Adam (β = 0.5, 0.9) of the critic (1e-5).

  Metrics per step: ``loss``, ``reconstruction``, ``kl`` and, for FactorVAE, ``tc`` and
  ``critic_loss``.
  """
  _checks.check_option("kind", kind, KINDS)
  for name, value in (("beta", beta), ("gamma", gamma)):
    _checks.check_nonnegative(name, value)
  _checks.check_positive("learning_rate", learning_rate)
  _checks.check_positive("critic_learning_rate", critic_learning_rate)
  factor = kind == "factor"
  critic = (critic or Discriminator()) if factor else None
  tx = optax.adam(learning_rate, b1=0.9, b2=0.999)
  critic_tx = optax.adam(critic_learning_rate, b1=0.5, b2=0.9)
  kl_weight = beta if kind == "beta" else 1.0

  def init(key, variables):
    params = variables["params"]
    if not factor:
      return VAEState(jnp.zeros((), jnp.int32), params, {}, tx.init(params), (), ())
    critic_params = critic.init(jax.random.fold_in(key, 1),
                                jnp.zeros((1, vae.encoder.latents)))["params"]
    return VAEState(jnp.zeros((), jnp.int32), params, {}, tx.init(params), critic_params,
                    critic_tx.init(critic_params))

  def update(state, batch, key):
    sample_key, permute_key = jax.random.split(key)

    def loss_fn(params):
      decoded, mu, logvar, z = vae.apply({"params": params}, batch["x"], sample_key)
      rec = reconstruction_loss(vae.likelihood, decoded, batch["x"])
      kl = kl_divergence(mu, logvar)
      tc = (total_correlation(critic.apply({"params": state.critic_params}, z)) if factor
            else jnp.float32(0.0))
      return rec + kl_weight * kl + gamma * tc, (rec, kl, tc, z)

    (loss, (rec, kl, tc, z)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "reconstruction": rec, "kl": kl}
    critic_params, critic_opt_state = state.critic_params, state.critic_opt_state
    if factor:
      codes = jax.lax.stop_gradient(z)
      permuted = permute_dims(permute_key, codes)

      def critic_loss(p):
        real = critic.apply({"params": p}, codes)
        fake = critic.apply({"params": p}, permuted)
        zeros = jnp.zeros(codes.shape[0], jnp.int32)
        return 0.5 * (weighted_cross_entropy(real, zeros) + weighted_cross_entropy(fake, zeros + 1))

      c_loss, c_grads = jax.value_and_grad(critic_loss)(critic_params)
      c_updates, critic_opt_state = critic_tx.update(c_grads, critic_opt_state, critic_params)
      critic_params = optax.apply_updates(critic_params, c_updates)
      metrics.update(tc=tc, critic_loss=c_loss)
    return VAEState(state.step + 1, params, {}, opt_state, critic_params,
                    critic_opt_state), metrics

  return Trainer(init, update)


def encode(vae: VAE, variables, x, *, key: Optional[jax.Array] = None,
           batch_size: int = 512) -> jax.Array:
  """Latents of ``x``: the posterior means ``μ(x)``, or with ``key`` a reparameterised sample
  (the reference code stores one sample per image)."""
  fn = jax.jit(lambda v, x, k: _code(vae, v, x, k))
  out = []
  for i, start in enumerate(range(0, len(x), batch_size)):
    k = None if key is None else jax.random.fold_in(key, i)
    out.append(fn(variables, jnp.asarray(x[start:start + batch_size]), k))
  return jnp.concatenate(out)


def _code(vae: VAE, variables, x, key):
  mu, logvar = vae.apply(variables, x, method=VAE.encode)
  if key is None:
    return mu
  return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


# --- DVGE --------------------------------------------------------------------------------------

def focus(logits_fn: Callable[[jax.Array], jax.Array], z: jax.Array) -> jax.Array:
  """``∇_z`` of each row's predicted-class logit, ``∂ logits[i, argmax_c logits[i, c]] / ∂ z_i``,
  detached (rows are independent, so one gradient of the sum gives every row's)."""
  def picked(z):
    logits = logits_fn(z)
    c = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1)
    return jnp.sum(jnp.take_along_axis(logits, c[:, None], axis=-1))

  return jax.lax.stop_gradient(jax.grad(picked)(z))


def clip_perturbation(v: jax.Array, epsilon, clip: str = "symmetric") -> jax.Array:
  """``Clip_ε(v)``: ``"symmetric"`` ``clip(v, −ε, ε)``; ``"literal"`` the seed's formula
  ``v if v > ε else max(v, −ε)`` (a bound from below only); ``"none"`` ``v``."""
  if clip == "symmetric":
    return jnp.clip(v, -epsilon, epsilon)
  if clip == "literal":
    return jnp.where(v > epsilon, v, jnp.maximum(v, -epsilon))
  if clip == "none":
    return v
  raise ValueError(f"clip: expected one of {list(CLIPS)}, got {clip!r}")


def unit_rows(f: jax.Array, unit=True) -> jax.Array:
  """``f / ‖f‖₂`` per row where ``unit`` (a traced flag is fine), ``f`` elsewhere; a zero row
  stays zero."""
  norm = jnp.linalg.norm(f, axis=-1, keepdims=True)
  return jnp.where(unit, f / jnp.where(norm > 0, norm, 1.0), f)


def perturb(z, sensitive_focus, task_focus, *, eta1, eta2, epsilon=1.0,
            clip: str = "symmetric", unit=False) -> jax.Array:
  """``z' = z + Clip_ε(η1 F_sens − η2 F_task)``; with ``unit``, each focus is first scaled to
  unit length per row (``step="unit"``)."""
  step = eta1 * unit_rows(sensitive_focus, unit) - eta2 * unit_rows(task_focus, unit)
  return z + clip_perturbation(step, epsilon, clip)


class DVGEState(NamedTuple):
  """The task classifier's training state, with ``eta1`` / ``eta2`` and the step's ``unit``
  flag as scalar arrays (so K states of different η, direction or step stack into one vmapped
  sweep) and the frozen sensitive classifier's variables."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  eta1: jax.Array
  eta2: jax.Array
  sensitive: Any
  unit: jax.Array


def _check_dvge(eta1, eta2, epsilon, clip, step="gradient") -> None:
  for name, value in (("eta1", eta1), ("eta2", eta2), ("epsilon", epsilon)):
    _checks.check_nonnegative(name, value)
  _checks.check_option("clip", clip, CLIPS)
  _checks.check_option("step", step, STEPS)


def dvge_trainer(task_model: nn.Module, sensitive_model: nn.Module, sensitive_variables: Any,
                 *, eta1: float = 0.1, eta2: float = 0.4, epsilon: float = 1.0,
                 clip: str = "symmetric", sensitive_direction: str = "toward",
                 step: str = "gradient", learning_rate: float = 1e-4) -> Trainer:
  """The task classifier ``g`` trained on ``z' = z + Clip_ε(η1 ∇d − η2 ∇g)`` (module doc).

  Args:
    task_model: ``g``, a Flax module on latents ``[N, z]`` with 2 (or C) logits.
    sensitive_model, sensitive_variables: the trained, frozen ``d``.
    eta1, eta2: the perturbation's weights (the reference scripts: 0.1 and 0.4).
    sensitive_direction: ``"toward"`` (the paper and its code: ``+η1 ∇_z d_ŝ``, which raises
      ``d``'s logit of its own prediction, pushing each code deeper into its predicted group)
      or ``"away"`` (``−η1 ∇_z d_ŝ``: toward ``d``'s decision boundary). The state holds the
      signed η1, so both directions stack in one sweep.
    epsilon: the clip's bound per latent coordinate (the prior's scale is 1).
    clip: ``"symmetric"`` (default), ``"literal"`` or ``"none"`` (module doc).
    step: ``"gradient"`` (the paper: the raw focus) or ``"unit"`` (its direction per row, so
      η is the step's length; module doc).
    learning_rate: Adam's (the reference: 1e-4 for ``g``).

  Batches: ``{"x": latents, "y": task labels, "weight": optional}``. ``init(key, variables)``
  takes ``g``'s initial variables. Metrics: ``loss`` and ``shift`` (mean ‖z' − z‖₂).
  """
  _check_dvge(eta1, eta2, epsilon, clip, step)
  signed_eta1 = _signed(eta1, sensitive_direction)
  tx = optax.adam(learning_rate)

  def init(key, variables):
    del key
    params = variables["params"]
    return DVGEState(jnp.zeros((), jnp.int32), params,
                     {k: v for k, v in variables.items() if k != "params"}, tx.init(params),
                     jnp.float32(signed_eta1), jnp.float32(eta2), sensitive_variables,
                     jnp.asarray(step == "unit"))

  def update(state, batch, key):
    del key
    z = batch["x"]
    f_sens = focus(lambda z: sensitive_model.apply(state.sensitive, z), z)
    f_task = focus(lambda z: task_model.apply({"params": state.params, **state.model_state}, z),
                   z)
    shifted = perturb(z, f_sens, f_task, eta1=state.eta1, eta2=state.eta2, epsilon=epsilon,
                      clip=clip, unit=state.unit)

    def loss_fn(params):
      logits = task_model.apply({"params": params, **state.model_state}, shifted)
      return weighted_cross_entropy(logits, batch["y"], batch.get("weight"))

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new = state._replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         opt_state=opt_state)
    shift = jnp.mean(jnp.linalg.norm(shifted - z, axis=-1))
    return new, {"loss": loss, "shift": shift}

  return Trainer(init, update)


# --- Classifiers on latents, the η sweep, and sensitive probes ---------------------------------

def latent_classifier(*, layers: int = 5, width: int = 1000, num_classes: int = 2) -> nn.Module:
  """The reference code's classifier on latents (both ``d`` and ``g``): ``layers`` ReLU layers
  of ``width`` units (5 × 1000), no BatchNorm or dropout (so its input gradient is the same in
  training and evaluation)."""
  from debiasjax.models import MLP
  return MLP(num_layers=layers, width=width, dropout=0.0, batch_norm=False,
             num_classes=num_classes)


def train_classifier(model: nn.Module, z, labels, *, key: jax.Array, num_steps: int,
                     batch_size: int = 64, learning_rate: float = 1e-4, seed: int = 0) -> Any:
  """Trains ``model`` on ``(z, labels)`` with Adam and cross-entropy (``train.fit``); returns
  its variables."""
  from debiasjax.train import fit, supervised, variables_of
  trainer = supervised(model, optax.adam(learning_rate))
  state = trainer.init(key, model.init(key, jnp.asarray(z[:1])))
  state = fit(trainer, state, {"x": np.asarray(z), "y": np.asarray(labels, np.int32)}, key=key,
              num_steps=num_steps, batch_size=min(batch_size, len(labels)), seed=seed)
  return variables_of(state)


def probe_accuracy(model: nn.Module, z_train, s_train, z_val, s_val, *, key: jax.Array,
                   epochs: int = 20, batch_size: int = 64,
                   learning_rate: float = 1e-3) -> tuple[jax.Array, jax.Array]:
  """The seed's coverage measure: sensitive probes trained on K sets of (perturbed) latents
  ``z_train`` [K, N, D] with labels ``s_train`` [N], all from one initialisation and batch
  order, in one vmapped program; each probe's accuracy on its ``z_val`` [K, M, D] after every
  epoch. Returns ``(best [K], per_epoch [epochs, K])``: the seed's tables report the highest
  accuracy a probe reaches (lower: less sensitive information left)."""
  z_train, z_val = jnp.asarray(z_train, jnp.float32), jnp.asarray(z_val, jnp.float32)
  s_train, s_val = jnp.asarray(s_train, jnp.int32), jnp.asarray(s_val, jnp.int32)
  if z_train.ndim != 3 or z_val.ndim != 3 or z_train.shape[0] != z_val.shape[0]:
    raise ValueError(f"z_train, z_val: expected [K, N, D] and [K, M, D], got {z_train.shape} "
                     f"and {z_val.shape}")
  k, n, _ = z_train.shape
  batch_size = min(batch_size, n)
  tx = optax.adam(learning_rate)
  params = model.init(key, z_train[0, :1])
  stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (k,) + a.shape), params)
  opt = jax.vmap(tx.init)(stacked)

  def step(carry, idx):
    params, opt = carry

    def one(p, o, z):
      loss = lambda p: weighted_cross_entropy(model.apply(p, z[idx]), s_train[idx])
      g = jax.grad(loss)(p)
      u, o = tx.update(g, o, p)
      return optax.apply_updates(p, u), o

    return jax.vmap(one)(params, opt, z_train), None

  @jax.jit
  def epoch(params, opt, order):
    batches = order[:(n // batch_size) * batch_size].reshape(-1, batch_size)
    (params, opt), _ = jax.lax.scan(step, (params, opt), batches)
    acc = jax.vmap(lambda p, z: jnp.mean(jnp.argmax(model.apply(p, z), -1) == s_val))(params,
                                                                                       z_val)
    return params, opt, acc

  accs = []
  for e in range(epochs):
    stacked, opt, acc = epoch(stacked, opt, jax.random.permutation(jax.random.fold_in(key, e), n))
    accs.append(acc)
  per_epoch = jnp.stack(accs)
  return per_epoch.max(axis=0), per_epoch


def sensitive_dimensions(sensitive_model: nn.Module, sensitive_variables, z, *,
                         count: int = 1) -> np.ndarray:
  """The ``count`` latent dimensions the sensitive classifier leans on most: largest mean
  ``|∇_z d_ŝ(z)|`` over ``z``. The seed's "sensitive dimensions removed" baseline sets them to
  the prior's mean, 0 (FFVAE designates such dimensions; for the VAEs here they are found)."""
  f = focus(lambda z: sensitive_model.apply(sensitive_variables, z), jnp.asarray(z))
  return np.argsort(-np.asarray(jnp.mean(jnp.abs(f), axis=0)))[:count]


def remove_dimensions(z, dims) -> jax.Array:
  """``z`` with the latent dimensions ``dims`` set to 0 (the prior's mean)."""
  z = jnp.asarray(z)
  return z.at[:, jnp.asarray(dims)].set(0.0)


def _signed(eta1, sensitive_direction: str):
  """η1 as the perturbation uses it: negative for the push away from ``d``'s prediction."""
  _checks.check_option("sensitive_direction", sensitive_direction, DIRECTIONS)
  return eta1 if sensitive_direction == "toward" else -eta1


def perturbed_latents(task_model: nn.Module, task_variables, sensitive_model: nn.Module,
                      sensitive_variables, z, *, eta1, eta2, epsilon: float = 1.0,
                      clip: str = "symmetric", sensitive_direction: str = "toward",
                      step: str = "gradient") -> jax.Array:
  """``z'`` of trained models: ``z + Clip_ε(η1 ∇d − η2 ∇g)`` with ``g`` the task classifier
  as trained (what the probes of the ablation read), for the push and step of
  :func:`dvge_trainer`."""
  z = jnp.asarray(z)
  f_sens = focus(lambda z: sensitive_model.apply(sensitive_variables, z), z)
  f_task = focus(lambda z: task_model.apply(task_variables, z), z)
  return perturb(z, f_sens, f_task, eta1=_signed(eta1, sensitive_direction), eta2=eta2,
                 epsilon=epsilon, clip=clip, unit=step == "unit")


# --- The seed's adversarial baseline: a gradient-reversal encoder -----------------------------

@jax.custom_vjp
def reverse_gradient(x, scale):
  """Identity forward; the gradient multiplied by ``−scale`` backward (Ganin et al., 2016)."""
  return x


def _reverse_fwd(x, scale):
  return x, scale


def _reverse_bwd(scale, g):
  return -scale * g, jnp.zeros_like(scale)


reverse_gradient.defvjp(_reverse_fwd, _reverse_bwd)


class ReversalNet(nn.Module):
  """An encoder ``h`` (``layers`` ReLU layers of ``width``), a task head and an adversary that
  reads ``h`` through a gradient reversal: ``__call__(z)`` gives the task logits,
  ``both(z, scale)`` the task and the adversary's logits (initialise through ``both``:
  ``net.init(key, z, 1.0, method="both")``)."""
  layers: int = 2
  width: int = 256
  num_classes: int = 2
  num_groups: int = 2

  def setup(self):
    self.encoder = [nn.Dense(self.width, name=f"layer{i + 1}") for i in range(self.layers)]
    self.head = nn.Dense(self.num_classes)
    self.adversary = nn.Dense(self.num_groups)

  def features(self, z):
    for layer in self.encoder:
      z = nn.relu(layer(z))
    return z

  def __call__(self, z):
    return self.head(self.features(z))

  def both(self, z, scale):
    h = self.features(z)
    return self.head(h), self.adversary(reverse_gradient(h, scale))


class ReversalState(NamedTuple):
  """Adversarial training's state, with the reversal's weight ``lam`` as a scalar array (so a
  sweep over it stacks)."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  lam: jax.Array


def reversal_trainer(model: ReversalNet, *, lam: float = 1.0,
                     learning_rate: float = 1e-3) -> Trainer:
  """Adversarial training with a gradient-reversal encoder (the seed's ADT baseline, Ganin et
  al. 2016): ``CE(task(h(z)), y) + CE(adversary(R_λ(h(z))), s)`` minimised by all parameters,
  where ``R_λ`` reverses the gradient into ``h`` with weight λ, so the adversary learns to read
  ``s`` while ``h`` learns to hide it. Batches: ``{"x", "y", "group"}``."""
  _checks.check_nonnegative("lam", lam)
  tx = optax.adam(learning_rate)

  def init(key, variables):
    del key
    params = variables["params"]
    return ReversalState(jnp.zeros((), jnp.int32), params, {}, tx.init(params), jnp.float32(lam))

  def update(state, batch, key):
    del key

    def loss_fn(params):
      task, adversary = model.apply({"params": params}, batch["x"], state.lam, method="both")
      task_loss = weighted_cross_entropy(task, batch["y"])
      adversary_loss = weighted_cross_entropy(adversary, batch["group"])
      return task_loss + adversary_loss, (task_loss, adversary_loss)

    (_, (task_loss, adversary_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state._replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state), {"loss": task_loss,
                                                 "adversary_loss": adversary_loss}

  return Trainer(init, update)


# --- DVGE as a debias() method -------------------------------------------------------------------

class Representation(NamedTuple):
  """A method that learns a new network from the debias split alone (an encoder and a
  classifier on its latents): ``fit(key, data, *, progress, checkpoints) -> (module,
  variables)``; :func:`debiasjax.debias` decides with threshold 0.5 on its P(y = 1)."""
  fit: Callable


def build_vae(x, *, latents: int = 10, hidden=(64, 64)) -> VAE:
  """The paper's convolutional VAE for square NHWC images (sides 4·2^k), an MLP VAE for tables."""
  from debiasjax.models.vae import conv_vae, mlp_vae
  shape = np.shape(x)
  if len(shape) == 4:
    return conv_vae(latents=latents, side=shape[1], out_channels=shape[3])
  return mlp_vae(int(np.prod(shape[1:])), latents=latents, hidden=tuple(hidden))


def dvge(*, encoder: str = "factor", eta1: float = 0.5, eta2: float = 0.4, epsilon: float = 1.0,
         clip: str = "symmetric", sensitive_direction: str = "toward", step: str = "gradient",
         latents: int = 10,
         vae_epochs: int = 20,
         vae_learning_rate: float = 5e-4, gamma: float = 6.4, classifier_layers: int = 3,
         classifier_width: int = 256, learning_rate: float = 1e-3, sensitive_epochs: int = 20,
         task_epochs: int = 20, batch_size: int = 64) -> Representation:
  """DVGE for :func:`debiasjax.debias`: on the debias split, a VAE (``encoder="factor"``:
  DVGE-D, ``"vae"``: DVGE-N), the sensitive classifier ``d`` on its posterior means, and the
  task classifier ``g`` trained on ``z + Clip_ε(η1 ∇d − η2 ∇g)`` (:func:`dvge_trainer`); the
  result is ``g(μ(x))`` as one module (:class:`~debiasjax.models.vae.Encoded`). The trained
  model under test is not used: DVGE learns its own representation (the paper's setting).
  Defaults are sized for a CPU (the reference: 5 × 1000 classifiers, 100 epochs); see
  ``experiments/configs/dvge.py`` for the reproduction's."""
  _check_dvge(eta1, eta2, epsilon, clip, step)
  _checks.check_option("sensitive_direction", sensitive_direction, DIRECTIONS)
  _checks.check_option("encoder", encoder, ("factor", "vae"))
  for name, value in (("latents", latents), ("vae_epochs", vae_epochs),
                      ("classifier_layers", classifier_layers),
                      ("classifier_width", classifier_width),
                      ("sensitive_epochs", sensitive_epochs), ("task_epochs", task_epochs),
                      ("batch_size", batch_size)):
    _checks.check_int(name, value, 1)

  def fit(key, data, *, progress=None, checkpoints=None):
    from debiasjax.checkpoint import Checkpoints
    from debiasjax.models.vae import Encoded
    from debiasjax.train import fit as run, variables_of
    x, y, s = np.asarray(data.x), np.asarray(data.y), np.asarray(data.group)
    n, batch = len(y), min(batch_size, len(y))
    per_epoch = max(1, n // batch)
    vae = build_vae(x, latents=latents)
    trainer = vae_trainer(vae, kind=encoder, gamma=gamma, learning_rate=vae_learning_rate)
    vae_key, d_key, g_key = jax.random.split(key, 3)
    steps = vae_epochs * per_epoch
    log = None if progress is None else lambda step, m: progress("VAE steps", step, steps)
    state = run(trainer, trainer.init(vae_key, vae.init(vae_key, x[:1], vae_key)), {"x": x},
                key=vae_key, num_steps=steps, batch_size=batch, log=log,
                log_every=max(1, steps // 50), save_every=per_epoch if checkpoints else None,
                checkpoints=None if checkpoints is None else Checkpoints(
                    f"{checkpoints}/vae-{encoder}"))
    vae_variables = variables_of(state)
    z = np.asarray(encode(vae, vae_variables, x))
    groups = int(s.max()) + 1
    d_model = latent_classifier(layers=classifier_layers, width=classifier_width,
                                num_classes=max(groups, 2))
    d_variables = train_classifier(d_model, z, s, key=d_key, num_steps=sensitive_epochs * per_epoch,
                                   batch_size=batch, learning_rate=learning_rate)
    g_model = latent_classifier(layers=classifier_layers, width=classifier_width)
    task = dvge_trainer(g_model, d_model, d_variables, eta1=eta1, eta2=eta2, epsilon=epsilon,
                        clip=clip, sensitive_direction=sensitive_direction, step=step,
                        learning_rate=learning_rate)
    g_state = run(task, task.init(g_key, g_model.init(g_key, z[:1])), {"x": z, "y": y},
                  key=g_key, num_steps=task_epochs * per_epoch, batch_size=batch)
    module = Encoded(vae.encoder, g_model)
    return module, {"params": {"encoder": vae_variables["params"]["encoder"],
                               "classifier": g_state.params}}

  return Representation(fit)
