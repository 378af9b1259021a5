"""CelebA: prepare TFDS's celeb_a from tiny files in the original formats, read it, split it --
all without TensorFlow."""

import io
import os
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from debiasjax.data import celeba
from debiasjax.data.splits import cell_table

ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
         "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
         "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
         "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
         "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
         "Wearing_Necklace Wearing_Necktie Young").split()
N = 48


def write_raw_celeba(folder: str, n: int = N) -> dict:
  """The five original CelebA files for n images; returns the attribute table written."""
  rng = np.random.default_rng(0)
  names = [f"{i + 1:06d}.jpg" for i in range(n)]
  attrs = rng.choice([-1, 1], size=(n, len(ATTRS)))
  smile, tie = ATTRS.index("Smiling"), ATTRS.index("Wearing_Necktie")
  attrs[:, smile] = np.tile([1, -1, 1, -1], n // 4)      # every (tie, smile) cell is populated
  attrs[:, tie] = np.repeat([1, -1], n // 2)
  with zipfile.ZipFile(os.path.join(folder, "img_align_celeba.zip"), "w") as z:
    for i, name in enumerate(names):
      img = np.full((218, 178, 3), (i * 5) % 255, np.uint8)
      buf = io.BytesIO()
      Image.fromarray(img).save(buf, format="JPEG", quality=95)
      z.writestr(f"img_align_celeba/{name}", buf.getvalue())
  with open(os.path.join(folder, "list_attr_celeba.txt"), "w") as f:
    f.write(f"{n}\n" + " ".join(ATTRS) + "\n")
    f.writelines(f"{name} " + " ".join(f"{v:2d}" for v in row) + "\n" for name, row in zip(names, attrs))
  with open(os.path.join(folder, "list_eval_partition.txt"), "w") as f:
    f.writelines(f"{name} {i % 3}\n" for i, name in enumerate(names))
  marks = "lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x rightmouth_y"
  with open(os.path.join(folder, "list_landmarks_align_celeba.txt"), "w") as f:
    f.write(f"{n}\n{marks}\n")
    f.writelines(f"{name}    69  109  106  113   77  142   73  152  108  154\n" for name in names)
  with open(os.path.join(folder, "identity_CelebA.txt"), "w") as f:
    f.writelines(f"{name} {i + 1}\n" for i, name in enumerate(names))     # unique, to match records
  return {"names": names, "attrs": attrs}


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
  np.testing.assert_array_equal(notes["landmarks"][0], [[69, 109], [106, 113], [77, 142], [73, 152], [108, 154]])


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
