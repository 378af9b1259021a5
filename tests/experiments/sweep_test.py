"""Seed 001's phi sweep at tiny sizes: killed after its first cell and resumed, it writes what an
uninterrupted sweep writes; the research-question numbers from hand-made cells."""

import glob
import json
import os

import numpy as np
import pytest

from debiasjax.reproductions import phi_sweep, sweep
from experiments.configs.sweep import get_config


class Killed(Exception):
  pass


def test_a_killed_sweep_resumes_to_the_same_results(tmp_path):
  """Killed while computing its second cell, the sweep keeps the first; rerun, it computes only
  the second, and its first cell is what an uninterrupted sweep computes there."""
  config = get_config("tiny")                 # two phis, two methods, one seed, LRP
  config.job.cache_dir = str(tmp_path / "cache")
  calls = []

  def dies_on_the_second_cell(*args, **kwargs):
    calls.append(args[1:])
    if len(calls) == 2:
      raise Killed
    return phi_sweep.run_cell(*args, **kwargs)

  with pytest.raises(Killed):
    sweep(config, str(tmp_path / "run"), cell_runner=dies_on_the_second_cell)
  assert len(glob.glob(phi_sweep.cell_folder(config) + "/*.json")) == 1
  assert not (tmp_path / "run" / "results.json").exists()
  logs = []

  def counted(*args, **kwargs):
    calls.append(args[1:])
    return phi_sweep.run_cell(*args, **kwargs)

  resumed = sweep(config, str(tmp_path / "run"), log=logs.append, cell_runner=counted)
  assert calls == [("tie", 0.5, 0), ("tie", 0.9, 0), ("tie", 0.9, 0)]
  assert any("tie-phi0.5-seed0: kept" in line for line in logs)
  for name in ("sweep.md", "sweep.csv", "results.json", "report.md", "fig3_lrp_tie.png",
               "fig2_lrp_tie.png"):
    assert (tmp_path / "run" / name).exists(), name
  assert [r["method"] for r in resumed["cells"]["tie-phi0.5-seed0"]] == [
      "Vanilla", "ThrOpt (DP)", "ThrOpt (EO)"]
  # what an uninterrupted sweep computes for the kept cell
  uninterrupted, maps = phi_sweep.run_cell(config, "tie", 0.5, 0)
  for a, b in zip(uninterrupted, resumed["cells"]["tie-phi0.5-seed0"]):
    assert a.keys() == b.keys()
    for k in set(a) - {"seconds"}:            # a method's time is not a result
      if isinstance(a[k], float):
        np.testing.assert_allclose(b[k], a[k], rtol=1e-6, atol=1e-9, err_msg=k)
      else:
        assert a[k] == b[k], k
  # its maps per (group, target): kept beside the rows; the post-processors share Vanilla's
  kept = phi_sweep._load_maps(os.path.join(phi_sweep.cell_folder(config),
                                           "tie-phi0.5-seed0.maps.npz"))
  assert set(kept) == set(maps) == {"lrp/Vanilla", "lrp/ThrOpt (DP)", "lrp/ThrOpt (EO)", "roi"}
  assert maps["roi"].shape == (32, 32) and 0 < maps["roi"].mean() < 0.5
  for k in set(maps) - {"roi"}:
    assert maps[k].shape == (2, 2, 32, 32)
    np.testing.assert_allclose(kept[k], maps[k], rtol=1e-5, atol=1e-6, err_msg=k)
  np.testing.assert_array_equal(maps["lrp/ThrOpt (EO)"], maps["lrp/Vanilla"])
  # and rerun once more, everything is kept and the files are the same
  again = sweep(config, str(tmp_path / "again"), cell_runner=counted)
  assert len(calls) == 3
  first = json.loads((tmp_path / "run" / "results.json").read_text())
  second = json.loads((tmp_path / "again" / "results.json").read_text())
  assert first["cells"] == second["cells"] and first["questions"] == second["questions"]
  assert again["summary"] == resumed["summary"]
  assert (tmp_path / "run" / "sweep.csv").read_text() == (tmp_path / "again" / "sweep.csv"
                                                            ).read_text()


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
  # a post-processor: Vanilla's maps, EO lowered by chance amounts; pooled, it blurs rho, and
  # the changed networks alone keep rho = +1
  for k, rows in enumerate(results.values()):
    rows.append({"method": "P", "equalized_odds": 0.1 * (k % 2), "balanced_accuracy": 0.7,
                 "lrp_rrf": 0.05, "lrp_hrf": 0.3, "lrp_adr": 0.0, "lrp_rddt_p": 1.0})
  q = phi_sweep.research_questions(results, ["lrp"])["lrp"]
  assert q["pairs"] == 12 and q["changed_pairs"] == 7     # A in c0 has Vanilla's maps too
  assert q["changed"]["adr"]["estimate"] == pytest.approx(1.0)
  assert q["correlations"]["adr"]["estimate"] < 0.9
  for rows in results.values():
    rows.pop()
  q = phi_sweep.research_questions(results, ["lrp"])["lrp"]
  assert q["correlations"]["adr"]["estimate"] == pytest.approx(1.0)
  assert q["correlations"]["rrf_fall"]["estimate"] == pytest.approx(1.0)
  assert q["rddt"] == {"A": (0, 4), "B": (4, 4)}
  summary = phi_sweep.summarise(
      {"tie-phi0.5-seed0": results["c0"], "tie-phi0.5-seed1": results["c1"]},
      [("tie", 0.5, 0), ("tie", 0.5, 1)], ["lrp"])
  assert summary["lrp"]["tie"]["A"]["equalized_odds"]["0.5"] == pytest.approx(
      [np.mean([0.5, 0.4]), np.std([0.5, 0.4])])


def test_method_overview_and_group_means_on_hand_made_cells():
  # A's EO rises with phi, B's falls; B is constant in one cell
  cells = [("tie", phi, 0) for phi in (0.5, 0.7, 0.9)]
  results = {}
  for k, (_, phi, seed) in enumerate(cells):
    rows = _cell(eo=(0.1 + 0.1 * k, 0.3 - 0.1 * k), adr=(0.01, 0.02 * k), rrf=(0.04, 0.04),
                 p=(0.5, 1e-4 if k else 0.5))
    rows[2]["constant"] = k == 2
    results[phi_sweep._cell_name("tie", phi, seed)] = rows
  overview = phi_sweep.method_overview(results, cells, ["lrp"])
  assert overview["A"]["eo_vs_phi"] == pytest.approx(1.0)
  assert overview["B"]["eo_vs_phi"] == pytest.approx(-1.0)
  assert overview["Vanilla"]["eo_vs_phi"] is None           # EO 0.5 in every cell
  assert overview["B"]["eo"] == pytest.approx(0.2) and overview["B"]["constant"] == 1
  assert overview["B"]["lrp_adr"] == pytest.approx(0.02) and overview["B"]["lrp_rddt"] == 2
  assert overview["Vanilla"]["lrp_adr"] is None
  assert "| B | 3 | -1.00 | 0.200 |" in phi_sweep.overview_table(overview, ["lrp"])

  maps = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
  means = phi_sweep.group_target_means(maps, group=[0, 0, 1, 1, 1], target=[1, 1, 0, 1, 1])
  np.testing.assert_array_equal(means[0, 0], 0)                 # no image: zeros
  np.testing.assert_array_equal(means[0, 1], maps[:2].mean(0))
  np.testing.assert_array_equal(means[1, 0], maps[2])
  np.testing.assert_array_equal(means[1, 1], maps[3:].mean(0))


def test_bad_sweep_settings_are_refused():
  config = get_config("tiny")
  config.phis = "0.5,1.5"
  with pytest.raises(ValueError, match="phis, accessories, seeds"):
    phi_sweep.cells_of(config)
  config = get_config("tiny")
  config.attributions = "lrp,gradcam"
  with pytest.raises(ValueError, match="attributions: expected some of"):
    phi_sweep.attributions_of(config)
