"""The Savani et al. reproduction, at toy settings: every table and figure is written."""

import json

import pytest

from debiasjax.reproductions import savani
from experiments.configs.savani import get_config


def test_savani_reproduction_writes_tables_and_figure(tmp_path):
  run_dir = tmp_path / "savani"
  savani(get_config("tiny"), str(run_dir))
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
  with pytest.raises(FileExistsError, match="overwrite"):
    savani(get_config("tiny"), str(run_dir))
