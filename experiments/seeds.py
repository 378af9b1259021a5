r"""The main job over several seeds: how much of its table is the seed.

Every seed draws new data, splits, initialisation and batch order, trains its own vanilla model
(cached like the main job's) and runs the same methods; the report gives each method's metrics
and changes against Vanilla as mean ± standard deviation over the seeds, and in how many seeds
each change is an improvement (balanced accuracy up; gaps, RRF and HRF down; ADR up) or RDDT
is significant. Every flag of the main job applies (``--helpfull``).

  python -m experiments.seeds                          # seeds 0-4 of the default faces job, ~20 min
  python -m experiments.seeds --seeds=0,1,2 --explain=none
  python -m experiments.seeds --data=census --methods=roc,eqodds,calib_eqodds

Writes ``seeds.md``, ``seeds.json`` (every seed's rows and the summary) and ``seeds.csv`` to
``--run_dir`` (default ``runs/<time>-seeds-<data>-<model>``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import sys
import time

from absl import app, flags

from experiments import main as job

flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds to run (at least 2, distinct).")
FLAGS = flags.FLAGS

OUTPUTS = ("seeds.md", "seeds.json", "seeds.csv")
TABLE_KEYS = (("balanced_accuracy", "Bal.acc"), ("demographic_parity", "DP"),
              ("equalized_odds", "EO"), ("equal_opportunity", "EOpp"))
SALIENCY_KEYS = (("rrf", "RRF"), ("hrf", "HRF"), ("adr", "ADR"), ("rddt", "RDDT significant"))


def parse_seeds(values) -> list[int]:
  try:
    seeds = [int(v) for v in values]
  except ValueError:
    raise ValueError(f"seeds: expected integers, got {','.join(values)!r}") from None
  if len(seeds) < 2 or len(set(seeds)) != len(seeds):
    raise ValueError(f"seeds: expected at least 2 distinct seeds, got {seeds}")
  return seeds


def seed_rows(config: dict) -> list[dict]:
  """One seed of the main job: its result rows, with the saliency metrics merged in."""
  bench, model, variables, _, result, _ = job.train_and_debias(config)
  rows = [dict(r) for r in result.rows]
  if config["explain"] != "none":
    _, _, summaries = job.saliency_summaries(config, bench, model, variables, result.rows,
                                             result.states)
    for r in rows:
      r.update({k: summaries[r["method"]][k] for k, _ in SALIENCY_KEYS
                if k in summaries[r["method"]]})
  return rows


def seeds_csv(seeds: list[int], runs: list[list[dict]], keys) -> str:
  """One line per (seed, method) with the summarised metrics."""
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(["seed", "method", *keys])
  for seed, rows in zip(seeds, runs):
    for r in rows:
      writer.writerow([seed, r["method"], *(r.get(k) for k in keys)])
  return buf.getvalue()


def run():
  from debiasjax import report

  seeds = parse_seeds(FLAGS.seeds)
  config = {k: v for k, v in job.resolve_config().items() if k != "seed"}   # --seeds replaces it
  command = "python -m experiments.seeds " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  stamp = time.strftime("%Y%m%d-%H%M%S")
  run_dir = FLAGS.run_dir or os.path.join("runs",
                                          f"{stamp}-seeds-{config['data']}-{config['model']}")
  report.check_run_dir(run_dir, overwrite=FLAGS.overwrite, outputs=OUTPUTS)
  columns = TABLE_KEYS + (SALIENCY_KEYS if config["explain"] != "none" else ())
  keys, headers = [k for k, _ in columns], [h for _, h in columns]
  runs = []
  for seed in seeds:
    job.log(f"\n== seed {seed} ==")
    runs.append(seed_rows({**config, "seed": seed}))
    job.log(report.format_table(runs[-1]))
  summary = report.seed_summary(runs, keys)
  table = report.seed_table(summary, keys, headers)
  job.log(f"\nOver seeds {', '.join(map(str, seeds))} (mean ± sd; changes against Vanilla):\n")
  job.log(table)
  body = "\n".join([
      "# debiasjax seed sweep", "", f"Command: `{command}`", "",
      f"Seeds {', '.join(map(str, seeds))}: each draws its own data, splits, initialisation and "
      "batch order and trains its own vanilla model. Cells: mean ± sample standard deviation over "
      "the seeds; for the methods, in brackets, the change against Vanilla (mean ± sd) and in "
      "how many seeds it is an improvement (k/n: balanced accuracy up; DP, EO, EOpp, RRF, HRF "
      "down; ADR > 0, relevance left the region). RDDT: seeds in which relevance in the region "
      "fell significantly (one-sided t-test, p < 0.01).", "",
      table, "", "## Configuration", "", "```json",
      json.dumps(config, indent=2, sort_keys=True), "```", ""])
  report.atomic_write(os.path.join(run_dir, "seeds.md"), body)
  report.atomic_write(os.path.join(run_dir, "seeds.json"), json.dumps(
      {"command": command, "config": config, "seeds": seeds, "summary": summary,
       "runs": dict(zip(map(str, seeds), runs))}, indent=2, default=str))
  report.atomic_write(os.path.join(run_dir, "seeds.csv"), seeds_csv(seeds, runs, keys))
  job.log(f"\nwrote {', '.join(OUTPUTS)} to {run_dir}")


if __name__ == "__main__":
  app.run(job.cli(run))
