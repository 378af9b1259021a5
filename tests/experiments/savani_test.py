"""The Savani et al. reproduction program, at toy settings: every table and figure is written."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_savani_reproduction_writes_tables_and_figure(tmp_path):
  run_dir = tmp_path / "savani"
  cmd = [sys.executable, "-m", "experiments.savani", "--seeds=2", "--epochs=2", "--candidates=4",
         "--population=4", "--generations=1", "--adversarial_epochs=1", "--n_rows=1500",
         "--biases=statistical_parity", f"--run_dir={run_dir}"]
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  for name in ("table1.md", "figure1.png", "figure1.md", "table2.md", "results.json", "report.md"):
    assert (run_dir / name).exists(), name
  results = json.loads((run_dir / "results.json").read_text())
  rows = results["results"]["statistical_parity"]
  assert sorted(rows) == sorted(["Default", "ROC", "EqOdds", "CalibEqOdds", "Random",
                                 "Adversarial", "LayerwiseOpt"])
  for method, per_seed in rows.items():
    assert len(per_seed) == 2
    for phi, bias, accuracy in per_seed:      # phi is the v1 objective of that bias and accuracy
      assert abs(phi - (0.75 * abs(bias) + 0.25 * (1 - accuracy))) < 1e-6
  # A second run into the same folder refuses to overwrite.
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert again.returncode == 2 and "overwrite" in again.stderr
