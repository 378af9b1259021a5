"""Seed 001's phi sweep at tiny sizes: killed after its first cell and resumed, it writes what an
uninterrupted sweep writes; the research-question numbers from hand-made cells."""

import glob
import json
import shutil

import numpy as np
import pytest

from debiasjax.reproductions import phi_sweep, sweep
from experiments.configs.sweep import get_config


class Killed(Exception):
  pass


def test_a_killed_sweep_resumes_to_the_same_results(tmp_path):
  config = get_config("tiny")                 # two phis, two methods, one seed, LRP
  config.job.cache_dir = str(tmp_path / "cache")
  whole = sweep(config, str(tmp_path / "whole"))
  for name in ("sweep.md", "sweep.csv", "results.json", "report.md", "fig3_lrp_tie.png"):
    assert (tmp_path / "whole" / name).exists(), name
  assert [r["method"] for r in whole["cells"]["tie-phi0.5-seed0"]] == ["Vanilla", "ThrOpt (EO)",
                                                                      "LEACE"]
  shutil.rmtree(phi_sweep.cell_folder(config))  # keep the cached vanilla models only

  calls = []

  def dies_on_the_second_cell(*args, **kwargs):
    calls.append(args[1:])
    if len(calls) == 2:
      raise Killed
    return phi_sweep.run_cell(*args, **kwargs)

  with pytest.raises(Killed):
    sweep(config, str(tmp_path / "resumed"), cell_runner=dies_on_the_second_cell)
  assert len(glob.glob(phi_sweep.cell_folder(config) + "/*.json")) == 1
  assert not (tmp_path / "resumed" / "results.json").exists()
  logs = []
  resumed = sweep(config, str(tmp_path / "resumed"), log=logs.append)
  assert any("tie-phi0.5-seed0: kept" in line for line in logs)
  assert resumed["cells"].keys() == whole["cells"].keys()
  for name, rows in whole["cells"].items():
    for a, b in zip(rows, resumed["cells"][name]):
      assert a.keys() == b.keys()
      for k in set(a) - {"seconds"}:          # a method's time is not a result
        if isinstance(a[k], float):
          np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-9, err_msg=f"{name} {k}")
        else:
          assert a[k] == b[k]
  record = json.loads((tmp_path / "resumed" / "results.json").read_text())
  assert record["questions"] == json.loads(json.dumps(whole["questions"]))


def _cell(eo, adr, rrf, p):
  """A hand-made cell: Vanilla and two methods with the given EO, ADR, RRF and RDDT p."""
  rows = [{"method": "Vanilla", "equalized_odds": 0.5, "balanced_accuracy": 0.7,
           "lrp_rrf": 0.05, "lrp_hrf": 0.3}]
  for i, m in enumerate(("A", "B")):
    rows.append({"method": m, "equalized_odds": eo[i], "balanced_accuracy": 0.7,
                 "lrp_rrf": rrf[i], "lrp_hrf": 0.3 - adr[i], "lrp_adr": adr[i],
                 "lrp_rddt_p": p[i]})
  return rows


def test_research_questions_on_hand_made_cells():
  # the more a method moves relevance out of the box, the more EO falls: rho = +1
  results = {f"c{k}": _cell(eo=(0.5 - 0.1 * k, 0.45 - 0.1 * k), adr=(0.01 * k, 0.01 * k + 0.005),
                            rrf=(0.05 - 0.01 * k, 0.045 - 0.01 * k), p=(0.5, 1e-4))
             for k in range(4)}
  pairs = phi_sweep.shift_pairs(results, "lrp")
  assert len(pairs["eo_fall"]) == 8
  np.testing.assert_allclose(sorted(pairs["eo_fall"]), sorted(
      [0.1 * k for k in range(4)] + [0.05 + 0.1 * k for k in range(4)]), atol=1e-12)
  q = phi_sweep.research_questions(results, ["lrp"])["lrp"]
  assert q["correlations"]["adr"]["estimate"] == pytest.approx(1.0)
  assert q["correlations"]["rrf_fall"]["estimate"] == pytest.approx(1.0)
  assert q["rddt"] == {"A": (0, 4), "B": (4, 4)}
  summary = phi_sweep.summarise(
      {"tie-phi0.5-seed0": results["c0"], "tie-phi0.5-seed1": results["c1"]},
      [("tie", 0.5, 0), ("tie", 0.5, 1)], ["lrp"])
  assert summary["lrp"]["tie"]["A"]["equalized_odds"]["0.5"] == pytest.approx(
      [np.mean([0.5, 0.4]), np.std([0.5, 0.4])])


def test_bad_sweep_settings_are_refused():
  config = get_config("tiny")
  config.phis = "0.5,1.5"
  with pytest.raises(ValueError, match="phis, accessories, seeds"):
    phi_sweep.cells_of(config)
  config = get_config("tiny")
  config.attributions = "lrp,gradcam"
  with pytest.raises(ValueError, match="attributions: expected some of"):
    phi_sweep.attributions_of(config)
