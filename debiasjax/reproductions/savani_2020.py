r"""Savani, White & Govindarajulu (2020), "Post-Hoc Methods for Debiasing Neural
Networks" (arXiv v1): Table 1, Figure 1 (plots 1-3) and Table 2 on a tabular dataset. Protocol
(the paper's code): one 60/20/20 split; ``seeds`` MLPs (10 hidden layers of 32, dropout 0.2,
BatchNorm) that differ only in their initialisation and data order, all trained in one vmapped
program; the "Default" model takes the threshold of best validation accuracy. Every method is
fitted on the validation (debias) split and scored on the test split with the objective
``phi = 0.75 |bias| + 0.25 (1 - accuracy)`` (lower is better) for bias = SPD, EOD and AOD
(AIF360's signed differences). Random perturbation, layer-wise optimisation and adversarial
fine-tuning run for all seeds in one vmapped program each. A constant classifier scores
``0.25 * minority rate``: the report marks that floor.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import jax
import numpy as np

from debiasjax.methods.objective import SHORT as BIAS_SHORT, SIGNED_BIASES
from debiasjax.reproductions.common import silent as _silent

SHORT = {b: BIAS_SHORT[b] for b in SIGNED_BIASES}     # the paper's SPD, EOD, AOD
SAVANI_METHODS = ("Default", "ROC", "EqOdds", "CalibEqOdds", "Random", "Adversarial",
                  "LayerwiseOpt")
SAVANI_OUTPUTS = ("table1.md", "figure1.png", "figure1.md", "table2.md", "results.json",
                  "report.md")


def train_seeds(bench, num_seeds: int, epochs: int):
  """``num_seeds`` MLPs trained in one vmapped program: ``(model, stacked variables)``."""
  import optax
  from debiasjax import models, train
  model = models.MLP()
  keys = jax.random.split(jax.random.key(0), num_seeds)
  trainer = train.supervised(model, optax.adam(1e-3))
  states = jax.vmap(trainer.init)(keys, train.initial_variables(model, keys, bench.train.x))
  steps = len(bench.train) // 64
  states = train.fit(trainer, states, {"x": bench.train.x, "y": bench.train.y}, key=keys,
                     num_steps=epochs * steps, batch_size=64, seed=list(range(num_seeds)),
                     stacked=True, steps_per_call=steps)
  return model, train.variables_of(states)


def phi_v1(y, decision, group, bias: str):
  """Test objective, bias and accuracy of (expected) decisions (Savani's v1 objective)."""
  from debiasjax import metrics as M
  from debiasjax.methods.objective import Objective
  c = M.group_confusion(y, decision, group, num_groups=2)
  ev = Objective("v1", bias).evaluate(c)
  return float(ev["phi"]), float(ev["bias"]), float(ev["performance"])


def savani_methods(bench, model, stacked, bias: str, config) -> tuple[dict, dict]:
  """Per method: a list of (phi, bias, accuracy) per seed; and seconds per method."""
  from debiasjax import methods as dm
  from debiasjax.evaluate import score_function
  from debiasjax.methods.objective import Objective, threshold_grid, threshold_search
  obj = Objective("v1", bias)
  score_fn = score_function(model)
  num = jax.tree.leaves(stacked)[0].shape[0]
  val, test = bench.debias, bench.test
  scores = {name: np.asarray(jax.vmap(lambda v: score_fn(v, split.x))(stacked))
            for name, split in (("val", val), ("test", test))}
  out, seconds = {m: [] for m in SAVANI_METHODS}, {}

  start = time.perf_counter()
  accuracy_only = Objective("v1", bias, lam=0.0)
  for i in range(num):
    t = threshold_search(accuracy_only, scores["val"][i], val.y, val.group, num_groups=2,
                         thresholds=threshold_grid(1001)).threshold
    out["Default"].append(phi_v1(test.y, scores["test"][i] > float(t), test.group, bias))
  seconds["Default"] = time.perf_counter() - start

  post = {"ROC": dm.reject_option(metric=bias), "EqOdds": dm.equalized_odds_postprocessing(),
          "CalibEqOdds": dm.calibrated_equalized_odds(cost_constraint="fpr")}
  for name, processor in post.items():
    start = time.perf_counter()
    for i in range(num):
      state = processor.fit(scores["val"][i], val.y, val.group)
      p = np.asarray(processor.probability(state, scores["test"][i], test.group))
      out[name].append(phi_v1(test.y, p, test.group, bias))
    seconds[name] = time.perf_counter() - start

  keys = jax.random.split(jax.random.key(1), num)
  layer = f"layer{model.num_layers}"
  searches = {
      "Random": dm.random_perturbation(objective=obj, num_candidates=config.candidates,
                                       num_groups=2),
      "LayerwiseOpt": dm.layerwise_optimisation(objective=obj, layers=[layer, "head"],
                                                population=config.population,
                                                generations=config.generations, num_groups=2)}
  runs = {name: (lambda s: lambda: jax.vmap(lambda v, k: (lambda r: (r.variables, r.threshold))(
      s.search(score_fn, v, val, k)))(stacked, keys))(s) for name, s in searches.items()}
  adversarial = dm.savani_adversarial(objective=obj, epochs=config.adversarial_epochs, layer=layer)
  runs["Adversarial"] = lambda: (lambda r: (r.variables, r.threshold))(dm.finetuning.tune_stacked(
      adversarial, model, stacked, val, keys=keys, num_groups=2))
  for name in ("Random", "Adversarial", "LayerwiseOpt"):
    start = time.perf_counter()
    variables, thresholds = jax.block_until_ready(runs[name]())
    test_scores = np.asarray(jax.vmap(lambda v: score_fn(v, test.x))(variables))
    seconds[name] = time.perf_counter() - start
    for i in range(num):
      out[name].append(phi_v1(test.y, test_scores[i] > float(thresholds[i]), test.group, bias))
  return out, seconds


def _mean_std(values, sign: str = "+") -> str:
  """Mean ± population sd; ``sign="+"`` for signed quantities (biases), ``""`` otherwise."""
  return f"{np.mean(values):{sign}.3f} ± {np.std(values):.3f}"


def _figure1(results: dict, biases, floor: float, path: str, title: str) -> None:
  from debiasjax.report import pyplot, save_png
  plt = pyplot()
  fig, axes = plt.subplots(1, len(biases), figsize=(4.2 * len(biases), 3.6), squeeze=False)
  for ax, bias in zip(axes[0], biases):
    phis = [[r[0] for r in results[bias][m]] for m in SAVANI_METHODS]
    ax.bar(range(len(SAVANI_METHODS)), [np.mean(p) for p in phis],
           yerr=[np.std(p) for p in phis], color="#4c72b0", capsize=3)
    ax.axhline(floor, color="k", ls="--", lw=1, label="constant classifier")
    ax.set_xticks(range(len(SAVANI_METHODS)), SAVANI_METHODS, rotation=45, ha="right",
                  fontsize=8)
    ax.set_title(f"{SHORT[bias]}: 0.75|bias| + 0.25(1-acc)", fontsize=9)
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  save_png(fig, path)


def savani(config, workdir: str, *, command: str = "", overwrite: bool = False,
           log: Callable[[str], None] = _silent) -> dict:
  """Savani et al.'s Table 1, Figure 1 and Table 2 (``experiments/configs/savani.py``), written
  to ``workdir``; returns ``{bias: {method: [(phi, bias, accuracy) per seed]}}``."""
  from debiasjax import pipeline, report
  biases = [b.strip() for b in str(config.biases).split(",") if b.strip()]
  unknown = [b for b in biases if b not in SHORT]
  if unknown or not biases:
    raise ValueError(f"biases: unknown {unknown}; available: {', '.join(SHORT)}")
  if config.data.name not in pipeline.TABLE_DATA:
    raise ValueError(f"data.name: expected a table of {list(pipeline.TABLE_DATA)}, got "
                     f"{config.data.name!r}")
  if config.data.name != "census" and not config.data.data_dir:
    raise ValueError(f"data.data_dir: data.name={config.data.name} reads files you already "
                     "have; pass --config.data.data_dir=<folder>")
  with report.run_outputs(workdir, overwrite=overwrite, outputs=SAVANI_OUTPUTS) as stage:
    results = _savani_outputs(config, biases, stage, command=command, log=log)
  log(f"wrote {', '.join(SAVANI_OUTPUTS)} to {workdir}")
  return results


def _savani_outputs(config, biases, stage: str, *, command: str, log: Callable) -> dict:
  """Savani's experiments, their tables and figure written into ``stage``."""
  from debiasjax import pipeline
  from debiasjax.report import atomic_write, markdown_table, provenance
  bench = pipeline.load_benchmark(config)
  log(f"data: {bench.info['name']} train {len(bench.train)} / validation {len(bench.debias)} / "
      f"test {len(bench.test)}")
  start = time.perf_counter()
  model, stacked = train_seeds(bench, config.seeds, config.epochs)
  log(f"trained {config.seeds} MLPs in one program ({time.perf_counter() - start:.0f}s)")

  results, timings = {}, {}
  for bias in biases:
    log(f"\n{SHORT[bias]}: running {', '.join(SAVANI_METHODS)}")
    results[bias], timings[bias] = savani_methods(bench, model, stacked, bias, config)
    for m in SAVANI_METHODS:
      log(f"  {m:13s} phi {_mean_std([r[0] for r in results[bias][m]], '')}  bias "
          f"{_mean_std([r[1] for r in results[bias][m]])}  accuracy "
          f"{_mean_std([r[2] for r in results[bias][m]], '')}  ({timings[bias][m]:.1f}s)")

  minority = min(bench.test.y.mean(), 1 - bench.test.y.mean())
  floor = 0.25 * minority
  default = {b: results[b]["Default"] for b in biases}
  name = bench.info["name"]
  table1 = markdown_table(["Dataset"] + [SHORT[b] for b in biases] + ["accuracy"],
                          [[name] + [_mean_std([r[1] for r in default[b]]) for b in biases]
                           + [_mean_std([r[2] for r in default[biases[0]]], "")]])
  fig_rows = [[m] + [f"{np.mean([r[0] for r in results[b][m]]):.3f} ± "
                     f"{np.std([r[0] for r in results[b][m]]):.3f}" for b in biases]
              for m in SAVANI_METHODS]
  fig_table = markdown_table(["Method"] + [f"phi ({SHORT[b]})" for b in biases], fig_rows)
  table2 = markdown_table(["Method", f"seconds, all {config.seeds} seeds (mean over biases)",
                           "seconds per seed"],
                          [[m, f"{np.mean([timings[b][m] for b in biases]):.2f}",
                            f"{np.mean([timings[b][m] for b in biases]) / config.seeds:.3f}"]
                           for m in SAVANI_METHODS])
  _figure1(results, biases, floor, os.path.join(stage, "figure1.png"),
           f"{name}: test objective over {config.seeds} seeds (lower is better)")
  atomic_write(os.path.join(stage, "table1.md"), table1 + "\n")
  atomic_write(os.path.join(stage, "figure1.md"), fig_table + "\n")
  atomic_write(os.path.join(stage, "table2.md"), table2 + "\n")
  floor_note = (f"A constant classifier scores {floor:.3f} (0.25 × the minority rate "
                f"{minority:.3f}); values near it mean the method gave up accuracy for bias.")
  atomic_write(os.path.join(stage, "results.json"), json.dumps(
      {"command": command, "provenance": provenance(), "config": config.to_dict(),
       "tables": {"table1": table1, "figure1": f"{fig_table}\n\n{floor_note}",
                  "table2": table2},
       "floor": floor, "timings": timings,
       "results": {b: {m: [list(map(float, r)) for r in v] for m, v in rs.items()}
                   for b, rs in results.items()}}, indent=1))
  text = (f"# Savani et al. (2020) on {name}\n\n`{command}`\n\n"
          f"## Table 1: bias and accuracy of the Default models ({config.seeds} seeds, test "
          f"split)\n\n{table1}\n\n## Figure 1: test objective 0.75 |bias| + 0.25 (1 - accuracy) "
          f"(`figure1.png`)\n\n{fig_table}\n\n{floor_note}\n\n## Table 2: runtime per "
          f"method\n\n{table2}\n")
  atomic_write(os.path.join(stage, "report.md"), text)
  log("\n" + text)
  return results
