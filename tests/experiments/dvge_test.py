"""DVGE's reproduction at toy settings: every output written, the VAE cached and reused, the
rows and probes where the tables say, a census run, and bad settings refused."""

import csv
import json

import pytest

from debiasjax.reproductions import dvge
from experiments.configs.dvge import get_config
from tests.fakes import write_south_german


def test_dvge_reproduction_on_faces_writes_every_output_and_reuses_the_vae(tmp_path):
  config = get_config("tiny")
  config.cache_dir = str(tmp_path / "cache")
  config.encoders, config.seeds = "factor,model", 1     # the plain VAE: the census test
  logs = []
  dvge(config, str(tmp_path / "run"), log=logs.append)
  for name in ("tradeoff.png", "tradeoff.csv", "probes.png", "results.json", "report.md"):
    assert (tmp_path / "run" / name).exists(), name
  record = json.loads((tmp_path / "run" / "results.json").read_text())
  assert set(record["tables"]) == {"tradeoff", "summary", "probes"}
  for encoder in ("factor", "model"):
    rows = record["results"][encoder][0]["rows"]
    # g unperturbed, the η grid 0, 0.5 at η2 = 0.4 toward d, 0.5 away from it, the baselines
    assert [(r["method"], r.get("eta1"), r.get("eta2"), r.get("direction")) for r in rows] == [
        ("DVGE", 0.0, 0.0, "toward"), ("DVGE", 0.0, 0.4, "toward"), ("DVGE", 0.5, 0.4, "toward"),
        ("DVGE", 0.5, 0.4, "away"), ("Sens. dims removed", None, None, None),
        ("Adversarial (GRL)", None, None, None)]
    probes = record["results"][encoder][0]["probes"]
    assert list(probes) == ["No removal", "Sens. dim. removed", "toward d (paper): 0.5",
                            "away from d: 0.5"]
    shift = record["results"][encoder][0]["shift"]
    assert shift["No removal"] == 0 and shift["toward d (paper): 0.5"] > 0
    for row in rows:
      assert 0 <= row["balanced_accuracy"] <= 1 and 0 <= row["demographic_parity"] <= 1
  rows = list(csv.DictReader(open(tmp_path / "run" / "tradeoff.csv")))
  assert len(rows) == 2 * 6                         # encoders × rows
  assert "| g on unperturbed codes (η = 0) |" in record["tables"]["summary"]
  assert "| away from d |" in record["tables"]["probes"]
  assert any("training the VAE" in line for line in logs)
  logs.clear()
  config.encoders = "factor"
  dvge(config, str(tmp_path / "again"), log=logs.append)
  assert sum("reusing the VAE cached" in line for line in logs) == 1
  with pytest.raises(FileExistsError, match="overwrite"):
    dvge(config, str(tmp_path / "run"))


def test_dvge_reproduction_on_census_with_two_sensitive_attributes(tmp_path):
  config = get_config("census,tiny")
  config.cache_dir = str(tmp_path / "cache")
  config.encoders = "vae"
  config.seeds = 1
  config.data.protected = "sex+race"
  config.directions, config.steps = "toward", "gradient,unit"
  logs = []
  out = dvge(config, str(tmp_path / "run"), log=logs.append)
  rows = out["results"]["vae"][0]["rows"]
  assert [(r.get("eta1"), r.get("eta2"), r.get("step")) for r in rows[:5]] == [
      (0.0, 0.0, "gradient"), (0.0, 0.4, "gradient"), (0.5, 0.4, "gradient"),
      (0.0, 0.4, "unit"), (0.5, 0.4, "unit")]
  assert "sensitive sex+race" in logs[0]


def test_dvge_reproduction_on_south_german_credit_file(tmp_path):
  """The seed's table: South German Credit with age ∧ foreign worker, read from the user's file."""
  write_south_german(str(tmp_path))
  config = get_config("german,tiny")
  config.cache_dir = str(tmp_path / "cache")
  config.encoders, config.seeds, config.steps = "vae", 1, "unit"
  config.data.update(data_dir=str(tmp_path), protected="age+foreign_worker")
  logs = []
  out = dvge(config, str(tmp_path / "run"), log=logs.append)
  assert "data: south_german_credit train 120" in logs[0]
  assert "sensitive age+foreign_worker" in logs[0]
  assert out["results"]["vae"][0]["rows"][2]["step"] == "unit"


@pytest.mark.parametrize("field,value,message", [("encoders", "ffvae", "encoders"),
                                                 ("seeds", 0, "seeds"),
                                                 ("directions", "up", "directions: expected"),
                                                 ("steps", "unit,raw", "steps: expected")])
def test_bad_settings(tmp_path, field, value, message):
  config = get_config("tiny")
  config[field] = value
  with pytest.raises(ValueError, match=message):
    dvge(config, str(tmp_path / "run"))
