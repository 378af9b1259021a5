"""ResNet-18/34/50 (He et al., 2016), wide ResNets and ResNeXt in Flax Linen with named stages.

The module tree is ``stem``, ``stage1`` ... ``stage4``, ``pool``, ``head``; each stage holds
``block1`` ... ``blockN``. These names are what :func:`debiasjax.models.tap` reaches, e.g.
``tap(model, "stage4")`` or ``tap(model, "stage3/block2")``. Layer order, padding and strides
follow torchvision's ResNet v1.5 (stride on the 3x3 conv of bottlenecks), so torchvision
weights map one to one. ``small_images=True`` swaps the 7x7/stride-2 stem and its max-pool for
one 3x3/stride-1 conv (CIFAR style) for inputs of 32 px or less. Bottleneck ResNets take
torchvision's ``groups`` and ``width_per_group``: the 3x3 convolution of a block with ``planes``
outputs has ``int(planes * width_per_group / 64) * groups`` channels in ``groups`` groups, so
``width_per_group=128`` is Wide ResNet-50-2 (Zagoruyko and Komodakis, 2016) and ``groups=32,
width_per_group=4`` ResNeXt-50 32x4d (Xie et al., 2017).

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


def bottleneck_width(planes: int, groups: int, width_per_group: int) -> int:
  """Channels of a bottleneck's 3x3 convolution, torchvision's
  ``int(planes * width_per_group / 64) * groups``."""
  return int(planes * (width_per_group / 64.0)) * groups


class BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided, in ``groups`` groups), 1x1 expand to ``4 * features``, with a
  projection shortcut when shapes differ; the inner width is :func:`bottleneck_width`."""
  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  groups: int = 1
  width_per_group: int = 64
  expansion = 4

  @nn.compact
  def __call__(self, x):
    s = (self.strides, self.strides)
    out = self.features * self.expansion
    inner = bottleneck_width(self.features, self.groups, self.width_per_group)
    y = nn.relu(self.norm(name="bn1")(self.conv(inner, (1, 1), (1, 1), _pad(1),
                                                name="conv1")(x)))
    y = nn.relu(self.norm(name="bn2")(self.conv(inner, (3, 3), s, _pad(3),
                                                feature_group_count=self.groups,
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
    groups: groups of each bottleneck's 3x3 convolution (ResNeXt; ``BottleneckBlock`` only).
    width_per_group: channels per group of those convolutions at 64 planes (torchvision's;
      128 for a wide ResNet; ``BottleneckBlock`` only).
    dtype: computation dtype (parameters stay float32).
  """
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  num_classes: int = 2
  width: int = 64
  small_images: bool = False
  groups: int = 1
  width_per_group: int = 64
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init,
                             conv_general_dilated=layers.conv_general_dilated)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    block = self.block_cls
    if (self.groups, self.width_per_group) != (1, 64):
      if block is not BottleneckBlock:
        raise ValueError(f"groups, width_per_group: only bottleneck ResNets take them (as "
                         f"torchvision's), got {self.groups}, {self.width_per_group} with "
                         f"{getattr(block, '__name__', block)}")
      block = functools.partial(block, groups=self.groups, width_per_group=self.width_per_group)
    x = Stem(self.width, self.small_images, conv, norm, name="stem")(x)
    for i, num_blocks in enumerate(self.stage_sizes):
      x = Stage(num_blocks, self.width * 2**i, 1 if i == 0 else 2, block, conv, norm,
                name=f"stage{i + 1}")(x)
    x = layers.GlobalAvgPool(name="pool")(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)


ResNet18: Callable[..., ResNet] = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2),
                                                    block_cls=BasicBlock)
ResNet34: Callable[..., ResNet] = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                                                    block_cls=BasicBlock)
ResNet50: Callable[..., ResNet] = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3),
                                                    block_cls=BottleneckBlock)
WideResNet50: Callable[..., ResNet] = functools.partial(ResNet50, width_per_group=128)
ResNeXt50: Callable[..., ResNet] = functools.partial(ResNet50, groups=32, width_per_group=4)

RESNETS = {"resnet18": ResNet18, "resnet34": ResNet34, "resnet50": ResNet50,    # by config name
           "wide_resnet50_2": WideResNet50, "resnext50_32x4d": ResNeXt50}
