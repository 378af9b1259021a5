"""The README quotes the main job's table exactly as the recorded run (docs/results/main.json)
renders it with the job's own table functions."""

import json

from experiments import readme_tables


def test_readme_main_table_is_the_recorded_run():
  with open(readme_tables.README) as f:
    readme = f.read()
  with open(readme_tables.RECORD) as f:
    record = json.load(f)
  assert readme_tables.readme_block(readme) == readme_tables.render(record), (
      "README.md's main-job table differs from docs/results/main.json: run "
      "python -m experiments.readme_tables")
  assert record["command"].startswith("bash scripts/main.sh")
  assert record["config"]["seed"] == 0 and record["config"]["data"]["name"] == "faces"
