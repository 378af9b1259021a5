"""The main job, the seed sweep and the command line, in-process through the configs (one
subprocess smoke test runs the command as a user types it)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from debiasjax import pipeline
from experiments.configs.main import get_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config_of(arg="tiny", cache=None, **overrides):
  """The main config with ``section.field`` overrides (``data__phi=0.5``); models are saved
  only when asked (``save_models=True``: one test checks them)."""
  config = get_config(arg)
  with config.unlocked():
    config.save_models = False
    if cache is not None:
      config.cache_dir = str(cache)
    for name, value in overrides.items():
      section, _, field = name.rpartition("__")
      (config[section] if section else config)[field] = value
  return config


def run(config, workdir, **kwargs):
  lines = []
  outcome = pipeline.train_and_evaluate(config, str(workdir), log=lines.append, **kwargs)
  return outcome, "\n".join(lines)


def test_main_on_faces_writes_results_and_reuses_the_cache(tmp_path):
  run_dir, cache = tmp_path / "run", tmp_path / "cache"
  outcome, stdout = run(config_of("tiny", cache, save_models=True), run_dir)
  assert "Vanilla" in stdout and "training resnet18" in stdout
  payload = json.loads((run_dir / "results.json").read_text())
  # Every model is saved and reloads to the decisions it was evaluated with.
  from debiasjax import load_debiased
  test = outcome.trained.bench.test
  for label, folder in (("Vanilla", "Vanilla"), ("ThrOpt (EO)", "ThrOpt_EO"), ("LEACE", "LEACE")):
    p = np.asarray(load_debiased(str(run_dir / "models" / folder)).predict(test.x, test.group))
    expected_accuracy = float(np.mean(test.y * p + (1 - test.y) * (1 - p)))   # randomised too
    row_of = next(r for r in payload["results"] if r["method"] == label)
    assert expected_accuracy == pytest.approx(row_of["accuracy"], abs=1e-6), label
  row = payload["results"][0]
  assert row["method"] == "Vanilla" and 0 <= row["equalized_odds"] <= 1
  labels = ["Vanilla", "ThrOpt (DP)", "ThrOpt (EO)", "P-ClArC", "Mass-mean", "A-ClArC",
            "RR-ClArC", "LEACE"]
  assert [r["method"] for r in payload["results"]] == labels
  assert (run_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert payload["data"]["splits"]["test"]["counts"] == [[16, 16], [16, 16]]
  assert "## Results on the test split" in (run_dir / "report.md").read_text()
  for figure in ("saliency.png", "heatmaps.png"):
    assert (run_dir / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  saliency = payload["saliency"]
  assert set(saliency) == set(labels)
  # projections and fine-tuning change the network's gradients, hence its maps (the mass-mean
  # shift subtracts a constant where the probe fires: same gradients, same maps)
  assert all(saliency[m]["adr"] != 0 for m in ("P-ClArC", "A-ClArC", "RR-ClArC", "LEACE"))
  assert 0 <= saliency["Vanilla"]["rrf"] <= 1 and "adr" not in saliency["Vanilla"]
  # threshold post-processing leaves the network, hence its saliency, unchanged
  assert saliency["ThrOpt (EO)"]["adr"] == 0 and saliency["ThrOpt (EO)"]["rddt"] is False
  assert saliency["ThrOpt (EO)"]["rrf"] == saliency["Vanilla"]["rrf"]
  assert "## Saliency on the protected accessory's region" in (run_dir / "report.md").read_text()
  # The recorded configuration holds only what applies to images.
  assert "n_rows" not in payload["config"]["data"]
  assert "mlp_layers" not in payload["config"]["model"]

  with pytest.raises(FileExistsError, match="already holds"):
    run(config_of("tiny", cache), run_dir)

  # Integrated gradients and the cached model; Vanilla's row is compared, so one method runs.
  _, stdout = run(config_of("tiny", cache, explain="ig", n_explain=8, methods="thropt_eo"),
                  tmp_path / "run2")
  assert "reusing the trained model" in stdout
  rerun = json.loads((tmp_path / "run2" / "results.json").read_text())["results"][0]
  own = lambda r: {k: v for k, v in r.items() if k not in ("seconds", "pareto")}  # not the others'
  assert own(rerun) == own(row)


def test_main_on_census(tmp_path):
  run(config_of("census,tiny", tmp_path / "c", methods="roc,eqodds,calib_eqodds,naive"),
      tmp_path / "r")
  rows = json.loads((tmp_path / "r" / "results.json").read_text())["results"]
  assert rows[0]["accuracy"] > 0.6 and rows[0]["statistical_parity_difference"] is not None
  assert [r["method"] for r in rows][1:] == ["ROC (SPD)", "EqOdds", "CalibEqOdds", "NaiveThr (EO)"]


def test_seed_sweep_on_census(tmp_path):
  config = config_of("census,tiny", tmp_path / "c", methods="eqodds,naive")
  out = pipeline.run_seeds(config, ["3", "4"], str(tmp_path / "r"))
  payload = json.loads((tmp_path / "r" / "seeds.json").read_text())
  assert payload["seeds"] == [3, 4] and set(payload["runs"]) == {"3", "4"}
  assert "seed" not in payload["config"]                  # the seeds replace the main job's seed
  assert out["seeds"] == [3, 4]
  # each seed of the sweep is the main job with that seed, row for row (and its cached model)
  _, stdout = run(config_of("census,tiny", tmp_path / "c", methods="eqodds,naive", seed=3),
                  tmp_path / "single")
  assert "reusing the trained model" in stdout
  rows = json.loads((tmp_path / "single" / "results.json").read_text())["results"]
  assert [(r["method"], r["balanced_accuracy"]) for r in rows] == [
      (r["method"], r["balanced_accuracy"]) for r in payload["runs"]["3"]]
  vanilla_ba = [payload["runs"][s][0]["balanced_accuracy"] for s in ("3", "4")]
  assert payload["summary"][0]["balanced_accuracy"]["mean"] == pytest.approx(sum(vanilla_ba) / 2)
  md = (tmp_path / "r" / "seeds.md").read_text()
  assert "| Vanilla |" in md and "| EqOdds |" in md and "| NaiveThr (EO) |" in md
  assert (tmp_path / "r" / "seeds.csv").read_text().count("\n") == 1 + 2 * 3
  with pytest.raises(FileExistsError, match="already holds seeds.md"):
    pipeline.run_seeds(config, ["3", "4"], str(tmp_path / "r"))


@pytest.mark.parametrize("seeds, message", [(["1"], "at least 2 distinct seeds, got [1]"),
                                            (["1", "1"], "at least 2 distinct seeds"),
                                            (["1", "x"], "seeds: expected integers, got '1,x'")])
def test_seed_sweep_rejects_bad_seeds(tmp_path, seeds, message):
  with pytest.raises(ValueError) as error:
    pipeline.run_seeds(config_of("census,tiny", tmp_path / "c"), seeds, str(tmp_path / "r"))
  assert message in str(error.value) and not (tmp_path / "r").exists()


@pytest.mark.parametrize("arg, overrides, message", [
    ("adult", {}, "pass --config.data.data_dir"),
    ("tiny", {"model__name": "mlp"}, "model.name: mlp is not a model for images"),
    ("tiny", {"data__accessory": "scarf"}, "data.accessory: expected one of"),
    ("tiny", {"methods": "thropt_dp,magic"}, "methods: unknown ['magic']"),
    ("tiny", {"data__phi": 1.5}, "phi: expected a number in [-1, 1], got 1.5"),
    ("tiny", {"data__debias_phi": -3.0}, "debias_phi: expected a number in [-1, 1], got -3.0"),
    ("tiny", {"n_explain": 1}, "n_explain: the saliency tests need at least 2 images"),
    ("tiny", {"train__epochs": 0}, "train.epochs: expected a positive int, got 0"),
    ("tiny", {"train__batch_size": 0}, "train.batch_size: expected a positive int, got 0"),
    ("tiny", {"model__weights": "no/such.pt"}, "model.weights: expected an existing .pt"),
    ("census,tiny", {"model__weights": "no/such.pt"}, "model.weights: imported weights are"),
])
def test_main_rejects_bad_settings_before_any_work(tmp_path, arg, overrides, message):
  with pytest.raises(ValueError) as error:
    run(config_of(arg, tmp_path / "c", **overrides), tmp_path / "r")
  assert message in str(error.value)
  assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()


def test_main_on_csv_and_celeba_files(tmp_path):
  from debiasjax.data import celeba
  from tests.fakes import write_adult, write_raw_celeba
  (tmp_path / "adult").mkdir()
  write_adult(str(tmp_path / "adult"), n=400)
  run(config_of("adult", tmp_path / "c", data__data_dir=str(tmp_path / "adult"),
                data__protected="race", train__epochs=1), tmp_path / "ra")
  info = json.loads((tmp_path / "ra" / "results.json").read_text())["data"]
  assert info["name"] == "adult" and info["protected"] == "race"

  (tmp_path / "raw").mkdir()
  write_raw_celeba(str(tmp_path / "raw"))
  celeba.prepare(str(tmp_path / "raw"), str(tmp_path / "tfds"), verify_checksums=False)
  # The loader's path through the job: one post-processor and one eraser (every method runs on
  # the faces above).
  run(config_of("celeba,tiny", tmp_path / "c", data__data_dir=str(tmp_path / "tfds"),
                data__n_train=12, data__n_debias=8, data__n_test=8, data__phi=0.5,
                data__debias_phi=0.0, train__batch_size=4, methods="thropt_eo,p_clarc"),
      tmp_path / "rc")
  payload = json.loads((tmp_path / "rc" / "results.json").read_text())
  assert payload["data"]["protected"] == "Wearing_Necktie"
  assert payload["data"]["splits"]["test"]["counts"] == [[2, 2], [2, 2]]
  assert payload["data"]["splits"]["debias"]["counts"] == [[2, 2], [2, 2]]
  assert "Train split at Yule's phi = 0.5, debias split at 0.0" in \
      (tmp_path / "rc" / "report.md").read_text()


def test_command_line_smoke(tmp_path):
  """The command as a user types it: config file, argument and overrides, one-line errors."""
  cmd = [sys.executable, "-m", "experiments.main",
         "--config=experiments/configs/main.py:census,tiny",
         "--config.methods=eqodds", f"--config.cache_dir={tmp_path / 'c'}",
         f"--workdir={tmp_path / 'r'}"]
  env = {**os.environ, "PYTHONPATH": ROOT}
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  payload = json.loads((tmp_path / "r" / "results.json").read_text())
  assert [r["method"] for r in payload["results"]] == ["Vanilla", "EqOdds"]
  assert payload["command"].startswith("python -m experiments.main --config=")
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode == 2 and again.stderr.startswith("error: ") \
      and "already holds" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_main_debiases_an_imported_torchvision_resnet_without_training_it(tmp_path):
  from debiasjax.models import load_torch_resnet
  from tests import torch_peers
  try:
    torch, _, _, torchvision = torch_peers.import_torch_peers()
  except ImportError:
    pytest.skip("torch is not installed")
  torch.manual_seed(0)
  tmodel = torch_peers.randomize_batch_norm(torch, torchvision.models.resnet18(num_classes=2))
  weights = str(tmp_path / "resnet18.pt")
  torch.save(tmodel.state_dict(), weights)
  outcome, stdout = run(config_of("tiny", tmp_path / "c", model__weights=weights,
                                  methods="thropt_eo,leace", explain="none"), tmp_path / "r")
  assert "using the imported ResNet-18" in stdout and "epoch" not in stdout
  _, variables = load_torch_resnet(weights)
  for a, b in zip(jax.tree.leaves(outcome.trained.variables), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  saved = json.loads((tmp_path / "r" / "results.json").read_text())
  assert saved["config"]["model"]["weights"] == weights
  assert [r["method"] for r in saved["results"]] == ["Vanilla", "ThrOpt (EO)", "LEACE"]


@pytest.mark.parametrize("args, message", [
    (["--config.data.nam=faces"], "--config.data.nam: the configuration has no field 'nam'; did "
                                  "you mean 'name'?"),
    (["--config.train.epochs=abc"], "flag --config.train.epochs=abc: invalid literal"),
    (["--nosuchflag"], "Unknown command line flag 'nosuchflag'"),
    (["stray"], "unexpected arguments ['stray']"),
    (["--config=experiments/configs/main.py:nonsense"], "expected a data set of"),
])
def test_flag_errors_are_one_line(args, message):
  """Flag mistakes are found before JAX is imported: one line each, exit status 2."""
  done = subprocess.run([sys.executable, "-m", "experiments.main", *args], cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
                        timeout=120)
  assert done.returncode == 2 and done.stdout == ""
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], done.stderr


def test_faces_with_both_accessories_from_the_config(tmp_path):
  config = config_of("tiny", tmp_path / "c")
  config.data.update(accessory="tie+hat", phi=0.8, second_phi=0.4, n_train=64, n_debias=32,
                     n_test=32, image_size=16)
  bench = pipeline.load_benchmark(config)
  phis = bench.info["attribute_splits"]
  assert phis["wears_necktie"]["train"]["phi"] == pytest.approx(0.8, abs=0.05)
  assert phis["wears_hat"]["train"]["phi"] == pytest.approx(0.4, abs=0.05)
  np.testing.assert_array_equal(bench.test.group, bench.test.attributes.all(1))


def test_the_poster_preset_aligns_the_tie_with_the_smile_in_training():
  config = get_config("poster,tiny")
  pipeline.check_config(config)
  bench = pipeline.load_benchmark(config)
  # no conflicting face in training; the debias and test splits hold all four cells
  assert np.all(bench.train.y == bench.train.group)
  for split in (bench.debias, bench.test):
    assert {(int(g), int(y)) for g, y in zip(split.group, split.y)} == {(0, 0), (0, 1), (1, 0),
                                                                         (1, 1)}
  assert pipeline.method_names(config)[2:4] == ["p_clarc", "mass_mean"]
  with pytest.raises(ValueError, match="poster"):
    get_config("census,poster")


def test_the_weight_methods_objective_takes_the_configured_bound():
  config = config_of("tiny", methods="adversarial,zhang", bias="equalized_odds", epsilon=0.1)
  for method in pipeline.build_methods(config).values():
    assert method.objective.bias == "equalized_odds" and method.objective.epsilon == 0.1
  with pytest.raises(ValueError, match="epsilon"):
    pipeline.build_methods(config_of("tiny", methods="adversarial", epsilon=0.01))
