"""DVGE's reproduction at toy settings: every output written, the VAE cached and reused, the
rows and probes where the tables say, a census run, and bad settings refused."""

import csv
import json

import pytest

from debiasjax.reproductions import dvge
from experiments.configs.dvge import get_config


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
    # η grid 0, 0.5 at η2 = 0.4, then the two baselines
    assert [r["method"] for r in rows] == ["DVGE", "DVGE", "Sens. dims removed",
                                           "Adversarial (GRL)"]
    assert list(record["results"][encoder][0]["probes"]) == ["No removal", "Sens. dim. removed",
                                                             "0.5"]
    for row in rows:
      assert 0 <= row["balanced_accuracy"] <= 1 and 0 <= row["demographic_parity"] <= 1
  rows = list(csv.DictReader(open(tmp_path / "run" / "tradeoff.csv")))
  assert len(rows) == 2 * 4                         # encoders × rows
  assert any("training the VAE" in line for line in logs)
  logs.clear()
  config.encoders = "factor"
  dvge(config, str(tmp_path / "again"), log=logs.append)
  assert sum("reusing the VAE cached" in line for line in logs) == 1
  with pytest.raises(FileExistsError, match="overwrite"):
    dvge(config, str(tmp_path / "run"))


def test_dvge_reproduction_on_census(tmp_path):
  config = get_config("census,tiny")
  config.cache_dir = str(tmp_path / "cache")
  config.encoders = "vae"
  config.seeds = 1
  out = dvge(config, str(tmp_path / "run"))
  assert len(out["results"]["vae"][0]["rows"]) == 4


@pytest.mark.parametrize("field,value,message", [("encoders", "ffvae", "encoders"),
                                                 ("seeds", 0, "seeds")])
def test_bad_settings(tmp_path, field, value, message):
  config = get_config("tiny")
  config[field] = value
  with pytest.raises(ValueError, match=message):
    dvge(config, str(tmp_path / "run"))
