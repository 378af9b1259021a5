r"""Builds TFDS's celeb_a dataset (ArrayRecord) from the original CelebA files, without TensorFlow.

  python -m experiments.prepare_celeba --manual_dir=~/celeba_raw --data_dir=~/tfds

--manual_dir holds img_align_celeba.zip, list_attr_celeba.txt, list_eval_partition.txt,
list_landmarks_align_celeba.txt and identity_CelebA.txt. Then run the main job with
--data=celeba --data_dir=~/tfds.
"""

from absl import app, flags

flags.DEFINE_string("manual_dir", None, "Folder with the five original CelebA files.",
                    required=True)
flags.DEFINE_string("data_dir", None, "TFDS data directory to write into.", required=True)
flags.DEFINE_bool("verify_checksums", True, "Check the files against TFDS's sha256 sums.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  from debiasjax.data import celeba
  path = celeba.prepare(FLAGS.manual_dir, FLAGS.data_dir, verify_checksums=FLAGS.verify_checksums)
  print(f"prepared {path}")


if __name__ == "__main__":
  app.run(main)
