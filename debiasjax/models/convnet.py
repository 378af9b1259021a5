"""Bahng et al.'s ``SimpleConvNet`` (ICML 2020), the Biased-MNIST network of ReBias, IRENE, EnD
and the Voronoi-cell method.

Four blocks ``block1``..``block4`` of a 7x7 convolution (stride 1, padding 3) -> BatchNorm ->
ReLU with ``width * (1, 2, 4, 8)`` channels (16/32/64/128 in the papers), the global average
``pool`` (the bottleneck IRENE and the Voronoi method read, 8 x ``width`` features) and a
linear ``head``. Convolutions use Kaiming-normal (fan-out) initialisation, as the reference.
``last_activation="tanh"`` is IRENE's copy, with Tanh instead of ReLU before the pool.

Example:
  model = SimpleConvNet()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))
  logits = model.apply(variables, x)                                   # [N, 10]
"""

from __future__ import annotations

import flax.linen as nn

from debiasjax.models import layers

_KAIMING_FAN_OUT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class ConvBlock(nn.Module):
  """7x7 convolution -> BatchNorm -> activation."""
  features: int
  kernel: int
  activation: str

  @nn.compact
  def __call__(self, x, train: bool):
    pad = self.kernel // 2
    x = nn.Conv(self.features, (self.kernel,) * 2, padding=((pad, pad), (pad, pad)),
                kernel_init=_KAIMING_FAN_OUT, name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="bn")(x)
    return nn.tanh(x) if self.activation == "tanh" else nn.relu(x)


class SimpleConvNet(nn.Module):
  """Named stages ``block1``..``block4``, ``pool``, ``head``.

  Attributes:
    num_classes: logits of ``head`` (10 digits).
    width: channels of ``block1``; block k has ``width * 2**(k-1)`` (16 in the papers).
    kernel: convolution size (7; ReBias's colour-only "biased" net uses 1).
    last_activation: ``"relu"`` (Bahng) or ``"tanh"`` (IRENE) after ``block4``.
  """
  num_classes: int = 10
  width: int = 16
  kernel: int = 7
  last_activation: str = "relu"

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.last_activation not in ("relu", "tanh"):
      raise ValueError(f"last_activation: expected 'relu' or 'tanh', got "
                       f"{self.last_activation!r}")
    for i in range(4):
      activation = self.last_activation if i == 3 else "relu"
      x = ConvBlock(self.width * 2**i, self.kernel, activation, name=f"block{i + 1}")(x, train)
    x = layers.GlobalAvgPool(name="pool")(x)
    return nn.Dense(self.num_classes, name="head")(x)
