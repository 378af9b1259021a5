"""Savani's adversarial fine-tuning, Zhang et al.'s projected gradients, plain fine-tuning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import metrics as M
from debiasjax.evaluate import fairness_summary, positive_probability
from debiasjax.methods import adversarial as A
from debiasjax.methods.objective import Objective, bias_from_confusion


def _vdot(a, b):
  return sum(float(jnp.vdot(u, v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def random_tree(key):
  k1, k2, k3 = jax.random.split(key, 3)
  return {"dense": {"kernel": jax.random.normal(k1, (5, 3)), "bias": jax.random.normal(k2, (3,))},
          "head": {"kernel": jax.random.normal(k3, (3, 2))}}


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_zhang_projected_gradient_is_orthogonal_to_the_adversary_gradient(alpha):
  for seed in range(5):
    g_pred, g_adv = random_tree(jax.random.key(seed)), random_tree(jax.random.key(100 + seed))
    d = A.projected_update(g_pred, g_adv, alpha)
    projected = jax.tree.map(lambda u, v: u + alpha * v, d, g_adv)   # g_P - proj(g_P)
    assert abs(_vdot(projected, g_adv)) < 1e-4 * np.sqrt(_vdot(g_adv, g_adv) * _vdot(g_pred, g_pred))
    # The step hurts the adversary: it moves against its gradient by alpha ||g_A||^2.
    assert _vdot(d, g_adv) == pytest.approx(-alpha * _vdot(g_adv, g_adv), rel=1e-4, abs=1e-4)
    # Per tensor (AIF360's form): orthogonal leaf by leaf.
    d_leaf = A.projected_update(g_pred, g_adv, alpha, per_leaf=True)
    for u, v in zip(jax.tree.leaves(d_leaf), jax.tree.leaves(g_adv)):
      assert float(jnp.vdot(u + alpha * v, v)) == pytest.approx(0.0, abs=1e-4)
  # The unnormalised variant of Savani v2 / DetoxAI is *not* a projection: it would fail here.
  unnormalised = jax.tree.map(lambda u, v: u - _vdot(g_pred, g_adv) * v, g_pred, g_adv)
  assert abs(_vdot(unnormalised, g_adv)) > 1e-2


def test_soft_bias_equals_the_bias_of_hard_decisions_when_probabilities_are_0_or_1():
  rng = np.random.default_rng(0)
  y, g = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
  p = rng.integers(0, 2, 200).astype(np.float32)
  for bias in ("statistical_parity", "equal_opportunity", "average_odds", "equalized_odds"):
    c = M.group_confusion(y, p, g, num_groups=2)
    assert float(A.soft_bias(p, y, g, bias=bias, privileged=1, num_groups=2)) == pytest.approx(
        float(bias_from_confusion(c, bias)))
  soft = rng.random(200).astype(np.float32)
  expected = soft[g == 0].mean() - soft[g == 1].mean()
  assert float(A.soft_bias(soft, y, g, bias="statistical_parity", privileged=1, num_groups=2)) \
      == pytest.approx(expected, rel=1e-5)


def test_critic_reads_the_whole_minibatch_as_one_input():
  critic = A.Critic()
  a = jax.random.normal(jax.random.key(0), (8, 4))
  params = critic.init(jax.random.key(1), a)
  assert params["params"]["concat"]["kernel"].shape == (32, 32)
  out = critic.apply(params, a)
  assert out.shape == ()
  assert float(critic.apply(params, a[::-1])) != pytest.approx(float(out))   # order matters
  maps = jax.random.normal(jax.random.key(2), (8, 4, 4, 3))
  conv = A.Critic(conv=(4, 8))
  assert conv.apply(conv.init(jax.random.key(1), maps), maps).shape == ()


def score(model, v, x):
  return positive_probability(model.apply(v, x))


def test_adversarial_fine_tuning_reduces_test_bias_at_a_bounded_accuracy_cost(census_model):
  bench, model, v = census_model
  test = bench.test
  obj = Objective("v2", "statistical_parity", margin=0.02)
  r = A.savani_adversarial(model, v, bench.debias, key=jax.random.key(0), layer="layer3",
                           objective=obj, epochs=4, critic_steps=50, actor_steps=50)
  before = fairness_summary(test.y, score(model, v, test.x) > 0.5, test.group, privileged=1)
  after = fairness_summary(test.y, score(model, r.variables, test.x) > r.threshold, test.group,
                           privileged=1)
  assert abs(after["statistical_parity_difference"]) < 0.5 * abs(before["statistical_parity_difference"])
  assert after["accuracy"] > before["accuracy"] - 0.08
  assert r.trace["critic_loss"].shape == (4,)
  assert abs(float(r.bias)) < obj.epsilon


def test_adversarial_fine_tuning_vmaps_over_seeds(census_model):
  bench, model, v = census_model
  run = lambda k: A.savani_adversarial(model, v, bench.debias, key=k, layer="layer3",
                                       objective=Objective("v1"), epochs=2, critic_steps=5,
                                       actor_steps=5).score
  keys = jax.random.split(jax.random.key(1), 2)
  np.testing.assert_allclose(jax.jit(jax.vmap(run))(keys), [run(k) for k in keys], atol=1e-5)


def test_zhang_reduces_the_soft_parity_gap(census_model):
  bench, model, v = census_model
  r = A.zhang_adversarial(model, v, bench.debias, key=jax.random.key(0),
                          constraint="demographic_parity")
  g = bench.test.group
  gap = lambda vv: float(np.mean(score(model, vv, bench.test.x)[g == 1])
                         - np.mean(score(model, vv, bench.test.x)[g == 0]))
  assert abs(gap(r.variables)) < 0.5 * abs(gap(v))
  assert r.trace["adversary_loss"].shape == (1000,)


def test_fine_tuning_methods_reject_bad_arguments(census_model):
  bench, model, v = census_model
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="constraint"):
    A.zhang_adversarial(model, v, bench.debias, key=key, constraint="parity")
  with pytest.raises(ValueError, match="alpha"):
    A.zhang_adversarial(model, v, bench.debias, key=key, alpha=-1.0)
  with pytest.raises(ValueError, match="layer.*layer1"):
    A.savani_adversarial(model, v, bench.debias, key=key, layer="layer7")
  with pytest.raises(ValueError, match="batch_size"):
    A.fine_tune(model, v, bench.debias, key=key, batch_size=0)
  with pytest.raises(ValueError, match="epochs"):
    A.savani_adversarial(model, v, bench.debias, key=key, layer="layer3", epochs=0)
