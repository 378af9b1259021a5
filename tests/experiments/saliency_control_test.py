"""The saliency control at toy settings: outputs, per-seed rows, the border profile by hand and
bad attributions refused."""

import json

import numpy as np
import pytest

from debiasjax.reproductions import saliency_control
from debiasjax.reproductions.saliency_control import attribution, border_profile
from experiments.configs.saliency_control import get_config


def test_control_writes_every_output_with_a_row_per_attribution(tmp_path):
  config = get_config("tiny")
  config.vanilla.cache_dir = str(tmp_path / "cache")
  config.n_explain = 4
  config.attributions = "lrp:epsilon_plus_flat"    # the cheapest to compile; one is enough here
  out = saliency_control(config, str(tmp_path / "run"))
  for name in ("control.md", "maps.png", "results.json", "report.md"):
    assert (tmp_path / "run" / name).exists(), name
  assert set(out) == {"lrp:epsilon_plus_flat"}
  rows = out["lrp:epsilon_plus_flat"]
  assert set(rows) == {"0.0", "0.8"}
  for r in rows.values():
    assert len(r["rrf"]) == len(r["hrf"]) == 1 and 0 <= r["rrf"][0] <= 1
  # two models trained on different data: different maps
  assert rows["0.0"]["rrf"] != rows["0.8"]["rrf"]
  table = json.loads((tmp_path / "run" / "results.json").read_text())["tables"]["control"]
  assert "| lrp:epsilon_plus_flat |" in table and "seeds RRF up" in table


def test_border_profile_by_hand():
  m = np.ones((8, 8))
  m[0, :] = 5.0                                   # the top row lit
  box = np.zeros((8, 8), bool)
  box[4:6, 3:5] = True
  m[4:6, 3:5] = 3.0
  p = border_profile(m, box)
  mean = m.mean()
  top_left = np.concatenate([m[:2].ravel(), m[2:, :2].ravel()]).mean()
  assert p["top_left"] == pytest.approx(top_left / mean)
  assert p["box"] == pytest.approx(3.0 / mean)
  bottom_right = np.concatenate([m[-2:].ravel(), m[:-2, -2:].ravel()])   # holds two lit pixels
  assert p["bottom_right"] == pytest.approx(bottom_right.mean() / mean)
  assert p["peak"] == [0, 0]


def test_bad_attributions_are_refused():
  config = get_config("tiny")
  for bad in ("lrp:deep_taylor", "gradcam", "ig:epsilon_plus"):
    with pytest.raises(ValueError, match="attributions: expected 'ig' or 'lrp:<composite>'"):
      attribution(bad, config)
