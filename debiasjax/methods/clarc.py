"""Concept-based debiasing of a trained model: P-ClArC, mass-mean shift, LEACE (edits compiled
into the network) and A-ClArC, RR-ClArC (fine-tuning with the concept's direction).

Every method fits its concept on the debias split: the concept label is the protected
attribute, the activations those of ``layer`` (default: the penultimate layer, the global
average pool of our ResNets, as DetoxAI's ``penultimate``). With ``decorrelate=True`` (default)
the fit is reweighed so that the protected attribute is independent of the target
(:func:`~debiasjax.methods.concepts.concept_weights`): on data where the accessory co-occurs
with the label, the plain mean difference would also carry the label's direction and its
removal would remove the task. All return a :class:`ConceptResult` whose ``model`` is what to
score and explain (an :class:`~debiasjax.models.taps.Intervened` model for the edits, the
plain model with new weights after fine-tuning).

Fine-tuning (A-ClArC, RR-ClArC) runs the network in evaluation mode (BatchNorm statistics
frozen, as the ClArC code freezes BatchNorm), trains the modules after ``layer`` by default
(the pattern-CAV code; ``trainable="head"`` is the RR-ClArC code's, ``"all"`` DetoxAI's),
with Adam, in one compiled ``lax.scan``. RR-ClArC's ``lam`` may be a sequence: the runs are
vmapped, and ``variables`` come back stacked along a leading axis.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax.data.dataset import Split
from debiasjax.evaluate import map_batches
from debiasjax.methods import concepts as C
from debiasjax.methods.search import check_int
from debiasjax.models.taps import Intervened, Tap, tap, top_level_call_order
from debiasjax.train import weighted_cross_entropy

CRITERIA = ("max_logit", "target_logit", "all_logits", "all_logits_random", "logprobs")
TRAINABLE = ("after", "head", "all")


class ConceptResult(NamedTuple):
  """What to score and explain (``model.apply(variables, x)``), the decision threshold on
  P(y = 1), and the fitted concept (a CAV or a LEACE eraser)."""
  model: Any
  variables: Any
  threshold: float
  concept: Any
  layer: str


def default_layer(model: nn.Module) -> str:
  """The penultimate layer: ``pool`` (the ResNets' global average pool) or the MLP's last
  hidden layer."""
  from debiasjax.models.mlp import MLP
  from debiasjax.models.resnet import ResNet
  if isinstance(model, MLP):
    return f"layer{model.num_layers}"
  if isinstance(model, ResNet):
    return "pool"
  raise ValueError(f"model: no default concept layer for {type(model).__name__}; pass layer=")


def _activations(model, variables, split: Split, layer: str, batch_size: int = 256):
  return map_batches(tap(model, layer).activations, variables, split.x, batch_size=batch_size)


def _weights(split: Split, decorrelate: bool) -> Optional[np.ndarray]:
  return C.concept_weights(split.group, target=split.y) if decorrelate else None


def _fit(model, variables, split, layer, kind, pooling, decorrelate):
  layer = layer or default_layer(model)
  a = _activations(model, variables, split, layer)
  return layer, a, C.fit_cav(a, split.group, kind=kind, pooling=pooling,
                             weights=_weights(split, decorrelate))


# --- Edits compiled into the model ------------------------------------------------------------

def p_clarc(model, variables, split: Split, *, layer: Optional[str] = None, cav: str = "signal",
            pooling: str = "max", reactive: bool = False, decorrelate: bool = True,
            alpha: float = 1.0) -> ConceptResult:
  """P-ClArC (Anders et al. 2022): ``h(a) = (I - v v^T) a + v v^T mu_clean`` at ``layer``
  (a uniform spatial shift for pooled maps), weights unchanged. ``reactive=True`` edits only
  samples an SVM CAV reads the concept in (R-ClArC)."""
  layer, a, fitted = _fit(model, variables, split, layer, cav, pooling, decorrelate)
  gate = (C.fit_cav(a, split.group, kind="svm", pooling=pooling,
                    weights=_weights(split, decorrelate)) if reactive else None)
  edit = C.project_to(fitted, gate=gate, alpha=alpha)
  return ConceptResult(Intervened(model, layer, edit), variables, 0.5, fitted, layer)


def mass_mean(model, variables, split: Split, *, layer: Optional[str] = None,
              direction: str = "signal", gated: bool = True, pooling: str = "none",
              decorrelate: bool = True) -> ConceptResult:
  """Mass-mean shift ``h(a) = a - (mu_concept - mu_clean)`` (poster ``000``, Marks & Tegmark)
  on the samples the covariance-corrected (LDA) probe reads the concept in; ``direction="lda"``
  shifts along the probe's direction instead. ``gated=False`` shifts every sample (a constant
  translation: see :func:`~debiasjax.methods.concepts.mass_mean_shift`)."""
  if direction not in ("signal", "lda"):
    raise ValueError(f"direction: expected 'signal' or 'lda', got {direction!r}")
  layer, a, fitted = _fit(model, variables, split, layer, direction, pooling, decorrelate)
  probe = None
  if gated:
    probe = fitted if direction == "lda" else C.fit_cav(
        a, split.group, kind="lda", pooling=pooling, weights=_weights(split, decorrelate))
  edit = C.mass_mean_shift(fitted, probe=probe)
  return ConceptResult(Intervened(model, layer, edit), variables, 0.5, fitted, layer)


def leace(model, variables, split: Split, *, layer: Optional[str] = None,
          decorrelate: bool = True, method: str = "leace", shrinkage: bool = True,
          svd_tol: float = 0.01) -> ConceptResult:
  """LEACE (Belrose et al. 2023) of the protected attribute on ``layer``'s flattened output."""
  layer = layer or default_layer(model)
  a = _activations(model, variables, split, layer)
  eraser = C.fit_leace(a, split.group, weights=_weights(split, decorrelate), method=method,
                       shrinkage=shrinkage, svd_tol=svd_tol)
  return ConceptResult(Intervened(model, layer, eraser), variables, 0.5, eraser, layer)


# --- Fine-tuning: A-ClArC and RR-ClArC -------------------------------------------------------

def trainable_mask(model: nn.Module, variables, x, layer: str, trainable: str) -> Any:
  """Boolean pytree over ``params``: the top-level modules called after ``layer``'s
  (``after``), only ``head`` (``head``), or everything (``all``)."""
  if trainable not in TRAINABLE:
    raise ValueError(f"trainable: expected one of {TRAINABLE}, got {trainable!r}")
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
  return {k: jax.tree.map(lambda _: k in chosen, v) for k, v in variables["params"].items()}


def rr_penalty(t: Tap, variables, x, y, key, cav: C.CAV, *, criterion: str,
               aggregation: str = "l2"):
  """RR-ClArC's penalty and the logits from one pass: ``mean_b (v^T g_b)^2`` (``l2``) or
  ``mean_b |v^T g_b|`` (``l1``), ``g_b = d s(f(x_b)) / d a_b`` with ``s`` the ``criterion``
  (``all_logits_random``: logits times random signs), spatially averaged for pooled CAVs.

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
  if g.ndim == 4 and cav.pooling != "none":
    g = g.mean(axis=(1, 2))
  along = C._dot(g, cav.direction.astype(g.dtype))
  penalty = jnp.mean(along ** 2) if aggregation == "l2" else jnp.mean(jnp.abs(along))
  return penalty, logits


def _fine_tune(loss_fn, variables, split: Split, mask, *, key, learning_rate: float,
               num_steps: int, batch_size: int, hyper):
  """Adam on the masked parameters for ``num_steps`` minibatches, one compiled scan; vmapped
  over a leading axis of ``hyper`` when it has one."""
  x, y = jnp.asarray(split.x), jnp.asarray(split.y)
  batch_size = min(batch_size, len(split))
  labels = jax.tree.map(lambda m: "train" if m else "freeze", mask)
  tx = optax.multi_transform({"train": optax.adam(learning_rate),
                              "freeze": optax.set_to_zero()}, labels)
  rest = {k: v for k, v in variables.items() if k != "params"}
  n = len(split)

  def run(h):
    def step(carry, t):
      params, opt = carry
      k_batch, k_loss = jax.random.split(jax.random.fold_in(key, t))
      idx = jax.random.choice(k_batch, n, (batch_size,), replace=False)
      loss, grads = jax.value_and_grad(loss_fn)(params, rest, x[idx], y[idx], k_loss, h)
      updates, opt = tx.update(grads, opt, params)
      return (optax.apply_updates(params, updates), opt), loss

    params = variables["params"]
    (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(num_steps))
    return {"params": params, **rest}, losses

  h = jnp.asarray(hyper, jnp.float32)
  return jax.jit(jax.vmap(run) if h.ndim else run)(h)


def _check_training(num_steps, batch_size, learning_rate, split):
  check_int("num_steps", num_steps, 1)
  check_int("batch_size", batch_size, 1)
  if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
    raise ValueError(f"learning_rate: expected a positive number, got {learning_rate!r}")


def a_clarc(model, variables, split: Split, *, key: jax.Array, layer: Optional[str] = None,
            cav: str = "signal", pooling: str = "max", decorrelate: bool = True,
            trainable: str = "after", learning_rate: float = 1e-3, num_steps: int = 100,
            batch_size: int = 64) -> ConceptResult:
  """A-ClArC: fine-tune with every sample's concept coordinate moved to the concept mean
  (``h(a) = a + (L1 - v^T pool(a)) v``), so the concept no longer tells the classes apart and
  the network must use other evidence; the injection is off at evaluation."""
  _check_training(num_steps, batch_size, learning_rate, split)
  layer, _, fitted = _fit(model, variables, split, layer, cav, pooling, decorrelate)
  inject = C.project_to(fitted, fitted.concept_level)
  t = tap(model, layer)
  mask = trainable_mask(model, variables, split.x, layer, trainable)

  def loss_fn(params, rest, x, y, key, _):
    return weighted_cross_entropy(t.apply({"params": params, **rest}, x, inject), y)

  new, _ = _fine_tune(loss_fn, variables, split, mask, key=key, learning_rate=learning_rate,
                      num_steps=num_steps, batch_size=batch_size, hyper=0.0)
  return ConceptResult(model, new, 0.5, fitted, layer)


def rr_clarc(model, variables, split: Split, *, key: jax.Array, layer: Optional[str] = None,
             lam: Union[float, Sequence[float]] = 1.0, criterion: str = "all_logits_random",
             aggregation: str = "l2", cav: str = "signal", pooling: str = "max",
             decorrelate: bool = True, trainable: str = "after", learning_rate: float = 1e-3,
             num_steps: int = 100, batch_size: int = 64) -> ConceptResult:
  """RR-ClArC (Dreyer et al. 2024): fine-tune with ``CE + lam * mean_b (v^T d s / d a_b)^2``
  (:func:`rr_penalty`; the pattern-CAV code's defaults ``all_logits_random`` and ``l2``).
  A sequence ``lam`` trains one model per value in one vmapped program; ``variables`` are then
  stacked along a leading axis."""
  if criterion not in CRITERIA:
    raise ValueError(f"criterion: expected one of {CRITERIA}, got {criterion!r}")
  if aggregation not in ("l2", "l1"):
    raise ValueError(f"aggregation: expected 'l2' or 'l1', got {aggregation!r}")
  lams = np.asarray(lam, np.float32)
  if lams.ndim > 1 or not (np.isfinite(lams).all() and (lams >= 0).all()) or lams.size == 0:
    raise ValueError(f"lam: expected a non-negative number or a list of them, got {lam!r}")
  _check_training(num_steps, batch_size, learning_rate, split)
  layer, _, fitted = _fit(model, variables, split, layer, cav, pooling, decorrelate)
  t = tap(model, layer)
  mask = trainable_mask(model, variables, split.x, layer, trainable)

  def loss_fn(params, rest, x, y, key, lam):
    penalty, logits = rr_penalty(t, {"params": params, **rest}, x, y, key, fitted,
                                 criterion=criterion, aggregation=aggregation)
    return weighted_cross_entropy(logits, y) + lam * penalty

  new, _ = _fine_tune(loss_fn, variables, split, mask, key=key, learning_rate=learning_rate,
                      num_steps=num_steps, batch_size=batch_size, hyper=lams)
  return ConceptResult(model, new, 0.5, fitted, layer)


def _with_key(method):
  @functools.wraps(method)
  def run(model, variables, split, *, key, **kwargs):
    return method(model, variables, split, **kwargs)
  return run


# Behind debias(): every entry is called as method(model, variables, split, *, key, **kwargs).
METHODS = {"p_clarc": _with_key(p_clarc), "mass_mean": _with_key(mass_mean),
           "leace": _with_key(leace), "a_clarc": a_clarc, "rr_clarc": rr_clarc}
TARGETS = {"p_clarc": p_clarc, "mass_mean": mass_mean, "leace": leace, "a_clarc": a_clarc,
           "rr_clarc": rr_clarc}
