"""Concept methods on a trained model: erasers placed at a layer (P-ClArC, mass-mean shift,
LEACE) and the ClArC fine-tuning trainers (A-ClArC, RR-ClArC).

The concept is the protected attribute; its activations are those of the chosen layer on the
debias split. With ``decorrelate=True`` (default) the fit is reweighed so that the protected
attribute is independent of the target (:func:`~debiasjax.methods.concepts.concept_weights`):
on data where the accessory co-occurs with the label, the plain mean difference would also
carry the label's direction and its removal would remove the task.

* :class:`ConceptEdit` / :func:`fit_edit` -- an :class:`~debiasjax.methods.concepts.Eraser`
  fitted at a layer and compiled into the network (:class:`~debiasjax.models.Intervened`).
* :func:`a_clarc_trainer`, :func:`rr_clarc_trainer` -- pure :class:`~debiasjax.train.Trainer`
  factories; :func:`a_clarc`, :func:`rr_clarc` -- their :class:`FineTuning` recipes, which fit
  the concept on the debias split first. Fine-tuning runs the network in evaluation mode
  (BatchNorm statistics frozen, as the ClArC code freezes BatchNorm), trains the modules after
  the layer by default (the pattern-CAV code; ``trainable="head"`` is the RR-ClArC code's,
  ``"all"`` DetoxAI's), with Adam.

RR-ClArC's ``lam`` lives in the trainer's state, so a sweep over lambda is K stacked states
trained in one vmapped program (``train.fit(..., stacked=True)``).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks
from debiasjax.evaluate import BATCH, positive_probability, scores_and_activations
from debiasjax.methods import concepts as C
from debiasjax.methods.finetuning import Context, FineTuning, adam_on, check_training, \
    trainable_modules
from debiasjax.models.taps import Intervened, Tap, penultimate_layer, tap
from debiasjax.train import Trainer, weighted_cross_entropy

CRITERIA = ("max_logit", "target_logit", "all_logits", "all_logits_random", "logprobs")


# --- Erasers at a layer ------------------------------------------------------------------------

CONCEPTS = ("protected", "mined")


class ConceptEdit(NamedTuple):
  """An eraser as :func:`debiasjax.debias` runs it: fitted on the activations of ``layer`` (None:
  the penultimate layer) with a concept, then applied inside the network.

  ``concept="protected"``: the protected attribute. ``"mined"``, without it: the model's own
  predictions on the debias split (the Voronoi method's pseudo bias label b*, on data the model
  was not trained on); with ``decorrelate`` the fit is reweighed so that b* is independent of
  the target, so the direction is what moves the prediction *within* each class -- the shortcut
  the model follows where it errs, not the task."""
  eraser: C.Eraser
  layer: Optional[str] = None
  decorrelate: bool = True
  concept: str = "protected"


def at_layer(layer: Optional[str], eraser: C.Eraser, *, decorrelate: bool = True,
             concept: str = "protected") -> ConceptEdit:
  """Places ``eraser`` at the module ``layer`` (e.g. ``"stage2"``); ``concept``: ``"protected"``
  or ``"mined"`` (:class:`ConceptEdit`)."""
  _checks.check_option("concept", concept, CONCEPTS)
  return ConceptEdit(eraser, layer, decorrelate, concept)


def layer_activations(model, variables, x, layer: str, *, batch_size: int = BATCH) -> np.ndarray:
  """The outputs of ``layer`` for every row of ``x`` (eval mode; the program that scores the
  model, :func:`~debiasjax.evaluate.scores_and_activations`)."""
  return scores_and_activations(model, variables, x, layer, batch_size=batch_size)[1]


def concept_fit_weights(data, decorrelate: bool):
  """The sample weights of a concept fit on ``data`` (protected attribute vs target)."""
  return C.concept_weights(data.group, target=data.y) if decorrelate else None


def fit_edit(edit: ConceptEdit, model, variables, data, *,
             activations: Optional[np.ndarray] = None) -> tuple[Intervened, Any]:
  """Fits ``edit.eraser`` on ``data`` (the debias split) and returns the edited model (the
  eraser at the layer; it takes ``edited.with_edit(variables, state)``) and the eraser's state.
  ``activations``: the layer's outputs on ``data.x`` when already computed."""
  _checks.check_option("concept", edit.concept, CONCEPTS)
  layer = edit.layer or penultimate_layer(model, variables, data.x[:1])
  acts = layer_activations(model, variables, data.x, layer) if activations is None else activations
  if edit.concept == "mined":
    from debiasjax.evaluate import predicted_classes
    data = data.replace(group=predicted_classes(model, variables, data.x))
  state = edit.eraser.fit(acts, data.group, concept_fit_weights(data, edit.decorrelate))
  return Intervened(model, layer, edit.eraser.apply), state


@functools.lru_cache(maxsize=64)
def _suffix_scorer(model, layer: str, apply):
  t = tap(model, layer)

  def score(variables, state, x, a):
    # The layer's output is replaced by the edited cached activations, so everything before
    # the layer is dead code that XLA removes: only the rest of the network runs.
    return positive_probability(t.apply(variables, x, lambda _: apply(state, a)))

  return jax.jit(score)


def edited_scores(model, variables, layer: str, apply, state, x, activations, *,
                  batch_size: int = BATCH) -> np.ndarray:
  """P(y = 1) of the network with ``apply(state, a)`` at ``layer``, from the layer's cached
  ``activations`` of ``x``: the edit changes nothing before the layer, so only the layers after
  it run (fixed-size batches, the last padded)."""
  n = len(x)
  size = min(batch_size, n)
  score = _suffix_scorer(model, layer, apply)
  out = []
  for start in range(0, n, size):
    xb, ab = np.asarray(x[start:start + size]), np.asarray(activations[start:start + size])
    pad = size - len(xb)
    if pad:
      xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), xb.dtype)])
      ab = np.concatenate([ab, np.zeros((pad, *ab.shape[1:]), ab.dtype)])
    out.append(np.asarray(score(variables, state, xb, ab))[:size - pad])
  return np.concatenate(out)


# --- A-ClArC ---------------------------------------------------------------------------------

def _concept_and_optimizer(ctx: Context, eraser: C.Eraser, decorrelate: bool, trainable: str,
                           learning_rate: float):
  """The concept fitted at the context's layer on its split, and Adam on the modules to
  train: what both ClArC fine-tunings start from."""
  data = ctx.data
  acts = layer_activations(ctx.model, ctx.variables, data.x, ctx.layer)
  state = eraser.fit(acts, data.group, concept_fit_weights(data, decorrelate))
  modules = trainable_modules(ctx.model, ctx.variables, data.x, ctx.layer, trainable)
  return state, adam_on(float(learning_rate), modules)


@functools.lru_cache(maxsize=32)
def _eraser(level: str, cav: str, pooling: str) -> C.Eraser:
  """The P-ClArC eraser of a setting, one object per setting (see ``_a_clarc_update``)."""
  return C.p_clarc(cav=cav, pooling=pooling, level=level)


class ConceptTrainState(NamedTuple):
  """A training state with the fitted concept: an argument of the compiled step, not a
  constant baked into it, so refits (other seeds, other data) reuse the compiled program."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  concept: Any


def a_clarc_trainer(model: nn.Module, layer: str, inject, concept,
                    tx: optax.GradientTransformation) -> Trainer:
  """A-ClArC's fine-tuning: cross-entropy of the model whose ``layer`` output goes through
  ``inject(concept, a)`` (an eraser's ``apply`` and fitted state moving every sample's concept
  coordinate to the concept level, so the concept no longer tells the classes apart and the
  network must use other evidence), eval mode (BatchNorm statistics frozen)."""
  def init(key, variables):
    del key
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    return ConceptTrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params), concept)

  return Trainer(init, _a_clarc_update(model, layer, inject, tx))


@functools.lru_cache(maxsize=32)
def _a_clarc_update(model, layer, inject, tx):
  """One update per setting: refits (new concepts, other seeds) share its compiled step."""
  t = tap(model, layer)

  def update(state: ConceptTrainState, batch, key):
    del key

    def loss_fn(params):
      logits = t.apply({"params": params, **state.model_state}, batch["x"],
                       lambda a: inject(state.concept, a))
      return weighted_cross_entropy(logits, batch["y"]), logits

    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state._replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state), {
        "loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}

  return update


def a_clarc(*, cav: str = "signal", pooling: str = "max", trainable: str = "after",
            learning_rate: float = 1e-3, num_steps: int = 100, batch_size: int = 64,
            layer: Optional[str] = None, decorrelate: bool = True) -> FineTuning:
  """A-ClArC (Anders et al. 2022): fit the concept's CAV at ``layer`` on the debias split, then
  fine-tune with the artifact injected into every sample (``h(a) = a + (L1 - v^T pool(a)) v``);
  the injection is off at evaluation. Threshold 0.5."""
  check_training(num_steps, batch_size, learning_rate)
  _checks.check_option("trainable", trainable, ("after", "head", "all"))
  eraser = _eraser("concept", cav, pooling)

  def trainer(ctx: Context) -> Trainer:
    state, tx = _concept_and_optimizer(ctx, eraser, decorrelate, trainable, learning_rate)
    return a_clarc_trainer(ctx.model, ctx.layer, eraser.apply, state, tx)

  return FineTuning(trainer, num_steps, batch_size, layer=layer)


# --- RR-ClArC --------------------------------------------------------------------------------

def rr_penalty(t: Tap, variables, x, y, key, cav: C.CAV, *, criterion: str,
               aggregation: str = "l2", pooling: str = "max"):
  """RR-ClArC's penalty and the logits from one pass: ``mean_b (v^T g_b)^2`` (``l2``) or
  ``mean_b |v^T g_b|`` (``l1``), ``g_b = d s(f(x_b)) / d a_b`` with ``s`` the ``criterion``
  (``all_logits_random``: logits times random signs), spatially averaged for pooled CAVs
  (``pooling`` not ``"none"``).

  ``t`` is the layer's :class:`~debiasjax.models.taps.Tap`; the gradient is taken through the
  edit ``a -> a + delta`` at ``delta = 0``, so differentiating the penalty differentiates
  twice."""
  a_shape = jax.eval_shape(t.activations, variables, x)

  def score(delta):
    logits = t.apply(variables, x, lambda a: a + delta)
    if criterion == "max_logit":
      s = logits.max(-1)
    elif criterion == "target_logit":
      s = jnp.take_along_axis(logits, y[:, None], axis=-1)[:, 0]
    elif criterion == "all_logits":
      s = logits.sum(-1)
    elif criterion == "all_logits_random":
      s = (logits * jax.random.rademacher(key, logits.shape, logits.dtype)).sum(-1)
    else:
      s = jax.nn.log_softmax(logits).mean(-1)
    return s.sum(), logits

  g, logits = jax.grad(score, has_aux=True)(jnp.zeros(a_shape.shape, a_shape.dtype))
  if g.ndim == 4 and pooling != "none":
    g = g.mean(axis=(1, 2))
  along = C.dot(g, cav.direction.astype(g.dtype))
  penalty = jnp.mean(along ** 2) if aggregation == "l2" else jnp.mean(jnp.abs(along))
  return penalty, logits


class RRState(NamedTuple):
  """A training state with RR-ClArC's ``lam`` (a scalar array, so lambda sweeps stack) and the
  concept's CAV (an argument of the compiled step, so refits reuse it)."""
  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  lam: jax.Array
  cav: C.CAV


def _check_rr(criterion, aggregation, lam) -> None:
  _checks.check_option("criterion", criterion, CRITERIA)
  _checks.check_option("aggregation", aggregation, ("l2", "l1"))
  _checks.check_nonnegative("lam", lam)


def rr_clarc_trainer(model: nn.Module, layer: str, cav: C.CAV, tx: optax.GradientTransformation,
                     *, lam: float = 1.0, criterion: str = "all_logits_random",
                     aggregation: str = "l2", pooling: str = "max") -> Trainer:
  """RR-ClArC (Dreyer et al. 2024): ``CE + lam * mean_b (v^T d s / d a_b)^2``
  (:func:`rr_penalty`), eval mode. Batches: ``x``, ``y``; the step key's second half draws the
  random signs of ``all_logits_random``."""
  _check_rr(criterion, aggregation, lam)

  def init(key, variables):
    del key
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    return RRState(jnp.zeros((), jnp.int32), params, rest, tx.init(params), jnp.float32(lam),
                   cav)

  return Trainer(init, _rr_clarc_update(model, layer, tx, criterion, aggregation, pooling))


@functools.lru_cache(maxsize=32)
def _rr_clarc_update(model, layer, tx, criterion, aggregation, pooling):
  """One update per setting (lambda and the CAV are in the state): refits share its step."""
  t = tap(model, layer)

  def update(state: RRState, batch, key):
    _, k_loss = jax.random.split(key)

    def loss_fn(params):
      penalty, logits = rr_penalty(t, {"params": params, **state.model_state}, batch["x"],
                                   batch["y"], k_loss, state.cav, criterion=criterion,
                                   aggregation=aggregation, pooling=pooling)
      return weighted_cross_entropy(logits, batch["y"]) + state.lam * penalty, penalty

    (loss, penalty), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state._replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                          opt_state=opt_state), {"loss": loss, "penalty": penalty}

  return update


def rr_clarc(*, lam: float = 1.0, criterion: str = "all_logits_random", aggregation: str = "l2",
             cav: str = "signal", pooling: str = "max", trainable: str = "after",
             learning_rate: float = 1e-3, num_steps: int = 100, batch_size: int = 64,
             layer: Optional[str] = None, decorrelate: bool = True) -> FineTuning:
  """RR-ClArC: fit the concept's CAV at ``layer`` on the debias split, then fine-tune with
  :func:`rr_clarc_trainer` (the pattern-CAV code's defaults ``all_logits_random`` and ``l2``).
  Threshold 0.5."""
  check_training(num_steps, batch_size, learning_rate)
  _check_rr(criterion, aggregation, lam)
  _checks.check_option("trainable", trainable, ("after", "head", "all"))
  eraser = _eraser("clean", cav, pooling)

  def trainer(ctx: Context) -> Trainer:
    state, tx = _concept_and_optimizer(ctx, eraser, decorrelate, trainable, learning_rate)
    return rr_clarc_trainer(ctx.model, ctx.layer, state.cav, tx, lam=lam, criterion=criterion,
                            aggregation=aggregation, pooling=pooling)

  return FineTuning(trainer, num_steps, batch_size, layer=layer)
