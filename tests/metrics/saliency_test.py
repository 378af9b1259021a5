"""Saliency metrics on hand-built maps with known answers; t-tests against scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from debiasjax.metrics import saliency as sal

MASK = np.zeros((4, 4), bool)
MASK[:2, :2] = True                      # a 2x2 region in a 4x4 image


def _maps(*rows):
  return jnp.asarray(np.stack(rows).astype(np.float32))


def test_region_metrics_on_known_maps():
  uniform = np.ones((4, 4))
  inside_only = MASK * 2.0
  half = np.where(MASK, 3.0, 1.0)
  maps = _maps(uniform, inside_only, half)
  np.testing.assert_allclose(sal.rrf(maps, MASK), [4 / 16, 1.0, 12 / 24])
  np.testing.assert_allclose(sal.mrr(maps, MASK), [1.0, 0.0,
                                                   3.0])        # 0 when nothing is outside
  hot = np.zeros((4, 4))
  hot[:2, :2] = [[0.0, 0.2], [0.04, 0.5]]
  np.testing.assert_allclose(sal.hrf(_maps(hot), MASK), [0.5])
  np.testing.assert_allclose(sal.hrf(_maps(hot), MASK, threshold=0.01), [0.75])


def test_two_model_metrics_on_known_maps():
  vanilla = _maps(np.where(MASK, 1.0, 0.2), np.where(MASK, 1.0, 0.2))
  debiased = _maps(np.where(MASK, 0.5, 0.2), np.full((4, 4), 0.2))
  np.testing.assert_allclose(sal.adr(vanilla, debiased, MASK), [0.5, 0.8])
  partly = np.array(debiased)
  partly[0, 0, 0] = 1.0                                             # one ROI pixel unchanged
  np.testing.assert_allclose(sal.dif(vanilla, jnp.asarray(partly), MASK), [0.75, 1.0])
  np.testing.assert_allclose(sal.dif(vanilla, vanilla, MASK), [0.0, 0.0])
  same = sal.rddt(vanilla, vanilla, MASK)
  assert float(same.p_value) == 1.0 and not bool(same.significant)


def test_t_tests_match_scipy_one_sided():
  rng = np.random.default_rng(0)
  for n, shift in ((5, 0.0), (12, 0.3), (40, -0.1), (3, 2.0)):
    d = rng.normal(shift, 1.0, n).astype(np.float32)
    got = sal.one_sided_t_test(jnp.asarray(d))
    want = scipy.stats.ttest_1samp(d, 0.0, alternative="greater")
    np.testing.assert_allclose(float(got.statistic), want.statistic, rtol=1e-4)
    np.testing.assert_allclose(float(got.p_value), want.pvalue, rtol=1e-3, atol=1e-6)
    assert bool(got.significant) == (want.pvalue < 0.01)
  assert float(sal.one_sided_t_test(jnp.ones(4)).p_value) == 0.0     # identical positive shifts


def test_det_and_rddt_are_per_image_t_tests():
  rng = np.random.default_rng(1)
  maps = rng.uniform(0, 0.2, (10, 4, 4)).astype(np.float32)
  maps[:, :2, :2] += rng.uniform(0.1, 0.3, (10, 2, 2))
  test = sal.det(jnp.asarray(maps), MASK)
  d = maps[:, :2, :2].mean((1, 2)) - np.where(MASK, 0, maps).mean((1, 2))
  np.testing.assert_allclose(test.differences, d, rtol=1e-5)
  np.testing.assert_allclose(float(test.p_value), scipy.stats.ttest_1samp(d, 0,
                                                                          alternative="greater").pvalue,
                             rtol=1e-3, atol=1e-7)
  assert bool(test.significant)
  debiased = maps.copy()
  debiased[:, :2, :2] -= 0.05
  r = sal.rddt(jnp.asarray(maps), jnp.asarray(debiased), MASK)
  np.testing.assert_allclose(r.differences, np.full(10, 0.05), rtol=1e-4)


def test_normalizations():
  r = _maps(np.array([[-2.0, 1.0], [0.0, 0.5]]), np.zeros((2, 2)))
  np.testing.assert_allclose(sal.normalize(r, "detoxai")[0], [[0.5, 0.25], [0.0, 0.125]])
  np.testing.assert_allclose(sal.normalize(r, "max_abs")[0], [[-1.0, 0.5], [0.0, 0.25]])
  np.testing.assert_allclose(sal.normalize(r, "detoxai")[1],
                             0.0)        # an all-zero map stays zero
  np.testing.assert_allclose(sal.normalize(r, "raw"), r)
  # scaling an image's relevance does not change its normalised map
  np.testing.assert_allclose(sal.normalize(3 * r, "detoxai"), sal.normalize(r, "detoxai"),
                             rtol=1e-6)


def test_jit_and_vmap_over_models():
  maps = jnp.asarray(np.random.default_rng(2).uniform(size=(3, 5, 4, 4)).astype(np.float32))
  batched = jax.jit(jax.vmap(lambda m: sal.rrf(m, jnp.asarray(MASK))))(maps)
  for k in range(3):
    np.testing.assert_allclose(batched[k], sal.rrf(maps[k], MASK), rtol=1e-6)


def test_bad_input_raises():
  maps = _maps(np.ones((4, 4)), np.ones((4, 4)))
  with pytest.raises(ValueError, match="mask"):
    sal.rrf(maps, np.zeros((4, 4), bool))
  with pytest.raises(ValueError, match="mask"):
    sal.rrf(maps, np.ones((4, 4), bool))
  with pytest.raises(ValueError, match="boolean"):
    sal.rrf(maps, MASK.astype(float))
  with pytest.raises(ValueError, match="shape"):
    sal.rrf(maps, MASK[:3])
  with pytest.raises(ValueError, match="maps"):
    sal.rrf(maps[0], MASK)
  with pytest.raises(ValueError, match="NaN"):
    sal.rrf(maps.at[0, 0, 0].set(jnp.nan), MASK)
  with pytest.raises(ValueError, match="debiased"):
    sal.adr(maps, maps[:1], MASK)
  with pytest.raises(ValueError, match="mode"):
    sal.normalize(maps, "minmax")
  with pytest.raises(ValueError, match="2 images"):
    sal.one_sided_t_test(jnp.ones(1))
