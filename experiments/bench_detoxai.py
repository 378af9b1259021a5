r"""DetoxAI side by side at equal work: every method family with the images through the network
counted on both sides, DetoxAI's activation cache cleared, and our pass-count floor.

  .venv/bin/pip install -r requirements-bench.txt && .venv/bin/pip install --no-deps detoxai==0.3.8
  python -m experiments.bench_detoxai                      # all methods, ~13 minutes on 2 cores
  python -m experiments.bench_detoxai --methods=pclarc,leace

Setting: N = 256 faces of 64x64 in the debias split and 256 in the test split, a torchvision
ResNet-18 (width 64, two classes, random weights and BatchNorm statistics) and its Flax twin
with the same weights, loaders of batch 32, 2 threads. Each method fits on the debias split and
evaluates on the test split on both sides:

* DetoxAI through ``detoxai.core.interface.run_correction`` with a DetoxAI loader of batch 32
  (what ``debias`` runs per method when given a ``DetoxaiDataset``), the equal-work peer; and
  through its public ``detoxai.debias(model, loader, methods=[M], test_dataloader=...)`` with a
  plain loader, which it re-wraps at batch 1 (``reference/detoxai.md`` §7.2): what its users
  get, not equal work. DetoxAI keeps a method's activations in ``<activations>/<experiment>.npz``
  and loads them on a later call of the same experiment name, skipping its forward passes: every
  call here has an experiment name of its own, and the files a call wrote are deleted after it.
* Ours does the same work: P-ClArC and LEACE at the penultimate layer (``pool``), signal CAV,
  activations of both splits from the one forward program and the test split scored through the
  layers after the edit; A-ClArC and RR-ClArC (lambda 1, max-logit criterion, L2) fine-tune every
  parameter for one epoch (8 steps of 32, Adam 1e-3); fine-tuning one epoch at 1e-4; random
  perturbation scores the model and 15 perturbed copies (sigma 0.1) at 100 thresholds on the
  debias split.

Images through the network are counted on both sides: on DetoxAI's by hooks on the network's
first convolution (forward: every batch it sees; backward: every batch whose gradient reaches
it), on ours by a counting stem convolution (``experiments.counting``: a ``pure_callback`` in
forward and backward that XLA removes with a pass it finds dead) in a run of its own. A side's
**floor** is its forward images times its eval forward per image plus its backward images times
its training step per image (forward, backward, Adam over every parameter), measured in the same
run: ours at batch 256 (the scoring batch) and 32 (the methods' training batch), right after
the method's warm calls in its process; torch's at batch 32.

Ours is timed in a fresh process with an empty compilation cache (first call: every program
compiled), again in that process (warm: the median of three calls), and in a second fresh
process whose persistent compilation cache the first one filled (the second run of a command).
Prints a markdown table for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from absl import app, flags

from experiments.cli import define_record_flag, save_record, show_table

define_record_flag()
flags.DEFINE_list("methods", ["pclarc", "leace", "aclarc", "rrclarc", "finetune", "random"],
                  "Methods to compare.")
flags.DEFINE_integer("n", 256, "Images in the debias split and in the test split.")
flags.DEFINE_integer("threads", 2, "CPU threads of both sides.")
flags.DEFINE_integer("warm_repeats", 3, "Warm calls of each of our methods (the median is kept).")
flags.DEFINE_string("ours_only", None, "Internal: time one of our methods in this process.")
flags.DEFINE_bool("count", False, "Internal: with --ours_only, count the images instead.")
flags.DEFINE_string("cache_dir", None, "Internal: the compilation cache of --ours_only.")
FLAGS = flags.FLAGS

DETOXAI_NAMES = {"pclarc": "PCLARC", "leace": "LEACE", "aclarc": "ACLARC", "rrclarc": "RRCLARC",
                 "finetune": "FINETUNE", "random": "SAVANIRP"}
LABELS = {"pclarc": "P-ClArC", "leace": "LEACE", "aclarc": "A-ClArC", "rrclarc": "RR-ClArC",
          "finetune": "fine-tuning", "random": "random perturbation"}
FORWARD_BATCH, STEP_BATCH = 256, 32     # our scoring batch and the methods' training batch
# DetoxAI's random perturbation scores each candidate on 3 shuffled batches of 128 drawn from the
# debias split (384 images of 256, some twice); 2 batches score the split once, as ours does.
EQUAL_WORK = {"SAVANIRP": {"n_eval_batches": 2}}


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
  common = dict(layer="pool", pooling="none", trainable="all", num_steps=8, batch_size=STEP_BATCH,
                learning_rate=1e-3, decorrelate=False)
  if name == "aclarc":
    return dm.a_clarc(**common)
  if name == "rrclarc":
    return dm.rr_clarc(lam=1.0, criterion="max_logit", aggregation="l2", **common)
  if name == "finetune":
    return dm.fine_tune(objective=None, num_steps=8, batch_size=STEP_BATCH, learning_rate=1e-4)
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


def count_ours(name: str) -> dict:
  """Images through our network (forward, and backward to the stem) in one call of a method."""
  import jax
  from debiasjax import models
  from experiments.counting import counting_stem
  from tests.torch_peers import resnet_variables
  bench, _, torch_model = setting(FLAGS.n)
  model = models.ResNet18(num_classes=2, width=64)
  with counting_stem({}) as counts:
    run_ours(name, model, jax.device_put(resnet_variables(torch_model)), bench)
  return counts


def time_ours(name: str) -> dict:
  """Cold (first call: every program compiled) and warm seconds of one method, then our kernels
  (:func:`our_kernels`), in this process."""
  from debiasjax import models
  from tests.torch_peers import resnet_variables
  bench, _, torch_model = setting(FLAGS.n)
  import jax
  model = models.ResNet18(num_classes=2, width=64)
  variables = jax.device_put(resnet_variables(torch_model))
  times = []
  for _ in range(1 + FLAGS.warm_repeats):
    start = time.perf_counter()
    summary = run_ours(name, model, variables, bench)
    times.append(time.perf_counter() - start)
  return {"cold": times[0], "warm": statistics.median(times[1:]),
          "balanced_accuracy": summary["balanced_accuracy"],
          "kernels": our_kernels(model, variables, bench)}


def our_kernels(model, variables, bench) -> dict:
  """Seconds per image of our eval forward (batch 256, the scoring batch) and of our training
  step (forward, backward and Adam over every parameter, train-mode BatchNorm; batch 32), on
  the benchmark's network and images, warm (median of 5)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax
  from debiasjax import evaluate, train
  from experiments.cli import timed
  x = np.concatenate([bench.debias.x, bench.test.x])[:FORWARD_BATCH]
  score = jax.jit(evaluate.score_function(model))
  forward = timed(lambda: score(variables, x), 5) / FORWARD_BATCH
  trainer = train.supervised(model, optax.adam(1e-3))
  state = trainer.init(jax.random.key(0), variables)
  batch = {"x": jnp.asarray(bench.debias.x[:STEP_BATCH]),
           "y": jnp.asarray(bench.debias.y[:STEP_BATCH], jnp.int32)}
  update = jax.jit(trainer.update)
  step = timed(lambda: update(state, batch, jax.random.key(0)), 5) / STEP_BATCH
  return {"forward": forward, "step": step}


def torch_kernels(torch, torch_model, bench) -> dict:
  """Seconds per image of PyTorch's eval forward and training step (forward, backward and Adam
  over every parameter, train-mode BatchNorm), both at batch 32 as DetoxAI runs them, warm
  (median of 5)."""
  from copy import deepcopy

  from experiments.cli import timed
  from tests.torch_peers import to_torch_images
  model = deepcopy(torch_model)
  x = to_torch_images(torch, bench.debias.x[:STEP_BATCH])
  y = torch.as_tensor(bench.debias.y[:STEP_BATCH], dtype=torch.long)

  def forward():
    with torch.no_grad():
      return model.eval()(x)

  optimizer = torch.optim.Adam(model.parameters(), 1e-3)

  def step():
    model.train()
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()

  return {"forward": timed(forward, 5) / STEP_BATCH, "step": timed(step, 5) / STEP_BATCH}


def floor(images: dict, kernels: dict) -> float:
  """Seconds the counted images take at the kernels' per-image times."""
  return images["forward"] * kernels["forward"] + images["backward"] * kernels["step"]


class TorchCounts:
  """Images through a torchvision network, counted by hooks on its first convolution: forward
  (every batch it computes) and backward (every batch whose gradient reaches its output). The
  hooks travel with ``copy.deepcopy`` of the model (DetoxAI copies it), the counts stay here."""

  def __init__(self, model):
    self.forward = self.backward = 0

    def hook(module, inputs, output):
      self.forward += output.shape[0]
      if output.requires_grad:
        output.register_hook(lambda g: self._backward(g.shape[0]))
    self.handle = model.conv1.register_forward_hook(hook)

  def _backward(self, rows):
    self.backward += rows

  def take(self) -> dict:
    out = {"forward": self.forward, "backward": self.backward}
    self.forward = self.backward = 0
    return out


def activation_files() -> set:
  from detoxai.methods.utils import ACTIVATIONS_DIR
  return {os.path.join(ACTIVATIONS_DIR, f) for f in os.listdir(ACTIVATIONS_DIR)}


def without_activation_cache(run):
  """``run(experiment_name)`` with a name no earlier call used, so DetoxAI's activation cache
  holds nothing for it; the files the call wrote are deleted afterwards."""
  before = activation_files()
  try:
    return run(f"bench_{uuid.uuid4().hex}")
  finally:
    for path in activation_files() - before:
      os.remove(path)


def torch_dataset(torch, split):
  """A split as the ``(image NCHW, label, group)`` tensors DetoxAI's loaders iterate."""
  from tests.torch_peers import to_torch_images
  return torch.utils.data.TensorDataset(
      to_torch_images(torch, split.x), torch.as_tensor(split.y, dtype=torch.long),
      torch.as_tensor(split.group, dtype=torch.long))


def time_detoxai(name: str, bench, torch, torch_model, counts: TorchCounts) -> dict:
  """DetoxAI's ``run_correction`` of one method at its default configuration, batch 32."""
  from copy import deepcopy

  from detoxai.core import interface
  from detoxai.core.model_wrappers import FairnessLightningWrapper
  from detoxai.metrics.fairness_metrics import AllMetrics
  from detoxai.core.interface_helpers import construct_metrics_config
  from detoxai.utils.dataloader import WrappedDataLoader

  def loader(split):
    return WrappedDataLoader(torch_dataset(torch, split), 2, batch_size=32)

  metrics = AllMetrics(construct_metrics_config("all"), class_labels=["A", "B"], num_groups=2)
  method = DETOXAI_NAMES[name]

  def run(experiment):
    wrapped = FairnessLightningWrapper(deepcopy(torch_model),
                                       performance_metrics=metrics.get_performance_metrics(),
                                       fairness_metrics=metrics.get_fairness_metrics())
    config = interface.parse_methods_config({})
    kwargs = config[method] | config["global"]
    kwargs.update(model=wrapped, dataloader=loader(bench.debias),
                  test_dataloader=loader(bench.test), experiment_name=experiment,
                  **EQUAL_WORK.get(method, {}))
    counts.take()
    start = time.perf_counter()
    result = interface.run_correction(method, kwargs, ["balanced_accuracy", "equalized_odds"])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "ok": bool(result.metrics.get("all")), **counts.take()}

  return without_activation_cache(run)


def time_detoxai_public(name: str, bench, torch, torch_model, counts: TorchCounts) -> dict:
  """``detoxai.debias`` as its documentation calls it: a plain PyTorch loader of batch 32 (which
  it re-wraps at batch 1, ``reference/detoxai.md`` §7.2), one method, no Vanilla row. It names
  its experiment by the time of the call, so it never reuses a cache file."""
  import detoxai

  def loader(split):
    return torch.utils.data.DataLoader(torch_dataset(torch, split), batch_size=32)

  def run(experiment):
    del experiment
    counts.take()
    start = time.perf_counter()
    result = detoxai.debias(torch_model, loader(bench.debias), methods=[DETOXAI_NAMES[name]],
                            test_dataloader=loader(bench.test), include_vanila_in_results=False,
                            num_of_classes=2)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "ok": bool(result[DETOXAI_NAMES[name]].metrics.get("all")),
            **counts.take()}

  return without_activation_cache(run)


def passes(counts: dict) -> str:
  return f"{counts['forward']} + {counts['backward']}"


def main(argv):
  del argv
  os.environ.setdefault("XLA_FLAGS", "")
  if FLAGS.ours_only:
    from experiments.cli import compilation_cache
    compilation_cache(FLAGS.cache_dir)
    out = count_ours(FLAGS.ours_only) if FLAGS.count else time_ours(FLAGS.ours_only)
    print(json.dumps(out), flush=True)
    return
  bench, torch, torch_model = setting(FLAGS.n)
  torch.set_num_threads(FLAGS.threads)
  import logging
  logging.getLogger("lightning").setLevel(logging.ERROR)
  logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
  counts = TorchCounts(torch_model)
  rows = []
  for name in FLAGS.methods:
    public = time_detoxai_public(name, bench, torch, torch_model, counts)
    batched = time_detoxai(name, bench, torch, torch_model, counts)
    batched["kernels"] = torch_kernels(torch, torch_model, bench)
    batched["floor"] = floor(batched, batched["kernels"])
    with tempfile.TemporaryDirectory() as cache:
      ours = _ours_in_a_fresh_process(name, cache)             # empty compilation cache
      ours["cached"] = _ours_in_a_fresh_process(name, cache)["cold"]   # populated
      ours["images"] = _ours_in_a_fresh_process(name, cache, count=True)
    ours["floor"] = floor(ours["images"], ours["kernels"])
    rows.append((name, public, batched, ours))
    print(f"{LABELS[name]:20s} DetoxAI {batched['seconds']:.2f}s ({passes(batched)} images, "
          f"floor {batched['floor']:.2f}s; debias() {public['seconds']:.1f}s); ours "
          f"{ours['warm']:.2f}s warm, {ours['cold']:.1f}s cold, {ours['cached']:.1f}s from the "
          f"cache ({passes(ours['images'])} images, floor {ours['floor']:.2f}s)", flush=True)
  tables = {}
  show_table(
      tables, "detoxai",
      ["method", "images, fwd + bwd (DetoxAI / ours)", "DetoxAI `run_correction`, batch 32",
       "DetoxAI floor", "ours, warm", "our floor", "ours warm / floor",
       "equal work, warm: DetoxAI / ours", "ours, first call (empty compilation cache)",
       "ours, new process (cache populated)", "equal work, with compilation: DetoxAI / ours"],
      [[LABELS[name], f"{passes(batched)} / {passes(ours['images'])}",
        f"{batched['seconds']:.2f} s", f"{batched['floor']:.2f} s", f"{ours['warm']:.2f} s",
        f"{ours['floor']:.2f} s", f"{ours['warm'] / ours['floor']:.2f}",
        f"{batched['seconds'] / ours['warm']:.2f}×", f"{ours['cold']:.1f} s",
        f"{ours['cached']:.1f} s",
        f"{batched['seconds'] / ours['cold']:.2f}× ({batched['seconds'] / ours['cached']:.2f}× "
        "from the cache)"]
       for name, public, batched, ours in rows],
      "Images: forward + backward through each network in one call, counted on DetoxAI's side by "
      "hooks on its first convolution and on ours by a counting stem convolution. DetoxAI's "
      "activation cache was cleared for every call (an experiment name of its own, the files it "
      "wrote deleted after it). Floor: the counted images times the side's own eval forward and "
      "training step per image (forward, backward, Adam), measured in the same run, in ms: "
      + "; ".join(f"{LABELS[name]}: DetoxAI {1e3 * batched['kernels']['forward']:.2f} / "
                  f"{1e3 * batched['kernels']['step']:.2f}, ours "
                  f"{1e3 * ours['kernels']['forward']:.2f} / {1e3 * ours['kernels']['step']:.2f}"
                  for name, _, batched, ours in rows) + ".")
  show_table(
      tables, "public",
      ["method", "DetoxAI `debias()` (what its users get: batch 1)", "images, fwd + bwd",
       "ours, warm", "ours, first call", "DetoxAI `debias()` / ours, warm (with compilation)"],
      [[LABELS[name], f"{public['seconds']:.1f} s", passes(public), f"{ours['warm']:.2f} s",
        f"{ours['cold']:.1f} s",
        f"{public['seconds'] / ours['warm']:.1f}× ({public['seconds'] / ours['cold']:.2f}×)"]
       for name, public, batched, ours in rows],
      "Not equal work: `debias()` re-wraps a plain loader at batch 1, so its fine-tuning takes "
      "one-image steps, and its random perturbation scores 3 batches of 128 per candidate.")
  save_record(tables, n=FLAGS.n, threads=FLAGS.threads,
              methods={name: {"detoxai": batched, "detoxai_debias": public, "ours": ours}
                       for name, public, batched, ours in rows})


def _ours_in_a_fresh_process(name: str, cache: str, count: bool = False) -> dict:
  cmd = [sys.executable, "-m", "experiments.bench_detoxai", f"--ours_only={name}",
         f"--n={FLAGS.n}", f"--cache_dir={cache}", f"--warm_repeats={FLAGS.warm_repeats}"]
  if count:
    cmd.append("--count")
  done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env={**os.environ, "PYTHONPATH": os.getcwd()})
  if done.returncode:
    raise RuntimeError(done.stderr[-3000:])
  return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
  app.run(main)
