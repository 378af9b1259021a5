"""Taps: pure access to one named layer of a model.

A :class:`Tap` is two pure functions:

* ``activations(variables, x) -> a``: the layer's output;
* ``apply(variables, x, edit) -> model output``: the model with the layer's output replaced by
  ``edit(a)``;
* ``forward(variables, x) -> (model output, a)``: both from one pass (what a critic reading the
  layer while the model trains needs).

Every activation-space method (P-ClArC, LEACE, mass-mean shift, RR-ClArC's gradient through
``edit = lambda a: a + delta``) is written against a Tap, so it works for any Linen model and,
through :func:`tap_from_functions`, for NNX, Equinox or plain functions. Both functions are safe
under ``jit``, ``vmap`` (e.g. over stacked parameter sets) and ``grad``.

Example:
  t = tap(model, "stage4")
  a = t.activations(variables, x)                       # [N, H, W, C]
  logits = t.apply(variables, x, lambda a: a - a.mean((1, 2), keepdims=True))
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import numpy as np

Edit = Callable[[Any], Any]


class Tap(NamedTuple):
  """Pure access to one layer: ``activations(variables, x)``, ``apply(variables, x, edit)`` and
  ``forward(variables, x) -> (output, activations)``."""
  activations: Callable[..., Any]
  apply: Callable[..., Any]
  forward: Callable[..., Any]


def _layer_path(layer: str) -> tuple[str, ...]:
  if not isinstance(layer, str) or not layer.strip("/"):
    raise ValueError(f"layer: expected a module path such as 'stage3' or 'stage3/block1', got "
                     f"{layer!r}")
  return tuple(part for part in layer.split("/") if part)


def tap(model: nn.Module, layer: str, **apply_kwargs) -> Tap:
  """Builds a :class:`Tap` at the Linen module ``layer`` (a ``/``-separated module path).

  Args:
    model: any Flax Linen module.
    layer: path of a submodule, e.g. ``"stage3"`` or ``"stage3/block2"`` for our ResNets,
      ``"layer10"`` for the MLP.
    **apply_kwargs: default keyword arguments of ``model.apply`` (``train=False``,
      ``mutable=...``, ``rngs=...``); per-call keyword arguments override them.

  Returns:
    A Tap. ``activations`` returns the output of the module's first ``__call__``; ``apply``
    edits every call of that module (a module shared by several call sites is edited at each)
    and returns whatever ``model.apply`` returns (``(out, updates)`` when ``mutable`` is set).

  Raises:
    ValueError: when ``layer`` names no module; the message lists the module paths.
  """
  path = _layer_path(layer)

  def run(variables, x, edit: Optional[Edit], kwargs):
    seen, captured = [], []

    def interceptor(next_fun, args, kw, context):
      out = next_fun(*args, **kw)
      if context.method_name != "__call__":
        return out
      seen.append(context.module.path)
      if context.module.path == path:
        captured.append(out)
        if edit is not None:
          out = edit(out)
      return out

    with nn.intercept_methods(interceptor):
      result = model.apply(variables, x, **{**apply_kwargs, **kwargs})
    if not captured:
      names = sorted({"/".join(p) for p in seen if p})
      raise ValueError(f"layer: {layer!r} is not a module of {type(model).__name__}; "
                       f"available: {', '.join(names)}")
    return result, captured[0]

  def activations(variables, x, **kwargs):
    return run(variables, x, None, kwargs)[1]

  def apply(variables, x, edit: Edit, **kwargs):
    return run(variables, x, edit, kwargs)[0]

  def forward(variables, x, **kwargs):
    return run(variables, x, None, kwargs)

  return Tap(activations, apply, forward)


def tap_from_functions(features: Callable[[Any, Any], Any], head: Callable[[Any, Any], Any]) -> Tap:
  """Adapts any model split into ``features(variables, x) -> a`` and ``head(variables, a)``.

  For NNX: ``graphdef, state = nnx.split(model)`` and ``features = lambda s, x:
  nnx.merge(graphdef, s).features(x)``; for Equinox the model pytree is ``variables``.
  """
  def apply(variables, x, edit: Edit):
    return head(variables, edit(features(variables, x)))

  def forward(variables, x):
    a = features(variables, x)
    return head(variables, a), a

  return Tap(features, apply, forward)


EDIT = "edit"   # the variables' collection that holds an Intervened network's fitted edit


@dataclasses.dataclass(frozen=True)
class Intervened:
  """A model whose ``layer`` output is replaced by ``edit(state, a)`` at every call, ``state``
  being the fitted edit in ``variables["edit"]`` (:meth:`with_edit`): P-ClArC, mass-mean shifts
  and LEACE become part of the network, so scoring (``.apply``), LRP and integrated gradients
  see the edited model. The state is an input, not a constant of the program, and equal
  (model, layer, edit) compare equal (a static jit argument): every network edited at one layer
  by one eraser shares one compiled program, whatever it was fitted on."""
  model: nn.Module
  layer: str
  edit: Callable[[Any, Any], Any]

  def apply(self, variables, x, **kwargs):
    variables = dict(variables)
    state = variables.pop(EDIT)
    return tap(self.model, self.layer).apply(variables, x, functools.partial(self.edit, state),
                                             **kwargs)

  @staticmethod
  def with_edit(variables, state) -> dict:
    """The model's ``variables`` with the fitted edit ``state``: what :meth:`apply` takes."""
    return {**variables, EDIT: state}


def top_level_call_order(model: nn.Module, variables, x) -> list[str]:
  """Names of the model's top-level submodules in the order a forward pass calls them (traced
  abstractly, nothing is computed)."""
  order = []

  def interceptor(next_fun, args, kw, context):
    path = context.module.path
    if context.method_name == "__call__" and len(path) == 1 and path[0] not in order:
      order.append(path[0])
    return next_fun(*args, **kw)

  def run(variables, x):
    with nn.intercept_methods(interceptor):
      return model.apply(variables, x)

  jax.eval_shape(run, variables, x)
  return order


def penultimate_layer(model: nn.Module, variables, x) -> str:
  """The top-level module a forward pass calls just before the last one: where the debiasing
  methods read and edit features by default (``pool`` of our ResNets, DetoxAI's
  ``penultimate``; ``layerN`` of the MLP). The one place a default layer is chosen."""
  x = jax.ShapeDtypeStruct((1,) + tuple(np.shape(x)[1:]), np.asarray(x[:1]).dtype)
  return _penultimate(model, jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype),
                                          variables), x)


def _penultimate(model, variables, x) -> str:
  key = (model, jax.tree.structure(variables), x.shape, str(x.dtype))
  if key not in _PENULTIMATE:
    _PENULTIMATE[key] = _penultimate_of(model, variables, x)
  return _PENULTIMATE[key]


_PENULTIMATE: dict = {}


def _penultimate_of(model, variables, x) -> str:
  order = top_level_call_order(model, variables, x)
  if len(order) < 2:
    raise ValueError(f"model: {type(model).__name__} calls fewer than two top-level modules "
                     f"({order}); pass layer= (a module path)")
  return order[-2]
