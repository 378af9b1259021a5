r"""Reproduces Zhang et al. (2023), "Model Debiasing via Gradient-based Explanation on
Representation" (DVGE): trade-off curves of DP and equal opportunity against accuracy over the
η grid for both encoders (FactorVAE: DVGE-D; plain VAE: DVGE-N) against a gradient-reversal
encoder and the "sensitive dimensions removed" baseline, and the ablation tables (the best
accuracy of sensitive probes trained on perturbed latents per η1)
(:func:`debiasjax.reproductions.dvge`; configuration ``experiments/configs/dvge.py``).

  python -m experiments.dvge                                            # faces (tie)
  python -m experiments.dvge --config=experiments/configs/dvge.py:census

Writes ``tradeoff.png``, ``tradeoff.csv``, ``probes.png``, ``results.json`` and ``report.md``
to ``--workdir`` (default ``runs/<time>-dvge-<data>``).
"""

from __future__ import annotations

from absl import flags

from experiments.cli import command_line, default_workdir, define_flags, log, run_cli

CONFIG = define_flags("dvge.py", "runs/<time>-dvge-<data>")
FLAGS = flags.FLAGS


def run():
  from debiasjax.reproductions import dvge
  config = CONFIG.value
  workdir = FLAGS.workdir or default_workdir(f"dvge-{config.data.name}")
  dvge(config, workdir, command=command_line(), overwrite=FLAGS.overwrite, log=log)


if __name__ == "__main__":
  run_cli(run)
