"""The torchvision importer: a ResNet's state_dict gives our Flax ResNet with the torch logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import models
from debiasjax.models import BasicBlock, BottleneckBlock, from_torch
from tests import torch_peers

try:
  torch, _, _, torchvision = torch_peers.import_torch_peers()
except ImportError:  # the CI installs them (requirements-test.txt)
  pytest.skip("torch and torchvision are not installed", allow_module_level=True)


def torch_logits(tmodel, x_nhwc):
  with torch.no_grad():
    return tmodel(torch_peers.to_torch_images(torch, x_nhwc)).numpy()


def cifar_resnet18(num_classes):
  m = torchvision.models.resnet18(num_classes=num_classes)
  m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
  m.maxpool = torch.nn.Identity()
  return m


def one_block_bottlenecks(groups, width_per_group):
  """torchvision's ResNet of Bottleneck blocks, one per stage, grouped as ResNeXt or widened."""
  def build(num_classes):
    return torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [1, 1, 1, 1],
                                            num_classes=num_classes, groups=groups,
                                            width_per_group=width_per_group)
  return build


@pytest.mark.parametrize("build, classes, block, stages, small, grouping", [
    (torchvision.models.resnet18, 3, BasicBlock, (2, 2, 2, 2), False, (1, 64)),
    (torchvision.models.resnet50, 4, BottleneckBlock, (3, 4, 6, 3), False, (1, 64)),
    (cifar_resnet18, 2, BasicBlock, (2, 2, 2, 2), True, (1, 64)),
    (one_block_bottlenecks(8, 4), 3, BottleneckBlock, (1, 1, 1, 1), False, (8, 4)),   # ResNeXt
    (one_block_bottlenecks(1, 128), 2, BottleneckBlock, (1, 1, 1, 1), False, (1, 128)),  # wide
])
def test_imported_resnets_give_the_torch_logits(build, classes, block, stages, small, grouping):
  torch.manual_seed(0)
  tmodel = torch_peers.randomize_batch_norm(torch, build(num_classes=classes), seed=1)
  x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
  model, variables = from_torch.resnet_from_state_dict(tmodel.state_dict())
  assert (model.block_cls, tuple(model.stage_sizes), model.num_classes, model.width,
          model.small_images, (model.groups, model.width_per_group)) == (
              block, stages, classes, 64, small, grouping)
  np.testing.assert_allclose(model.apply(variables, x), torch_logits(tmodel, x), rtol=1e-4,
                             atol=1e-4)


@pytest.mark.parametrize("name, ours, grouping", [
    ("wide_resnet50_2", models.WideResNet50, (1, 128)),
    ("resnext50_32x4d", models.ResNeXt50, (32, 4)),
])
def test_wide_resnets_and_resnext_are_read_as_our_equal_modules(name, ours, grouping):
  tmodel = getattr(torchvision.models, name)(num_classes=2)
  model, variables = from_torch.resnet_from_state_dict(tmodel.state_dict())
  assert model == ours(num_classes=2, width=64)
  assert (model.groups, model.width_per_group) == grouping
  wanted = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert jax.tree.map(lambda a: a.shape, wanted) == jax.tree.map(np.shape, variables)


def test_grouping_is_refused_where_torchvision_refuses_it():
  with pytest.raises(ValueError, match="only bottleneck ResNets take them"):
    models.ResNet18(groups=2).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_files_npz_pt_checkpoints_and_data_parallel_prefixes_load_alike(tmp_path):
  torch.manual_seed(0)
  tmodel = torch_peers.randomize_batch_norm(torch, torchvision.models.resnet18(num_classes=2),
                                            seed=1)
  sd = tmodel.state_dict()
  np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in sd.items()})
  torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in sd.items()}},
             tmp_path / "w.pt")
  x = np.random.default_rng(1).normal(size=(1, 32, 32, 3)).astype(np.float32)
  want = torch_logits(tmodel, x)
  for name in ("w.npz", "w.pt"):
    model, variables = from_torch.load_torch_resnet(str(tmp_path / name))
    np.testing.assert_allclose(model.apply(variables, x), want, rtol=1e-4, atol=1e-4)


def test_what_is_not_a_torchvision_resnet_is_refused(tmp_path):
  sd = {k: v.numpy() for k, v in torchvision.models.resnet18(num_classes=2).state_dict().items()}
  with pytest.raises(ValueError, match="missing 'layer2.1.bn2.running_var'"):
    from_torch.resnet_from_state_dict({k: v for k, v in sd.items()
                                       if k != "layer2.1.bn2.running_var"})
  with pytest.raises(ValueError, match="does not have: \\['extra.weight'\\]"):
    from_torch.resnet_from_state_dict({**sd, "extra.weight": np.zeros(3)})
  with pytest.raises(ValueError, match="'fc.bias' has shape"):
    from_torch.resnet_from_state_dict({**sd, "fc.bias": np.zeros(5)})
  with pytest.raises(ValueError, match="not a torchvision ResNet"):
    from_torch.resnet_from_state_dict({"features.0.weight": np.zeros(3)})
  with pytest.raises(FileNotFoundError, match="weights: no file"):
    from_torch.load_torch_resnet(str(tmp_path / "none.pt"))
  (tmp_path / "w.bin").write_bytes(b"")
  with pytest.raises(ValueError, match="expected a .npz, .pt or .pth"):
    from_torch.load_torch_resnet(str(tmp_path / "w.bin"))
