"""ResNet-18/34/50 (He et al., 2016) in Flax Linen with named stages.

The module tree is ``stem``, ``stage1`` ... ``stage4``, ``pool``, ``head``; each stage holds
``block1`` ... ``blockN``. These names are what :func:`debiasjax.models.tap` reaches, e.g.
``tap(model, "stage4")`` or ``tap(model, "stage3/block2")``. Layer order, padding and strides
follow torchvision's ResNet v1.5 (stride on the 3x3 conv of bottlenecks), so torchvision
weights map one to one. ``small_images=True`` swaps the 7x7/stride-2 stem and its max-pool for
one 3x3/stride-1 conv (CIFAR style) for inputs of 32 px or less.

Example:
  model = ResNet18(num_classes=2, width=16)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  logits = model.apply(variables, images)                      # eval mode
  logits, updates = model.apply(variables, images, train=True, mutable=["batch_stats"])
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

from debiasjax.models import layers

ModuleDef = Any

# torchvision initialises convolutions with kaiming_normal_(mode="fan_out", relu gain).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pad(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
  return ((kernel // 2, kernel // 2),) * 2


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  expansion = 1

  @nn.compact
  def __call__(self, x):
    s = (self.strides, self.strides)
    y = nn.relu(self.norm(name="bn1")(self.conv(self.features, (3, 3), s, _pad(3),
                                                name="conv1")(x)))
    y = self.norm(name="bn2")(self.conv(self.features, (3, 3), (1, 1), _pad(3), name="conv2")(y))
    if x.shape != y.shape:
      x = self.conv(self.features, (1, 1), s, _pad(1), name="downsample_conv")(x)
      x = self.norm(name="downsample_bn")(x)
    return nn.relu(layers.Sum(name="add")(x, y))


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a projection shortcut when shapes differ."""
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  expansion = 4

  @nn.compact
  def __call__(self, x):
    s = (self.strides, self.strides)
    out = self.features * self.expansion
    y = nn.relu(self.norm(name="bn1")(self.conv(self.features, (1, 1), (1, 1), _pad(1),
                                                name="conv1")(x)))
    y = nn.relu(self.norm(name="bn2")(self.conv(self.features, (3, 3), s, _pad(3),
                                                name="conv2")(y)))
    y = self.norm(name="bn3")(self.conv(out, (1, 1), (1, 1), _pad(1), name="conv3")(y))
    if x.shape != y.shape:
      x = self.conv(out, (1, 1), s, _pad(1), name="downsample_conv")(x)
      x = self.norm(name="downsample_bn")(x)
    return nn.relu(layers.Sum(name="add")(x, y))


class Stem(nn.Module):
  """7x7/2 conv + BN + ReLU + 3x3/2 max-pool, or one 3x3/1 conv + BN + ReLU for small images."""
  features: int
  small_images: bool
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    if self.small_images:
      return nn.relu(self.norm(name="bn")(self.conv(self.features, (3, 3), (1, 1), _pad(3),
                                                    name="conv")(x)))
    x = nn.relu(self.norm(name="bn")(self.conv(self.features, (7, 7), (2, 2), _pad(7),
                                               name="conv")(x)))
    return layers.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))


class Stage(nn.Module):
  """``num_blocks`` residual blocks; the first one may downsample."""
  num_blocks: int
  features: int
  strides: int
  block_cls: ModuleDef
  conv: ModuleDef
  norm: ModuleDef

  @nn.compact
  def __call__(self, x):
    for i in range(self.num_blocks):
      x = self.block_cls(self.features, self.strides if i == 0 else 1, self.conv, self.norm,
                         name=f"block{i + 1}")(x)
    return x


class ResNet(nn.Module):
  """ResNet with named stages ``stem``, ``stage1``..``stage4``, ``pool``, ``head``.

  Attributes:
    stage_sizes: blocks per stage, e.g. (2, 2, 2, 2) for ResNet-18.
    block_cls: ``BasicBlock`` or ``BottleneckBlock``.
    num_classes: logits produced by ``head``.
    width: channels of the stem and stage 1 (64 in the paper); stage k has ``width * 2**(k-1)``.
    small_images: 3x3 stride-1 stem without max-pool, for inputs of 32 px or less.
    dtype: computation dtype (parameters stay float32).
  """
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int = 2
  width: int = 64
  small_images: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init,
                             conv_general_dilated=layers.conv_general_dilated)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    x = Stem(self.width, self.small_images, conv, norm, name="stem")(x)
    for i, num_blocks in enumerate(self.stage_sizes):
      x = Stage(num_blocks, self.width * 2**i, 1 if i == 0 else 2, self.block_cls, conv, norm,
                name=f"stage{i + 1}")(x)
    x = layers.GlobalAvgPool(name="pool")(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


ResNet18: Callable[..., ResNet] = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2),
                                                    block_cls=BasicBlock)
ResNet34: Callable[..., ResNet] = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                                                    block_cls=BasicBlock)
ResNet50: Callable[..., ResNet] = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                                                    block_cls=BottleneckBlock)

RESNETS = {"resnet18": ResNet18, "resnet34": ResNet34, "resnet50": ResNet50}   # by config name
