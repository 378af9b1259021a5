r"""The Biased-MNIST table (Nahon et al. 2023, Table 1) on the procedural digits: unbiased-test
accuracy per training bias rho for vanilla, LfF, JTT, IRENE and the unsupervised Voronoi-cell
method, seeds stacked (:func:`debiasjax.reproductions.biased_digits`; configuration
``experiments/configs/biased_digits.py``).

  python -m experiments.biased_digits                      # MLP on 20k digits, ~15 min on 2 cores
  python -m experiments.biased_digits --config=experiments/configs/biased_digits.py:full  # GPU
  python -m experiments.biased_digits --config.rhos=0.99 --config.methods=vanilla,online

Writes ``table.md``, ``accuracy.png``, ``cells.png``, ``results.json`` and ``report.md`` to
``--workdir`` (default ``runs/<time>-biased-digits-<model>``).
"""

from __future__ import annotations

from absl import flags

from experiments.cli import command_line, default_workdir, define_flags, log, run_cli

CONFIG = define_flags("biased_digits.py", "runs/<time>-biased-digits-<model>")
FLAGS = flags.FLAGS


def run():
  from debiasjax.reproductions import biased_digits
  config = CONFIG.value
  workdir = FLAGS.workdir or default_workdir(f"biased-digits-{config.model.name}")
  biased_digits(config, workdir, command=command_line(), overwrite=FLAGS.overwrite, log=log)


if __name__ == "__main__":
  run_cli(run)
