"""CelebA: prepare TFDS's celeb_a from tiny files in the original formats, read it, split it --
all without TensorFlow."""

import sys

import numpy as np
import pytest

from debiasjax.data import celeba
from debiasjax.data.splits import cell_table
from tests.fakes import ATTRS, N, write_raw_celeba


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  raw = tmp_path_factory.mktemp("raw")
  written = write_raw_celeba(str(raw))
  tfds_dir = tmp_path_factory.mktemp("tfds")
  celeba.prepare(str(raw), str(tfds_dir), verify_checksums=False)
  return str(tfds_dir), written


def test_prepare_and_read_without_tensorflow(prepared):
  data_dir, written = prepared
  assert "tensorflow" not in sys.modules
  notes = celeba.read_annotations(data_dir)
  assert notes["names"] == sorted(ATTRS) and notes["attributes"].shape == (N, 40)
  # TFDS shuffles records within a split; the (unique) identity says which file each one is.
  assert sorted(notes["identity"]) == list(range(1, N + 1))
  for row, ident, (split, _) in zip(notes["attributes"], notes["identity"], notes["records"]):
    assert split == ("train", "validation", "test")[(ident - 1) % 3]
    truth = written["attrs"][ident - 1] > 0
    np.testing.assert_array_equal(row, truth[np.argsort(ATTRS)])
  np.testing.assert_array_equal(notes["landmarks"][0], [[69, 109], [106, 113], [77, 142], [73, 152],
                                                        [108, 154]])


def test_celeba_benchmark_protocol(prepared):
  data_dir, _ = prepared
  b = celeba.celeba_benchmark(data_dir, target="Smiling", protected="Wearing_Necktie", phi=0.5,
                              n_test=8, n_train=12, n_debias=8, image_size=32, seed=0)
  assert b.train.x.shape == (12, 32, 32, 3) and b.test.x.dtype == np.float32
  np.testing.assert_array_equal(cell_table(b.test.y, b.test.group), [[2, 2], [2, 2]])
  assert abs(b.info["splits"]["train"]["phi"] - 0.5) < 0.2
  assert b.train.roi.shape == (12, 4) and b.info["protected"] == "Wearing_Necktie"
  assert "tensorflow" not in sys.modules


def test_landmark_roi_is_below_the_mouth_or_above_the_eyes():
  lm = np.array([[[69, 109], [106, 113], [77, 142], [73, 152], [108, 154]]], np.float32)
  tie = celeba.landmark_roi(lm, "tie", 178)[0]
  hat = celeba.landmark_roi(lm, "hat", 178)[0]
  mouth_y, eyes_y = 153 - 20, 111 - 20           # after the 20-row centre crop
  assert tie[0] > mouth_y and tie[2] == 178 and tie[1] < 73 < 108 < tie[3]
  assert hat[0] == 0 and hat[2] < eyes_y
  small = celeba.landmark_roi(lm, "tie", 64)[0]
  assert abs(small[0] - tie[0] * 64 / 178) <= 1


def test_unknown_attribute_and_missing_files(prepared, tmp_path):
  data_dir, _ = prepared
  with pytest.raises(ValueError, match="protected: unknown CelebA attribute 'Wearing_Tie'"):
    celeba.celeba_benchmark(data_dir, protected="Wearing_Tie", n_test=8)
  with pytest.raises(FileNotFoundError, match=r"img_align_celeba\.zip.*original CelebA files"):
    celeba.prepare(str(tmp_path), str(tmp_path / "out"))
  with pytest.raises(FileNotFoundError, match="prepare CelebA first"):
    celeba.celeba_benchmark(str(tmp_path), n_test=8)


def test_checksums_are_verified(tmp_path):
  write_raw_celeba(str(tmp_path), n=4)
  with pytest.raises(ValueError, match="differs from the original CelebA file"):
    celeba.prepare(str(tmp_path), str(tmp_path / "out"))


def test_celeba_conjunction(prepared):
  """``Male+Young``: the group is the conjunction; ``attributes`` keeps both."""
  data_dir, _ = prepared
  kwargs = dict(target="Smiling", phi=0.0, n_test=4, n_train=4, n_debias=4, image_size=16)
  b = celeba.celeba_benchmark(data_dir, protected="Male+Young", **kwargs)
  np.testing.assert_array_equal(b.test.group, b.test.attributes.all(1))
  assert b.info["attributes"] == ["Male", "Young"] and b.test.roi is None
  two = celeba.celeba_benchmark(data_dir, protected="Wearing_Necktie+Wearing_Hat", **kwargs)
  assert two.test.roi.shape == (4, 2, 4)
