"""CelebA (Liu et al., 2015) from files the user already has, without TensorFlow.

CelebA cannot be downloaded here (its Google-Drive links are also often over quota). Place the
five original files in one folder -- ``img_align_celeba.zip``, ``list_attr_celeba.txt``,
``list_eval_partition.txt``, ``list_landmarks_align_celeba.txt``, ``identity_CelebA.txt`` --
then:

1. :func:`prepare` builds TFDS's ``celeb_a`` 2.1.0 dataset (ArrayRecord files, the same features
   as ``tfds.builder("celeb_a")``) in ``data_dir``. TFDS's own builder needs TensorFlow to open
   the zip; this one reads the originals with the standard library, so nothing here imports
   TensorFlow. A ``celeb_a`` folder prepared by TFDS itself (``tfds.data_source("celeb_a")``
   after a TensorFlow-based build with ``file_format="array_record"``) is read the same way.
2. :func:`celeba_benchmark` reads the attributes, draws the train/debias/test splits at the
   requested Yule's phi, and decodes only the chosen images (centre-cropped to 178x178 and
   resized). The protected region (necktie below the chin, hat above the eyes) is derived from
   each image's landmarks.

Example:
  prepare("~/celeba_raw", "~/tfds")                                        # once
  bench = celeba_benchmark("~/tfds", target="Smiling", protected="Wearing_Necktie", phi=0.8,
                           n_train=6000, n_debias=4000, n_test=4000)
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Mapping
from typing import Optional, Sequence

import numpy as np

from debiasjax.data.dataset import Benchmark, Split, conjoined, conjunction
from debiasjax.data.splits import make_splits

RAW_FILES = ("img_align_celeba.zip", "list_attr_celeba.txt", "list_eval_partition.txt",
             "list_landmarks_align_celeba.txt", "identity_CelebA.txt")
SOURCE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive / Baidu links there)"
ALIGNED_SHAPE = (218, 178)
_CROP_TOP = (ALIGNED_SHAPE[0] - ALIGNED_SHAPE[1]) // 2      # 20: centre crop to 178 x 178
ROI_ATTRIBUTES = {"Wearing_Necktie": "tie", "Wearing_Hat": "hat"}


def _tfds():
  import tensorflow_datasets as tfds  # imported lazily: only CelebA needs it
  return tfds


class _ZipImages(Mapping):
  """File name -> JPEG bytes of the aligned images, read lazily from the original zip."""

  def __init__(self, path: str):
    self._zip = zipfile.ZipFile(path)
    self._members = {os.path.basename(n): n for n in self._zip.namelist() if n.endswith(".jpg")}

  def __getitem__(self, name):
    return self._zip.read(self._members[name])

  def __iter__(self):
    return iter(self._members)

  def __len__(self):
    return len(self._members)


def _check_raw(manual_dir: str) -> dict:
  paths = {name: os.path.join(manual_dir, name) for name in RAW_FILES}
  missing = [p for p in paths.values() if not os.path.isfile(p)]
  if missing:
    raise FileNotFoundError(f"CelebA file(s) not found: {', '.join(missing)}. They are the "
                            f"original CelebA files from {SOURCE}; nothing is downloaded.")
  return paths


def _verify(paths: dict) -> None:
  """Compares the files with the sha256 sums TFDS registers for CelebA."""
  import tensorflow_datasets.datasets.celeb_a as pkg
  table = os.path.join(os.path.dirname(pkg.__file__), "checksums.tsv")
  expected = {}
  with open(table) as f:
    for line in f:
      parts = line.split("\t")
      if len(parts) >= 4:
        expected[parts[3].strip()] = parts[2].strip()
  for name, path in paths.items():
    digest = hashlib.sha256()
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    if name in expected and digest.hexdigest() != expected[name]:
      raise ValueError(f"{path}: sha256 {digest.hexdigest()} differs from the original CelebA "
                       f"file's {expected[name]}; pass verify_checksums=False to use it anyway")


def prepare(manual_dir: str, data_dir: str, *, verify_checksums: bool = True) -> str:
  """Builds TFDS ``celeb_a`` 2.1.0 (ArrayRecord) in ``data_dir`` from the original files.

  Args:
    manual_dir: folder with the five original CelebA files (see the module docstring).
    data_dir: TFDS data directory to write into (``data_dir/celeb_a/2.1.0``).
    verify_checksums: check the files against TFDS's registered sha256 sums first.

  Returns:
    The dataset directory. An already prepared dataset is left as it is.
  """
  tfds = _tfds()
  from tensorflow_datasets.datasets.celeb_a import celeb_a_dataset_builder as tfds_celeba
  paths = _check_raw(os.path.expanduser(manual_dir))
  if verify_checksums:
    _verify(paths)

  class LocalCelebA(tfds_celeba.Builder, skip_registration=True):
    """TFDS's CelebA builder reading the original files from a local folder."""
    name = "celeb_a"

    @classmethod
    def _get_pkg_dir_path(cls):
      return tfds_celeba.Builder._get_pkg_dir_path()

    def _split_generators(self, dl_manager):
      del dl_manager
      dirs = {"list_eval_partition": paths["list_eval_partition.txt"],
              "list_attr_celeba": paths["list_attr_celeba.txt"],
              "landmarks_celeba": paths["list_landmarks_align_celeba.txt"],
              "identity_celeba": paths["identity_CelebA.txt"]}
      images = _ZipImages(paths["img_align_celeba.zip"])
      splits = (("train", 0), ("validation", 1), ("test", 2))
      return {name: self._generate_examples(file_id, dirs, images) for name, file_id in splits}

  builder = LocalCelebA(data_dir=os.path.expanduser(data_dir), file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return str(builder.data_dir)


def _sources(data_dir: str, splits: Sequence[str], skip_images: bool):
  tfds = _tfds()
  data_dir = os.path.expanduser(data_dir)
  if not os.path.isdir(os.path.join(data_dir, "celeb_a")):
    raise FileNotFoundError(f"{os.path.join(data_dir, 'celeb_a')} not found: prepare CelebA "
                            "first with debiasjax.data.celeba.prepare(manual_dir, data_dir) "
                            "(or experiments/prepare_celeba.py)")
  decoders = {"image": tfds.decode.SkipDecoding()} if skip_images else None
  ds = tfds.data_source("celeb_a", data_dir=data_dir, download=False, decoders=decoders)
  return [ds[s] for s in splits]


def read_annotations(data_dir: str, *, splits: Sequence[str] = ("train", "validation", "test"),
                     batch: int = 4096) -> dict:
  """Attributes (bool [N, 40] and names), landmarks ([N, 5, 2] as (x, y)) and identity of
  every record, plus each record's split name and index, without decoding any image."""
  attrs, marks, where, identity = [], [], [], []
  names = None
  for split, source in zip(splits, _sources(data_dir, splits, skip_images=True)):
    for start in range(0, len(source), batch):
      for i, rec in enumerate(source.__getitems__(range(start, min(len(source), start + batch)))):
        names = names or sorted(rec["attributes"])
        attrs.append([bool(rec["attributes"][k]) for k in names])
        lm = rec["landmarks"]
        marks.append([[lm[f"{p}_x"], lm[f"{p}_y"]]
                      for p in ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")])
        where.append((split, start + i))
        identity.append(int(rec["identity"]["Identity_No"]))
  return {"attributes": np.asarray(attrs, bool), "names": names,
          "landmarks": np.asarray(marks, np.float32), "identity": np.asarray(identity, np.int64),
          "records": where}


def _resize(jpeg: bytes, image_size: int) -> np.ndarray:
  from PIL import Image
  with Image.open(io.BytesIO(jpeg)) as im:
    im = im.convert("RGB").crop((0, _CROP_TOP, ALIGNED_SHAPE[1], _CROP_TOP + ALIGNED_SHAPE[1]))
    return np.asarray(im.resize((image_size, image_size), Image.BILINEAR), np.float32) / 255.0


def landmark_roi(landmarks: np.ndarray, accessory: str, image_size: int) -> np.ndarray:
  """ROI boxes (y0, x0, y1, x1) in the cropped, resized image from aligned-image landmarks.

  ``"tie"``: below the chin (from 0.8 eye-to-mouth distances under the mouth to the bottom
  edge, 1.4 eye distances wide); ``"hat"``: above the brows (top edge to 0.5 eye-to-mouth
  distances above the eyes, 3 eye distances wide).
  """
  if accessory not in ("tie", "hat"):
    raise ValueError(f"accessory: expected 'tie' or 'hat', got {accessory!r}")
  lm = np.asarray(landmarks, np.float64).copy()
  lm[..., 1] -= _CROP_TOP
  lm *= image_size / ALIGNED_SHAPE[1]
  eyes, mouth = lm[:, :2].mean(1), lm[:, 3:].mean(1)
  eye_gap = np.linalg.norm(lm[:, 0] - lm[:, 1], axis=-1)
  face = mouth[:, 1] - eyes[:, 1]
  if accessory == "tie":
    y0, y1 = mouth[:, 1] + 0.8 * face, np.full_like(face, image_size)
    x0, x1 = mouth[:, 0] - 0.7 * eye_gap, mouth[:, 0] + 0.7 * eye_gap
  else:
    y0, y1 = np.zeros_like(face), eyes[:, 1] - 0.5 * face
    x0, x1 = eyes[:, 0] - 1.5 * eye_gap, eyes[:, 0] + 1.5 * eye_gap
  box = np.stack([np.floor(y0), np.floor(x0), np.ceil(y1), np.ceil(x1)], -1)
  return np.clip(box, 0, image_size).astype(np.int32)


def load_images(data_dir: str, records: Sequence[tuple], *, image_size: int = 64) -> np.ndarray:
  """Decodes the given ``(split, index)`` records to float32 [N, S, S, 3] in [0, 1]."""
  images = np.empty((len(records), image_size, image_size, 3), np.float32)
  wanted = sorted({s for s, _ in records})
  sources = dict(zip(wanted, _sources(data_dir, wanted, skip_images=True)))
  for k, (split, i) in enumerate(records):
    images[k] = _resize(sources[split][int(i)]["image"], image_size)
  return images


def celeba_benchmark(data_dir: str, *, target: str = "Smiling",
                     protected: str = "Wearing_Necktie", phi: float = 0.8, n_test: int = 2000,
                     n_train: Optional[int] = None, n_debias: Optional[int] = None,
                     image_size: int = 64, seed: int = 0,
                     splits: Sequence[str] = ("train", "validation", "test"),
                     debias_phi: Optional[float] = None) -> Benchmark:
  """CelebA splits in the seeds' protocol: train/debias at Yule's ``phi`` (debias at
  ``debias_phi`` if given), balanced test.

  All records of ``splits`` form the pool; see :func:`debiasjax.data.splits.make_splits`.
  ``roi`` boxes are derived from landmarks for ``Wearing_Necktie`` and ``Wearing_Hat``.
  ``protected`` may be a conjunction such as seed 003's ``"Male+Young"``: the group is 1 where
  every attribute is (``attributes`` keeps each; ``roi`` is [N, K, 4] when each has a box).
  """
  notes = read_annotations(data_dir, splits=splits)
  names = notes["names"]
  if target not in names:
    raise ValueError(f"target: unknown CelebA attribute {target!r}; expected one of {names}")
  for part in str(protected).split("+"):
    if part.strip() not in names:
      raise ValueError(f"protected: unknown CelebA attribute {part.strip()!r}; expected one of "
                       f"{names} or a conjunction of them such as 'Male+Young'")
  parts = conjunction(protected, names)
  t = notes["attributes"][:, names.index(target)].astype(np.int32)
  a, each = conjoined(notes["attributes"][:, [names.index(p) for p in parts]])
  chosen = make_splits(t, a, phi=phi, n_test=n_test, n_train=n_train, n_debias=n_debias, seed=seed,
                       debias_phi=debias_phi)
  out = {}
  for name in ("train", "debias", "test"):
    idx = getattr(chosen, name)
    roi = None
    if all(p in ROI_ATTRIBUTES for p in parts):
      boxes = [landmark_roi(notes["landmarks"][idx], ROI_ATTRIBUTES[p], image_size) for p in parts]
      roi = boxes[0] if len(parts) == 1 else np.stack(boxes, 1)
    x = load_images(data_dir, [notes["records"][i] for i in idx], image_size=image_size)
    out[name] = Split(x, t[idx], a[idx], roi, None if each is None else each[idx])
  info = {"name": "celeba", "target": target, "protected": protected,
          "groups": [f"not {protected}", protected], "privileged": 1 if phi >= 0 else 0,
          "image_size": image_size, "seed": seed, "splits": chosen.report,
          **({"attributes": parts} if len(parts) > 1 else {})}
  return Benchmark(out["train"], out["debias"], out["test"], info)
