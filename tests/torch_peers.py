"""PyTorch peers of the explainers (zennit LRP, captum IG) on the same weights as our Flax models,
for the parity tests and the explanation benchmark. Needs the test requirements (CPU torch,
zennit 0.5.1, captum 0.9.0).

The registry's torchvision is a CUDA build that fails to register its fake kernels next to the
CPU torch; zennit imports ``torchvision.models.resnet`` at import time, so
:func:`import_torch_peers` stubs ``torchvision._meta_registrations`` before importing it
(the ResNet models build and run without it).
"""

from __future__ import annotations

import sys
import types

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def import_torch_peers():
  """``(torch, zennit, captum, torchvision)``; raises ImportError when torch is absent."""
  import torch
  try:
    import torchvision  # noqa: F401
  except Exception:  # CUDA torchvision next to the CPU torch
    for name in [k for k in sys.modules if k.startswith("torchvision")]:
      del sys.modules[name]
    stub = "torchvision._meta_registrations"
    sys.modules[stub] = types.ModuleType(stub)
    import torchvision  # noqa: F401
  import captum
  import zennit
  return torch, zennit, captum, torchvision


class SmallCNN(nn.Module):
  """conv3x3 3->32 /1, 32->64 /2, 64->128 /2 (each + BN + ReLU), global mean, dense -> classes."""
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    for i, (features, stride) in enumerate(((32, 1), (64, 2), (128, 2))):
      x = nn.Conv(features, (3, 3), (stride, stride), padding=1, name=f"conv{i}")(x)
      x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5, name=f"bn{i}")(x))
    return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


def torch_small_cnn(torch, num_classes: int = 10):
  """The same network in PyTorch (module order = ours)."""
  def block(cin, cout, stride):
    return [torch.nn.Conv2d(cin, cout, 3, stride=stride, padding=1), torch.nn.BatchNorm2d(cout),
            torch.nn.ReLU()]
  return torch.nn.Sequential(*block(3, 32, 1), *block(32, 64, 2), *block(64, 128, 2),
                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                             torch.nn.Linear(128, num_classes))


def randomize_batch_norm(torch, model, seed: int = 0):
  """Non-trivial running statistics and affine parameters, so BatchNorm folding matters."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        n = m.num_features
        m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
        m.weight.copy_(0.5 + torch.rand(n, generator=gen))
        m.bias.copy_(0.1 * torch.randn(n, generator=gen))
  return model.eval()


def _np(t):
  return np.asarray(t.detach().cpu().numpy(), np.float32)


def _conv(conv):
  out = {"kernel": _np(conv.weight).transpose(2, 3, 1, 0)}          # OIHW -> HWIO
  if conv.bias is not None:
    out["bias"] = _np(conv.bias)
  return out


def _bn(bn):
  return ({"scale": _np(bn.weight), "bias": _np(bn.bias)},
          {"mean": _np(bn.running_mean), "var": _np(bn.running_var)})


def _dense(linear):
  return {"kernel": _np(linear.weight).T, "bias": _np(linear.bias)}


def small_cnn_variables(model) -> dict:
  """Flax variables of :class:`SmallCNN` from :func:`torch_small_cnn`'s weights."""
  params, stats = {}, {}
  for i in range(3):
    params[f"conv{i}"] = _conv(model[3 * i])
    params[f"bn{i}"], stats[f"bn{i}"] = _bn(model[3 * i + 1])
  params["head"] = _dense(model[-1])
  return {"params": params, "batch_stats": stats}


def resnet_variables(model) -> dict:
  """Flax variables of our ``ResNet18/34`` (width 64) from a torchvision BasicBlock ResNet."""
  params = {"stem": {"conv": _conv(model.conv1)}}
  stats = {"stem": {}}
  params["stem"]["bn"], stats["stem"]["bn"] = _bn(model.bn1)
  for s in range(1, 5):
    stage_p, stage_s = {}, {}
    for j, block in enumerate(getattr(model, f"layer{s}")):
      bp, bs = {"conv1": _conv(block.conv1), "conv2": _conv(block.conv2)}, {}
      bp["bn1"], bs["bn1"] = _bn(block.bn1)
      bp["bn2"], bs["bn2"] = _bn(block.bn2)
      if block.downsample is not None:
        bp["downsample_conv"] = _conv(block.downsample[0])
        bp["downsample_bn"], bs["downsample_bn"] = _bn(block.downsample[1])
      stage_p[f"block{j + 1}"], stage_s[f"block{j + 1}"] = bp, bs
    params[f"stage{s}"], stats[f"stage{s}"] = stage_p, stage_s
  params["head"] = _dense(model.fc)
  return {"params": params, "batch_stats": stats}


def to_torch_images(torch, x_nhwc):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(x_nhwc, np.float32).transpose(0, 3, 1,
                                                                                        2)))


def zennit_epsilon_plus_flat(torch, zennit, model, x_nchw, targets, *, resnet: bool):
  """zennit EpsilonPlusFlat with BatchNorm merged (ResNetCanonizer for ResNets); relevance in
  logit units (``attr_output = one-hot * output``), returned NHWC."""
  from zennit.attribution import Gradient
  from zennit.canonizers import SequentialMergeBatchNorm
  from zennit.composites import EpsilonPlusFlat
  from zennit.torchvision import ResNetCanonizer

  canonizer = ResNetCanonizer() if resnet else SequentialMergeBatchNorm()
  composite = EpsilonPlusFlat(canonizers=[canonizer])
  onehot = torch.nn.functional.one_hot(torch.as_tensor(np.array(targets), dtype=torch.long),
                                       model(x_nchw[:1]).shape[-1]).float()
  with Gradient(model=model, composite=composite) as attributor:
    _, relevance = attributor(x_nchw, lambda out: out * onehot)
  return relevance


def captum_integrated_gradients(torch, captum, model, x_nchw, targets, *, steps: int = 50,
                                internal_batch_size=None):
  """captum IG (Gauss-Legendre, zero baseline)."""
  from captum.attr import IntegratedGradients
  target = torch.as_tensor(np.array(targets), dtype=torch.long)
  return IntegratedGradients(model).attribute(x_nchw, target=target, n_steps=steps,
                                              method="gausslegendre",
                                              internal_batch_size=internal_batch_size)


def to_nhwc(t):
  return _np(t).transpose(0, 2, 3, 1)
