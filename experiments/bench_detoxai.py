r"""DetoxAI side by side: every method family at DetoxAI's default amount of work, compile included.

  .venv/bin/pip install -r requirements-bench.txt && .venv/bin/pip install --no-deps detoxai==0.3.8
  python -m experiments.bench_detoxai                      # all methods, ~8 minutes on 2 cores
  python -m experiments.bench_detoxai --methods=pclarc,leace

Setting: N = 256 faces of 64x64 in the debias split and 256 in the test split, a torchvision
ResNet-18 (width 64, two classes, random weights and BatchNorm statistics) and its Flax twin
with the same weights, loaders of batch 32, 2 threads. DetoxAI runs each method twice:

* ``detoxai.debias(model, loader, methods=[M], test_dataloader=...)`` as its documentation
  calls it -- the default path, which re-wraps a plain loader at batch 1
  (``reference/detoxai.md`` §7.2), so fine-tuning takes 256 steps of one image;
* ``detoxai.core.interface.run_correction`` with a DetoxAI loader of batch 32 (what ``debias``
  runs per method when given a ``DetoxaiDataset``; bypasses its public entry point).

Both fit on the debias split and evaluate on the test split. Ours does the same work:
P-ClArC and LEACE at the penultimate layer (``pool``), signal CAV, activations of both splits
from the one forward program and the test split scored through the layers after the edit;
A-ClArC and RR-ClArC (lambda 1, max-logit criterion, L2) fine-tune every parameter for one
epoch (8 steps of 32, Adam 1e-3); fine-tuning one epoch at 1e-4; random perturbation scores the
model and 15 perturbed copies (sigma 0.1) at 100 thresholds on the debias split.

Ours is timed in a fresh process with an empty compilation cache (first call: every program
compiled), again in that process (warm), and in a second fresh process whose persistent
compilation cache the first one filled (the second run of a command). Prints a markdown table
for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from experiments.cli import define_record_flag, save_record, show_table

define_record_flag()
flags.DEFINE_list("methods", ["pclarc", "leace", "aclarc", "rrclarc", "finetune", "random"],
                  "Methods to compare.")
flags.DEFINE_integer("n", 256, "Images in the debias split and in the test split.")
flags.DEFINE_integer("threads", 2, "CPU threads of both sides.")
flags.DEFINE_string("ours_only", None, "Internal: time one of our methods in this process.")
flags.DEFINE_string("cache_dir", None, "Internal: the compilation cache of --ours_only.")
FLAGS = flags.FLAGS

DETOXAI_NAMES = {"pclarc": "PCLARC", "leace": "LEACE", "aclarc": "ACLARC", "rrclarc": "RRCLARC",
                 "finetune": "FINETUNE", "random": "SAVANIRP"}
LABELS = {"pclarc": "P-ClArC", "leace": "LEACE", "aclarc": "A-ClArC", "rrclarc": "RR-ClArC",
          "finetune": "fine-tuning", "random": "random perturbation"}


def setting(n: int):
  """The faces (debias and test splits of n images) and a torchvision ResNet-18 with random
  weights and BatchNorm statistics, two classes."""
  from debiasjax import data
  from tests.torch_peers import import_torch_peers, randomize_batch_norm
  bench = data.faces_benchmark(phi=0.8, n_train=2 * n, n_debias=n, n_test=n, image_size=64,
                               seed=0)
  torch, _, _, torchvision = import_torch_peers()
  torch.manual_seed(0)
  model = randomize_batch_norm(torch, torchvision.models.resnet18(num_classes=2))
  return bench, torch, model


def our_method(name: str):
  """Our method at DetoxAI's default amount of work."""
  from debiasjax import methods as dm
  if name == "pclarc":
    return dm.at_layer("pool", dm.p_clarc(cav="signal", pooling="none"), decorrelate=False)
  if name == "leace":
    return dm.at_layer("pool", dm.leace(), decorrelate=False)
  common = dict(layer="pool", pooling="none", trainable="all", num_steps=8, batch_size=32,
                learning_rate=1e-3, decorrelate=False)
  if name == "aclarc":
    return dm.a_clarc(**common)
  if name == "rrclarc":
    return dm.rr_clarc(lam=1.0, criterion="max_logit", aggregation="l2", **common)
  if name == "finetune":
    return dm.fine_tune(objective=None, num_steps=8, batch_size=32, learning_rate=1e-4)
  return dm.random_perturbation(objective=dm.Objective("v2", "equalized_odds"),
                                num_candidates=15, num_thresholds=100, include_original=True)


def run_ours(name: str, model, variables, bench) -> dict:
  """Fit on the debias split, score and summarise the test split."""
  import jax
  from debiasjax import evaluate, methods as dm
  method = our_method(name)
  key = jax.random.key(0)
  if isinstance(method, dm.ConceptEdit):
    # As debias() does: the layer's activations of both splits from one program, the edit
    # fitted on the debias split, the test split scored through the layers after the edit.
    acts = {name: dm.clarc.layer_activations(model, variables, split.x, method.layer)
            for name, split in (("debias", bench.debias), ("test", bench.test))}
    _, state = dm.fit_edit(method, model, variables, bench.debias, activations=acts["debias"])
    scores = dm.clarc.edited_scores(model, variables, method.layer, method.eraser.apply, state,
                                    bench.test.x, acts["test"])
    return evaluate.fairness_summary(bench.test.y, (scores > 0.5).astype("float32"),
                                     bench.test.group)
  if isinstance(method, dm.FineTuning):
    result = dm.tune(method, model, variables, bench.debias, key=key)
    new, threshold = result.variables, float(result.threshold)
  else:
    result = method.search(evaluate.score_function(model), variables, bench.debias, key)
    new, threshold = result.variables, float(result.threshold)
  scores = evaluate.scores_and_activations(model, new, bench.test.x, "pool")[0]
  return evaluate.fairness_summary(bench.test.y, (scores > threshold).astype("float32"),
                                   bench.test.group)


def time_ours(name: str) -> dict:
  """Cold (first call: every program compiled) and warm seconds of one method, in this process."""
  from debiasjax import models
  from tests.torch_peers import resnet_variables
  bench, _, torch_model = setting(FLAGS.n)
  import jax
  model = models.ResNet18(num_classes=2, width=64)
  variables = jax.device_put(resnet_variables(torch_model))
  out = {}
  for run in ("cold", "warm"):
    start = time.perf_counter()
    summary = run_ours(name, model, variables, bench)
    out[run] = time.perf_counter() - start
  out["balanced_accuracy"] = summary["balanced_accuracy"]
  return out


def time_detoxai(name: str, bench, torch, torch_model) -> dict:
  """DetoxAI's ``run_correction`` of one method at its default configuration, batch 32."""
  from copy import deepcopy

  from detoxai.core import interface
  from detoxai.core.model_wrappers import FairnessLightningWrapper
  from detoxai.metrics.fairness_metrics import AllMetrics
  from detoxai.core.interface_helpers import construct_metrics_config
  from detoxai.utils.dataloader import WrappedDataLoader
  from tests.torch_peers import to_torch_images

  def loader(split):
    dataset = torch.utils.data.TensorDataset(
        to_torch_images(torch, split.x), torch.as_tensor(split.y, dtype=torch.long),
        torch.as_tensor(split.group, dtype=torch.long))
    return WrappedDataLoader(dataset, 2, batch_size=32)

  metrics = AllMetrics(construct_metrics_config("all"), class_labels=["A", "B"], num_groups=2)
  wrapped = FairnessLightningWrapper(deepcopy(torch_model),
                                     performance_metrics=metrics.get_performance_metrics(),
                                     fairness_metrics=metrics.get_fairness_metrics())
  method = DETOXAI_NAMES[name]
  config = interface.parse_methods_config({})
  kwargs = config[method] | config["global"]
  kwargs.update(model=wrapped, dataloader=loader(bench.debias),
                test_dataloader=loader(bench.test), experiment_name=f"bench_{method}")
  start = time.perf_counter()
  result = interface.run_correction(method, kwargs, ["balanced_accuracy", "equalized_odds"])
  seconds = time.perf_counter() - start
  ok = bool(result.metrics.get("all"))
  return {"seconds": seconds, "ok": ok}


def time_detoxai_public(name: str, bench, torch, torch_model) -> dict:
  """``detoxai.debias`` as its documentation calls it: a plain PyTorch loader of batch 32 (which
  it re-wraps at batch 1, ``reference/detoxai.md`` §7.2), one method, no Vanilla row."""
  import detoxai
  from tests.torch_peers import to_torch_images

  def loader(split):
    dataset = torch.utils.data.TensorDataset(
        to_torch_images(torch, split.x), torch.as_tensor(split.y, dtype=torch.long),
        torch.as_tensor(split.group, dtype=torch.long))
    return torch.utils.data.DataLoader(dataset, batch_size=32)

  start = time.perf_counter()
  result = detoxai.debias(torch_model, loader(bench.debias), methods=[DETOXAI_NAMES[name]],
                          test_dataloader=loader(bench.test), include_vanila_in_results=False,
                          num_of_classes=2)
  seconds = time.perf_counter() - start
  return {"seconds": seconds, "ok": bool(result[DETOXAI_NAMES[name]].metrics.get("all"))}


def main(argv):
  del argv
  os.environ.setdefault("XLA_FLAGS", "")
  if FLAGS.ours_only:
    from experiments.cli import compilation_cache
    compilation_cache(FLAGS.cache_dir)
    print(json.dumps(time_ours(FLAGS.ours_only)), flush=True)
    return
  bench, torch, torch_model = setting(FLAGS.n)
  torch.set_num_threads(FLAGS.threads)
  import logging
  logging.getLogger("lightning").setLevel(logging.ERROR)
  logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
  rows = []
  for name in FLAGS.methods:
    public = time_detoxai_public(name, bench, torch, torch_model)
    batched = time_detoxai(name, bench, torch, torch_model)
    with tempfile.TemporaryDirectory() as cache:
      ours = _ours_in_a_fresh_process(name, cache)             # empty compilation cache
      ours["cached"] = _ours_in_a_fresh_process(name, cache)["cold"]   # populated
    rows.append((name, public["seconds"], batched["seconds"], ours))
    print(f"{LABELS[name]:20s} DetoxAI {public['seconds']:6.1f}s (debias(); "
          f"run_correction at batch 32: {batched['seconds']:.1f}s)  ours {ours['cold']:6.1f}s "
          f"cold, {ours['cached']:.1f}s from the cache, {ours['warm']:6.2f}s warm", flush=True)
  tables = {}
  show_table(tables, "detoxai", ["method", "DetoxAI `debias()`", "DetoxAI `run_correction`, "
                                 "batch 32", "ours, first call (empty compilation cache)",
                                 "ours, new process (cache populated)", "ours, warm",
                                 "ratio with compile", "ratio warm"],
             [[LABELS[name], f"{public:.1f} s", f"{batched:.1f} s", f"{ours['cold']:.1f} s",
               f"{ours['cached']:.1f} s", f"{ours['warm']:.2f} s",
               f"{public / ours['cold']:.2f}× ({batched / ours['cold']:.2f}×)",
               f"{public / ours['warm']:.1f}× ({batched / ours['warm']:.1f}×)"]
              for name, public, batched, ours in rows],
             "Ratios: DetoxAI `debias()` / ours, in brackets DetoxAI `run_correction` at batch 32 "
             "/ ours.")
  save_record(tables, n=FLAGS.n, threads=FLAGS.threads)


def _ours_in_a_fresh_process(name: str, cache: str) -> dict:
  cmd = [sys.executable, "-m", "experiments.bench_detoxai", f"--ours_only={name}",
         f"--n={FLAGS.n}", f"--cache_dir={cache}"]
  done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env={**os.environ, "PYTHONPATH": os.getcwd()})
  if done.returncode:
    raise RuntimeError(done.stderr[-3000:])
  return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
  app.run(main)
