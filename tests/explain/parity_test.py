"""Parity with the PyTorch references on exported weights: zennit's EpsilonPlusFlat (small CNN and
torchvision ResNet-18) and captum's integrated gradients, within 1e-4 of max |R|; zennit's
stabilised sums to float64 rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import explain as ex
from debiasjax.models import ResNet18
from tests import torch_peers

try:
  torch, zennit, captum, torchvision = torch_peers.import_torch_peers()
except ImportError:  # the CI installs them (requirements-test.txt)
  pytest.skip("torch, zennit and captum are not installed", allow_module_level=True)


def _max_rel(ours, theirs):
  return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


@pytest.fixture(scope="module")
def small_cnn():
  torch.manual_seed(0)
  tmodel = torch_peers.randomize_batch_norm(torch, torch_peers.torch_small_cnn(torch), seed=1)
  x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
  return tmodel, torch_peers.SmallCNN(), torch_peers.small_cnn_variables(tmodel), x


def test_small_cnn_logits_match(small_cnn):
  tmodel, model, variables, x = small_cnn
  with torch.no_grad():
    theirs = tmodel(torch_peers.to_torch_images(torch, x)).numpy()
  np.testing.assert_allclose(model.apply(variables, x), theirs, rtol=1e-4, atol=1e-5)


def test_epsilon_plus_flat_matches_zennit_on_a_small_cnn(small_cnn):
  tmodel, model, variables, x = small_cnn
  targets = np.asarray(jnp.argmax(model.apply(variables, x), -1))
  theirs = torch_peers.to_nhwc(torch_peers.zennit_epsilon_plus_flat(
      torch, zennit, tmodel, torch_peers.to_torch_images(torch, x), targets, resnet=False))
  ours = ex.lrp(model, variables, jnp.asarray(x), jnp.asarray(targets))
  assert _max_rel(ours, theirs) < 1e-4


def test_epsilon_plus_flat_matches_zennit_on_resnet18():
  torch.manual_seed(1)
  tmodel = torch_peers.randomize_batch_norm(torch, torchvision.models.resnet18(num_classes=5),
                                            seed=2)
  x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
  model = ResNet18(num_classes=5)
  variables = torch_peers.resnet_variables(tmodel)
  tx = torch_peers.to_torch_images(torch, x)
  with torch.no_grad():
    np.testing.assert_allclose(model.apply(variables, x), tmodel(tx).numpy(), rtol=1e-4, atol=1e-4)
  targets = np.asarray(jnp.argmax(model.apply(variables, x), -1))
  theirs = torch_peers.to_nhwc(torch_peers.zennit_epsilon_plus_flat(torch, zennit, tmodel, tx,
                                                                    targets,
                                                                    resnet=True))
  ours = ex.lrp(model, variables, jnp.asarray(x), jnp.asarray(targets))
  assert _max_rel(ours, theirs) < 1e-4


def test_integrated_gradients_match_captum(small_cnn):
  tmodel, model, variables, x = small_cnn
  targets = np.asarray(jnp.argmax(model.apply(variables, x), -1))
  theirs = torch_peers.to_nhwc(torch_peers.captum_integrated_gradients(
      torch, captum, tmodel, torch_peers.to_torch_images(torch, x), targets, steps=20))
  apply_fn = jax.jit(lambda x: model.apply(variables, x))
  ours = ex.integrated_gradients(apply_fn, jnp.asarray(x), jnp.asarray(targets), steps=20)
  assert _max_rel(ours, theirs) < 1e-4


def test_zennit_compatible_sums_equal_zennit_in_float64(monkeypatch):
  """EpsilonAlpha2Beta1 on a ResNet-18 in float64. With the Norm rule at the residual sums and the
  average pool (``zennit_compatible``) we equal zennit to rounding, once its canonizer's merged
  BatchNorms compute the identity: stock zennit leaves them as ``x / sqrt(1 + eps)``, which alone
  moves relevance by ~4e-5 of max|R| (the float32 tests above; our default, the exact split at
  sums, differs from this zennit by 6.6e-6 of max|R| here)."""
  from zennit import canonizers
  from zennit.attribution import Gradient
  from zennit.composites import EpsilonAlpha2Beta1
  from zennit.torchvision import ResNetCanonizer

  merge = canonizers.MergeBatchNorm.merge_batch_norm

  def merge_to_identity(modules, batch_norm):
    merge(modules, batch_norm)
    batch_norm.eps = 0.0
  monkeypatch.setattr(canonizers.MergeBatchNorm, "merge_batch_norm",
                      staticmethod(merge_to_identity))

  torch.manual_seed(1)
  tmodel = torch_peers.randomize_batch_norm(torch, torchvision.models.resnet18(num_classes=5),
                                            seed=2).double()
  x = np.random.default_rng(1).normal(size=(2, 16, 16, 3))
  with jax.enable_x64(True):
    variables = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64),
                             torch_peers.resnet_variables(tmodel))
    model = ResNet18(num_classes=5, dtype=jnp.float64)
    targets = np.asarray(jnp.argmax(model.apply(variables, x), -1))
    onehot = torch.nn.functional.one_hot(torch.as_tensor(targets.copy()), 5).double()
    with Gradient(model=tmodel, composite=EpsilonAlpha2Beta1(canonizers=[ResNetCanonizer()])) as g:
      _, theirs = g(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                    lambda out: out * onehot)
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    ours = np.asarray(ex.lrp(model, variables, jnp.asarray(x), jnp.asarray(targets),
                             composite=ex.zennit_compatible(ex.epsilon_alpha2_beta1())))
  assert ours.dtype == np.float64
  assert _max_rel(ours, theirs) < 1e-12
