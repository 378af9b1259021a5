"""Yule's phi, the split protocol, and the procedural faces."""

import numpy as np
import pytest

from debiasjax import data
from debiasjax.data import faces


def expand(counts):
  """Rows (a, t) realising a 2x2 table."""
  a = np.repeat([0, 0, 1, 1], np.ravel(counts))
  t = np.repeat([0, 1, 0, 1], np.ravel(counts))
  return a, t


@pytest.mark.parametrize("counts", [[[40, 10], [5, 45]], [[1, 2], [3, 4]], [[7, 0], [0, 9]],
                                    [[3, 30], [20, 2]], [[500, 120], [80, 300]]])
def test_yule_phi_is_the_correlation_of_the_two_binary_variables(counts):
  a, t = expand(counts)
  assert data.yule_phi(counts) == pytest.approx(np.corrcoef(a, t)[0, 1], abs=1e-12)
  assert data.yule_phi(data.cell_table(t, a)) == pytest.approx(data.yule_phi(counts))


@pytest.mark.parametrize("phi, pa, pt", [(0.8, 0.5, 0.5), (-0.5, 0.5, 0.5), (0.3, 0.3, 0.6),
                                         (1.0, 0.5, 0.5), (0.0, 0.2, 0.7)])
def test_cell_proportions_have_the_requested_phi_and_marginals(phi, pa, pt):
  p = data.cell_proportions(phi, p_protected=pa, p_target=pt)
  assert p.sum() == pytest.approx(1.0)
  assert p[1].sum() == pytest.approx(pa) and p[:, 1].sum() == pytest.approx(pt)
  assert data.yule_phi(p) == pytest.approx(phi, abs=1e-12)
  counts = data.cell_counts(1000, phi, p_protected=pa, p_target=pt)
  assert counts.sum() == 1000 and abs(data.yule_phi(counts) - phi) < 0.01


def test_make_splits_protocol():
  rng = np.random.default_rng(0)
  t, a = rng.integers(0, 2, 20000), rng.integers(0, 2, 20000)
  s = data.make_splits(t, a, phi=0.8, n_test=1000, n_train=3000, n_debias=2000, seed=3)
  parts = [s.train, s.debias, s.test]
  assert [len(p) for p in parts] == [3000, 2000, 1000]
  assert len(np.unique(np.concatenate(parts))) == 6000                       # disjoint
  np.testing.assert_array_equal(data.cell_table(t[s.test], a[s.test]), [[250, 250], [250, 250]])
  for name in ("train", "debias"):
    assert s.report[name]["phi"] == pytest.approx(0.8, abs=1e-3)
  assert s.report["test"]["phi"] == pytest.approx(0.0)
  again = data.make_splits(t, a, phi=0.8, n_test=1000, n_train=3000, n_debias=2000, seed=3)
  np.testing.assert_array_equal(again.train, s.train)


def test_make_splits_uses_the_whole_pool_when_sizes_are_omitted():
  a, t = expand([[2000, 300], [250, 1800]])
  s = data.make_splits(t, a, phi=0.6, n_test=400, seed=0)
  left = data.cell_table(t, a) - 100
  used = data.cell_table(np.concatenate([t[s.train], t[s.debias]]),
                         np.concatenate([a[s.train], a[s.debias]]))
  assert (used <= left).all() and (left - used).min() <= 2       # a binding cell is exhausted
  assert abs(s.report["train"]["phi"] - 0.6) < 0.01
  assert len(s.debias) / (len(s.train) + len(s.debias)) == pytest.approx(0.4, abs=0.01)


def test_make_splits_debias_phi_sets_the_debias_split_alone():
  """A maximally biased train split and a milder debias split (DetoxAI's CelebA variants); with
  sizes omitted the pool is exhausted under the mixed proportions."""
  rng = np.random.default_rng(0)
  t, a = rng.integers(0, 2, 20000), rng.integers(0, 2, 20000)
  s = data.make_splits(t, a, phi=1.0, debias_phi=0.5, n_test=1000, n_train=3000, n_debias=2000)
  assert s.report["train"]["phi"] == pytest.approx(1.0) and s.report["debias"]["phi"] == \
      pytest.approx(0.5, abs=1e-3)
  assert (s.report["phi_requested"], s.report["debias_phi_requested"]) == (1.0, 0.5)
  assert data.make_splits(t, a, phi=0.7, n_test=1000, seed=1).report["debias_phi_requested"] == 0.7
  a, t = expand([[2000, 300], [250, 1800]])
  s = data.make_splits(t, a, phi=0.9, debias_phi=0.0, n_test=400, seed=0)
  left = data.cell_table(t, a) - 100
  used = data.cell_table(np.concatenate([t[s.train], t[s.debias]]),
                         np.concatenate([a[s.train], a[s.debias]]))
  assert (used <= left).all() and (left - used).min() <= 2
  assert abs(s.report["train"]["phi"] - 0.9) < 0.01 and abs(s.report["debias"]["phi"]) < 0.01


@pytest.mark.parametrize("kwargs, message", [
    (dict(phi=1.5), r"phi: expected a number in \[-1, 1\], got 1.5"),
    (dict(phi=0.5, debias_phi=-2.0), r"debias_phi: expected a number in \[-1, 1\], got -2.0"),
    (dict(phi=0.5, debias_phi=0.9, n_train=1000, n_debias=2500),
     r"n_train, n_debias: 1000 \+ 2500 samples at phi=0.5 / 0.9 need"),
    (dict(phi=float("nan")), "phi: expected a number"),
    (dict(phi=0.9, p_protected=0.1), "phi: 0.9 is not reachable"),
    (dict(phi=0.5, n_test=100000), "n_test: 100000 needs"),
    (dict(phi=0.5, n_train=90000, n_debias=10), "n_train, n_debias: 90000 \\+ 10 samples"),
    (dict(phi=0.5, n_train=100), "give both or neither"),
])
def test_make_splits_bad_input(kwargs, message):
  rng = np.random.default_rng(0)
  t, a = rng.integers(0, 2, 4000), rng.integers(0, 2, 4000)
  kwargs = {"n_test": 400, **kwargs}
  with pytest.raises(ValueError, match=message):
    data.make_splits(t, a, **kwargs)


def test_split_labels_must_be_binary():
  with pytest.raises(ValueError, match=r"target: expected binary values"):
    data.make_splits([0, 1, 2, 1], [0, 1, 1, 0], phi=0.5, n_test=4)
  with pytest.raises(ValueError, match="counts: phi is undefined"):
    data.yule_phi([[3, 0], [4, 0]])


@pytest.mark.parametrize("accessory", faces.ACCESSORIES)
def test_accessory_pixels_lie_inside_the_roi(accessory):
  """Rendering the same faces with and without the accessory changes only pixels in its box."""
  t = np.array([0, 1] * 8)
  with_acc, roi = data.render_faces(t, np.ones_like(t), seed=5, accessory=accessory)
  without, roi0 = data.render_faces(t, np.zeros_like(t), seed=5, accessory=accessory)
  np.testing.assert_array_equal(roi, roi0)
  changed = np.abs(with_acc - without).max(-1) > 1e-6
  inside = data.roi_mask(roi, 64, 64)
  assert changed.any(axis=(1, 2)).all()                     # every face wears it
  assert not (changed & ~inside).any()                      # nothing outside the box changes
  assert (changed.sum((1, 2)) / inside.sum((1, 2))).min() > 0.2   # the box is tight


def test_faces_are_deterministic_and_any_size():
  t, a = np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0])
  x1, r1 = data.render_faces(t, a, seed=1, image_size=48)
  x2, r2 = data.render_faces(t, a, seed=1, image_size=48)
  x3, _ = data.render_faces(t, a, seed=2, image_size=48)
  np.testing.assert_array_equal(x1, x2)
  np.testing.assert_array_equal(r1, r2)
  assert np.abs(x1 - x3).mean() > 0.05
  assert x1.shape == (4, 48, 48, 3) and x1.dtype == np.float32 and 0 <= x1.min() and x1.max() <= 1
  big, roi = data.render_faces(t, a, seed=1, image_size=128)
  assert big.shape == (4, 128, 128, 3) and (roi[:, 2:] <= 128).all()


def test_smiles_bend_the_mouth_up():
  """The target is ambiguous by design: ~90 % of smiles have a positive intensity."""
  rng = np.random.default_rng(0)
  params = faces._draw_params(rng, np.array([1] * 2000 + [0] * 2000), 1.0)
  smile = params["smile"]
  assert 0.85 < (smile[:2000] > 0).mean() < 0.95 and 0.85 < (smile[2000:] < 0).mean() < 0.95


def test_faces_benchmark_protocol():
  b = data.faces_benchmark(phi=0.6, n_train=200, n_debias=100, n_test=80, image_size=32, seed=0)
  assert (len(b.train), len(b.debias), len(b.test)) == (200, 100, 80)
  np.testing.assert_array_equal(data.cell_table(b.test.y, b.test.group), [[20, 20], [20, 20]])
  assert b.info["splits"]["train"]["phi"] == pytest.approx(0.6, abs=0.01)
  assert b.info["privileged"] == 1 and b.info["groups"] == ["no tie", "tie"]
  assert b.train.roi.shape == (200, 4) and b.train.x.shape == (200, 32, 32, 3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(accessory="scarf"), "accessory: expected one of"),
    (dict(image_size=8), "image_size: expected an int >= 16"),
    (dict(smile_strength=0), "smile_strength: expected a positive finite number, got 0"),
    (dict(smile_strength=True), "smile_strength: .* got True"),
    (dict(smile_strength=float("inf")), "smile_strength: .* got inf"),
    (dict(smile_strength="2"), "smile_strength: .* got '2'"),
])
def test_render_bad_input(kwargs, message):
  with pytest.raises(ValueError, match=message):
    data.render_faces([0, 1], [1, 0], **kwargs)


def test_render_takes_numpy_numbers():
  plain = data.render_faces([0, 1], [1, 0], image_size=16, smile_strength=1.5)
  numpy = data.render_faces([0, 1], [1, 0], image_size=16, smile_strength=np.float32(1.5))
  np.testing.assert_array_equal(plain[0], numpy[0])


def test_faces_debias_phi_leaves_the_train_split_alone():
  kwargs = dict(phi=1.0, n_train=40, n_debias=40, n_test=8, image_size=16, seed=2)
  same, milder = data.faces_benchmark(**kwargs), data.faces_benchmark(**kwargs, debias_phi=0.0)
  np.testing.assert_array_equal(same.train.x, milder.train.x)
  np.testing.assert_array_equal(same.train.y, milder.train.y)
  assert same.info["splits"]["debias"]["phi"] == pytest.approx(1.0)
  assert milder.info["splits"]["debias"]["phi"] == pytest.approx(0.0)
  assert milder.info["splits"]["debias_phi_requested"] == 0.0


def test_benchmark_bad_phi():
  with pytest.raises(ValueError, match="phi: expected a number in"):
    data.faces_benchmark(phi=-1.2)


def test_both_accessories_each_in_its_own_box():
  """tie+hat: each accessory changes only pixels in its own box; roi_mask unions the boxes."""
  t = np.array([0, 1] * 6)
  wear = lambda tie, hat: np.stack([np.full_like(t, tie), np.full_like(t, hat)], 1)
  images = {(i, j): data.render_faces(t, wear(i, j), seed=4, image_size=48, accessory="tie+hat")
            for i in (0, 1) for j in (0, 1)}
  roi = images[0, 0][1]
  assert roi.shape == (12, 2, 4)
  for (i, j), (x, r) in images.items():
    np.testing.assert_array_equal(r, roi)
  changed = lambda a, b: np.abs(images[a][0] - images[b][0]).max(-1) > 1e-6
  tie_box, hat_box = data.roi_mask(roi[:, 0], 48, 48), data.roi_mask(roi[:, 1], 48, 48)
  for moved, box in ((changed((1, 0), (0, 0)), tie_box), (changed((0, 1), (0, 0)), hat_box)):
    assert moved.any(axis=(1, 2)).all() and not (moved & ~box).any()
  np.testing.assert_array_equal(data.roi_mask(roi, 48, 48), tie_box | hat_box)
  # the single-accessory faces are the first accessory's column of the same renderer
  alone, alone_roi = data.render_faces(t, np.ones_like(t), seed=4, image_size=48, accessory="tie")
  assert alone_roi.shape == (12, 4)
  with pytest.raises(ValueError, match=r"protected: expected \[N, 2\]"):
    data.render_faces(t, t, accessory="tie+hat")
  with pytest.raises(ValueError, match="accessory: .* got 'tie\\+tie'"):
    data.render_faces(t, t, accessory="tie+tie")


def test_two_protected_accessories_protocol():
  """Each accessory at its own phi with the smile, independent given the smile; the test split
  balanced over the 8 cells; the group is the conjunction."""
  b = data.faces_benchmark(accessory="tie+hat", phi=(0.8, 0.4), n_train=400, n_debias=200,
                           n_test=80, image_size=16, seed=1)
  assert b.info["attributes"] == ["wears_necktie", "wears_hat"]
  assert b.info["protected"] == "wears_necktie+wears_hat"
  for split in b[:3]:
    np.testing.assert_array_equal(split.group, split.attributes.all(1))
    assert split.roi.shape == (len(split), 2, 4)
  cells = np.bincount(4 * b.test.y + 2 * b.test.attributes[:, 0] + b.test.attributes[:, 1])
  np.testing.assert_array_equal(cells, [10] * 8)
  phis = b.info["attribute_splits"]
  assert phis["wears_necktie"]["train"]["phi"] == pytest.approx(0.8, abs=0.01)
  assert phis["wears_hat"]["train"]["phi"] == pytest.approx(0.4, abs=0.01)
  a, y = b.train.attributes, b.train.y
  for t in (0, 1):
    assert abs(data.yule_phi(data.cell_table(a[y == t, 0], a[y == t, 1]))) < 0.02
  same = data.faces_benchmark(accessory="tie+hat", phi=0.8, n_train=40, n_debias=20, n_test=16,
                              image_size=16)
  assert same.info["attribute_splits"]["wears_hat"]["train"]["phi"] == pytest.approx(0.8, abs=0.1)
  with pytest.raises(ValueError, match=r"phi: expected one phi or one per accessory \(2\)"):
    data.faces_benchmark(accessory="tie+hat", phi=(0.8, 0.4, 0.2))
