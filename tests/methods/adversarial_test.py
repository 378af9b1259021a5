"""Savani's adversarial fine-tuning, Zhang et al.'s projected gradients, plain fine-tuning."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import metrics as M, train
from debiasjax.evaluate import fairness_summary, positive_probability
from debiasjax.methods import adversarial as A
from debiasjax.methods.finetuning import Context, tune
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
    assert abs(_vdot(projected, g_adv)) < 1e-4 * np.sqrt(_vdot(g_adv, g_adv) * _vdot(g_pred,
                                                                                     g_pred))
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
  r = tune(A.savani_adversarial(layer="layer3", objective=obj, epochs=4, critic_steps=50,
                                actor_steps=50), model, v, bench.debias, key=jax.random.key(0))
  before = fairness_summary(test.y, score(model, v, test.x) > 0.5, test.group, privileged=1)
  after = fairness_summary(test.y, score(model, r.variables, test.x) > r.threshold, test.group,
                           privileged=1)
  assert abs(after["statistical_parity_difference"]) < \
      0.5 * abs(before["statistical_parity_difference"])
  assert after["accuracy"] > before["accuracy"] - 0.08
  assert r.trace["critic_loss"].shape == (4,)
  assert abs(float(r.bias)) < obj.epsilon


def _stacked_equals_single_runs(trainer, v, data, num_steps, batch_size):
  keys = jax.random.split(jax.random.key(1), 2)
  kwargs = dict(num_steps=num_steps, batch_size=batch_size, order="sampled")
  stacked = train.fit(trainer, jax.vmap(lambda k: trainer.init(k, v))(keys), data, key=keys,
                      seed=[0, 0], stacked=True, **kwargs)
  for i, k in enumerate(keys):
    single = train.fit(trainer, trainer.init(k, v), data, key=k, **kwargs)
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[i], stacked), single, atol=1e-5)


def test_savani_and_zhang_trainers_for_stacked_seeds_equal_single_runs(census_model):
  bench, model, v = census_model
  d = bench.debias
  data = {"x": d.x, "y": d.y, "group": d.group}
  context = Context(model, v, d, "layer3", Objective("v1"), 2)
  savani = A.savani_adversarial(objective=Objective("v1"), epochs=2, critic_steps=5,
                                actor_steps=5, batch_size=64)
  _stacked_equals_single_runs(savani.trainer(context), v, data, 20, 64)
  zhang = A.zhang_adversarial(num_steps=6, warmup_steps=4)
  _stacked_equals_single_runs(zhang.trainer(context), v, data, 10, 128)


def test_recipes_built_again_reuse_their_compiled_steps(census_model):
  """A recipe built again (same settings) gives the same update functions, so train.fit finds
  its compiled steps instead of tracing and compiling them again."""
  bench, model, v = census_model
  context = Context(model, v, bench.debias, "layer3", Objective("v1"), 2)
  for build in (lambda: A.savani_adversarial(objective=Objective("v1"), epochs=2),
                lambda: A.zhang_adversarial(num_steps=6, warmup_steps=4),
                lambda: A.fine_tune(num_steps=4)):
    first, second = build().trainer(context), build().trainer(context)
    assert first.update == second.update
  other = A.zhang_adversarial(num_steps=6, warmup_steps=4, learning_rate=0.02).trainer(context)
  assert other.update != A.zhang_adversarial(num_steps=6, warmup_steps=4).trainer(context).update


def test_zhang_reduces_the_soft_parity_gap(census_model):
  bench, model, v = census_model
  r = tune(A.zhang_adversarial(constraint="demographic_parity"), model, v, bench.debias,
           key=jax.random.key(0))
  g = bench.test.group
  gap = lambda vv: float(np.mean(score(model, vv, bench.test.x)[g == 1])
                         - np.mean(score(model, vv, bench.test.x)[g == 0]))
  assert abs(gap(r.variables)) < 0.5 * abs(gap(v))
  assert r.trace["adversary_loss"].shape == (1000,)


def test_fine_tuning_methods_reject_bad_arguments(census_model):
  bench, model, v = census_model
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="constraint"):
    A.zhang_adversarial(constraint="parity")
  with pytest.raises(ValueError, match="alpha"):
    A.zhang_adversarial(alpha=-1.0)
  with pytest.raises(ValueError, match="layer.*layer1"):
    tune(A.savani_adversarial(layer="layer7"), model, v, bench.debias, key=key)
  with pytest.raises(ValueError, match="batch_size"):
    A.fine_tune(batch_size=0)
  with pytest.raises(ValueError, match="epochs"):
    A.savani_adversarial(layer="layer3", epochs=0)
