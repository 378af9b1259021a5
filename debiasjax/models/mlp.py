"""The tabular MLP of Savani et al. (2020), "Post-Hoc Methods for Debiasing Neural Networks".

Hidden layers are named ``layer1`` ... ``layerN`` and the output ``head``; each hidden layer is
Dense -> ReLU -> Dropout -> BatchNorm, the order of the paper's code, so ``tap(model,
"layerN")`` gives the penultimate representation its adversarial critic reads. The paper's
default is 10 hidden layers of 32 units, BatchNorm and dropout 0.2 (its released code builds
one more input layer: use ``num_layers=11`` to match it exactly).

Example:
  model = MLP()
  variables = model.init(jax.random.key(0), jnp.zeros((1, num_features)))
  logits = model.apply(variables, x)                                   # [N, 2]
"""

from __future__ import annotations

import flax.linen as nn


class DenseBlock(nn.Module):
  """Dense -> ReLU -> Dropout -> BatchNorm."""
  width: int
  dropout: float
  batch_norm: bool

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(nn.Dense(self.width, name="dense")(x))
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    if self.batch_norm:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
    return x


class MLP(nn.Module):
  """Feed-forward classifier with named hidden layers ``layer1``..``layerN`` and ``head``.

  Attributes:
    num_layers: hidden layers (Savani et al.: 10).
    width: units per hidden layer (32).
    dropout: dropout rate after each ReLU (0.2).
    batch_norm: BatchNorm after each dropout (True).
    num_classes: logits produced by ``head`` (2: softmax over {unfavourable, favourable}).
  """
  num_layers: int = 10
  width: int = 32
  dropout: float = 0.2
  batch_norm: bool = True
  num_classes: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    for i in range(self.num_layers):
      x = DenseBlock(self.width, self.dropout, self.batch_norm, name=f"layer{i + 1}")(x, train)
    return nn.Dense(self.num_classes, name="head")(x)
