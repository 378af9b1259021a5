"""Layer-wise relevance propagation for Flax Linen models, compiled as one backward pass.

``lrp(model, variables, x, targets, composite=epsilon_plus_flat())`` returns relevance shaped like
``x``. Each ``nn.Conv`` / ``nn.Dense`` call is intercepted (``nn.intercept_methods``) and its
output re-parametrised by its rule (see :mod:`debiasjax.explain.rules`); then

    R_x = x * grad_x <sum_c w_c f_c(x)> + grad_delta <...>

with ``w`` the one-hot target (so the output relevance is the target logit). Nothing else in the
model is touched: ReLU, max-pooling, global mean-pooling, reshapes, dropout (eval) and residual
sums are handled exactly by the plain gradient (or, with the composite's ``sum_stabilizer``, by
zennit's stabilised Norm rule at ``layers.Sum`` / ``layers.GlobalAvgPool``).

BatchNorm (eval mode) is folded before rules apply, as zennit's canonizers do:
* into the Conv/Dense that feeds it directly: ``W' = W * gamma / sqrt(var + eps)``,
  ``b' = (b - mean) * gamma / sqrt(var + eps) + beta`` (the real eps is kept);
* otherwise (e.g. the MLP's Dense -> ReLU -> Dropout -> BN) into the Dense that reads it:
  ``W' = diag(s) W``, ``b' = b + t W`` for ``BN(h) = s h + t``, so relevance reaches ``h``.
  A BatchNorm read by anything else is propagated by its plain gradient.

Supported: ``nn.Conv``, ``nn.Dense``, ``nn.BatchNorm`` (eval mode, feature axis last) and any
parameter-free operation; positively homogeneous activations (ReLU) are what the rules assume.
Other parametrised modules (ConvTranspose, LayerNorm, GroupNorm, Embed, attention, ...) raise a
``ValueError`` naming the module.

Batched (samples are independent in eval mode), ``jit``-compiled, and ``vmap``-able over stacked
parameter sets::

  relevance = lrp(model, variables, images, labels)                        # [B, H, W, C]
  many = jax.vmap(lambda v: lrp(model, v, images, labels))(stacked_variables)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from debiasjax import _checks
from debiasjax.explain import rules as rules_lib
from debiasjax.models import layers

_REJECTED = (nn.MultiHeadDotProductAttention, nn.ConvTranspose, nn.LayerNorm, nn.GroupNorm,
             nn.Embed, nn.DenseGeneral, nn.ConvLocal)


def output_weights(targets, logits):
  """Output weights ``w`` [B, C]: one-hot of integer ``targets`` [B], or ``targets`` if [B, C]."""
  targets = jnp.asarray(targets)
  batch, classes = logits.shape[0], logits.shape[-1]
  if targets.ndim == 1 and jnp.issubdtype(targets.dtype, jnp.integer):
    if targets.shape[0] != batch:
      raise ValueError(f"targets: expected {batch} class indices (one per input), got "
                       f"{targets.shape[0]}")
    return jax.nn.one_hot(targets, classes, dtype=logits.dtype)
  if targets.shape == (batch, classes):
    return targets.astype(logits.dtype)
  raise ValueError(f"targets: expected integer class indices of shape ({batch},) or output weights "
                   f"of shape ({batch}, {classes}), got dtype {targets.dtype} and shape "
                   f"{targets.shape}")


def _owns_parameters(module) -> bool:
  params = module.variables.get("params", {})
  return any(not isinstance(v, Mapping) for v in params.values())


class _Propagation:
  """Trace-time state of one LRP pass: the interceptor and the pending BatchNorm folds."""

  def __init__(self, composite: rules_lib.Composite, delta):
    self.composite = composite
    self.delta = delta
    self.busy = False          # inside a rule's own (re-entrant) module calls
    self.first_done = False
    self.linear_out = {}       # id(output) -> (lin, a, w, b, rule, path): Conv/Dense awaiting a BN
    self.norm_out = {}         # id(output) -> (h, s, t): BN(h) = s * h + t awaiting a Dense
    self.linears = {}

  def _lin(self, module):
    """``lin(a, w, b)``: the module's own affine map (padding, strides, dtype), new parameters."""
    key = id(module)
    if key not in self.linears:
      plain = module.clone(parent=None, use_bias=True, name=None)

      def lin(a, w, b):
        self.busy, was = True, self.busy
        try:
          return plain.apply({"params": {"kernel": w, "bias": b}}, a)
        finally:
          self.busy = was
      self.linears[key] = lin
    return self.linears[key]

  def intercept(self, next_fun, args, kwargs, context):
    module = context.module
    if self.busy or context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    if isinstance(module, (nn.Conv, nn.Dense)) and type(module) not in _REJECTED:
      return self._linear(module, args[0])
    if isinstance(module, nn.BatchNorm):
      return self._batch_norm(module, args, kwargs, next_fun)
    if isinstance(module, layers.NORM_RULE_MODULES):
      out = next_fun(*args, **kwargs)
      eps = self.composite.sum_stabilizer
      return out if eps is None else rules_lib.norm(out, eps)
    if isinstance(module, _REJECTED) or _owns_parameters(module):
      raise ValueError(
          f"lrp: module '{'/'.join(module.path)}' of type {type(module).__name__} is not "
          "supported; LRP handles nn.Conv, nn.Dense, nn.BatchNorm (eval mode) and parameter-free "
          "operations")
    return next_fun(*args, **kwargs)

  def _linear(self, module, a):
    kind = "conv" if isinstance(module, nn.Conv) else "dense"
    w = module.get_variable("params", "kernel")
    b = (module.get_variable("params", "bias") if module.use_bias
         else jnp.zeros(w.shape[-1], w.dtype))
    if kind == "dense" and id(a) in self.norm_out:     # fold the BatchNorm that feeds it
      a, s, t = self.norm_out[id(a)]
      w, b = s[:, None] * w, b + t @ w
    is_first, self.first_done = not self.first_done, True
    rule = self.composite.rule(kind, module.path, is_first)
    if rule.needs_delta and not is_first:
      raise ValueError(f"lrp: rule {rule} has no input factor and can only be the first layer's "
                       f"rule; "
                       f"it was assigned to '{'/'.join(module.path)}'")
    lin = self._lin(module)
    delta = self._delta_for(rule, a, module)
    y = rule(lin(a, w, b), lin, a, w, b, delta)
    self.linear_out[id(y)] = (lin, a, w, b, rule, delta)
    return y

  def _delta_for(self, rule, a, module):
    if not rule.needs_delta:
      return None
    if self.delta.size != a.size:
      raise ValueError(f"lrp: the first-layer rule {type(rule).__name__} needs the first layer "
                       f"('{'/'.join(module.path)}') to read the model input; it reads shape "
                       f"{a.shape}, "
                       f"the input has shape {self.delta.shape}")
    return self.delta.reshape(a.shape)

  def _batch_norm(self, module, args, kwargs, next_fun):
    x = args[0]
    running = nn.merge_param("use_running_average", module.use_running_average,
                             kwargs.get("use_running_average", args[1] if len(args) > 1 else None))
    if not running:
      raise ValueError(f"lrp: BatchNorm '{'/'.join(module.path)}' is in training mode; explain the "
                       "model in eval mode (use_running_average=True)")
    if module.axis not in (-1, x.ndim - 1):
      raise ValueError(f"lrp: BatchNorm '{'/'.join(module.path)}' normalises axis {module.axis}; "
                       "only the last (feature) axis is supported")
    mean = module.get_variable("batch_stats", "mean")
    var = module.get_variable("batch_stats", "var")
    scale = module.get_variable("params", "scale") if module.use_scale else jnp.ones_like(mean)
    bias = module.get_variable("params", "bias") if module.use_bias else jnp.zeros_like(mean)
    s = scale / jnp.sqrt(var + module.epsilon)
    t = bias - mean * s
    if id(x) in self.linear_out:
      lin, a, w, b, rule, delta = self.linear_out[id(x)]
      w, b = w * s.reshape((1,) * (w.ndim - 1) + (-1,)), b * s + t
      y = rule(lin(a, w, b), lin, a, w, b, delta)
      self.linear_out[id(y)] = (lin, a, w, b, rule, delta)
      return y
    out = next_fun(*args, **kwargs)
    self.norm_out[id(out)] = (x, s, t)
    return out


def _check_input(x):
  _checks.check_numeric("x", x)
  if not jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating):
    raise ValueError(f"x: expected a floating-point batch, got dtype {jnp.asarray(x).dtype}")
  if jnp.ndim(x) < 2:
    raise ValueError(f"x: expected a batch [B, ...], got shape {jnp.shape(x)}")
  _checks.check_finite("x", x)


def check_explain_inputs(forward, x, targets, cache_key=None) -> None:
  """What an explainer can check before it runs: ``x`` a finite floating batch the model
  accepts (``forward: x -> logits``, traced once per ``cache_key`` and input shape), and integer
  ``targets`` one per input, each a class of the model's output. Traced values are skipped."""
  _check_input(x)
  if not _checks.is_concrete(x):
    return
  shape = (jnp.shape(x), jnp.asarray(x).dtype)
  classes = _CLASSES.get((cache_key, shape)) if cache_key is not None else None
  if classes is None:
    try:
      out = jax.eval_shape(forward, jax.ShapeDtypeStruct(*shape))
    except flax.errors.ModifyScopeVariableError:
      return                  # a module in training mode: the explainer says so itself
    except Exception as e:  # noqa: BLE001 -- any failure of the model on this shape
      raise ValueError(f"x: the model cannot take a batch of shape {shape[0]}: "
                       f"{type(e).__name__}: {str(e)[:300]}") from e
    classes = out.shape[-1]
    if cache_key is not None:
      _CLASSES[(cache_key, shape)] = classes
  _checks.check_numeric("targets", targets)
  t = jnp.asarray(targets)
  if _checks.is_concrete(t) and t.ndim == 1 and jnp.issubdtype(t.dtype, jnp.integer):
    v = jax.device_get(t)
    bad = v[(v < 0) | (v >= classes)]
    if bad.size:
      raise ValueError(f"targets: expected class indices in 0..{classes - 1} (the model has "
                       f"{classes} outputs), got {sorted(set(bad.tolist()))[:10]}")


_CLASSES: dict = {}


def program_owner(model):
  """``model``, or the owner of a bound ``apply`` (a Linen module's, an
  :class:`~debiasjax.models.Intervened`'s): bound methods compare by their object's identity,
  the owners by value, so equal networks built apart (every cell of a sweep) share one compiled
  program instead of tracing and compiling it again."""
  owner = getattr(model, "__self__", None)
  if inspect.ismethod(model) and model.__name__ == "apply" and hasattr(owner, "apply"):
    return owner
  return model


def check_model_inputs(model, variables, x, targets) -> None:
  """:func:`check_explain_inputs` for a model (or ``apply(variables, x)``) and its variables;
  the output size is cached per model and input shape when the variables are concrete."""
  apply = getattr(model, "apply", model)
  concrete = all(_checks.is_concrete(v) for v in jax.tree.leaves(variables))
  check_explain_inputs(lambda xx: apply(variables, xx), x, targets,
                       cache_key=model if concrete else None)


def lrp(model: nn.Module, variables: Any, x, targets, *,
        composite: rules_lib.Composite = rules_lib.epsilon_plus_flat()):
  """LRP relevance of ``targets`` for a batch, shaped like ``x`` (see :func:`_lrp`); concrete
  inputs are checked first (finite images of a shape the model takes, targets among its
  classes)."""
  model = program_owner(model)
  check_model_inputs(model, variables, x, targets)
  return _lrp(model, variables, x, targets, composite=composite)


@functools.partial(jax.jit, static_argnames=("model", "composite"))
def _lrp(model: nn.Module, variables: Any, x, targets, *,
         composite: rules_lib.Composite = rules_lib.epsilon_plus_flat()):
  """LRP relevance of ``targets`` for a batch, shaped like ``x``.

  Args:
    model: a Flax Linen module of supported layers (see module doc), applied in eval mode, or
      anything with such an ``apply(variables, x)`` or any function ``(variables, x) -> logits``
      that calls one (an edited network, a debiased model's ``apply_fn``).
    variables: its variables (``params``, ``batch_stats``).
    x: inputs [B, ...].
    targets: class indices [B] (relevance in logit units: sum(R) ~ f_target(x)), or output
      weights [B, C].
    composite: the rules (:mod:`debiasjax.explain.rules`); default EpsilonPlusFlat.

  Returns:
    Relevance [B, ...] (per input channel; sum over channels for a heatmap).
  """

  def weighted_output(x, delta):
    propagation = _Propagation(composite, delta)
    with nn.intercept_methods(propagation.intercept):
      logits = getattr(model, "apply", model)(variables, x)
    return jnp.sum(logits * jax.lax.stop_gradient(output_weights(targets, logits)))

  delta = jnp.zeros_like(x)
  grad_x, grad_delta = jax.grad(weighted_output, argnums=(0, 1))(x, delta)
  return x * grad_x + grad_delta


def folded_forward(model: nn.Module, variables: Any, x):
  """The model's logits computed through the BatchNorm-folded layers LRP uses (equal to
  ``model.apply`` up to rounding; a canonization check)."""
  propagation = _Propagation(rules_lib.lrp_zero(), jnp.zeros_like(x))
  with nn.intercept_methods(propagation.intercept):
    return model.apply(variables, x)
