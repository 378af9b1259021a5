r"""Seed 001's phi sweep: every method's equalized odds next to RRF, HRF, ADR, DIF and RDDT with
LRP and with IG, per phi and accessory, and the paper's two research questions as numbers
(:func:`debiasjax.reproductions.sweep`; configuration ``experiments/configs/sweep.py``). Every
cell is kept as it finishes: a killed sweep resumes where it stopped.

  python -m experiments.sweep --config=experiments/configs/sweep.py:quick   # 2 phis, tie, 1 seed
  python -m experiments.sweep                                               # the full sweep

Writes ``sweep.md``, ``sweep.csv``, ``fig3_<attribution>_<accessory>.png``, ``results.json`` and
``report.md`` to ``--workdir`` (default ``runs/<time>-sweep``).
"""

from __future__ import annotations

from absl import flags

from experiments.cli import command_line, default_workdir, define_flags, log, run_cli

CONFIG = define_flags("sweep.py", "runs/<time>-sweep")
FLAGS = flags.FLAGS


def run():
  from debiasjax.reproductions import sweep
  workdir = FLAGS.workdir or default_workdir("sweep")
  sweep(CONFIG.value, workdir, command=command_line(), overwrite=FLAGS.overwrite, log=log)


if __name__ == "__main__":
  run_cli(run)
