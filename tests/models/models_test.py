"""Models, the small-map convolution path, and taps under jit / vmap / grad."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import models
from debiasjax.models import layers


def lax_conv(x, w, strides, padding):
  return jax.lax.conv_general_dilated(x, w, strides, padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("hw, kernel, strides, padding", [
    (2, 3, 1, ((1, 1), (1, 1))),     # stage 4 of a ResNet on 64 px: 2x2 -> 2x2
    (4, 3, 2, ((1, 1), (1, 1))),     # 4x4 -> 2x2, strided
    (4, 1, 2, ((0, 0), (0, 0))),     # 1x1 projection shortcut
    (3, 3, 1, "SAME"),
    (2, 2, 1, "VALID"),              # 2x2 -> 1x1
    (8, 3, 1, ((1, 1), (1, 1))),     # large output: XLA's own convolution
])
def test_fast_conv_equals_xla_conv_values_and_gradients(hw, kernel, strides, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, hw, hw, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 5, 7)), jnp.float32)
  s = (strides, strides)
  ours = lambda x, w: layers.conv_general_dilated(x, w, s, padding,
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ref = lambda x, w: lax_conv(x, w, s, padding)
  np.testing.assert_allclose(jax.jit(ours)(x, w), ref(x, w), rtol=1e-5, atol=1e-5)
  g_ours = jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), argnums=(0, 1))(x, w)
  g_ref = jax.grad(lambda x, w: jnp.sum(ref(x, w) ** 2), argnums=(0, 1))(x, w)
  for a, b in zip(g_ours, g_ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw, kernel, strides, padding", [
    ((20, 20), 7, (2, 2), ((3, 3), (3, 3))),      # ResNet stem
    ((19, 17), 7, (2, 2), ((3, 3), (3, 3))),      # odd sizes
    ((16, 15), 4, (3, 2), ((1, 0), (2, 1))),      # uneven strides and padding
    ((12, 12), 2, (2, 2), "VALID"),               # kernel = stride
])
def test_space_to_depth_input_gradient_of_strided_few_channel_convs(hw, kernel, strides, padding):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, *hw, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(kernel, kernel, 3, 5)), jnp.float32)
  ours = lambda x, w: layers.conv_general_dilated(x, w, strides, padding,
                                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ref = lambda x, w: lax_conv(x, w, strides, padding)
  np.testing.assert_array_equal(jax.jit(ours)(x, w), ref(x, w))   # XLA's forward, unchanged
  g = jnp.asarray(rng.normal(size=ref(x, w).shape), jnp.float32)
  (dx, dw), (dx_ref, dw_ref) = (jax.vjp(f, x, w)[1](g) for f in (ours, ref))
  np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(dw, dw_ref)                       # XLA's weight gradient
  second = lambda f: jax.grad(lambda x: jnp.sum(jax.vjp(lambda x: f(x, w), x)[1](g)[0] ** 2))(x)
  np.testing.assert_allclose(second(ours), second(ref), rtol=1e-4, atol=1e-4)


def test_fast_conv_keeps_xla_for_dilations_and_groups():
  x = jnp.ones((1, 2, 2, 4))
  w = jnp.ones((3, 3, 2, 4))
  out = layers.conv_general_dilated(x, w, (1, 1), "SAME", feature_group_count=2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ref = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", feature_group_count=2,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(out, ref)


@pytest.mark.parametrize("window, strides, padding", [((3, 3), (2, 2), ((1, 1), (1, 1))),
                                                     ((2, 2), (2, 2), ((0, 0), (0, 0))),
                                                     ((3, 2), (1, 2), ((1, 0), (0, 1)))])
def test_max_pool_equals_flax_values_and_gradients_with_ties(window, strides, padding):
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
  ref = lambda x: nn.max_pool(x, window, strides, padding)
  ours = lambda x: layers.max_pool(x, window, strides, padding)
  for inputs in (x, jnp.round(x), jax.nn.relu(x)):              # ties: integers, ReLU zeros
    g = jax.random.normal(jax.random.key(1), ref(inputs).shape)
    np.testing.assert_array_equal(ours(inputs), ref(inputs))
    # bit for bit: the same windows, summed in the same order
    np.testing.assert_array_equal(jax.vjp(ours, inputs)[1](g)[0], jax.vjp(ref, inputs)[1](g)[0])
    # the gradient of the gradient (RR-ClArC's penalty) and vmap go through the custom rule
    second = lambda f: jax.grad(lambda x: jnp.sum(jax.vjp(f, x)[1](g)[0] * x))(inputs)
    np.testing.assert_allclose(second(ours), second(ref), atol=1e-6)
  batched = jax.vmap(lambda x: jax.vjp(ours, x)[1](jnp.ones_like(ours(x)))[0])(x[:, None])
  np.testing.assert_allclose(batched[:, 0], jax.vjp(ours, x)[1](jnp.ones_like(ours(x)))[0],
                             atol=1e-6)


@pytest.mark.parametrize("ctor, blocks, expansion", [
    (models.ResNet18, (2, 2, 2, 2), 1), (models.ResNet34, (3, 4, 6, 3), 1),
    (models.ResNet50, (3, 4, 6, 3), 4)])
def test_resnets_have_named_stages_and_torchvision_shapes(ctor, blocks, expansion):
  model = ctor(num_classes=3, width=8)
  x = jnp.zeros((2, 32, 32, 3))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  params = variables["params"]
  assert set(params) == {"stem", "stage1", "stage2", "stage3", "stage4", "head"}
  for i, n in enumerate(blocks):
    assert set(params[f"stage{i + 1}"]) == {f"block{j + 1}" for j in range(n)}
  assert params["head"]["kernel"].shape == (8 * 8 * expansion, 3)
  assert params["stem"]["conv"]["kernel"].shape == (7, 7, 3, 8)
  out = jax.eval_shape(model.apply, variables, x)
  assert out.shape == (2, 3)


def test_resnet18_parameter_count_matches_torchvision():
  variables = jax.eval_shape(models.ResNet18(num_classes=1000).init, jax.random.key(0),
                             jnp.zeros((1, 224, 224, 3)))
  count = sum(np.prod(p.shape) for p in jax.tree.leaves(variables["params"]))
  assert count == 11_689_512      # torchvision.models.resnet18().parameters()


def test_small_image_stem_keeps_resolution():
  model = models.ResNet18(width=4, small_images=True)
  t = models.tap(model, "stage1")
  v = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  assert t.activations(v, jnp.zeros((2, 16, 16, 3))).shape == (2, 16, 16, 4)


def test_mlp_layers_and_dropout():
  model = models.MLP(num_layers=3, width=5, dropout=0.5)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)), jnp.float32)
  v = model.init(jax.random.key(0), x)
  assert set(v["params"]) == {"layer1", "layer2", "layer3", "head"}
  np.testing.assert_allclose(model.apply(v, x), model.apply(v, x))   # eval: deterministic
  out, upd = model.apply(v, x, train=True, rngs={"dropout": jax.random.key(1)},
                         mutable=["batch_stats"])
  assert out.shape == (4, 2) and "batch_stats" in upd
  t = models.tap(model, "layer3")
  assert t.activations(v, x).shape == (4, 5)


@pytest.fixture(scope="module")
def tiny_resnet():
  model = models.ResNet18(width=4)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 32, 32, 3)), jnp.float32)
  variables = model.init(jax.random.key(0), x)
  return model, variables, x


def test_tap_activations_equal_captured_intermediates(tiny_resnet):
  model, v, x = tiny_resnet
  _, state = model.apply(v, x, capture_intermediates=True, mutable=["intermediates"])
  expected = state["intermediates"]["stage3"]["__call__"][0]
  np.testing.assert_allclose(models.tap(model, "stage3").activations(v, x), expected)
  nested = models.tap(model, "stage2/block2").activations(v, x)
  np.testing.assert_allclose(nested, state["intermediates"]["stage2"]["block2"]["__call__"][0])


def test_tap_apply_identity_and_edit(tiny_resnet):
  model, v, x = tiny_resnet
  t = models.tap(model, "pool")
  np.testing.assert_allclose(t.apply(v, x, lambda a: a), model.apply(v, x), rtol=1e-6)
  # Replacing the pooled features by zeros leaves only the head's bias.
  zeroed = t.apply(v, x, jnp.zeros_like)
  np.testing.assert_allclose(zeroed, np.broadcast_to(v["params"]["head"]["bias"], zeroed.shape),
                             atol=1e-6)


def test_tap_under_jit_vmap_and_grad(tiny_resnet):
  model, v, x = tiny_resnet
  t = models.tap(model, "stage4")
  stacked = jax.tree.map(lambda a: jnp.stack([a, 2 * a]), v)
  batched = jax.jit(jax.vmap(t.activations, in_axes=(0, None)))(stacked, x)
  for i in range(2):
    one = jax.tree.map(lambda a: a[i], stacked)
    np.testing.assert_allclose(batched[i], t.activations(one, x), rtol=1e-5, atol=1e-5)

  # The gradient w.r.t. an additive edit of the pooled features is the head's weight column.
  pool = models.tap(model, "pool")
  a = pool.activations(v, x)
  grad = jax.jit(jax.grad(lambda d: pool.apply(v, x, lambda act: act + d)[:, 1].sum()))(
      jnp.zeros_like(a))
  np.testing.assert_allclose(grad, np.tile(v["params"]["head"]["kernel"][:, 1], (3, 1)), rtol=1e-6)


def test_tap_in_training_mode_returns_updates(tiny_resnet):
  model, v, x = tiny_resnet
  t = models.tap(model, "stage2", train=True, mutable=["batch_stats"])
  out, updates = t.apply(v, x, lambda a: a * 0.5)
  assert out.shape == (3, 2) and "batch_stats" in updates


def test_tap_unknown_layer_lists_the_modules(tiny_resnet):
  model, v, x = tiny_resnet
  with pytest.raises(ValueError, match=r"'stage9' is not a module of ResNet; available: .*stage3"):
    models.tap(model, "stage9").activations(v, x)
  with pytest.raises(ValueError, match="layer: expected a module path"):
    models.tap(model, "")


def test_tap_from_functions_matches_linen_tap():
  model = models.MLP(num_layers=2, width=3)
  x = jnp.ones((2, 4))
  v = model.init(jax.random.key(0), x)
  features = models.tap(model, "layer2").activations
  head = lambda v, a: a @ v["params"]["head"]["kernel"] + v["params"]["head"]["bias"][None]
  t = models.tap_from_functions(features, head)
  edit = lambda a: a + 1.0
  np.testing.assert_allclose(t.apply(v, x, edit), models.tap(model, "layer2").apply(v, x, edit),
                             rtol=1e-6)


class SharedDense(nn.Module):
  @nn.compact
  def __call__(self, x):
    d = nn.Dense(3, name="shared")
    return d(d(x))


def test_tap_edits_every_call_of_a_shared_module():
  model = SharedDense()
  x = jnp.ones((1, 3))
  v = model.init(jax.random.key(0), x)
  t = models.tap(model, "shared")
  first = v["params"]["shared"]
  expected = np.asarray(x) @ np.asarray(first["kernel"]) + np.asarray(first["bias"])
  np.testing.assert_allclose(t.activations(v, x), expected, rtol=1e-6)
  np.testing.assert_allclose(t.apply(v, x, jnp.zeros_like), jnp.zeros((1, 3)))
