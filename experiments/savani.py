r"""Reproduces Savani, White & Govindarajulu (2020), "Post-Hoc Methods for Debiasing Neural
Networks" (arXiv v1): Table 1, Figure 1 (plots 1-3) and Table 2 on a tabular dataset
(:func:`debiasjax.reproductions.savani`; configuration ``experiments/configs/savani.py``).

  python -m experiments.savani                                          # census, ~10 min
  python -m experiments.savani --config=experiments/configs/savani.py:adult \
      --config.data.data_dir=~/data/adult

Writes ``table1.md``, ``figure1.png``, ``figure1.md``, ``table2.md``, ``results.json`` and
``report.md`` to ``--workdir`` (default ``runs/<time>-savani-<data>``).
"""

from __future__ import annotations


from absl import flags

from experiments.cli import command_line, default_workdir, define_flags, log, run_cli

CONFIG = define_flags("savani.py", "runs/<time>-savani-<data>")
FLAGS = flags.FLAGS


def run():
  from debiasjax.reproductions import savani
  config = CONFIG.value
  workdir = FLAGS.workdir or default_workdir(f"savani-{config.data.name}")
  savani(config, workdir, command=command_line(), overwrite=FLAGS.overwrite, log=log)


if __name__ == "__main__":
  run_cli(run)
