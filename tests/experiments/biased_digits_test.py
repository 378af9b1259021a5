"""The Biased-MNIST reproduction at toy settings: every output written, the table's rows where
they belong, the per-cell accuracies and win counts by hand, bad settings refused."""

import json

import numpy as np
import pytest

from debiasjax.reproductions import biased_digits
from debiasjax.reproductions.biased_mnist import METHODS, cell_accuracy, check_config, wins
from experiments.configs.biased_digits import get_config


def test_reproduction_writes_every_output_with_each_method_and_rho(tmp_path):
  config = get_config("tiny")
  logs = []
  out = biased_digits(config, str(tmp_path / "run"), log=logs.append)
  for name in ("table.md", "accuracy.png", "cells.png", "results.json", "report.md"):
    assert (tmp_path / "run" / name).exists(), name
  record = json.loads((tmp_path / "run" / "results.json").read_text())
  assert list(record["results"]) == ["0.95", "0.99"]
  for rho in (0.95, 0.99):
    assert list(out[rho]) == list(METHODS)
    for method, r in out[rho].items():
      assert len(r["unbiased"]) == len(r["biased"]) == 2, method
      assert np.asarray(r["cells"]).shape == (2, 10, 10)
      # the unbiased test's accuracy is the cells' mean weighted by their counts
      assert all(0 <= a <= 1 for a in r["unbiased"] + r["biased"])
    # the mined set and the error set hold the conflicting samples they claim to
    assert len(out[rho]["online"]["precision"]) == 2 and len(out[rho]["jtt"]["error_set"]) == 2
  # every method is trained on the same data: vanilla learns the colour (biased test ~ 1)
  assert np.mean(out[0.99]["vanilla"]["biased"]) > 0.9
  table = (tmp_path / "run" / "table.md").read_text()
  assert "| Voronoi mining (no labels) |" in table and "| Voronoi mining | 58.7 ± 21.8" in table
  report = (tmp_path / "run" / "report.md").read_text()
  assert "Seeds in which the method beats vanilla" in report and "P " in report
  with pytest.raises(FileExistsError, match="overwrite"):
    biased_digits(config, str(tmp_path / "run"))


def test_cell_accuracy_and_wins_by_hand():
  y = np.array([0, 0, 1, 1, 1])
  colour = np.array([0, 1, 1, 1, 0])
  pred = np.array([[0, 1, 1, 0, 1], [0, 0, 0, 0, 0]])
  cells = cell_accuracy(y, colour, pred)
  assert cells.shape == (2, 10, 10)
  assert cells[0, 0, 0] == 1 and cells[0, 0, 1] == 0 and cells[0, 1, 1] == 0.5
  assert cells[0, 1, 0] == 1 and np.isnan(cells[0, 5, 5])
  assert cells[1, 0, 1] == 1 and cells[1, 1, 1] == 0
  results = {"vanilla": {"unbiased": [0.2, 0.5, 0.4]}, "online": {"unbiased": [0.3, 0.5, 0.6]}}
  assert wins(results, "online") == 2                  # a tie is not a win


@pytest.mark.parametrize("field, value, message", [
    ("rhos", "0.99,1.0", "rhos: expected biases in \\(0, 1\\)"),
    ("methods", "vanilla,ebm", "methods: expected some of"),
    ("seeds", 0, "seeds: expected at least 1"),
])
def test_bad_settings_are_refused(field, value, message):
  config = get_config("tiny")
  config[field] = value
  with pytest.raises(ValueError, match=message):
    check_config(config)
  config = get_config("tiny")
  config.model.name = "vit"
  with pytest.raises(ValueError, match="model.name: expected 'mlp' or 'cnn'"):
    check_config(config)
