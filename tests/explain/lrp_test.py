"""LRP invariants (conservation, LRP-0 = gradient x input, per-rule matrix replicas, linearity,
batch consistency, sign, folding) and IG completeness / cross-method identities."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import explain as ex
from debiasjax.explain import rules
from debiasjax.models import MLP, ResNet18


def randomize_batch_stats(variables, key):
  """Non-trivial BatchNorm statistics and affine parameters, so folding changes the weights."""
  flat, tree = jax.tree_util.tree_flatten_with_path(variables)
  out = []
  for i, (path, leaf) in enumerate(flat):
    k, name = jax.random.fold_in(key, i), str(path[-1])
    if "var" in name:
      leaf = 0.5 + jax.random.uniform(k, leaf.shape)
    elif "mean" in name or ("bias" in name and "bn" in str(path)):
      leaf = 0.1 * jax.random.normal(k, leaf.shape)
    elif "scale" in name:
      leaf = 0.5 + jax.random.uniform(k, leaf.shape)
    out.append(leaf)
  return jax.tree_util.tree_unflatten(tree, out)


class BiasFreeResNet(nn.Module):
  """Positively homogeneous: bias-free convs, ReLU, max-pool, a residual sum, mean-pool, dense."""

  @nn.compact
  def __call__(self, x):
    conv = lambda f, s=1: nn.Conv(f, (3, 3), (s, s), padding=1, use_bias=False)
    h = nn.relu(conv(8)(x))
    h = nn.max_pool(h, (2, 2), (2, 2))
    y = conv(8)(nn.relu(conv(8)(h)))
    h = nn.relu(h + y)
    h = nn.relu(conv(12, 2)(h))
    return nn.Dense(3, use_bias=False)(jnp.mean(h, axis=(1, 2)))


@pytest.fixture(scope="module")
def resnet():
  model = ResNet18(num_classes=3, width=8, small_images=True)
  x = jax.random.normal(jax.random.key(1), (3, 12, 12, 3))
  variables = randomize_batch_stats(model.init(jax.random.key(0), x), jax.random.key(2))
  return model, variables, x


@pytest.fixture(scope="module")
def mlp():
  model = MLP(num_layers=3, width=16, num_classes=3)
  x = jax.random.normal(jax.random.key(3), (5, 7))
  variables = randomize_batch_stats(model.init(jax.random.key(4), x), jax.random.key(5))
  return model, variables, x


@pytest.fixture(scope="module")
def bias_free():
  model = BiasFreeResNet()
  x = jax.random.normal(jax.random.key(6), (4, 8, 8, 3))
  return model, model.init(jax.random.key(7), x), x


def _targets(model, variables, x):
  return jnp.argmax(model.apply(variables, x), -1)


def _rel(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize("name", ["resnet", "mlp"])
def test_folding_leaves_logits_unchanged(name, request):
  model, variables, x = request.getfixturevalue(name)
  np.testing.assert_allclose(ex.folded_forward(model, variables, x), model.apply(variables, x),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet", "mlp"])
def test_lrp_zero_is_gradient_times_input(name, request):
  model, variables, x = request.getfixturevalue(name)
  t = _targets(model, variables, x)
  r = ex.lrp(model, variables, x, t, composite=ex.lrp_zero())
  gxi = ex.gradient_x_input(lambda x: model.apply(variables, x), x, t)
  assert _rel(r, gxi) < 1e-4


@pytest.mark.parametrize("composite", [
    ex.lrp_zero(), ex.epsilon_plus(), ex.epsilon_plus_flat(), ex.epsilon_alpha2_beta1(),
    ex.epsilon_alpha2_beta1_flat(), ex.Composite(conv=ex.Gamma(0.25), dense=ex.Epsilon(1e-9)),
    ex.Composite(conv=ex.ZPlus(), dense=ex.Epsilon(1e-9), first=ex.WSquare()),
    ex.Composite(conv=ex.ZPlus(), dense=ex.Epsilon(1e-9), first=ex.ZBox(-4.0, 4.0))])
def test_bias_free_networks_conserve_relevance(bias_free, composite):
  model, variables, x = bias_free
  logits = model.apply(variables, x)
  t = jnp.argmax(logits, -1)
  r = ex.lrp(model, variables, x, t, composite=composite)
  np.testing.assert_allclose(r.reshape(len(x), -1).sum(1), logits[jnp.arange(len(x)), t],
                             rtol=2e-4, atol=1e-5)


def test_ig_equals_gradient_times_input_equals_lrp_zero_on_homogeneous_nets(bias_free):
  model, variables, x = bias_free
  apply_fn = lambda x: model.apply(variables, x)
  t = _targets(model, variables, x)
  gxi = ex.gradient_x_input(apply_fn, x, t)
  for method in ("gausslegendre", "riemann_right", "riemann_middle"):
    ig = ex.integrated_gradients(apply_fn, x, t, steps=7, method=method, max_batch=8)
    assert _rel(ig, gxi) < 1e-4, method
  assert _rel(ex.lrp(model, variables, x, t, composite=ex.lrp_zero()), gxi) < 1e-4


def test_ig_completeness_improves_with_steps(resnet):
  model, variables, x = resnet
  apply_fn = lambda x: model.apply(variables, x)
  logits = apply_fn(x)
  t = jnp.argmax(logits, -1)
  idx = jnp.arange(len(x))
  expected = logits[idx, t] - apply_fn(jnp.zeros_like(x))[idx, t]
  errors = [float(jnp.max(jnp.abs(ex.integrated_gradients(apply_fn, x, t, steps=n).reshape(len(x),
                                                                                           -1).sum(1)
                                  - expected))) for n in (2, 50)]
  assert errors[1] < errors[0] and errors[1] < 2e-2 * float(jnp.max(jnp.abs(expected)))


def test_ig_is_exact_for_a_linear_model_and_chunking_does_not_matter():
  w = jax.random.normal(jax.random.key(0), (6, 2))
  apply_fn = lambda x: x @ w
  x = jax.random.normal(jax.random.key(1), (3, 6))
  base = jnp.full((3, 6), 0.5)
  t = jnp.array([0, 1, 1])
  expected = w[:, t].T * (x - base)
  for steps, max_batch in ((1, 512), (5, 3), (5, 512), (4, 7)):
    ig = ex.integrated_gradients(apply_fn, x, t, baseline=base, steps=steps, max_batch=max_batch)
    np.testing.assert_allclose(ig, expected, rtol=1e-5, atol=1e-6)


def test_ig_in_groups_equals_the_traced_ig_for_any_group_size(resnet):
  model, variables, x = resnet
  t = _targets(model, variables, x)
  base = jnp.full_like(x, 0.3)
  traced = jax.jit(lambda v, x, t: ex.integrated_gradients(
      lambda x: model.apply(v, x), x, t, baseline=base, steps=7, method="riemann_trapezoid"))
  expected = traced(variables, x, t)
  for max_batch in (1, 6, 512):
    got = ex.integrated_gradients_in_groups(model.apply, variables, x, t, baseline=base, steps=7,
                                            method="riemann_trapezoid", max_batch=max_batch)
    assert _rel(got, expected) < 1e-5
  with pytest.raises(ValueError, match="max_batch"):
    ex.integrated_gradients_in_groups(model.apply, variables, x, t, max_batch=0)


def test_quadrature_weights_sum_to_one_and_match_captum_nodes():
  for method in ex.gradients.METHODS:
    a, w = ex.quadrature(10, method)
    assert abs(w.sum() - 1) < 1e-12 and a.min() >= 0 and a.max() <= 1
  a, _ = ex.quadrature(4, "riemann_left")
  np.testing.assert_allclose(a, [0, 0.25, 0.5, 0.75])
  with pytest.raises(ValueError, match="method"):
    ex.quadrature(4, "simpson")
  with pytest.raises(ValueError, match="steps"):
    ex.quadrature(0)


def test_one_right_riemann_step_is_gradient_times_input(resnet):
  model, variables, x = resnet
  apply_fn = lambda x: model.apply(variables, x)
  t = _targets(model, variables, x)
  np.testing.assert_allclose(ex.integrated_gradients(apply_fn, x, t, steps=1,
                                                     method="riemann_right"),
                             ex.gradient_x_input(apply_fn, x, t), rtol=1e-5, atol=1e-6)


# --- per-rule replicas: one layer as a dense matrix (zennit's own test idea) -------------------

class OneConv(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(4, (3, 3), (2, 2), padding=1)(x).reshape(x.shape[0], -1)


def _stab(z, eps=1e-6):
  return z + eps * np.where(z >= 0, 1.0, -1.0)


def _replica(rule, W, b, a, R):
  """Textbook formulas (zennit rules.py semantics) for z = W a + b; W [out, in]."""
  P, N = np.maximum(W, 0), np.minimum(W, 0)
  ap, an = np.maximum(a, 0), np.minimum(a, 0)
  bp, bn = np.maximum(b, 0), np.minimum(b, 0)
  z = W @ a + b
  if isinstance(rule, ex.Epsilon):
    return a * (W.T @ (R / _stab(z, rule.epsilon)))
  if isinstance(rule, ex.ZPlus):
    s = R / _stab(P @ ap + N @ an + bp)
    return ap * (P.T @ s) + an * (N.T @ s)
  if isinstance(rule, ex.AlphaBeta):
    sa = R / _stab(P @ ap + N @ an + bp)
    sb = R / _stab(N @ ap + P @ an + bn)
    return (rule.alpha * (ap * (P.T @ sa) + an * (N.T @ sa))
            - rule.beta * (ap * (N.T @ sb) + an * (P.T @ sb)))
  if isinstance(rule, ex.Gamma):
    g = rule.gamma
    U, D = W + g * P, W + g * N
    su = (z > 0) * R / _stab(U @ ap + D @ an + b + g * bp)
    sd = (z < 0) * R / _stab(D @ ap + U @ an + b + g * bn)
    return ap * (U.T @ su) + an * (D.T @ su) + ap * (D.T @ sd) + an * (U.T @ sd)
  if isinstance(rule, ex.Flat):
    ones = (W != 0).astype(W.dtype)            # the layer's connectivity with unit weights
    return ones.T @ (R / _stab(ones @ np.ones_like(a)))
  if isinstance(rule, ex.WSquare):
    return (W * W).T @ (R / _stab((W * W) @ np.ones_like(a) + b * b))
  if isinstance(rule, ex.ZBox):
    lo, hi = np.full_like(a, rule.low), np.full_like(a, rule.high)
    s = R / _stab(W @ a - P @ lo - N @ hi)
    return a * (W.T @ s) - lo * (P.T @ s) - hi * (N.T @ s)
  raise AssertionError(rule)


@pytest.mark.parametrize("rule", [ex.Epsilon(1e-6), ex.Epsilon(0.25), ex.ZPlus(), ex.AlphaBeta(2,
                                                                                               1),
                                  ex.AlphaBeta(1, 0), ex.Gamma(0.25), ex.Flat(), ex.WSquare(),
                                  ex.ZBox(-1.5, 2.0)])
def test_each_rule_matches_its_matrix_replica(rule):
  model = OneConv()
  a = jax.random.normal(jax.random.key(0), (1, 5, 5, 2), jnp.float32)
  variables = model.init(jax.random.key(1), a)
  variables = jax.tree_util.tree_map(lambda p: p + 0.1, variables)  # a non-zero bias
  f = lambda a: model.apply(variables, a)
  z = f(a)
  W = np.asarray(jax.jacobian(lambda v: f(v.reshape(a.shape))[0])(a.reshape(-1)), np.float64)
  b = np.asarray(z[0], np.float64) - W @ np.asarray(a.reshape(-1), np.float64)
  weights = jax.random.normal(jax.random.key(2), z.shape)                 # output relevance = z * w
  got = ex.lrp(model, variables, a, weights, composite=ex.Composite(conv=rule, first=rule))
  want = _replica(rule, W, b, np.asarray(a.reshape(-1), np.float64), np.asarray((z * weights)[0],
                                                                                np.float64))
  np.testing.assert_allclose(np.asarray(got).reshape(-1), want, rtol=1e-4,
                             atol=1e-4 * np.abs(want).max())


def test_linearity_in_the_output_relevance(resnet):
  model, variables, x = resnet
  e = lambda c: jax.nn.one_hot(jnp.full(len(x), c), 3)
  r = lambda w: ex.lrp(model, variables, x, w)
  np.testing.assert_allclose(r(2.5 * e(0)), 2.5 * r(e(0)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(r(e(0) + e(2)), r(e(0)) + r(e(2)), rtol=1e-4, atol=1e-5)


def test_batch_equals_stacked_single_samples_and_vmap_over_parameters_equals_loop(resnet):
  model, variables, x = resnet
  t = _targets(model, variables, x)
  batched = ex.lrp(model, variables, x, t)
  single = jnp.concatenate([ex.lrp(model, variables, x[i:i + 1],
                                   t[i:i + 1]) for i in range(len(x))])
  np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
  stacked = jax.tree_util.tree_map(lambda p: jnp.stack([p, 1.1 * p]), variables)
  many = jax.vmap(lambda v: ex.lrp(model, v, x, t))(stacked)
  for k in range(2):
    one = ex.lrp(model, jax.tree_util.tree_map(lambda p: p[k], stacked), x, t)
    np.testing.assert_allclose(many[k], one, rtol=1e-4, atol=1e-6)


def test_zplus_keeps_the_sign_of_the_output_relevance(bias_free):
  model, variables, x = bias_free
  logits = model.apply(variables, x)
  t = jnp.argmax(logits, -1)
  r = ex.lrp(model, variables, x, t, composite=ex.Composite(conv=ex.ZPlus(), dense=ex.ZPlus()))
  sign = jnp.sign(logits[jnp.arange(len(x)), t])[:, None, None, None]
  assert float(jnp.min(r * sign)) >= -1e-7


def test_flat_first_layer_is_uniform_within_the_receptive_field():
  class Dense1(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(1)(x)
  model = Dense1()
  x = jax.random.normal(jax.random.key(0), (2, 5))
  variables = model.init(jax.random.key(1), x)
  r = ex.lrp(model, variables, x, jnp.zeros(2, jnp.int32), composite=ex.Composite(dense=ex.Flat()))
  np.testing.assert_allclose(r, jnp.broadcast_to(model.apply(variables, x) / 5, r.shape), rtol=1e-5)


def test_by_name_overrides_the_layer_type_rule(resnet):
  model, variables, x = resnet
  t = _targets(model, variables, x)
  zero_all = ex.lrp(model, variables, x, t, composite=ex.lrp_zero())
  plus = ex.epsilon_plus()
  names = tuple((name, ex.Epsilon(0.0)) for name in ("stem", "stage1", "stage2", "stage3",
                                                     "stage4/"))
  override = rules.Composite(conv=plus.conv, dense=plus.dense, by_name=names)
  np.testing.assert_allclose(ex.lrp(model, variables, x, t, composite=override), zero_all,
                             rtol=1e-4, atol=1e-6)


def test_unsupported_modules_training_mode_and_bad_targets_raise(resnet):
  class WithLayerNorm(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Dense(2)(nn.LayerNorm()(x))

  model = WithLayerNorm()
  x = jnp.ones((2, 3))
  with pytest.raises(ValueError, match="LayerNorm"):
    ex.lrp(model, model.init(jax.random.key(0), x), x, jnp.zeros(2, jnp.int32))

  class TrainBN(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.BatchNorm(use_running_average=False)(nn.Dense(2)(x))

  model = TrainBN()
  with pytest.raises(ValueError, match="training mode"):
    ex.lrp(model, model.init(jax.random.key(0), x), x, jnp.zeros(2, jnp.int32))

  resnet_model, variables, xr = resnet
  with pytest.raises(ValueError, match="targets"):
    ex.lrp(resnet_model, variables, xr, jnp.zeros(len(xr) + 1, jnp.int32))
  with pytest.raises(ValueError, match="first layer"):
    ex.lrp(resnet_model, variables, xr, jnp.zeros(len(xr), jnp.int32),
           composite=ex.Composite(conv=ex.Flat()))
  with pytest.raises(ValueError, match="alpha"):
    ex.AlphaBeta(2.0, 2.0)


def test_saliency_maps_pad_the_last_batch_and_sum_channels(resnet):
  model, variables, x = resnet
  t = _targets(model, variables, x)
  maps = ex.saliency_maps(model, variables, x, t, batch_size=2)
  np.testing.assert_allclose(maps, ex.lrp(model, variables, x, t).sum(-1), rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="method"):
    ex.saliency_maps(model, variables, x, t, method="occlusion")
