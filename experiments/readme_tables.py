r"""The README's main-job table, regenerated from a run of the main job.

  python -m experiments.readme_tables                 # runs the main job (~2 min), rewrites both
  python -m experiments.readme_tables --results=runs/<run>/results.json   # from a finished run
  python -m experiments.readme_tables --check         # exit 1 when the README is not the record

The run's ``results.json`` is kept as ``docs/results/main.json`` (with its provenance: versions,
commit, machine), and the README block between the ``main-job-table`` markers is rendered from
it by the same functions that print the job's tables, so the README quotes exactly what the
record holds (``tests/experiments/readme_test.py`` fails otherwise).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

from absl import flags

from experiments.cli import log, run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
RECORD = os.path.join(ROOT, "docs", "results", "main.json")
BEGIN = "<!-- main-job-table: python -m experiments.readme_tables -->"
END = "<!-- end main-job-table -->"

flags.DEFINE_string("results", None, "A finished main-job run's results.json (default: run the "
                    "main job with its default configuration).")
flags.DEFINE_bool("check", False, "Only compare the README with docs/results/main.json.")
FLAGS = flags.FLAGS


def render(payload: dict) -> str:
  """The README block of a main-job ``results.json``: the terminal table and, for images, the
  saliency table, as the job prints them."""
  from debiasjax import report
  from debiasjax.pipeline import saliency_table
  table = "\n".join(line.rstrip() for line in report.format_table(payload["results"]).splitlines())
  parts = [table]
  if payload.get("saliency"):
    parts.append(saliency_table(payload["saliency"]))
  return "```\n" + "\n\n".join(parts) + "\n```"


def readme_block(text: str) -> str:
  """The README's block between the markers (without them)."""
  if BEGIN not in text or END not in text:
    raise ValueError(f"README.md: the markers {BEGIN!r} ... {END!r} are missing")
  return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")


def run():
  with open(README) as f:
    text = f.read()
  if FLAGS.check:
    with open(RECORD) as f:
      want = render(json.load(f))
    if readme_block(text) != want:
      print(f"error: README.md's main-job table is not the one {RECORD} gives; run python -m "
            "experiments.readme_tables", file=sys.stderr)
      sys.exit(1)
    log("README.md's main-job table is the record's")
    return
  source = FLAGS.results
  if source is None:
    from debiasjax.pipeline import train_and_evaluate
    from experiments.configs.main import get_config
    workdir = tempfile.mkdtemp(prefix="readme-")
    train_and_evaluate(get_config(), workdir, command="bash scripts/main.sh", log=log)
    source = os.path.join(workdir, "results.json")
  with open(source) as f:
    payload = json.load(f)
  block = render(payload)
  from debiasjax.report import atomic_write
  os.makedirs(os.path.dirname(RECORD), exist_ok=True)
  shutil.copyfile(source, RECORD + ".tmp")
  os.replace(RECORD + ".tmp", RECORD)
  head, rest = text.split(BEGIN, 1)
  atomic_write(README, head + BEGIN + "\n" + block + "\n" + END + rest.split(END, 1)[1])
  log(f"README.md's main-job table rewritten from {source} (kept as {RECORD})")
  if FLAGS.results is None:
    shutil.rmtree(os.path.dirname(source), ignore_errors=True)     # the temporary run


if __name__ == "__main__":
  run_cli(run)
