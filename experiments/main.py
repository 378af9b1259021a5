r"""The main job: train (or reuse) a vanilla model, debias it, explain it, report.

  python -m experiments.main                                  # the embedded faces, ~2 min
  python -m experiments.main --config=experiments/configs/main.py:census
  python -m experiments.main --config.data.phi=0.9 --config.methods=thropt_eo,leace

Configuration: ``experiments/configs/main.py`` (every field can be overridden with
``--config.<field>=<value>``). Results go to ``--workdir`` (default ``runs/<time>-<data>-<model>``):
``results.json``, ``results.csv``, ``report.md``, ``pareto.png`` and, for images,
``saliency.png`` and ``heatmaps.png``. The trained model is cached under
``config.cache_dir``, so a second run only evaluates.
"""

from __future__ import annotations


from absl import flags

from experiments.cli import command_line, default_workdir, define_flags, log, run_cli

CONFIG = define_flags("main.py", "runs/<time>-<data>-<model>")
FLAGS = flags.FLAGS


def run():
  from debiasjax.pipeline import train_and_evaluate
  config = CONFIG.value
  workdir = FLAGS.workdir or default_workdir(f"{config.data.name}-{config.model.name}")
  train_and_evaluate(config, workdir, command=command_line(), overwrite=FLAGS.overwrite, log=log)


if __name__ == "__main__":
  run_cli(run)
