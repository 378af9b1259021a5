r"""Does the saliency evaluation see the shortcut? Vanilla models at phi = 0 (the accessory says
nothing of the label) and phi = 0.8 (the main job's) per seed; the accessory box's RRF and HRF
under each attribution must separate them (:func:`debiasjax.reproductions.saliency_control`;
configuration ``experiments/configs/saliency_control.py``).

  python -m experiments.saliency_control                   # 3 seeds x 2 phi, ~15 min
  python -m experiments.saliency_control --config.target=positive

Writes ``control.md``, ``maps.png``, ``results.json`` and ``report.md`` to ``--workdir``
(default ``runs/<time>-saliency-control``).
"""

from __future__ import annotations

from absl import flags

from experiments.cli import command_line, default_workdir, define_flags, log, run_cli

CONFIG = define_flags("saliency_control.py", "runs/<time>-saliency-control")
FLAGS = flags.FLAGS


def run():
  from debiasjax.reproductions import saliency_control
  workdir = FLAGS.workdir or default_workdir("saliency-control")
  saliency_control(CONFIG.value, workdir, command=command_line(), overwrite=FLAGS.overwrite,
                   log=log)


if __name__ == "__main__":
  run_cli(run)
