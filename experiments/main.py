r"""The main job: train (or reuse) a vanilla model, evaluate it on the test split, report.

On the embedded faces benchmark (ResNet-18 of width 16 on 64x64 images, train/debias at Yule's
phi = 0.8, balanced test split; threshold optimizers and the concept methods, LRP of every
network) it takes about three minutes on 2 CPU cores:

  python -m experiments.main

Other data:

  python -m experiments.main --data=census                     # procedural Adult-like table, MLP
  python -m experiments.main --data=faces --accessory=hat --phi=0.9
  python -m experiments.main --data=adult --data_dir=~/data/adult --protected=sex
  python -m experiments.main --data=celeba --data_dir=~/tfds --protected=Wearing_Necktie

The trained model is cached in --cache_dir under a hash of everything that determines it, so
a second run reuses it (and an interrupted training resumes). Results go to --run_dir (default
runs/<time>-<data>-<model>): results.json, results.csv and report.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import time

import numpy as np
from absl import app, flags, logging

FLAGS = flags.FLAGS
IMAGE_DATA = ("faces", "celeba")
TABLE_DATA = ("census", "adult", "bank", "compas", "german")
flags.DEFINE_enum("data", "faces", IMAGE_DATA + TABLE_DATA, "Dataset.")
flags.DEFINE_string("data_dir", None, "Folder with the real data (CSV files, or the TFDS data "
                    "directory for CelebA).")
flags.DEFINE_enum("accessory", "tie", ["tie", "hat"], "Faces: the protected accessory.")
flags.DEFINE_float("smile_strength", 2.0, "Faces: how visible the smile is (1: the mouth bends "
                   "only slightly, and a ResNet learns the accessory alone).")
flags.DEFINE_string("protected", None, "Protected attribute (default: the dataset's usual one: "
                    "sex for adult/census/german, race for compas, age for bank, "
                    "Wearing_Necktie for celeba).")
flags.DEFINE_string("target", "Smiling", "CelebA target attribute.")
flags.DEFINE_float("phi", None, "Yule's phi of train/debias (default 0.8 for images; tables use "
                   "a random 60/20/20 split unless set).")
flags.DEFINE_float("debias_phi", None, "Yule's phi of the debias split (default: --phi; DetoxAI's "
                   "CelebA variants train at 1 and debias at a milder correlation).")
flags.DEFINE_integer("image_size", 64, "Image side in pixels.")
flags.DEFINE_integer("n_train", 3000, "Images: training split size.")
flags.DEFINE_integer("n_debias", 2000, "Images: debias split size.")
flags.DEFINE_integer("n_test", 2000, "Images: balanced test split size.")
flags.DEFINE_integer("n_rows", 20000, "Census: number of rows.")
flags.DEFINE_enum("model", None, ["resnet18", "resnet34", "resnet50", "mlp"],
                  "Model (default: resnet18 for images, mlp for tables).")
flags.DEFINE_integer("width", 16, "ResNet width (channels of stage 1; 64 in the paper).")
flags.DEFINE_bool("small_images", False, "ResNet: 3x3 stride-1 stem for images <= 32 px.")
flags.DEFINE_integer("mlp_layers", 10, "MLP: hidden layers (Savani et al.: 10).")
flags.DEFINE_integer("mlp_width", 32, "MLP: units per hidden layer (32).")
flags.DEFINE_float("dropout", 0.2, "MLP: dropout rate (0.2).")
flags.DEFINE_integer("epochs", None, "Training epochs (default 6 for images, 60 for tables).")
flags.DEFINE_integer("batch_size", 64, "Training batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate (AdamW, cosine decay).")
flags.DEFINE_float("weight_decay", 1e-4, "AdamW weight decay.")
flags.DEFINE_integer("seed", 0, "Seed of data generation, splits, initialisation and order.")
flags.DEFINE_list("methods", ["thropt_dp", "thropt_eo", "p_clarc", "mass_mean", "a_clarc",
                                "rr_clarc", "leace"],
                  "Debiasing methods to run (comma-separated presets): " + ", ".join(
                      ["thropt_dp", "thropt_eo", "thropt_eo_flip", "thropt_eo_ba", "roc",
                       "roc_aod", "roc_eopp", "eqodds", "calib_eqodds", "naive", "random",
                       "layerwise", "adversarial", "zhang", "finetune", "p_clarc",
                       "mass_mean", "leace", "a_clarc", "rr_clarc"]) + "; empty: none.")
flags.DEFINE_enum("objective", "v2", ["v1", "v2"],
                  "Savani objective of the weight-changing methods (random, layerwise, "
                  "adversarial, zhang, finetune): v1 = 0.75 |bias| + 0.25 (1 - accuracy), "
                  "v2 = balanced accuracy if |bias| < 0.05.")
flags.DEFINE_enum("bias", "statistical_parity", ["statistical_parity", "equal_opportunity",
                                                 "average_odds", "demographic_parity",
                                                 "equalized_odds"],
                  "Bias measure of that objective (signed AIF360 or unsigned fairlearn).")
flags.DEFINE_enum("pareto_metric", "equalized_odds", ["demographic_parity", "equalized_odds",
                                                      "equal_opportunity", "average_odds"],
                  "Fairness gap of the Pareto front and plot.")
flags.DEFINE_enum("explain", "lrp", ["lrp", "ig", "none"],
                  "Images: saliency of every model on the accessory's ROI (LRP EpsilonPlusFlat or "
                  "integrated gradients, 50 steps); none skips it.")
flags.DEFINE_integer("n_explain", 512, "Images: test images explained (the first n of the split).")
flags.DEFINE_string("run_dir", None, "Output folder (default runs/<time>-<data>-<model>).")
flags.DEFINE_string("cache_dir", "runs/cache", "Folder of cached trained models.")
flags.DEFINE_bool("overwrite", False, "Allow writing into a run_dir that holds results.")

# Method presets: (registry name, keyword arguments, row label).
PRESETS = {
    "thropt_dp": ("threshold_optimizer", {"constraint": "demographic_parity"}, "ThrOpt (DP)"),
    "thropt_eo": ("threshold_optimizer", {"constraint": "equalized_odds"}, "ThrOpt (EO)"),
    "thropt_eo_flip": ("threshold_optimizer", {"constraint": "equalized_odds", "flip": True},
                       "ThrOpt (EO, flip)"),
    "thropt_eo_ba": ("threshold_optimizer", {"constraint": "equalized_odds",
                                             "objective": "balanced_accuracy"}, "ThrOpt (EO, BA)"),
    "roc": ("reject_option", {"metric": "statistical_parity"}, "ROC (SPD)"),
    "roc_aod": ("reject_option", {"metric": "average_odds"}, "ROC (AOD)"),
    "roc_eopp": ("reject_option", {"metric": "equal_opportunity"}, "ROC (EOpp)"),
    "eqodds": ("equalized_odds", {}, "EqOdds"),
    "calib_eqodds": ("calibrated_equalized_odds", {"cost_constraint": "fpr"}, "CalibEqOdds"),
    "naive": ("naive_threshold", {"metric": "equalized_odds"}, "NaiveThr (EO)"),
    "random": ("random_perturbation", {}, "Random"),
    "layerwise": ("layerwise_optimisation", {}, "LayerwiseOpt"),
    "adversarial": ("savani_adversarial", {}, "Adversarial"),
    "zhang": ("zhang_adversarial", {}, "Zhang"),
    "finetune": ("fine_tune", {}, "FineTune"),
    "p_clarc": ("p_clarc", {}, "P-ClArC"),
    "mass_mean": ("mass_mean", {}, "Mass-mean"),
    "leace": ("leace", {}, "LEACE"),
    "a_clarc": ("a_clarc", {}, "A-ClArC"),
    "rr_clarc": ("rr_clarc", {}, "RR-ClArC"),
}
# Layers of the concept methods on the ResNets (measured on the default faces, README): the
# edits and fine-tuning work where the accessory and the smile are still apart (stage2/stage3
# maps); at the pooled features a mean-difference projection also removes the smile.
CONCEPT_SETTINGS = {
    "images": {"p_clarc": {"layer": "stage2", "pooling": "none"},
               "mass_mean": {"layer": "pool"},
               "leace": {"layer": "pool"},
               "a_clarc": {"layer": "stage3", "pooling": "none"},
               "rr_clarc": {"layer": "stage3", "pooling": "none", "lam": 10.0}},
    "tables": {},
}
# Settings of the weight-changing presets: the papers' for tables; for images (a ResNet forward
# over the whole debias split per candidate on a CPU) smaller searches and shorter runs.
WEIGHT_SETTINGS = {
    "tables": {"random": {"num_candidates": 101, "margin": 0.01},
               "layerwise": {"margin": 0.01},
               "adversarial": {"epochs": 16, "margin": 0.02},
               "zhang": {"margin": 0.01},
               "finetune": {"margin": 0.01}},
    "images": {"random": {"num_candidates": 16, "margin": 0.01},
               "layerwise": {"population": 8, "generations": 4, "layers": ["head"], "margin": 0.01},
               "adversarial": {"epochs": 2, "critic_steps": 20, "actor_steps": 10,
                               "margin": 0.02},
               "zhang": {"num_steps": 60, "warmup_steps": 30, "margin": 0.01},
               "finetune": {"num_steps": 30, "margin": 0.01}},
}

DEFAULT_PROTECTED = {"census": "sex", "adult": "sex", "german": "sex", "compas": "race",
                     "bank": "age", "celeba": "Wearing_Necktie"}


def log(message: str) -> None:
  print(message, flush=True)


def resolve_config() -> dict:
  """All settings of the run, with dataset-dependent defaults filled in."""
  images = FLAGS.data in IMAGE_DATA
  config = {k: FLAGS[k].value for k in (
      "data", "data_dir", "accessory", "smile_strength", "protected", "target", "phi",
      "debias_phi", "image_size", "n_train", "n_debias", "n_test", "n_rows", "model", "width",
      "small_images", "mlp_layers", "mlp_width", "dropout", "epochs", "batch_size",
      "learning_rate", "weight_decay", "seed")}
  config["protected"] = config["protected"] or DEFAULT_PROTECTED.get(FLAGS.data)
  config["phi"] = config["phi"] if config["phi"] is not None else (0.8 if images else None)
  config["model"] = config["model"] or ("resnet18" if images else "mlp")
  config["epochs"] = config["epochs"] or (6 if images else 60)
  if FLAGS.data not in ("faces", "census") and not FLAGS.data_dir:
    raise app.UsageError(f"--data={FLAGS.data} reads files you already have: pass --data_dir")
  if images and config["model"] == "mlp":
    raise app.UsageError("--model=mlp is for tables; use a resnet for image data")
  if not images and config["model"] != "mlp":
    raise app.UsageError(f"--model={config['model']} is for images; use --model=mlp for tables")
  unknown = [m for m in FLAGS.methods if m not in PRESETS]
  if unknown:
    raise app.UsageError(f"--methods: unknown {unknown}; available: {', '.join(PRESETS)}")
  config["methods"] = list(FLAGS.methods)
  config["objective"], config["bias"] = FLAGS.objective, FLAGS.bias
  config["pareto_metric"] = FLAGS.pareto_metric
  config["explain"] = FLAGS.explain if images else "none"
  config["n_explain"] = FLAGS.n_explain
  if config["explain"] != "none" and FLAGS.n_explain < 2:
    raise app.UsageError(f"--n_explain: the saliency tests need at least 2 images, got {FLAGS.n_explain}")
  return config


def load_benchmark(config: dict):
  from debiasjax import data
  name = config["data"]
  if name == "faces":
    return data.faces_benchmark(phi=config["phi"], n_train=config["n_train"],
                                n_debias=config["n_debias"], n_test=config["n_test"],
                                image_size=config["image_size"], accessory=config["accessory"],
                                smile_strength=config["smile_strength"], seed=config["seed"],
                                debias_phi=config["debias_phi"])
  if name == "celeba":
    from debiasjax.data import celeba
    return celeba.celeba_benchmark(config["data_dir"], target=config["target"],
                                   protected=config["protected"], phi=config["phi"],
                                   n_train=config["n_train"], n_debias=config["n_debias"],
                                   n_test=config["n_test"], image_size=config["image_size"],
                                   seed=config["seed"], debias_phi=config["debias_phi"])
  if name == "census":
    table = data.census(config["n_rows"], seed=config["seed"], protected=config["protected"])
  elif name == "bank":
    if config["protected"] != "age":
      raise ValueError(f"protected: the bank data set's protected attribute is 'age', got "
                       f"{config['protected']!r}")
    table = data.bank(os.path.expanduser(config["data_dir"]))
  else:
    table = data.LOADERS[name](os.path.expanduser(config["data_dir"]), protected=config["protected"])
  return data.table_benchmark(table, seed=config["seed"], phi=config["phi"],
                              debias_phi=config["debias_phi"])


def build_model(config: dict):
  from debiasjax import models
  if config["model"] == "mlp":
    return models.MLP(num_layers=config["mlp_layers"], width=config["mlp_width"],
                      dropout=config["dropout"])
  cls = {"resnet18": models.ResNet18, "resnet34": models.ResNet34, "resnet50": models.ResNet50}
  return cls[config["model"]](width=config["width"], small_images=config["small_images"])


IMAGE_ONLY = ("accessory", "smile_strength", "target", "image_size", "n_train", "n_debias", "n_test", "width",
              "small_images")
TABLE_ONLY = ("n_rows", "mlp_layers", "mlp_width", "dropout")


def model_identity(config: dict, bench) -> dict:
  """What determines the trained model: the relevant settings, the exact training data (a
  digest, so a changed generator or file never reuses a stale model) and the package version."""
  import debiasjax
  skip = ("data_dir", "debias_phi", "methods", "pareto_metric", "explain", "n_explain",
          "objective", "bias") + (TABLE_ONLY if config["data"] in IMAGE_DATA else IMAGE_ONLY)
  identity = {k: v for k, v in config.items() if k not in skip}
  digest = hashlib.sha256()
  for array in (bench.train.x, bench.train.y):
    digest.update(np.ascontiguousarray(array).tobytes())
  identity.update(train_data=digest.hexdigest(), version=debiasjax.__version__)
  return identity


def train_vanilla(config: dict, bench, model):
  """Trains the vanilla model, or restores it from the cache; returns its variables."""
  import jax
  import optax
  from debiasjax import train
  from debiasjax.checkpoint import Checkpoints

  identity = model_identity(config, bench)
  digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
  cache = os.path.join(FLAGS.cache_dir, f"{config['data']}-{config['model']}-{digest}")
  steps_per_epoch = len(bench.train) // config["batch_size"]
  num_steps = config["epochs"] * steps_per_epoch
  schedule = optax.cosine_decay_schedule(config["learning_rate"], max(num_steps, 1))
  trainer = train.supervised(model, optax.adamw(schedule, weight_decay=config["weight_decay"]))
  key = jax.random.key(config["seed"])
  state = trainer.init(key, model.init(key, bench.train.x[:1]))
  checkpoints = Checkpoints(cache)
  done = checkpoints.latest_step()
  if done == num_steps:
    log(f"reusing the trained model cached in {cache}")
  else:
    log(f"training {config['model']} for {config['epochs']} epochs ({num_steps} steps)"
        + (f", resuming at step {done}" if done else "") + f"; cache: {cache}")
  start = time.time()
  state = train.fit(
      trainer, state, {"x": bench.train.x, "y": bench.train.y}, key=key, num_steps=num_steps,
      batch_size=config["batch_size"], seed=config["seed"], checkpoints=checkpoints,
      save_every=steps_per_epoch, log_every=steps_per_epoch, metadata=identity,
      steps_per_call=1 if config["model"] != "mlp" else steps_per_epoch,
      log=lambda step, m: log(f"  epoch {step // steps_per_epoch:3d}  loss {m['loss']:.4f}  "
                              f"train accuracy {m['accuracy']:.3f}  ({time.time() - start:.0f}s)"))
  checkpoints.close()
  return train.variables_of(state), cache


def cli(run_fn):
  """An ``app.run`` main that calls ``run_fn()`` and turns bad input into one line on stderr."""
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)   # orbax logs every checkpoint step at INFO
    try:
      run_fn()
    except (ValueError, FileNotFoundError, FileExistsError) as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)
  return main


def equalized_odds_notes(rows, result, bench) -> list:
  """Explains an equalized-odds threshold optimizer that collapsed to chance, from the debias
  split's per-group ROC hulls (the feasible set of equalized odds is their intersection)."""
  from debiasjax.methods import group_thresholds as gt
  collapsed = [r for r in rows if r["method"].startswith("ThrOpt (EO")
               and r["balanced_accuracy"] < 0.56 and r["equalized_odds"] < 0.1]
  if not collapsed:
    return []
  s, y, g = result.scores["debias"], bench.debias.y, bench.debias.group
  num_groups = int(g.max()) + 1
  names = bench.info.get("groups", [f"group {k}" for k in range(num_groups)])
  auc = [gt.roc_auc(s[g == k], y[g == k]) for k in range(num_groups)]
  lift = gt.hull_lift(s, y, g, num_groups=num_groups, flip=False)
  lift_flip = gt.hull_lift(s, y, g, num_groups=num_groups, flip=True)
  weakest = int(np.argmin(lift))
  per_group = "; ".join(f"'{names[k]}': AUC {auc[k]:.3f}, hull {lift[k]:.3f} above the diagonal "
                        f"({lift_flip[k]:.3f} with flip)" for k in range(num_groups))
  lines = [
      f"{', '.join(r['method'] for r in collapsed)} collapsed to balanced accuracy "
      f"{collapsed[0]['balanced_accuracy']:.3f} with an equalized-odds gap of "
      f"{collapsed[0]['equalized_odds']:.3f}, as in the seed poster (50.00 / 0.00). Equalized odds "
      "can only be met at (FPR, TPR) points every group reaches: the intersection of the groups' "
      "upper ROC hulls on the debias split. There the vanilla model's scores carry almost no "
      f"information within a group ({per_group}), so the intersection hugs the diagonal and the "
      "best equalized-odds rule is close to a coin flip. The model separates the groups (its "
      "accessory shortcut), not the labels within them.",
  ]
  if lift_flip[weakest] - lift[weakest] < 0.02:
    lines.append(
        "flip=True adds 'score < t' rules, which lift a hull lying below the diagonal "
        "(anti-correlated scores) and then avoid the collapse (shown on such scores in "
        "tests/methods/postprocessing_test.py). Here the weakest group, "
        f"'{names[weakest]}', is uninformative rather than anti-correlated (AUC "
        f"{auc[weakest]:.3f}), so flip cannot lift its hull and ThrOpt (EO, flip) fares the same.")
  else:
    lines.append(
        f"flip=True lifts the hull of '{names[weakest]}' from {lift[weakest]:.3f} to "
        f"{lift_flip[weakest]:.3f}: its scores are anti-correlated with the label, and flipped "
        "thresholds avoid the collapse.")
  return lines


def calibration_notes(result, bench) -> list:
  """Says what calibrated equalized odds did: its mix rates are AIF360's, unclipped."""
  names = bench.info.get("groups", ["group 0", "group 1"])
  privileged = bench.info.get("privileged", 1)
  lines = []
  for label, state in result.states.items():
    if hasattr(state, "priv_mix_rate"):
      priv, unpriv = float(state.priv_mix_rate), float(state.unpriv_mix_rate)
      lines.append(
          f"{label}: mix rates {priv:.3f} (privileged '{names[privileged]}') and {unpriv:.3f} "
          "(the others), AIF360's values. A group mixes in its base-rate classifier with that "
          "probability (clipped to [0, 1]); a negative rate means the trivial classifier costs "
          "less than the model for the cheaper group, so no mixing equalises the costs and "
          "the decisions stay the model's.")
  return lines


SALIENCY_COLUMNS = (("rrf", "RRF"), ("hrf", "HRF"), ("mrr", "MRR"), ("adr", "ADR"), ("dif", "DIF"),
                    ("rddt", "RDDT"))


def saliency_summaries(config, bench, model, variables, rows, states):
  """Saliency maps of every row's network on the first ``n_explain`` test images and their
  metrics on the protected accessory's ROI: ``(test, maps_by_row, summaries)``."""
  from debiasjax import explain
  from debiasjax.data.dataset import roi_mask
  from debiasjax.metrics import saliency as sal

  test = bench.test.take(slice(0, config["n_explain"]))
  height, width = test.x.shape[1:3]
  mask = roi_mask(test.roi, height, width)
  explain_maps = lambda m, v: np.asarray(sal.normalize(
      explain.saliency_maps(m, v, test.x, test.y, method=config["explain"]), "detoxai"))
  maps = explain_maps(model, variables)
  # Post-processors keep Vanilla's network, hence its maps; weight-changing methods have their
  # own weights, concept edits their edited network.
  maps_by_row = {}
  for r in rows:
    state = states.get(r["method"])
    maps_by_row[r["method"]] = (
        explain_maps(getattr(state, "model", model), state.variables)
        if hasattr(state, "variables") else maps)
  summaries = {label: sal.saliency_summary(m, mask, vanilla=None if label == "Vanilla" else maps)
               for label, m in maps_by_row.items()}
  return test, maps_by_row, summaries


def saliency_section(config, bench, model, variables, rows, states, run_dir):
  """Saliency of every row's network on the protected accessory's ROI: the report section, its
  table (markdown), the summaries, and the two figures."""
  from debiasjax import explain
  from debiasjax.report import markdown_table

  test, maps_by_row, summaries = saliency_summaries(config, bench, model, variables, rows, states)
  cells = []
  for label, s in summaries.items():
    cell = [label, f"{s['rrf']:.3f}", f"{s['hrf']:.3f}", f"{s['mrr']:.2f}"]
    cell += (["-", "-", "-"] if "adr" not in s else
             [f"{s['adr']:+.4f}", f"{s['dif']:.3f}", f"{'yes' if s['rddt'] else 'no'} (p={s['rddt_p']:.2g})"])
    cells.append(cell)
  table = markdown_table(["Method"] + [h for _, h in SALIENCY_COLUMNS], cells)
  method = ("LRP (EpsilonPlusFlat, BatchNorm folded)" if config["explain"] == "lrp"
            else "integrated gradients (50 Gauss-Legendre steps, zero baseline)")
  body = (f"{method} of the true label on the first {len(test)} test images, channel-summed and "
          "normalised per image as DetoxAI does (|R| / 2 max|R|). RRF = share of relevance in the "
          "accessory's box, HRF = share of its pixels above 0.05, MRR = mean inside / mean "
          "outside; against Vanilla: ADR = mean decrease in the box, DIF = share of its pixels "
          "that decreased (by > 1e-3), RDDT = one-sided t-test of the per-image decrease at "
          "p < 0.01. Threshold post-processing leaves the network, hence its maps, unchanged; "
          "weight-changing methods are explained with their own weights.\n\n"
          + table + "\n\nFigures: `saliency.png` (maps averaged per (protected, target) cell, a column per "
          "model) and `heatmaps.png` (examples with the box).")
  names = bench.info.get("groups", ["PA=0", "PA=1"])
  distinct = {}
  for label, m in maps_by_row.items():
    distinct.setdefault(id(m), []).append(label)
  explain.figures.cell_average_figure(
      {labels[0] + (f" (= {len(labels) - 1} more)" if len(labels) > 1 else ""): maps_by_row[labels[0]]
       for labels in distinct.values()}, test.group, test.y, test.roi,
      os.path.join(run_dir, "saliency.png"), images=test.x, group_names=names,
      target_names=("not " + bench.info.get("target", "T"), bench.info.get("target", "T")))
  explain.figures.heatmap_grid(test.x, maps_by_row["Vanilla"], test.roi,
                               os.path.join(run_dir, "heatmaps.png"),
                               titles=[f"{names[g]}, y={t}" for g, t in zip(test.group, test.y)])
  return ("Saliency on the protected accessory's region", body), table, summaries


def method_specs(config: dict) -> list[dict]:
  """The ``debias()`` method list of ``config["methods"]``: the presets with the data kind's
  layer and search settings."""
  kind = "images" if config["data"] in IMAGE_DATA else "tables"
  methods = []
  for m in config["methods"]:
    name, kwargs, label = PRESETS[m]
    if m in CONCEPT_SETTINGS[kind]:
      kwargs = {**kwargs, **CONCEPT_SETTINGS[kind][m]}
    if m in WEIGHT_SETTINGS[kind]:
      kwargs = {**kwargs, **WEIGHT_SETTINGS[kind][m], "version": config["objective"],
                "bias": config["bias"], "seed": config["seed"]}
      if config["objective"] == "v1":
        kwargs.pop("margin")
    methods.append({"method": name, "label": label, **kwargs})
  return methods


def train_and_debias(config: dict):
  """Data, the vanilla model (trained or cached) and every method evaluated on the test split:
  ``(bench, model, variables, cache, result, timings)``."""
  from debiasjax.debias import debias

  timings = {}
  start = time.time()
  bench = load_benchmark(config)
  timings["data_s"] = time.time() - start
  log(f"data: {bench.info['name']} train {len(bench.train)} / debias {len(bench.debias)} / "
      f"test {len(bench.test)} ({timings['data_s']:.1f}s)")
  model = build_model(config)
  start = time.time()
  variables, cache = train_vanilla(config, bench, model)
  timings["train_s"] = time.time() - start
  start = time.time()
  result = debias(model, variables, bench, methods=method_specs(config),
                  pareto_metric=config["pareto_metric"])
  timings["debias_and_evaluate_s"] = time.time() - start
  return bench, model, variables, cache, result, timings


def run():
  from debiasjax import report

  config = resolve_config()
  command = "python -m experiments.main " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  stamp = time.strftime("%Y%m%d-%H%M%S")
  run_dir = FLAGS.run_dir or os.path.join("runs", f"{stamp}-{config['data']}-{config['model']}")
  report.check_run_dir(run_dir, overwrite=FLAGS.overwrite)
  bench, model, variables, cache, result, timings = train_and_debias(config)
  rows = result.rows

  log("\nTest split (" + ("balanced over the four cells" if config["phi"] is not None else
                          "random 20%") + "); changes against Vanilla in brackets:\n")
  log(report.format_table(rows))
  sections, extra = [], {"timings": timings}
  if config["explain"] != "none":
    start = time.time()
    section, table, extra["saliency"] = saliency_section(config, bench, model, variables, rows,
                                                         result.states, run_dir)
    sections.append(section)
    timings["explain_s"] = time.time() - start
    log("\n" + table)
  notes = equalized_odds_notes(rows, result, bench) + calibration_notes(result, bench)
  notes += [f"Pareto front ({config['pareto_metric'].replace('_', ' ')} gap vs balanced "
            f"accuracy): {', '.join(result.pareto)}; plot in `pareto.png`.",
            f"Trained model cached in `{cache}`.",
            "Timings: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f}s" for k, v in timings.items()) + "."]
  report.write_results(run_dir, rows=rows, config=config, info=bench.info, command=command,
                       notes=notes, extra=extra, sections=sections)
  report.pareto_plot(rows, os.path.join(run_dir, "pareto.png"), gap=config["pareto_metric"],
                     title=f"{bench.info['name']}: methods on the test split")
  written = [f for f in report.OUTPUTS if os.path.exists(os.path.join(run_dir, f))]
  log(f"\nwrote {', '.join(written)} to {run_dir}")

if __name__ == "__main__":
  app.run(cli(run))
