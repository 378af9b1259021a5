"""The main command end to end on tiny settings (a subprocess, as a user runs it)."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_main(*args, cwd, module="experiments.main"):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd,
                        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                        timeout=600)


TINY_FACES = ["--n_train=128", "--n_debias=32", "--n_test=64", "--image_size=32", "--epochs=1",
              "--width=4", "--batch_size=32"]


def test_main_on_faces_writes_results_and_reuses_the_cache(tmp_path):
  run, cache = tmp_path / "run", tmp_path / "cache"
  first = run_main(*TINY_FACES, f"--run_dir={run}", f"--cache_dir={cache}", cwd=ROOT)
  assert first.returncode == 0, first.stderr[-3000:]
  assert "Vanilla" in first.stdout and "training resnet18" in first.stdout
  payload = json.loads((run / "results.json").read_text())
  row = payload["results"][0]
  assert row["method"] == "Vanilla" and 0 <= row["equalized_odds"] <= 1
  labels = ["Vanilla", "ThrOpt (DP)", "ThrOpt (EO)", "P-ClArC", "Mass-mean", "A-ClArC",
            "RR-ClArC", "LEACE"]
  assert [r["method"] for r in payload["results"]] == labels
  assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert payload["data"]["splits"]["test"]["counts"] == [[16, 16], [16, 16]]
  assert "## Results on the test split" in (run / "report.md").read_text()
  for figure in ("saliency.png", "heatmaps.png"):
    assert (run / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saliency = payload["saliency"]
  assert set(saliency) == set(labels)
  # projections and fine-tuning change the network's gradients, hence its maps (the mass-mean
  # shift subtracts a constant where the probe fires: same gradients, same maps)
  assert all(saliency[m]["adr"] != 0 for m in ("P-ClArC", "A-ClArC", "RR-ClArC", "LEACE"))
  assert 0 <= saliency["Vanilla"]["rrf"] <= 1 and "adr" not in saliency["Vanilla"]
  # threshold post-processing leaves the network, hence its saliency, unchanged
  assert saliency["ThrOpt (EO)"]["adr"] == 0 and saliency["ThrOpt (EO)"]["rddt"] is False
  assert saliency["ThrOpt (EO)"]["rrf"] == saliency["Vanilla"]["rrf"]
  assert "## Saliency on the protected accessory's region" in (run / "report.md").read_text()

  refused = run_main(*TINY_FACES, f"--run_dir={run}", f"--cache_dir={cache}", cwd=ROOT)
  assert refused.returncode != 0 and "already holds" in refused.stderr

  again = run_main(*TINY_FACES, "--explain=ig", "--n_explain=8", f"--run_dir={tmp_path / 'run2'}",
                   f"--cache_dir={cache}", cwd=ROOT)
  assert again.returncode == 0 and "reusing the trained model" in again.stdout
  rerun = json.loads((tmp_path / "run2" / "results.json").read_text())["results"][0]
  assert {k: v for k, v in rerun.items() if k != "seconds"} == {k: v for k, v in row.items() if k != "seconds"}


def test_main_on_census(tmp_path):
  out = run_main("--data=census", "--n_rows=2000", "--epochs=2", "--methods=roc,eqodds,calib_eqodds,naive",
                 f"--run_dir={tmp_path / 'r'}", f"--cache_dir={tmp_path / 'c'}", cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  rows = json.loads((tmp_path / "r" / "results.json").read_text())["results"]
  assert rows[0]["accuracy"] > 0.6 and rows[0]["statistical_parity_difference"] is not None
  assert [r["method"] for r in rows][1:] == ["ROC (SPD)", "EqOdds", "CalibEqOdds", "NaiveThr (EO)"]


def test_seed_sweep_on_census(tmp_path):
  data = ["--data=census", "--n_rows=2000", "--epochs=2", "--methods=eqodds,naive"]
  cache = f"--cache_dir={tmp_path / 'c'}"
  sweep = ["--seeds=3,4", *data, f"--run_dir={tmp_path / 'r'}", cache]
  out = run_main(*sweep, cwd=ROOT, module="experiments.seeds")
  assert out.returncode == 0, out.stderr[-3000:]
  payload = json.loads((tmp_path / "r" / "seeds.json").read_text())
  assert payload["seeds"] == [3, 4] and set(payload["runs"]) == {"3", "4"}
  assert "seed" not in payload["config"]                  # --seeds replaces the main job's --seed
  # each seed of the sweep is the main job with that --seed, row for row (and its cached model)
  single = run_main("--seed=3", *data, f"--run_dir={tmp_path / 'single'}", cache, cwd=ROOT)
  assert single.returncode == 0 and "reusing the trained model" in single.stdout
  rows = json.loads((tmp_path / "single" / "results.json").read_text())["results"]
  assert [(r["method"], r["balanced_accuracy"]) for r in rows] == [
      (r["method"], r["balanced_accuracy"]) for r in payload["runs"]["3"]]
  vanilla_ba = [payload["runs"][s][0]["balanced_accuracy"] for s in ("3", "4")]
  assert payload["summary"][0]["balanced_accuracy"]["mean"] == pytest.approx(sum(vanilla_ba) / 2)
  md = (tmp_path / "r" / "seeds.md").read_text()
  assert "| Vanilla |" in md and "| EqOdds |" in md and "| NaiveThr (EO) |" in md
  assert (tmp_path / "r" / "seeds.csv").read_text().count("\n") == 1 + 2 * 3
  refused = run_main(*sweep, cwd=ROOT, module="experiments.seeds")
  assert refused.returncode != 0 and "already holds seeds.md" in refused.stderr


@pytest.mark.parametrize("seeds, message", [("1", "at least 2 distinct seeds, got [1]"),
                                            ("1,1", "at least 2 distinct seeds"),
                                            ("1,x", "seeds: expected integers, got '1,x'")])
def test_seed_sweep_rejects_bad_seeds(tmp_path, seeds, message):
  out = run_main(f"--seeds={seeds}", f"--run_dir={tmp_path / 'r'}", cwd=ROOT,
                 module="experiments.seeds")
  assert out.returncode == 2 and message in out.stderr and not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["--data=adult"], "pass --data_dir"),
    (["--data=faces", "--model=mlp"], "--model=mlp is for tables"),
    (["--data=faces", "--accessory=scarf"], "accessory"),
    (["--methods=thropt_dp,magic"], "--methods: unknown ['magic']"),
    (["--phi=1.5"], "error: phi: expected a number in [-1, 1], got 1.5"),
    (["--debias_phi=-3"], "error: debias_phi: expected a number in [-1, 1], got -3.0"),
    (["--n_explain=1"], "--n_explain: the saliency tests need at least 2 images"),
])
def test_main_rejects_bad_flags(tmp_path, args, message):
  out = run_main(*args, f"--run_dir={tmp_path / 'r'}", f"--cache_dir={tmp_path / 'c'}", cwd=ROOT)
  assert out.returncode != 0 and message in out.stderr
  assert not (tmp_path / "r").exists()


def test_main_on_csv_and_celeba_files(tmp_path):
  from debiasjax.data import celeba
  from tests.fakes import write_adult, write_raw_celeba
  (tmp_path / "adult").mkdir()
  write_adult(str(tmp_path / "adult"), n=400)
  out = run_main("--data=adult", f"--data_dir={tmp_path / 'adult'}", "--protected=race",
                 "--epochs=1", f"--run_dir={tmp_path / 'ra'}", f"--cache_dir={tmp_path / 'c'}",
                 cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  info = json.loads((tmp_path / "ra" / "results.json").read_text())["data"]
  assert info["name"] == "adult" and info["protected"] == "race"

  (tmp_path / "raw").mkdir()
  write_raw_celeba(str(tmp_path / "raw"))
  celeba.prepare(str(tmp_path / "raw"), str(tmp_path / "tfds"), verify_checksums=False)
  out = run_main("--data=celeba", f"--data_dir={tmp_path / 'tfds'}", "--n_train=12",
                 "--n_debias=8", "--n_test=8", "--phi=0.5", "--debias_phi=0", "--image_size=32",
                 "--width=4",
                 "--batch_size=4", "--epochs=1", f"--run_dir={tmp_path / 'rc'}",
                 f"--cache_dir={tmp_path / 'c'}", cwd=ROOT)
  assert out.returncode == 0, out.stderr[-3000:]
  payload = json.loads((tmp_path / "rc" / "results.json").read_text())
  assert payload["data"]["protected"] == "Wearing_Necktie"
  assert payload["data"]["splits"]["test"]["counts"] == [[2, 2], [2, 2]]
  assert payload["data"]["splits"]["debias"]["counts"] == [[2, 2], [2, 2]]
  assert "Train split at Yule's phi = 0.5, debias split at 0.0" in \
      (tmp_path / "rc" / "report.md").read_text()
