"""Bring your own model: a torchvision ResNet's ``state_dict`` as one of our Flax ResNets.

``resnet_from_state_dict(state_dict) -> (model, variables)`` reads any torchvision ResNet
(ResNet-18/34/50/101/152, the wide ResNets and ResNeXt: any width, number of classes,
``groups`` and ``width_per_group``, BasicBlock or Bottleneck, BatchNorm statistics included)
and builds the equal Flax module: our ResNets follow torchvision's layer order, padding and
strides (v1.5), so every tensor maps one to one -- convolutions
``OIHW -> HWIO``, the classifier transposed, BatchNorm ``weight, bias, running_mean,
running_var`` to ``scale, bias, mean, var`` (eps 1e-5, as torchvision's). A 3x3 first
convolution is read as the CIFAR-style stem (``small_images=True``: stride 1, no max-pool), the
usual change to torchvision's ResNet for small images.

``load_torch_resnet(path)`` reads the ``state_dict`` from a ``.npz`` file (no torch needed) or a
``.pt`` / ``.pth`` file (``torch.load(..., weights_only=True)``; a checkpoint holding a
``"state_dict"`` or ``"model"`` entry, and the ``module.`` prefix of DataParallel, are accepted).

The model then takes NHWC images (``x.transpose(0, 2, 3, 1)`` of the NCHW batch the torch model
takes, normalised the same way) and gives the torch model's logits (to float32 rounding;
``tests/models/from_torch_test.py``).

Example:
  model, variables = load_torch_resnet("classifier.pt")
  logits = model.apply(variables, images_nhwc)
  np.savez("classifier.npz", **{k: v.numpy() for k, v in torch_model.state_dict().items()})
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from debiasjax.models.resnet import BasicBlock, BottleneckBlock, ResNet, bottleneck_width

_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


def _array(value) -> np.ndarray:
  if hasattr(value, "detach"):                # a torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value, np.float32)


def _plain_keys(state_dict: Mapping[str, Any]) -> dict:
  """Keys without a DataParallel ``module.`` prefix and without BatchNorm step counters."""
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"state_dict: expected a mapping of parameter names to tensors, got "
                     f"{type(state_dict).__name__}")
  out = {}
  for key, value in state_dict.items():
    key = key[len("module."):] if key.startswith("module.") else key
    if not key.endswith("num_batches_tracked"):
      out[key] = value
  return out


def _grouping(sd: dict, width: int) -> tuple[int, int]:
  """``(groups, width_per_group)`` of a bottleneck ResNet, from its first block's 3x3
  convolution: ``[inner, inner / groups, 3, 3]`` with ``inner = int(width * width_per_group /
  64) * groups``."""
  kernel = _array(sd["layer1.0.conv2.weight"])
  inner, per_group = kernel.shape[:2] if kernel.ndim == 4 else (0, 0)
  if per_group == 0 or inner % per_group:
    raise ValueError(f"state_dict: 'layer1.0.conv2.weight' should be [inner, inner / groups, 3, "
                     f"3], got {kernel.shape}")
  groups = inner // per_group
  width_per_group = per_group * 64 // width
  if bottleneck_width(width, groups, width_per_group) != inner:
    raise ValueError(f"state_dict: 'layer1.0.conv2.weight' {kernel.shape} is no torchvision "
                     f"bottleneck of {width} planes (inner width int({width} * width_per_group / "
                     f"64) * groups)")
  return groups, width_per_group


def _architecture(sd: dict) -> tuple[tuple[int, ...], Any, int, int, bool]:
  """(stage sizes, block class, width, classes, small_images) read off the keys and shapes."""
  missing = [k for k in ("conv1.weight", "bn1.weight", "fc.weight", "fc.bias") if k not in sd]
  if missing:
    raise ValueError(f"state_dict: not a torchvision ResNet; missing {missing} (keys start "
                     f"with {sorted(sd)[:5]})")
  blocks = [0, 0, 0, 0]
  for key in sd:
    m = _BLOCK.match(key)
    if m:
      s, b = int(m.group(1)) - 1, int(m.group(2))
      blocks[s] = max(blocks[s], b + 1)
  if 0 in blocks:
    raise ValueError(f"state_dict: expected blocks in layer1..layer4, found {blocks} blocks")
  block_cls = BottleneckBlock if "layer1.0.conv3.weight" in sd else BasicBlock
  conv1 = _array(sd["conv1.weight"])
  if conv1.ndim != 4 or conv1.shape[2:] not in ((7, 7), (3, 3)):
    raise ValueError(f"state_dict: conv1.weight should be [width, channels, 7, 7] (or 3, 3 for "
                     f"the small-image stem), got {conv1.shape}")
  return (tuple(blocks), block_cls, conv1.shape[0], _array(sd["fc.weight"]).shape[0],
          conv1.shape[2] == 3)


def resnet_from_state_dict(state_dict: Mapping[str, Any]) -> tuple[ResNet, dict]:
  """Our :class:`~debiasjax.models.ResNet` equal to the torchvision ResNet of ``state_dict``
  (torch tensors or arrays), and its variables. Raises ``ValueError`` naming any tensor that is
  missing, left over or of the wrong shape."""
  sd = _plain_keys(state_dict)
  stages, block_cls, width, classes, small = _architecture(sd)
  groups, width_per_group = _grouping(sd, width) if block_cls is BottleneckBlock else (1, 64)
  used = set()

  def take(key, shape=None):
    if key not in sd:
      raise ValueError(f"state_dict: missing {key!r}")
    used.add(key)
    value = _array(sd[key])
    if shape is not None and value.shape != shape:
      raise ValueError(f"state_dict: {key!r} has shape {value.shape}, expected {shape}")
    return value

  def conv(prefix, shape=None):
    return {"kernel": take(f"{prefix}.weight", shape).transpose(2, 3, 1, 0)}

  def bn(prefix, channels):
    p = {"scale": take(f"{prefix}.weight", (channels,)), "bias": take(f"{prefix}.bias",
                                                                     (channels,))}
    s = {"mean": take(f"{prefix}.running_mean", (channels,)),
         "var": take(f"{prefix}.running_var", (channels,))}
    return p, s

  params, stats = {"stem": {"conv": conv("conv1")}}, {"stem": {}}
  params["stem"]["bn"], stats["stem"]["bn"] = bn("bn1", width)
  convs = ("conv1", "conv2", "conv3") if block_cls is BottleneckBlock else ("conv1", "conv2")
  for s, count in enumerate(stages):
    features = width * 2**s
    out = features * block_cls.expansion
    inner = bottleneck_width(features, groups, width_per_group)
    params[f"stage{s + 1}"], stats[f"stage{s + 1}"] = {}, {}
    for j in range(count):
      prefix = f"layer{s + 1}.{j}"
      bp, bs = {}, {}
      for k, name in enumerate(convs):
        grouped = block_cls is BottleneckBlock and name == "conv2"
        bp[name] = conv(f"{prefix}.{name}", (inner, inner // groups, 3, 3) if grouped else None)
        channels = out if k == len(convs) - 1 else features if block_cls is BasicBlock else inner
        bp[f"bn{k + 1}"], bs[f"bn{k + 1}"] = bn(f"{prefix}.bn{k + 1}", channels)
      if f"{prefix}.downsample.0.weight" in sd:
        bp["downsample_conv"] = conv(f"{prefix}.downsample.0")
        bp["downsample_bn"], bs["downsample_bn"] = bn(f"{prefix}.downsample.1", out)
      params[f"stage{s + 1}"][f"block{j + 1}"] = bp
      stats[f"stage{s + 1}"][f"block{j + 1}"] = bs
  features = width * 2**3 * block_cls.expansion
  params["head"] = {"kernel": take("fc.weight", (classes, features)).T,
                    "bias": take("fc.bias", (classes,))}
  left = sorted(set(sd) - used)
  if left:
    raise ValueError(f"state_dict: tensors a torchvision ResNet does not have: {left[:10]}")
  model = ResNet(stage_sizes=stages, block_cls=block_cls, num_classes=classes, width=width,
                 small_images=small, groups=groups, width_per_group=width_per_group)
  return model, {"params": params, "batch_stats": stats}


def load_torch_resnet(path: str) -> tuple[ResNet, dict]:
  """:func:`resnet_from_state_dict` of the ``state_dict`` saved at ``path`` (``.npz``, or
  ``.pt`` / ``.pth`` with PyTorch installed)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f"weights: no file at {path}")
  if path.endswith(".npz"):
    with np.load(path) as f:
      return resnet_from_state_dict({k: f[k] for k in f.files})
  if not path.endswith((".pt", ".pth")):
    raise ValueError(f"weights: expected a .npz, .pt or .pth file, got {path}")
  try:
    import torch
  except ImportError as e:
    raise ValueError(f"weights: reading {path} needs PyTorch; or save the state_dict as .npz "
                     "(np.savez(path, **{k: v.numpy() for k, v in sd.items()}))") from e
  loaded = torch.load(path, map_location="cpu", weights_only=True)
  for key in ("state_dict", "model"):
    if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
      loaded = loaded[key]
  return resnet_from_state_dict(loaded)
