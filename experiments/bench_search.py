r"""Benchmark: Savani's random perturbation and adversarial fine-tuning against sequential loops.

  python -m experiments.bench_search          # about 3 minutes on 2 CPU cores

Same trained model (Savani's MLP, 10 x 32, trained 10 epochs on the procedural census table)
and the same debias split (4,000 rows) for both sides, objective v1 on SPD.

* **Random perturbation.** Ours: K = 201 candidates, 501 thresholds, one vmapped call (warm;
  the first, compiling call reported apart). Reference: the paper's code path -- one candidate
  at a time (perturb the original weights, one forward pass), then one threshold at a time
  (``y_hat = s > t``, scikit-learn ``accuracy_score``, the bias as masked means, the objective),
  timed on ``--reference_candidates`` candidates and reported per candidate.
* **Adversarial fine-tuning.** Ours: the v1 schedule (16 rounds of 201 critic and 101 actor
  steps, minibatch 64) compiled into one program. Reference: the same steps as the paper's code
  runs them, in PyTorch (when installed, as in the test requirements), one optimiser step at a
  time, on the same weights.

Results: docs/benchmarks.md.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import optax
from absl import app, flags

from experiments.cli import define_record_flag, save_record, show_table

from debiasjax import data, models, train
from debiasjax.methods import adversarial, search
from debiasjax.methods.finetuning import tune
from debiasjax.evaluate import score_function
from debiasjax.methods.objective import Objective

define_record_flag()
flags.DEFINE_integer("candidates", 201, "Random perturbation: candidates K.")
flags.DEFINE_integer("reference_candidates", 5, "Candidates timed in the sequential loop.")
flags.DEFINE_integer("epochs", 16, "Adversarial fine-tuning: rounds.")
flags.DEFINE_integer("reference_epochs", 1, "Rounds timed in the PyTorch loop.")
FLAGS = flags.FLAGS
OBJECTIVE = Objective("v1", "statistical_parity")


def trained_mlp():
  bench = data.table_benchmark(data.census(20000, seed=0), seed=0)
  model = models.MLP()
  key = jax.random.key(0)
  trainer = train.supervised(model, optax.adam(1e-3))
  state = trainer.init(key, model.init(key, bench.train.x[:1]))
  steps = len(bench.train) // 64
  state = train.fit(trainer, state, {"x": bench.train.x, "y": bench.train.y}, key=key,
                    num_steps=10 * steps, batch_size=64, steps_per_call=steps)
  return bench, model, train.variables_of(state)


def timed(fn):
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - start, out


def sequential_random(model, variables, split, num_candidates: int, seed: int = 0):
  """Savani v1's loop: one candidate, then one threshold at a time."""
  from sklearn.metrics import accuracy_score
  forward = jax.jit(score_function(model))
  rng = np.random.default_rng(seed)
  y, priv = split.y, split.group == 1
  params = jax.device_get(variables["params"])
  best = (np.inf, None)
  for _ in range(num_candidates):
    noisy = jax.tree.map(lambda w: w * (1 + 0.1 * rng.standard_normal(w.shape).astype(w.dtype)),
                         params)
    s = np.asarray(forward({**variables, "params": noisy}, split.x))
    for t in np.linspace(0, 1, 501):
      pred = (s > t).astype(int)
      acc = accuracy_score(y, pred)
      spd = pred[~priv].mean() - pred[priv].mean()
      objective = 0.75 * abs(spd) + 0.25 * (1 - acc)
      if objective < best[0]:
        best = (objective, t)
  return best


def torch_adversarial(model, variables, split, epochs: int):
  """Savani v1's adversarial fine-tuning in PyTorch, one optimiser step at a time."""
  import torch
  torch.manual_seed(0)
  width, depth = model.width, model.num_layers
  layers, d = [], split.x.shape[1]
  for _ in range(depth):
    layers += [torch.nn.Linear(d, width), torch.nn.ReLU(), torch.nn.Dropout(0.2),
               torch.nn.BatchNorm1d(width)]
    d = width
  trunk, head = torch.nn.Sequential(*layers), torch.nn.Linear(width, 2)
  p = jax.device_get(variables)
  with torch.no_grad():
    for i in range(depth):
      blk = p["params"][f"layer{i + 1}"]
      lin, bn = layers[4 * i], layers[4 * i + 3]
      lin.weight.copy_(torch.tensor(np.asarray(blk["dense"]["kernel"]).T))
      lin.bias.copy_(torch.tensor(np.asarray(blk["dense"]["bias"])))
      bn.weight.copy_(torch.tensor(np.asarray(blk["bn"]["scale"])))
      bn.bias.copy_(torch.tensor(np.asarray(blk["bn"]["bias"])))
      stats = p["batch_stats"][f"layer{i + 1}"]["bn"]
      bn.running_mean.copy_(torch.tensor(np.asarray(stats["mean"])))
      bn.running_var.copy_(torch.tensor(np.asarray(stats["var"])))
    head.weight.copy_(torch.tensor(np.asarray(p["params"]["head"]["kernel"]).T))
    head.bias.copy_(torch.tensor(np.asarray(p["params"]["head"]["bias"])))
  critic = torch.nn.Sequential(torch.nn.Linear(width * 64, 32),
                               *[m for _ in range(3) for m in (torch.nn.Linear(32, 32),
                                                               torch.nn.ReLU(),
                                                               torch.nn.Dropout(0.2))],
                               torch.nn.Linear(32, 1))
  actor_opt = torch.optim.Adam(list(trunk.parameters()) + list(head.parameters()), 1e-3)
  critic_opt = torch.optim.Adam(critic.parameters(), 1e-3)
  x, y = torch.tensor(split.x), torch.tensor(split.y)
  priv = torch.tensor(split.group == 1)
  n = len(y)
  for _ in range(epochs):
    trunk.eval(), head.eval(), critic.train()
    for _ in range(201):
      idx = torch.randint(0, n, (64,))
      with torch.no_grad():
        feats = trunk(x[idx])
        prob = torch.softmax(head(feats), -1)[:, 1]
        pr = priv[idx]
        target = prob[~pr].mean() - prob[pr].mean()
      loss = (critic(feats.reshape(1, -1))[0, 0] - target) ** 2
      critic_opt.zero_grad(), loss.backward(), critic_opt.step()
    trunk.train(), head.train(), critic.eval()
    for _ in range(101):
      idx = torch.randint(0, n, (64,))
      feats = trunk(x[idx])
      ce = torch.nn.functional.cross_entropy(head(feats), y[idx].long())
      loss = 0.75 * critic(feats.reshape(1, -1)).abs()[0, 0] + 0.25 * ce
      actor_opt.zero_grad(), loss.backward(), actor_opt.step()


def main(argv):
  del argv
  bench, model, variables = trained_mlp()
  split = bench.debias
  score_fn = score_function(model)
  print(f"debias split: {len(split)} rows; MLP {model.num_layers} x {model.width}")

  rp = search.random_perturbation(objective=OBJECTIVE, num_candidates=FLAGS.candidates)
  run = lambda seed: rp.search(score_fn, variables, split, jax.random.key(seed)).score
  first, _ = timed(lambda: run(0))
  warm = min(timed(lambda: run(s))[0] for s in (1, 2))
  ref, _ = timed(lambda: sequential_random(model, variables, split, FLAGS.reference_candidates))
  ours_per, ref_per = warm / FLAGS.candidates, ref / FLAGS.reference_candidates
  k = FLAGS.candidates
  print(f"\nrandom perturbation, K = {k}, 501 thresholds")
  print(f"  ours: {warm:.2f} s warm ({first:.2f} s with compilation) = {1e3 * ours_per:.2f} ms "
        "per candidate")
  print(f"  sequential loop: {1e3 * ref_per:.1f} ms per candidate "
        f"({FLAGS.reference_candidates} timed) -> {k} candidates {ref_per * k:.1f} s")
  rows = [[f"random perturbation, {k} candidates × 501 thresholds",
           "Savani v1's loop: one candidate, then one threshold at a time (scikit-learn "
           "accuracy, masked-mean bias)",
           f"{1e3 * ref_per:.0f} ms per candidate ({ref_per * k:.0f} s for {k})",
           f"{warm:.2f} s ({1e3 * ours_per:.1f} ms per candidate)", f"{first:.1f} s",
           f"{ref_per / ours_per:.0f}× per candidate ({ref_per * k / first:.0f}× with "
           "compilation)"]]

  aft = lambda seed, epochs: tune(adversarial.savani_adversarial(
      layer=f"layer{model.num_layers}", objective=OBJECTIVE, epochs=epochs), model, variables,
      split, key=jax.random.key(seed)).score
  first, _ = timed(lambda: aft(0, FLAGS.epochs))
  warm, _ = timed(lambda: aft(1, FLAGS.epochs))
  name = f"adversarial fine-tuning, {FLAGS.epochs} × (201 critic + 101 actor steps)"
  print(f"\n{name}\n  ours: {warm:.2f} s warm ({first:.2f} s with compilation)")
  try:
    import torch
    torch.set_num_threads(2)
  except ImportError:
    rows.append([name, "PyTorch not installed (pip install -r requirements-test.txt)", "-",
                 f"{warm:.2f} s", f"{first:.1f} s", "-"])
  else:
    ref, _ = timed(lambda: torch_adversarial(model, variables, split, FLAGS.reference_epochs))
    per_round = ref / FLAGS.reference_epochs
    total = per_round * FLAGS.epochs
    rows.append([name, f"the same steps in PyTorch {torch.__version__.split('+')[0]} (CPU, 2 "
                 "threads), one optimiser step at a time",
                 f"{per_round:.2f} s per round ({total:.1f} s for {FLAGS.epochs})",
                 f"{warm:.2f} s", f"{first:.1f} s",
                 f"{total / warm:.1f}× ({total / first:.1f}× with compilation)"])
  tables = {}
  show_table(tables, "search", ["method", "reference", "reference", "ours (warm)",
                                "ours, with compilation", "ratio"], rows)
  save_record(tables)


if __name__ == "__main__":
  app.run(main)
