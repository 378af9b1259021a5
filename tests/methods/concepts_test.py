"""CAVs, P-ClArC, mass-mean shifts and LEACE: identities, oracles (scikit-learn,
concept-erasure) and the memory bound of the projection."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from debiasjax.methods import concepts as C


def _concept_data(n=400, d=12, seed=0, maps=False):
  """Activations whose concept shifts a random direction, plus a target it co-occurs with."""
  rng = np.random.default_rng(seed)
  c = (rng.uniform(size=n) < 0.4).astype(np.int32)
  y = np.where(rng.uniform(size=n) < 0.8, c, 1 - c).astype(np.int32)
  shape = (4, 4, d) if maps else (d,)
  a = rng.normal(size=(n,) + shape) + 0.3 * rng.normal(size=shape)
  a += c.reshape((-1,) + (1,) * len(shape)) * rng.normal(size=shape)
  return a.astype(np.float32), c, y


@pytest.mark.parametrize("pooling", ["max", "mean", "none"])
def test_p_clarc_with_signal_cav_makes_the_group_means_coincide(pooling):
  a, c, _ = _concept_data(maps=True)
  w = C.concept_weights(c)
  cav = C.fit_cav(a, c, kind="signal", pooling=pooling, weights=w)
  edited = C.project_to(cav, pooling=pooling)(jnp.asarray(a))
  coords = np.asarray(C.dot(C.pool(edited, pooling), cav.direction))
  # Every sample lands on the clean level, so both groups' means coincide along v.
  np.testing.assert_allclose(coords, float(cav.clean_level), atol=1e-4)
  if pooling == "none":
    # With the pattern direction the full class-conditional means coincide (linear guardedness).
    e = np.asarray(edited).reshape(len(a), -1)
    mu0, mu1 = (np.average(e[c == k], axis=0, weights=w[c == k]) for k in (0, 1))
    np.testing.assert_allclose(mu0, mu1, atol=1e-4)
  again = C.project_to(cav, pooling=pooling)(edited)
  np.testing.assert_allclose(np.asarray(again), np.asarray(edited), atol=1e-4)   # idempotent


def test_signal_cav_is_the_normalised_mean_difference_and_lda_the_fisher_direction():
  a, c, _ = _concept_data()
  w = np.ones(len(c), np.float32)
  cav = C.fit_cav(a, c, kind="signal", weights=w)
  diff = a[c == 1].mean(0) - a[c == 0].mean(0)
  np.testing.assert_allclose(np.asarray(cav.direction), diff / np.linalg.norm(diff), atol=1e-5)
  # cov(x, t) / var(t) (the pattern CAV's formula) points the same way.
  t = c - c.mean()
  pattern = (a - a.mean(0)).T @ t / (t @ t)
  np.testing.assert_allclose(pattern / np.linalg.norm(pattern), np.asarray(cav.direction),
                             atol=1e-5)
  lda = C.fit_cav(a, c, kind="lda", weights=w)
  centred = a - np.where(c[:, None] == 1, a[c == 1].mean(0), a[c == 0].mean(0))
  fisher = np.linalg.solve(centred.T @ centred / len(a), diff)
  np.testing.assert_allclose(np.asarray(lda.direction), fisher / np.linalg.norm(fisher), atol=1e-4)


@pytest.mark.parametrize("kind", ["ridge", "logistic", "svm"])
def test_filter_cavs_match_scikit_learn(kind):
  from sklearn.linear_model import LogisticRegression, Ridge
  from sklearn.svm import LinearSVC
  a, c, _ = _concept_data(n=300, d=8, seed=1)
  w = C.concept_weights(c)
  reg = 0.1
  t = 2 * c - 1
  if kind == "ridge":
    ref = Ridge(alpha=reg, fit_intercept=False).fit(a, t, sample_weight=w).coef_
  elif kind == "logistic":
    ref = LogisticRegression(C=reg, fit_intercept=False, tol=1e-10, max_iter=10000).fit(
        a, t, sample_weight=w).coef_[0]
  else:
    ref = LinearSVC(C=reg, fit_intercept=False, tol=1e-10, max_iter=100000).fit(
        a, t, sample_weight=w).coef_[0]
  cav = C.fit_cav(a, c, kind=kind, weights=w, regularisation=reg)
  cosine = float(np.asarray(cav.direction) @ ref / np.linalg.norm(ref))
  assert cosine > 0.9999


def test_cross_validated_regularisation_comes_from_the_grid_and_is_refitted():
  a, c, _ = _concept_data(n=200, d=6, seed=2)
  cav = C.fit_cav(a, c, kind="ridge", pooling="none")
  scores = C._cross_validate("ridge", jnp.asarray(a[np.random.default_rng(0).permutation(200)]),
                             jnp.zeros(200), jnp.ones(200), jnp.asarray(C.REGULARISATION_GRID), 5)
  assert scores.shape == (len(C.REGULARISATION_GRID),)
  refits = [C.fit_cav(a, c, kind="ridge",
                      regularisation=r).direction for r in C.REGULARISATION_GRID]
  assert any(np.allclose(np.asarray(cav.direction), np.asarray(r), atol=1e-6) for r in refits)


def test_reactive_p_clarc_edits_only_gated_samples():
  a, c, _ = _concept_data(n=300, seed=3)
  cav = C.fit_cav(a, c)
  gate = C.fit_cav(a, c, kind="svm", regularisation=1.0)
  edited = np.asarray(C.project_to(cav, gate=gate)(jnp.asarray(a)))
  gated = np.asarray(a @ np.asarray(gate.direction)) > 0
  assert 0 < gated.sum() < len(a)
  np.testing.assert_array_equal(edited[~gated], a[~gated])
  np.testing.assert_allclose(edited[gated] @ np.asarray(cav.direction), float(cav.clean_level),
                             atol=1e-4)


def test_a_clarc_level_moves_everyone_to_the_concept_mean():
  a, c, _ = _concept_data(maps=True, seed=4)
  cav = C.fit_cav(a, c, pooling="max")
  edited = C.project_to(cav, cav.concept_level, pooling="max")(jnp.asarray(a))
  np.testing.assert_allclose(np.asarray(C.dot(C.pool(edited, "max"), cav.direction)),
                             float(cav.concept_level), atol=1e-4)


def test_mass_mean_shift_with_a_perfect_probe_erases_the_first_moment():
  rng = np.random.default_rng(5)
  c = np.repeat([0, 1], 100)
  a = rng.normal(size=(200, 6)).astype(np.float32) * 0.1
  a[c == 1, 0] += 5.0                                     # a concept any probe reads exactly
  cav = C.fit_cav(a, c, weights=np.ones(200))
  probe = C.fit_cav(a, c, kind="lda", weights=np.ones(200))
  edited = np.asarray(C.mass_mean_shift(cav, probe=probe)(jnp.asarray(a)))
  np.testing.assert_allclose(edited[c == 1].mean(0), edited[c == 0].mean(0), atol=1e-5)
  np.testing.assert_array_equal(edited[c == 0], a[c == 0])
  # Unconditional: a constant translation; the groups stay exactly as far apart.
  moved = np.asarray(C.mass_mean_shift(cav)(jnp.asarray(a)))
  np.testing.assert_allclose(moved - a, np.broadcast_to(-(a[c == 1].mean(0) - a[c == 0].mean(0)),
                                                        a.shape), atol=1e-5)


@pytest.mark.parametrize("kwargs", [{}, {"method": "orth"}, {"shrinkage": False}])
@pytest.mark.parametrize("k", [1, 3])
def test_leace_equals_the_concept_erasure_package(kwargs, k):
  torch = pytest.importorskip("torch")
  from concept_erasure import LeaceFitter
  rng = np.random.default_rng(k)
  n, d = 300, 10
  x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
  labels = rng.integers(0, k if k > 1 else 2, n)
  z = np.eye(k)[labels] if k > 1 else labels.astype(np.float64)
  if k == 1:
    x[labels == 1] += 2 * rng.normal(size=d)
  else:
    x += z @ rng.normal(size=(k, d))
  ref = LeaceFitter.fit(torch.tensor(x), torch.tensor(z), **kwargs).eraser
  ours = C.fit_leace(x, z, **kwargs)
  probe = rng.normal(size=(20, d)) * 2
  expected = ref(torch.tensor(probe)).numpy()
  got = np.asarray(ours(jnp.asarray(probe, jnp.float32)))
  np.testing.assert_allclose(got, expected, atol=2e-4 * np.abs(expected).max())
  if not kwargs:   # the package's trace constraint (which we drop) did not change its eraser
    plain = LeaceFitter.fit(torch.tensor(x), torch.tensor(z), constrain_cov_trace=False).eraser
    np.testing.assert_allclose(plain(torch.tensor(probe)).numpy(), expected, atol=1e-9)


def test_leace_leaves_no_linear_signal_and_is_idempotent():
  a, c, y = _concept_data(n=500, d=10, seed=6)
  w = C.concept_weights(c, target=y)
  eraser = C.fit_leace(a, c, weights=w, shrinkage=False)
  e = np.asarray(eraser(jnp.asarray(a)))
  # Zero weighted cross-covariance with the concept: no linear probe beats a constant.
  wn = w / w.sum()
  cross = ((e - wn @ e) * wn[:, None]).T @ (c - wn @ c)
  np.testing.assert_allclose(cross, 0, atol=1e-4)
  np.testing.assert_allclose(np.asarray(eraser(jnp.asarray(e))), e, atol=1e-3)


def test_reweighing_makes_the_concept_independent_of_the_target():
  _, c, y = _concept_data(n=1000, seed=8)
  w = C.concept_weights(c, target=y)
  for cc in (0, 1):
    for yy in (0, 1):
      joint = w[(c == cc) & (y == yy)].sum() / w.sum()
      assert joint == pytest.approx(w[c == cc].sum() / w.sum() * w[y == yy].sum() / w.sum(),
                                    abs=1e-6)


def test_p_clarc_on_a_resnet50_stage4_map_never_allocates_a_d_by_d_matrix():
  """Batch 64 of ResNet-50 stage4 maps at 224 x 224: D = 7 * 7 * 2048 = 100,352 per sample; a
  dense D x D projector would need 40 GB. The compiled edit's temporaries stay within a few
  copies of the map."""
  shape = (7, 7, 2048)
  cav = C.CAV(jnp.ones(shape) / np.sqrt(np.prod(shape)), jnp.zeros(shape), jnp.ones(shape))
  maps = jax.ShapeDtypeStruct((64,) + shape, jnp.float32)
  compiled = jax.jit(C.project_to(cav, pooling="none")).lower(maps).compile()
  memory = compiled.memory_analysis()
  map_bytes = 64 * np.prod(shape) * 4
  assert memory.temp_size_in_bytes <= 4 * map_bytes
  assert memory.temp_size_in_bytes < np.prod(shape) ** 2 * 4 / 1000


def test_bad_inputs_raise_clear_errors():
  a, c, _ = _concept_data(n=50)
  with pytest.raises(ValueError, match="kind"):
    C.fit_cav(a, c, kind="svd")
  with pytest.raises(ValueError, match="pooling"):
    C.fit_cav(a, c, pooling="sum")
  with pytest.raises(ValueError, match="concept"):
    C.fit_cav(a, np.zeros(50))
  with pytest.raises(ValueError, match="concept"):
    C.fit_cav(a, c[:10])
  with pytest.raises(ValueError, match="activations"):
    C.fit_cav(a[:, :, None], c)
  with pytest.raises(ValueError, match="method"):
    C.fit_leace(a, c, method="oblique")
  with pytest.raises(ValueError, match="svd_tol"):
    C.fit_leace(a, c, svd_tol=0)


ERASERS = {"p_clarc": lambda: C.p_clarc(pooling="max"),
           "p_clarc_full_map": lambda: C.p_clarc(pooling="none"),
           "reactive_p_clarc": lambda: C.p_clarc(pooling="mean", reactive=True),
           "artifact_injection": lambda: C.p_clarc(level="concept"),
           "mass_mean": lambda: C.mass_mean(),
           "mass_mean_lda": lambda: C.mass_mean(direction="lda", pooling="max"),
           "leace": lambda: C.leace()}


@pytest.mark.parametrize("name", sorted(ERASERS))
def test_eraser_fits_vmap_over_bootstrap_weights_and_states_hold_arrays_only(name):
  eraser = ERASERS[name]()
  a, c, y = _concept_data(n=96, d=3, seed=9, maps=True)
  rng = np.random.default_rng(10)
  weights = np.stack([np.bincount(rng.integers(0, 96, 96), minlength=96) for _ in range(8)])
  weights = weights.astype(np.float32) * np.asarray(C.concept_weights(c, target=y))
  stacked = jax.vmap(eraser.fit, in_axes=(None, None, 0))(jnp.asarray(a), c, jnp.asarray(weights))
  probe = jnp.asarray(a[:16])
  edited = jax.vmap(eraser.apply, in_axes=(0, None))(stacked, probe)
  for i in (0, 3, 7):                   # three of the eight: each eager fit costs seconds
    single = eraser.fit(a, c, weights[i])
    for u, v in zip(jax.tree.leaves(single), jax.tree.leaves(stacked)):
      np.testing.assert_allclose(np.asarray(v[i]), np.asarray(u), rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(edited[i]), np.asarray(eraser.apply(single, probe)),
                               rtol=2e-4, atol=2e-4)
  # A state is a pytree of arrays: it passes through jit unchanged.
  state = eraser.fit(a, c)
  passed = jax.jit(lambda s: s)(state)
  assert jax.tree.structure(passed) == jax.tree.structure(state)
  assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(passed))


def test_eraser_apply_is_its_kernel():
  a, c, _ = _concept_data(maps=True, seed=11)
  state = C.p_clarc(pooling="none").fit(a, c)
  np.testing.assert_allclose(
      np.asarray(C.p_clarc(pooling="none").apply(state, jnp.asarray(a))),
      np.asarray(C.project_to(C.fit_cav(a, c, pooling="none"), pooling="none")(jnp.asarray(a))),
      atol=1e-5)
  leace_state = C.leace().fit(a, c)
  np.testing.assert_allclose(np.asarray(C.leace().apply(leace_state, jnp.asarray(a))),
                             np.asarray(C.fit_leace(a, c)(jnp.asarray(a))), atol=1e-5)


def test_leace_bootstrap_counts_equal_repeated_rows_and_float64_is_kept():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(40, 5)) @ rng.normal(size=(5, 5))
  z = rng.integers(0, 2, 40)
  counts = rng.multinomial(40, np.full(40, 1 / 40))          # sums to N, as a bootstrap draws
  rows = np.repeat(np.arange(40), counts)
  weighted = C.fit_leace(a.astype(np.float32), z, weights=counts)
  repeated = C.fit_leace(a[rows].astype(np.float32), z[rows])
  chex.assert_trees_all_close(weighted, repeated, atol=2e-4, rtol=2e-4)
  with jax.enable_x64(True):
    state = C.fit_leace(a, z, weights=counts.astype(np.float64))
    assert all(leaf.dtype == jnp.float64 for leaf in state)
    erased = np.asarray(C.erase(state, a))
    zc = z - np.average(z, weights=counts)
    cross = (erased * (counts * zc)[:, None]).sum(0)         # weighted cross-covariance
    assert np.abs(cross).max() < 1e-9 * np.abs(a).max() * 40
