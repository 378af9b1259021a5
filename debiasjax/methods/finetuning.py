"""The weight-changing methods behind one signature, for :func:`debiasjax.debias`.

Every entry of :data:`METHODS` is called as ``method(model, variables, split, *, key,
objective, **kwargs) -> SearchResult``: it changes the weights of the Flax ``model`` on the
debias split and picks the decision threshold with Savani's ``objective``. Layer arguments
default to the model's penultimate layer (:func:`penultimate_layer`) and, for layer-wise
optimisation, that layer and the head.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from debiasjax.evaluate import score_function
from debiasjax.methods import adversarial, search
from debiasjax.models.mlp import MLP
from debiasjax.models.resnet import ResNet


def penultimate_layer(model: nn.Module) -> str:
  """The module whose output the adversarial critic reads: the MLP's last hidden layer, the
  ResNet's last stage (feature maps)."""
  if isinstance(model, MLP):
    return f"layer{model.num_layers}"
  if isinstance(model, ResNet):
    return "stage4"
  raise ValueError(f"model: no default penultimate layer for {type(model).__name__}; pass "
                   "layer= (a module path)")


def _random(model, variables, split, *, key, objective, **kwargs):
  return search.random_perturbation(score_function(model), variables, split, key=key,
                                    objective=objective, **kwargs)


def _layerwise(model, variables, split, *, key, objective, layers=None, **kwargs):
  layers = layers or [penultimate_layer(model), "head"]
  return search.layerwise_optimisation(score_function(model), variables, split, key=key,
                                       objective=objective, layers=layers, **kwargs)


def _savani(model, variables, split, *, key, objective, layer=None, **kwargs):
  return adversarial.savani_adversarial(model, variables, split, key=key, objective=objective,
                                        layer=layer or penultimate_layer(model), **kwargs)


def _zhang(model, variables, split, *, key, objective, **kwargs):
  return adversarial.zhang_adversarial(model, variables, split, key=key, objective=objective,
                                       **kwargs)


def _fine_tune(model, variables, split, *, key, objective, **kwargs):
  return adversarial.fine_tune(model, variables, split, key=key, objective=objective, **kwargs)


METHODS = {"random_perturbation": _random, "layerwise_optimisation": _layerwise,
           "savani_adversarial": _savani, "zhang_adversarial": _zhang, "fine_tune": _fine_tune}
# The functions whose keyword arguments each entry accepts (for argument checking).
TARGETS: dict[str, Any] = {
    "random_perturbation": search.random_perturbation,
    "layerwise_optimisation": search.layerwise_optimisation,
    "savani_adversarial": adversarial.savani_adversarial,
    "zhang_adversarial": adversarial.zhang_adversarial, "fine_tune": adversarial.fine_tune}
