"""The counting stem convolution counts what the compiled programs compute."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import models, train
from debiasjax.models import layers, taps
from experiments.counting import counting_stem


def _setting():
  model = models.ResNet18(num_classes=3, width=4)        # a shape no other test compiles
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 16, 16, 3)), jnp.float32)
  return model, model.init(jax.random.key(0), x), x


def test_counts_forward_backward_and_vmapped_passes():
  model, variables, x = _setting()
  conv = layers.conv_general_dilated
  with counting_stem({}) as counts:
    jax.block_until_ready(jax.jit(lambda v, x: model.apply(v, x))(variables, x))
    assert counts == {"forward": 5, "backward": 0}
    trainer = train.supervised(model, optax.sgd(0.1))
    state = trainer.init(jax.random.key(0), variables)
    batch = {"x": x, "y": jnp.zeros((5,), jnp.int32)}
    jax.block_until_ready(jax.jit(trainer.update)(state, batch, jax.random.key(1)))
    assert counts == {"forward": 10, "backward": 5}
    stacked = jax.tree.map(lambda v: jnp.stack([v, 2 * v, 3 * v]), variables)
    jax.block_until_ready(jax.jit(jax.vmap(lambda v: model.apply(v, x)))(stacked))
    assert counts == {"forward": 25, "backward": 5}
  assert layers.conv_general_dilated is conv


def test_a_pass_xla_finds_dead_is_not_counted():
  model, variables, x = _setting()
  tapped = taps.tap(model, "pool")
  a = jnp.ones((5, 32), jnp.float32)
  with counting_stem({}) as counts:
    # The pooled features are replaced, so nothing before them runs: only the head.
    out = jax.block_until_ready(
        jax.jit(lambda v, x, a: tapped.apply(v, x, lambda _: a))(variables, x, a))
  assert counts == {"forward": 0, "backward": 0}
  head = variables["params"]["head"]
  np.testing.assert_allclose(out, a @ head["kernel"] + head["bias"][None], rtol=1e-5)
