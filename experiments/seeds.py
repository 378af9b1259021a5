r"""The main job over several seeds: how much of its table is the seed.

Every seed draws new data, splits, initialisation and batch order, trains its own vanilla model
(cached like the main job's) and runs the same methods; the report gives each method's metrics
and changes against Vanilla as mean ± standard deviation over the seeds, and in how many seeds
each change is an improvement (balanced accuracy up; gaps, RRF and HRF down; ADR up) or RDDT
is significant. The configuration is the main job's (``experiments/configs/main.py``).

  python -m experiments.seeds                          # seeds 0-4 of the default faces job, ~15 min
  python -m experiments.seeds --seeds=0,1,2 --config.explain=none
  python -m experiments.seeds --config=experiments/configs/main.py:census \
      --config.methods=roc,eqodds,calib_eqodds

Writes ``seeds.md``, ``seeds.json`` (every seed's rows and the summary) and ``seeds.csv`` to
``--workdir`` (default ``runs/<time>-seeds-<data>-<model>``).
"""

from __future__ import annotations

from absl import flags

from experiments import main as job
from experiments.cli import command_line, default_workdir, log, run_cli

flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds to run (at least 2, distinct).")
FLAGS = flags.FLAGS


def run():
  from debiasjax.pipeline import run_seeds
  config = job.CONFIG.value
  workdir = FLAGS.workdir or default_workdir(f"seeds-{config.data.name}-{config.model.name}")
  run_seeds(config, FLAGS.seeds, workdir, command=command_line(), overwrite=FLAGS.overwrite,
            log=log)


if __name__ == "__main__":
  run_cli(run)
