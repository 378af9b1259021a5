"""Biased digits (Bahng et al.'s protocol on procedural glyphs) and SimpleConvNet."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax import models
from debiasjax.data import digits as D


@pytest.mark.parametrize("rho", [0.99, 0.997, 0.1, 1.0])
def test_colours_follow_bahngs_assignment(rho):
  """Per class exactly int(n rho) images take the class colour; the rest go to the other nine
  colours in chunks of ceil(rest / 9), the last chunks possibly short or empty."""
  labels = np.repeat(np.arange(10), 1000)
  colours = D.bias_colours(labels, rho, np.random.default_rng(0))
  for c in range(10):
    mine = colours[labels == c]
    aligned = int(1000 * rho)
    assert (mine == c).sum() == aligned
    rest = 1000 - aligned
    counts = np.bincount(mine[mine != c], minlength=10)
    chunk = -(-rest // 9) if rest else 0
    assert counts.sum() == rest and counts.max() <= chunk
    assert sorted(counts[np.arange(10) != c], reverse=True)[:rest // chunk if chunk else 0] \
        == [chunk] * (rest // chunk if chunk else 0)


def test_the_unbiased_test_has_every_colour_in_every_class():
  split = D.digits_split(2000, 0.1, seed=3)
  table = np.zeros((10, 10), int)
  np.add.at(table, (split.y, split.group), 1)
  assert table.min() >= 18 and table.max() <= 22       # 200 per class: 20 per colour


def test_images_are_deterministic_with_the_colour_as_background():
  a, b = D.digits_split(60, 0.5, seed=1), D.digits_split(60, 0.5, seed=1)
  np.testing.assert_array_equal(a.x, b.x)
  assert not np.array_equal(a.x, D.digits_split(60, 0.5, seed=2).x)
  assert a.x.shape == (60, 28, 28, 3) and a.x.dtype == np.float32
  assert 0 <= a.x.min() and a.x.max() <= 1
  corners = a.x[:, [0, 0, -1, -1], [0, -1, 0, -1]]                # never reached by a stroke
  np.testing.assert_allclose(corners, np.repeat(D.COLOURS[a.group][:, None], 4, 1), atol=1e-6)
  ink = (a.x.min(-1) > 0.99).mean((1, 2))                          # white pixels
  assert 0.02 < ink.min() and ink.max() < 0.4


def test_the_glyphs_carry_the_class():
  """A linear classifier on the ink alone (colour removed) recognises the digit."""
  from sklearn.linear_model import LogisticRegression
  train, test = D.digits_split(1500, 0.1, seed=4), D.digits_split(500, 0.1, seed=5)
  ink = lambda s: s.x.min(-1).reshape(len(s), -1)                  # white = 1 in every channel
  clf = LogisticRegression(max_iter=300).fit(ink(train), train.y)
  assert clf.score(ink(test), test.y) > 0.8


def test_benchmark_splits_and_hidden_bias():
  bench = D.biased_digits(rho=0.99, n_train=1000, n_debias=200, n_test=200, seed=0)
  # int(n rho) per class: 99 of 100 and 19 of 20 (int(19.8)) take the class colour
  assert bench.info["conflicting"]["train"] == 10 and bench.info["conflicting"]["debias"] == 10
  assert (bench.test.y != bench.test.group).mean() > 0.85
  hidden = D.hide_bias(bench.train)
  assert not hidden.group.any() and np.array_equal(hidden.x, bench.train.x)
  biased = D.digits_split(100, 1.0, seed=bench.info["biased_test_seed"])
  assert np.array_equal(biased.y, biased.group)


@pytest.mark.parametrize("bad, message", [
    (dict(digits=[1, 10], colours=[0, 0]), "digits: expected integers in 0..9"),
    (dict(digits=[1, 2], colours=[0]), "one length"),
    (dict(digits=[1.0], colours=[0]), "digits: expected integers")])
def test_render_refuses_bad_labels(bad, message):
  with pytest.raises(ValueError, match=message):
    D.render_digits(np.asarray(bad["digits"]), np.asarray(bad["colours"]))


def test_split_refuses_bad_rho_and_sizes():
  with pytest.raises(ValueError, match="rho: expected a number in"):
    D.digits_split(20, 1.5)
  with pytest.raises(ValueError, match="n: expected"):
    D.digits_split(5, 0.9)


def test_simple_conv_net_is_bahngs_network():
  model = models.SimpleConvNet()
  x = jnp.zeros((2, 28, 28, 3))
  variables = model.init(jax.random.key(0), x)
  count = sum(v.size for v in jax.tree.leaves(variables["params"]))
  assert count == 531210              # torch SimpleConvNet(): convs with bias, BN, Linear(128, 10)
  assert model.apply(variables, x).shape == (2, 10)
  assert models.penultimate_layer(model, variables, x) == "pool"
  assert models.tap(model, "pool").activations(variables, x).shape == (2, 128)
  tanh = models.SimpleConvNet(width=4, last_activation="tanh")
  v = tanh.init(jax.random.key(1), x)
  acts = models.tap(tanh, "block4").activations(v, jnp.ones((2, 28, 28, 3)))
  assert np.abs(np.asarray(acts)).max() <= 1
