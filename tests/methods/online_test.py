"""Voronoi-cell bias mining: centroids, boundary distances, e*, pseudo labels and weights,
checked on hand-built geometry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax.methods import online


def test_centroids_use_only_correctly_classified_samples():
  z = jnp.asarray([[0., 0.], [2., 0.], [10., 10.], [0., 4.], [0., 6.]])
  y = jnp.asarray([0, 0, 0, 1, 1])
  pred = jnp.asarray([0, 0, 1, 1, 1])
  centroids, counts = online.class_centroids(z, y, pred, 3)
  np.testing.assert_allclose(centroids, [[1, 0], [0, 5], [0, 0]])
  np.testing.assert_array_equal(counts, [2, 2, 0])


def test_distance_to_the_bisector_by_hand():
  """Centroids (0, 0) and (4, 0): the bisector is x = 2; a class-0 sample at (3, 1) predicted
  as class 1 lies 1 beyond it; normalised by K / sum |c_k| = 2 / 4."""
  centroids = jnp.asarray([[0., 0.], [4., 0.]])
  z = jnp.asarray([[3., 1.], [0.5, 0.], [3.5, 7.]])
  y, pred = jnp.asarray([0, 0, 1]), jnp.asarray([1, 0, 1])
  rel = online.boundary_distances(z, y, pred, centroids)
  np.testing.assert_allclose(rel, [0.5, 0.0, 0.0], atol=1e-6)


def test_epoch_score_and_peak():
  z = jnp.asarray([[0., 0.], [4., 0.], [3., 1.], [3.5, -2.]])
  y, pred = jnp.asarray([0, 1, 0, 0]), jnp.asarray([0, 1, 1, 1])
  # misclassified at x = 3 and 3.5: distances 1 and 1.5 beyond x = 2, scaled by 2 / 4
  assert float(online.epoch_score(z, y, pred, 2)) == pytest.approx((0.5 + 0.75) / 2)
  assert float(online.epoch_score(z, y, y, 2)) == 0.0                        # nothing wrong
  assert int(online.peak_epoch(jnp.asarray([9., 1., 3., 2.]))) == 2          # epoch 0 skipped
  assert int(online.peak_epoch(jnp.asarray([9., 1., 3., 2.]), skip=0)) == 0


def test_mined_weights_by_hand():
  y = jnp.asarray([0, 0, 0, 0, 1, 1])
  pred = jnp.asarray([0, 0, 0, 1, 1, 0])            # class 0: 1 of 4 misaligned; class 1: 1 of 2
  m = online.mine(y, pred, 2)
  np.testing.assert_allclose(m.rho, [0.75, 0.5])
  np.testing.assert_allclose(m.weight, [4 / 3, 4 / 3, 4 / 3, 4, 2, 2])
  np.testing.assert_array_equal(m.bias, pred)
  np.testing.assert_array_equal(m.misaligned, [0, 0, 0, 1, 0, 1])
  # A class without misaligned samples (rho = 1): the reference leaves every weight at 1.
  none_wrong = online.mine(y, jnp.asarray([0, 0, 0, 0, 1, 0]), 2)
  np.testing.assert_allclose(none_wrong.weight, np.ones(6))


def test_precision_recall_and_vmap_over_seeds():
  flagged, truth = jnp.asarray([1, 1, 0, 0, 1]), jnp.asarray([1, 0, 0, 1, 1])
  p, r = online.precision_recall(flagged, truth)
  assert float(p) == pytest.approx(2 / 3) and float(r) == pytest.approx(2 / 3)
  zs = jax.random.normal(jax.random.key(0), (3, 40, 4))
  y = jnp.arange(40) % 4
  preds = jax.random.randint(jax.random.key(1), (3, 40), 0, 4)
  stacked = jax.vmap(lambda z, p: online.epoch_score(z, y, p, 4))(zs, preds)
  np.testing.assert_allclose(stacked, [float(online.epoch_score(zs[i], y, preds[i], 4))
                                       for i in range(3)], rtol=1e-6)
