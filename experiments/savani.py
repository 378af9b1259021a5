r"""Reproduces Savani, White & Govindarajulu (2020), "Post-Hoc Methods for Debiasing Neural
Networks" (arXiv v1): Table 1, Figure 1 (plots 1-3) and Table 2 on a tabular dataset.

  python -m experiments.savani                          # procedural census table, ~10 min
  python -m experiments.savani --data=adult --data_dir=~/data/adult
  python -m experiments.savani --data=bank --data_dir=~/data/bank
  python -m experiments.savani --data=compas --data_dir=~/data/compas --protected=race

Protocol (the paper's code): one 60/20/20 split; ``--seeds`` MLPs (10 hidden layers of 32,
dropout 0.2, BatchNorm) that differ only in their initialisation and data order, all trained in
one vmapped program; the "Default" model takes the threshold of best validation accuracy.
Every method is fitted on the validation (debias) split and scored on the test split with the
objective ``phi = 0.75 |bias| + 0.25 (1 - accuracy)`` (lower is better) for bias = SPD, EOD
and AOD (AIF360's signed differences). Random perturbation, layer-wise optimisation and
adversarial fine-tuning run for all seeds in one vmapped program each. A constant classifier
scores ``0.25 * minority rate``: the report marks that floor.

Writes ``table1.md``, ``figure1.png``, ``figure1.md``, ``table2.md``, ``results.json`` and
``report.md`` to ``--run_dir``.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np
from absl import app, flags

from debiasjax.methods.objective import SHORT as BIAS_SHORT, SIGNED_BIASES

FLAGS = flags.FLAGS
flags.DEFINE_enum("data", "census", ["census", "adult", "bank", "compas", "german"], "Dataset.")
flags.DEFINE_string("data_dir", None, "Folder with the real CSV files.")
flags.DEFINE_string("protected", None, "Protected attribute (default: the dataset's usual one).")
flags.DEFINE_integer("n_rows", 20000, "Census: rows.")
flags.DEFINE_integer("seeds", 10, "Models (initialisation seeds), trained in one program.")
flags.DEFINE_integer("epochs", 20, "Training epochs.")
flags.DEFINE_integer("candidates", 201, "Random perturbation: candidates (v1 configs: 201).")
flags.DEFINE_integer("population", 32, "Layer-wise optimisation: population per generation.")
flags.DEFINE_integer("generations", 10, "Layer-wise optimisation: generations per layer.")
flags.DEFINE_integer("adversarial_epochs", 16, "Adversarial fine-tuning: rounds (v1: 16).")
flags.DEFINE_list("biases", ["statistical_parity", "equal_opportunity", "average_odds"],
                  "Bias measures (Figure 1's three panels).")
flags.DEFINE_string("run_dir", None, "Output folder (default runs/<time>-savani-<data>).")
flags.DEFINE_bool("overwrite", False, "Allow writing into a run_dir that holds results.")

SHORT = {b: BIAS_SHORT[b] for b in SIGNED_BIASES}     # the paper's SPD, EOD, AOD
METHODS = ("Default", "ROC", "EqOdds", "CalibEqOdds", "Random", "Adversarial", "LayerwiseOpt")
OUTPUTS = ("table1.md", "figure1.png", "figure1.md", "table2.md", "results.json", "report.md")


def log(message: str) -> None:
  print(message, flush=True)


def load(config):
  from debiasjax import data
  protected = config["protected"] or {"bank": "age", "compas": "race"}.get(config["data"], "sex")
  if config["data"] == "census":
    table = data.census(config["n_rows"], seed=0, protected=protected)
  elif config["data"] == "bank":
    table = data.bank(os.path.expanduser(config["data_dir"]), privileged_age=(25, None))
  else:
    if not config["data_dir"]:
      raise app.UsageError(f"--data={config['data']} reads files you already have: pass --data_dir")
    table = data.LOADERS[config["data"]](os.path.expanduser(config["data_dir"]), protected=protected)
  return data.table_benchmark(table, seed=101)


def train_seeds(bench, num_seeds: int, epochs: int):
  """``num_seeds`` MLPs trained in one vmapped program: stacked variables."""
  import optax
  from debiasjax import models, train
  model = models.MLP()
  keys = jax.random.split(jax.random.key(0), num_seeds)
  trainer = train.supervised(model, optax.adam(1e-3))
  states = jax.vmap(lambda k: trainer.init(k, model.init(k, bench.train.x[:1])))(keys)
  steps = len(bench.train) // 64
  states = train.fit(trainer, states, {"x": bench.train.x, "y": bench.train.y}, key=keys,
                     num_steps=epochs * steps, batch_size=64, seed=list(range(num_seeds)),
                     stacked=True, steps_per_call=steps)
  return model, train.variables_of(states)


def phi_v1(y, decision, group, bias: str):
  """Test objective, bias and accuracy of (expected) decisions."""
  from debiasjax import metrics as M
  from debiasjax.methods.objective import bias_from_confusion, performance_from_confusion
  c = M.group_confusion(y, decision, group, num_groups=2)
  b = float(bias_from_confusion(c, bias))
  acc = float(performance_from_confusion(c, "accuracy"))
  return 0.75 * abs(b) + 0.25 * (1 - acc), b, acc


def run_methods(bench, model, stacked, bias: str, config) -> tuple[dict, dict]:
  """Per method: a list of (phi, bias, accuracy) per seed; and seconds per method."""
  from debiasjax.methods import adversarial, postprocessing as P, search
  from debiasjax.evaluate import score_function
  from debiasjax.methods.objective import Objective, threshold_grid, threshold_search
  obj = Objective("v1", bias)
  score_fn = score_function(model)
  num = jax.tree.leaves(stacked)[0].shape[0]
  val, test = bench.debias, bench.test
  scores = {name: np.asarray(jax.vmap(lambda v: score_fn(v, split.x))(stacked))
            for name, split in (("val", val), ("test", test))}
  out, seconds = {m: [] for m in METHODS}, {}

  start = time.perf_counter()
  accuracy_only = Objective("v1", bias, lam=0.0)
  for i in range(num):
    t = threshold_search(accuracy_only, scores["val"][i], val.y, val.group, num_groups=2,
                         thresholds=threshold_grid(1001)).threshold
    out["Default"].append(phi_v1(test.y, scores["test"][i] > float(t), test.group, bias))
  seconds["Default"] = time.perf_counter() - start

  post = {"ROC": P.reject_option(metric=bias), "EqOdds": P.equalized_odds_postprocessing(),
          "CalibEqOdds": P.calibrated_equalized_odds(cost_constraint="fpr")}
  for name, processor in post.items():
    start = time.perf_counter()
    for i in range(num):
      state = processor.fit(scores["val"][i], val.y, val.group)
      p = np.asarray(processor.probability(state, scores["test"][i], test.group))
      out[name].append(phi_v1(test.y, p, test.group, bias))
    seconds[name] = time.perf_counter() - start

  keys = jax.random.split(jax.random.key(1), num)
  weight_methods = {
      "Random": lambda v, k: search.random_perturbation(
          score_fn, v, val, key=k, objective=obj, num_candidates=config["candidates"],
          num_groups=2),
      "Adversarial": lambda v, k: adversarial.savani_adversarial(
          model, v, val, key=k, layer=f"layer{model.num_layers}", objective=obj,
          epochs=config["adversarial_epochs"], num_groups=2),
      "LayerwiseOpt": lambda v, k: search.layerwise_optimisation(
          score_fn, v, val, key=k, objective=obj, layers=[f"layer{model.num_layers}", "head"],
          population=config["population"], generations=config["generations"], num_groups=2),
  }
  for name, fn in weight_methods.items():
    start = time.perf_counter()
    result = jax.vmap(lambda v, k: (lambda r: (r.variables, r.threshold))(fn(v, k)))(stacked, keys)
    variables, thresholds = jax.block_until_ready(result)
    test_scores = np.asarray(jax.vmap(lambda v: score_fn(v, test.x))(variables))
    seconds[name] = time.perf_counter() - start
    for i in range(num):
      out[name].append(phi_v1(test.y, test_scores[i] > float(thresholds[i]), test.group, bias))
  return out, seconds


def mean_std(values) -> str:
  return f"{np.mean(values):+.3f} ± {np.std(values):.3f}"


def figure1(results: dict, biases, floor: float, path: str, title: str) -> None:
  from debiasjax.report import pyplot, save_png
  plt = pyplot()
  fig, axes = plt.subplots(1, len(biases), figsize=(4.2 * len(biases), 3.6), squeeze=False)
  for ax, bias in zip(axes[0], biases):
    phis = [[r[0] for r in results[bias][m]] for m in METHODS]
    ax.bar(range(len(METHODS)), [np.mean(p) for p in phis], yerr=[np.std(p) for p in phis],
           color="#4c72b0", capsize=3)
    ax.axhline(floor, color="k", ls="--", lw=1, label="constant classifier")
    ax.set_xticks(range(len(METHODS)), METHODS, rotation=45, ha="right", fontsize=8)
    ax.set_title(f"{SHORT[bias]}: 0.75|bias| + 0.25(1-acc)", fontsize=9)
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  save_png(fig, path)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from debiasjax import report
  from debiasjax.report import atomic_write, markdown_table
  config = {k: FLAGS[k].value for k in ("data", "data_dir", "protected", "n_rows", "seeds", "epochs",
                                        "candidates", "population", "generations",
                                        "adversarial_epochs", "biases")}
  unknown = [b for b in config["biases"] if b not in SHORT]
  if unknown:
    raise app.UsageError(f"--biases: unknown {unknown}; available: {', '.join(SHORT)}")
  run_dir = FLAGS.run_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + f"-savani-{config['data']}")
  try:
    report.check_run_dir(run_dir, overwrite=FLAGS.overwrite, outputs=OUTPUTS)
    bench = load(config)
  except (ValueError, FileNotFoundError, FileExistsError) as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
  log(f"data: {bench.info['name']} train {len(bench.train)} / validation {len(bench.debias)} / "
      f"test {len(bench.test)}")
  start = time.perf_counter()
  model, stacked = train_seeds(bench, config["seeds"], config["epochs"])
  log(f"trained {config['seeds']} MLPs in one program ({time.perf_counter() - start:.0f}s)")

  results, timings = {}, {}
  for bias in config["biases"]:
    log(f"\n{SHORT[bias]}: running {', '.join(METHODS)}")
    results[bias], timings[bias] = run_methods(bench, model, stacked, bias, config)
    for m in METHODS:
      log(f"  {m:13s} phi {mean_std([r[0] for r in results[bias][m]])}  bias "
          f"{mean_std([r[1] for r in results[bias][m]])}  accuracy "
          f"{mean_std([r[2] for r in results[bias][m]])}  ({timings[bias][m]:.1f}s)")

  minority = min(bench.test.y.mean(), 1 - bench.test.y.mean())
  floor = 0.25 * minority
  default = {b: results[b]["Default"] for b in config["biases"]}
  table1 = markdown_table(["Dataset"] + [SHORT[b] for b in config["biases"]] + ["accuracy"],
                          [[bench.info["name"]] + [mean_std([r[1] for r in default[b]]) for b in config["biases"]]
                           + [mean_std([r[2] for r in default[config["biases"][0]]])]])
  fig_rows = [[m] + [f"{np.mean([r[0] for r in results[b][m]]):.3f} ± {np.std([r[0] for r in results[b][m]]):.3f}"
                     for b in config["biases"]] for m in METHODS]
  fig_table = markdown_table(["Method"] + [f"phi ({SHORT[b]})" for b in config["biases"]], fig_rows)
  table2 = markdown_table(["Method", f"seconds, all {config['seeds']} seeds (mean over biases)",
                           "seconds per seed"],
                          [[m, f"{np.mean([timings[b][m] for b in config['biases']]):.2f}",
                            f"{np.mean([timings[b][m] for b in config['biases']]) / config['seeds']:.3f}"]
                           for m in METHODS])
  os.makedirs(run_dir, exist_ok=True)
  figure1(results, config["biases"], floor, os.path.join(run_dir, "figure1.png"),
          f"{bench.info['name']}: test objective over {config['seeds']} seeds (lower is better)")
  atomic_write(os.path.join(run_dir, "table1.md"), table1 + "\n")
  atomic_write(os.path.join(run_dir, "figure1.md"), fig_table + "\n")
  atomic_write(os.path.join(run_dir, "table2.md"), table2 + "\n")
  atomic_write(os.path.join(run_dir, "results.json"), json.dumps(
      {"config": config, "floor": floor, "timings": timings,
       "results": {b: {m: [list(map(float, r)) for r in v] for m, v in rs.items()}
                   for b, rs in results.items()}}, indent=1))
  command = "python -m experiments.savani " + " ".join(sys.argv[1:])
  text = (f"# Savani et al. (2020) on {bench.info['name']}\n\n`{command}`\n\n"
          f"## Table 1: bias and accuracy of the Default models ({config['seeds']} seeds, test split)\n\n"
          f"{table1}\n\n## Figure 1: test objective 0.75 |bias| + 0.25 (1 - accuracy) (`figure1.png`)\n\n"
          f"{fig_table}\n\nA constant classifier scores {floor:.3f} (0.25 x the minority rate "
          f"{minority:.3f}); values near it mean the method gave up accuracy for bias.\n\n"
          f"## Table 2: runtime per method\n\n{table2}\n")
  atomic_write(os.path.join(run_dir, "report.md"), text)
  log("\n" + text)
  log(f"wrote {', '.join(OUTPUTS)} to {run_dir}")


if __name__ == "__main__":
  app.run(main)
