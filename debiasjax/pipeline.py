"""The main job as a library function: ``train_and_evaluate(config, workdir)``.

Loads the benchmark, trains (or restores from the cache) the vanilla model, runs the configured
methods with :func:`debiasjax.debias`, explains every network (images), and writes
``results.json``, ``results.csv``, ``report.md`` and the figures into ``workdir``. The
command-line programs in ``experiments/`` are thin absl mains over it; the configuration is an
``ml_collections.ConfigDict`` (``experiments/configs/main.py``), the methods its ``presets``
table, so nothing here is a registry of names.

Example:
  config = experiments.configs.main.get_config("census,tiny")
  outcome = train_and_evaluate(config, "runs/census", log=print)
  outcome.result.rows
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np

from debiasjax import _checks

IMAGE_DATA = ("faces", "celeba")
TABLE_DATA = ("census", "adult", "bank", "compas", "german")
MODELS = {"images": ("resnet18", "resnet34", "resnet50", "wide_resnet50_2", "resnext50_32x4d"),
          "tables": ("mlp",)}   # RESNETS' keys for images
DEFAULT_PROTECTED = {"census": "sex", "adult": "sex", "german": "sex", "compas": "race",
                     "bank": "age", "celeba": "Wearing_Necktie"}
EXPLAINERS = ("lrp", "ig", "none")
# Config fields that only apply to one kind of data.
IMAGE_ONLY = {"data": ("accessory", "second_phi", "smile_strength", "target", "image_size",
                       "n_train", "n_debias", "n_test"),
              "model": ("width", "small_images", "weights")}
TABLE_ONLY = {"data": ("n_rows",), "model": ("mlp_layers", "mlp_width", "dropout")}


def _silent(message: str) -> None:
  del message


def data_kind(config) -> str:
  """``"images"`` or ``"tables"``."""
  return "images" if config.data.name in IMAGE_DATA else "tables"


def check_config(config) -> None:
  """Every setting the job reads, checked before any work (``ValueError`` naming the field)."""
  name = config.data.name
  _checks.check_option("data.name", name, IMAGE_DATA + TABLE_DATA)
  kind = data_kind(config)
  if name not in ("faces", "census") and not config.data.data_dir:
    raise ValueError(f"data.data_dir: data.name={name} reads files you already have; pass "
                     "--config.data.data_dir=<folder>")
  if config.model.name not in MODELS[kind]:
    raise ValueError(f"model.name: {config.model.name} is not a model for {kind} (expected one "
                     f"of {list(MODELS[kind])})")
  weights = config.model.get("weights", "")
  if weights:
    if kind != "images":
      raise ValueError(f"model.weights: imported weights are torchvision ResNets, for image "
                       f"data; data.name={name} is {kind}")
    if not os.path.isfile(weights) or not weights.endswith((".pt", ".pth", ".npz")):
      raise ValueError(f"model.weights: expected an existing .pt, .pth or .npz file holding a "
                       f"torchvision ResNet's state_dict, got {weights!r}")
  for field in ("phi", "debias_phi", "second_phi"):
    if config.data.get(field) is not None:
      _checks.check_phi(config.data[field], field)
  if name == "faces":
    from debiasjax.data.dataset import conjunction
    from debiasjax.data.faces import ACCESSORIES
    conjunction(config.data.accessory, ACCESSORIES, name="data.accessory")
  for field in ("train.epochs", "train.batch_size", "seed"):
    section, key = field.split(".") if "." in field else (None, field)
    value = config[section][key] if section else config[key]
    _checks.check_int(field, value, 0 if field == "seed" else 1)
  _checks.check_positive("train.learning_rate", config.train.learning_rate)
  _checks.check_option("explain", config.explain, EXPLAINERS)
  from debiasjax.explain.rules import COMPOSITES
  _checks.check_option("lrp_composite", config.lrp_composite, tuple(COMPOSITES))
  _checks.check_option("pareto_metric", config.pareto_metric,
                       ("demographic_parity", "equalized_odds", "equal_opportunity",
                        "average_odds"))
  if kind == "images" and config.explain != "none" and config.n_explain < 2:
    raise ValueError(f"n_explain: the saliency tests need at least 2 images, got "
                     f"{config.n_explain}")
  unknown = [m for m in method_names(config) if m not in config.presets]
  if unknown:
    raise ValueError(f"methods: unknown {unknown}; available: {', '.join(config.presets)}")


def method_names(config) -> list[str]:
  """The configured method presets, in order (``config.methods`` is comma-separated)."""
  return [m.strip() for m in str(config.methods).split(",") if m.strip()]


def applicable(config) -> dict:
  """The configuration without the fields that do not apply to its kind of data."""
  skip = TABLE_ONLY if data_kind(config) == "images" else IMAGE_ONLY
  out = config.to_dict()
  for section, keys in skip.items():
    for key in keys:
      out[section].pop(key, None)
  out.pop("presets", None)
  out["methods"] = method_names(config)
  return out


# --- Data, model, methods --------------------------------------------------------------------

def load_benchmark(config):
  """The train / debias / test splits of ``config.data``."""
  from debiasjax import data
  d, seed = config.data, config.seed
  protected = d.protected or DEFAULT_PROTECTED.get(d.name)
  phi = d.get("phi")
  phi = 0.8 if phi is None and data_kind(config) == "images" else phi
  if d.name == "faces":
    second = d.get("second_phi")
    if "+" in d.accessory and second is not None:     # tie+hat: the hat's own phi
      phi = (phi, second)
    return data.faces_benchmark(phi=phi, n_train=d.n_train, n_debias=d.n_debias,
                                n_test=d.n_test, image_size=d.image_size, accessory=d.accessory,
                                smile_strength=d.smile_strength, seed=seed,
                                debias_phi=d.debias_phi)
  if d.name == "celeba":
    from debiasjax.data import celeba
    return celeba.celeba_benchmark(d.data_dir, target=d.target, protected=protected, phi=phi,
                                   n_train=d.n_train, n_debias=d.n_debias, n_test=d.n_test,
                                   image_size=d.image_size, seed=seed, debias_phi=d.debias_phi)
  # Savani et al.'s protocol fixes the table's and the split's seeds and counts bank clients of
  # 25 and older as privileged (experiments/configs/savani.py); the main job uses its seed.
  table_seed, split_seed = d.get("table_seed", seed), d.get("split_seed", seed)
  if d.name == "census":
    table = data.census(d.n_rows, seed=table_seed, protected=protected)
  elif d.name == "bank":
    if protected != "age":
      raise ValueError(f"data.protected: the bank data set's protected attribute is 'age', got "
                       f"{protected!r}")
    table = data.bank(os.path.expanduser(d.data_dir),
                      privileged_age=tuple(d.get("bank_privileged_age", (25, 60))))
  else:
    table = data.LOADERS[d.name](os.path.expanduser(d.data_dir), protected=protected)
  return data.table_benchmark(table, seed=split_seed, phi=phi, debias_phi=d.get("debias_phi"))


def build_model(config):
  """The Flax module of ``config.model``."""
  from debiasjax import models
  m = config.model
  if m.name == "mlp":
    return models.MLP(num_layers=m.mlp_layers, width=m.mlp_width, dropout=m.dropout)
  return models.RESNETS[m.name](width=m.width, small_images=m.small_images)


def build_methods(config) -> dict:
  """``{label: method}`` of ``config.methods``. Each preset of ``config.presets`` names a
  factory of :mod:`debiasjax.methods` and its keyword arguments (``kwargs``, updated by the
  data kind's ``images`` / ``tables`` entry); ``at`` places an eraser at a layer and ``concept``
  chooses its concept (``"mined"``: b*, without the protected attribute); with
  ``objective=True`` Savani's objective is built from ``config.objective`` / ``config.bias`` /
  ``config.epsilon`` (and the preset's ``margin`` under v2)."""
  from debiasjax import methods
  kind = data_kind(config)
  built = {}
  for name in method_names(config):
    preset = config.presets[name]
    kwargs = {**preset.get("kwargs", {}), **preset.get(kind, {})}
    at = kwargs.pop("at", None)
    concept = kwargs.pop("concept", "protected")
    margin = kwargs.pop("margin", 0.0)
    if preset.get("objective", False):
      kwargs["objective"] = methods.Objective(
          config.objective, config.bias, epsilon=config.epsilon,
          margin=margin if config.objective == "v2" else 0.0)
    try:
      method = getattr(methods, preset.factory)(**kwargs)
    except TypeError as error:
      raise ValueError(f"presets.{name}: {error}") from None
    built[preset.label] = (methods.at_layer(at, method, concept=concept)
                           if at or concept != "protected" else method)
  return built


def model_identity(config, bench) -> dict:
  """What determines the trained model: the settings that apply, the exact training data (a
  digest, so a changed generator or file never reuses a stale model) and the package version."""
  import debiasjax
  settings = applicable(config)
  identity = {"seed": settings["seed"], "data": settings["data"], "model": settings["model"],
              "train": settings["train"]}
  identity["data"].pop("data_dir", None)
  identity["data"].pop("debias_phi", None)
  if identity["data"].get("second_phi") is None:      # unset: the models cached before it exist
    identity["data"].pop("second_phi", None)
  digest = hashlib.sha256()
  for array in (bench.train.x, bench.train.y):
    digest.update(np.ascontiguousarray(array).tobytes())
  identity.update(train_data=digest.hexdigest(), version=debiasjax.__version__)
  return identity


def imported_model(config, *, log: Callable[[str], None] = _silent):
  """The user's torchvision ResNet (``config.model.weights``) as the vanilla model: ``(model,
  variables, cache folder)``; the folder (for the searches' checkpoints) is named by the file's
  digest."""
  from debiasjax.models import load_torch_resnet
  path = config.model.weights
  model, variables = load_torch_resnet(path)
  if model.num_classes not in (1, 2):
    raise ValueError(f"model.weights: expected a binary classifier (1 or 2 outputs), {path} has "
                     f"{model.num_classes}")
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()[:16]
  layers = 2 + sum(model.stage_sizes) * (2 if model.block_cls.expansion == 1 else 3)
  log(f"using the imported ResNet-{layers} of {path} (not trained here)")
  return model, variables, os.path.join(config.cache_dir, f"{config.data.name}-imported-{digest}")


def train_vanilla(config, bench, model, *, log: Callable[[str], None] = _silent):
  """Trains the vanilla model, or restores it from the cache in ``config.cache_dir``;
  returns ``(variables, cache folder)``."""
  import jax
  import optax
  from debiasjax import train
  from debiasjax.checkpoint import Checkpoints

  identity = model_identity(config, bench)
  digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
  cache = os.path.join(config.cache_dir, f"{config.data.name}-{config.model.name}-{digest}")
  t = config.train
  steps_per_epoch = len(bench.train) // t.batch_size
  num_steps = t.epochs * steps_per_epoch
  schedule = optax.cosine_decay_schedule(t.learning_rate, max(num_steps, 1))
  trainer = train.supervised(model, optax.adamw(schedule, weight_decay=t.weight_decay))
  key = jax.random.key(config.seed)
  state = trainer.init(key, model.init(key, bench.train.x[:1]))
  checkpoints = Checkpoints(cache)
  done = checkpoints.latest_step()
  if done == num_steps:
    log(f"reusing the trained model cached in {cache}")
  else:
    log(f"training {config.model.name} for {t.epochs} epochs ({num_steps} steps)"
        + (f", resuming at step {done}" if done else "") + f"; cache: {cache}")
  start = time.time()
  state = train.fit(
      trainer, state, {"x": bench.train.x, "y": bench.train.y}, key=key, num_steps=num_steps,
      batch_size=t.batch_size, seed=config.seed, checkpoints=checkpoints,
      save_every=steps_per_epoch, log_every=steps_per_epoch, metadata=identity,
      steps_per_call=1 if data_kind(config) == "images" else steps_per_epoch,
      log=lambda step, m: log(f"  epoch {step // steps_per_epoch:3d}  loss {m['loss']:.4f}  "
                              f"train accuracy {m['accuracy']:.3f}  ({time.time() - start:.0f}s)"))
  checkpoints.close()
  return train.variables_of(state), cache


class Trained(NamedTuple):
  """A run's data, model, vanilla variables, cache folder, debias() result and timings."""
  bench: Any
  model: Any
  variables: Any
  cache: str
  result: Any
  timings: dict


def _inner_progress(log):
  """Progress lines with the time left for the steps inside a method or an explanation (the
  methods themselves are logged as they start and end); none when the run is silent."""
  from debiasjax.progress import printer
  if log is _silent:
    return None
  inner = printer(log)

  def progress(task, done, total):
    if task != "methods":
      inner(task, done, total)
  return progress


def train_and_debias(config, *, log: Callable[[str], None] = _silent) -> Trained:
  """Data, the vanilla model (trained or cached) and every configured method evaluated on the
  test split."""
  from debiasjax.debias import debias

  check_config(config)
  timings = {}
  start = time.time()
  bench = load_benchmark(config)
  timings["data_s"] = time.time() - start
  log(f"data: {bench.info['name']} train {len(bench.train)} / debias {len(bench.debias)} / "
      f"test {len(bench.test)} ({timings['data_s']:.1f}s)")
  start = time.time()
  if config.model.get("weights"):
    model, variables, cache = imported_model(config, log=log)
  else:
    model = build_model(config)
    variables, cache = train_vanilla(config, bench, model, log=log)
  timings["train_s"] = time.time() - start
  start = time.time()
  # Weight searches resume from here after a kill; any change of the run's settings starts
  # a fresh folder.
  settings = hashlib.sha256(config.to_json(sort_keys=True).encode()).hexdigest()[:16]
  result = debias(model, variables, bench, methods=build_methods(config),
                  pareto_metric=config.pareto_metric, seed=config.seed, log=log,
                  checkpoint_dir=os.path.join(cache, f"searches-{settings}"),
                  progress=_inner_progress(log))
  timings["debias_and_evaluate_s"] = time.time() - start
  return Trained(bench, model, variables, cache, result, timings)


# --- Saliency ----------------------------------------------------------------------------------

SALIENCY_COLUMNS = (("rrf", "RRF"), ("hrf", "HRF"), ("mrr", "MRR"), ("adr", "ADR"), ("dif", "DIF"),
                    ("rddt", "RDDT"))


def saliency_summaries(config, trained: Trained, *, log: Callable[[str], None] = _silent):
  """Saliency maps of every row's network on the first ``n_explain`` test images and their
  metrics on the protected accessory's ROI: ``(test, maps_by_row, summaries)``; the maps are
  signed, each image's scaled to max |R| = 1, and the metrics read DetoxAI's |R| / 2 max|R|
  of them. Rows whose network is Vanilla's (post-processors) share its maps."""
  from debiasjax import explain
  from debiasjax.data.dataset import roi_mask
  from debiasjax.metrics import saliency as sal

  test = trained.bench.test.take(slice(0, config.n_explain))
  composite = explain.rules.named(config.lrp_composite, bounds=tuple(config.pixel_range))
  height, width = test.x.shape[1:3]
  mask = roi_mask(test.roi, height, width)
  progress = _inner_progress(log)

  def explain_maps(label, apply_fn, v):
    step = None if progress is None else (
        lambda task, done, total: progress(f"{label}: explaining {task}", done, total))
    return np.asarray(sal.normalize(explain.saliency_maps(
        apply_fn, v, test.x, test.y, method=config.explain, composite=composite,
        progress=step), "max_abs"))

  own = [label for label, d in trained.result.debiased.items()
         if not (d.apply_fn == trained.model.apply and d.variables is trained.variables)]
  log(f"\nexplaining Vanilla and {len(own)} networks with new weights or edits "
      f"({config.explain}, {len(test)} test images each)")
  vanilla = explain_maps("Vanilla", trained.model.apply, trained.variables)
  maps_by_row = {"Vanilla": vanilla}
  for label, d in trained.result.debiased.items():
    maps_by_row[label] = explain_maps(label, d.apply_fn, d.variables) if label in own else vanilla
  detoxai = lambda m: np.abs(m) / 2                 # = normalize(raw, "detoxai")
  reference = detoxai(vanilla)
  summaries = {label: sal.saliency_summary(detoxai(m), mask,
                                           vanilla=None if label == "Vanilla" else reference)
               for label, m in maps_by_row.items()}
  return test, maps_by_row, summaries


def saliency_table(summaries: dict) -> str:
  """The markdown table of :func:`saliency_summaries`' metrics, a row per method."""
  from debiasjax.report import markdown_table
  cells = []
  for label, s in summaries.items():
    cell = [label, f"{s['rrf']:.3f}", f"{s['hrf']:.3f}", f"{s['mrr']:.2f}"]
    cell += (["-", "-", "-"] if "adr" not in s else
             [f"{s['adr']:+.4f}", f"{s['dif']:.3f}",
              f"{'yes' if s['rddt'] else 'no'} (p={s['rddt_p']:.2g})"])
    cells.append(cell)
  return markdown_table(["Method"] + [h for _, h in SALIENCY_COLUMNS], cells)


def saliency_section(config, trained: Trained, workdir: str, *,
                     log: Callable[[str], None] = _silent):
  """The report's saliency section, its markdown table, the summaries, and the two figures."""
  from debiasjax import explain

  test, maps_by_row, summaries = saliency_summaries(config, trained, log=log)
  table = saliency_table(summaries)
  from debiasjax.explain.rules import COMPOSITE_NAMES
  method = (f"LRP ({COMPOSITE_NAMES[config.lrp_composite]}, BatchNorm folded)"
            if config.explain == "lrp"
            else "integrated gradients (50 Gauss-Legendre steps, zero baseline)")
  body = (f"{method} of the true label on the first {len(test)} test images, channel-summed and "
          "normalised per image as DetoxAI does (|R| / 2 max|R|). RRF = share of relevance in the "
          "accessory's box, HRF = share of its pixels above 0.05, MRR = mean inside / mean "
          "outside; against Vanilla: ADR = mean decrease in the box, DIF = share of its pixels "
          "that decreased (by > 1e-3), RDDT = one-sided t-test of the per-image decrease at "
          "p < 0.01. Threshold post-processing leaves the network, hence its maps, unchanged; "
          "weight-changing methods are explained with their own weights.\n\n"
          + table + "\n\nFigures: `saliency.png` (signed maps, each image's scaled to max |R| = "
          "1, averaged per (protected, target) cell: Vanilla's, then each other network's change "
          "against it) and `heatmaps.png` (examples with the box and Vanilla's score).")
  bench = trained.bench
  names = bench.info.get("groups", ["PA=0", "PA=1"])
  distinct = {}
  for label, m in maps_by_row.items():
    distinct.setdefault(id(m), []).append(label)
  # One column per distinct network; the methods that keep Vanilla's (post-processors) are
  # named under its title.
  titles = {labels[0]: labels[0] + "".join(f"\n= {other}" for other in labels[1:])
            for labels in distinct.values()}
  target = bench.info.get("target", "T")
  explain.figures.cell_average_figure(
      {labels[0]: maps_by_row[labels[0]] for labels in distinct.values()}, test.group, test.y,
      test.roi, os.path.join(workdir, "saliency.png"), images=test.x, group_names=names,
      target_names=("not " + target, target), reference="Vanilla", titles=titles)
  scores = trained.result.scores["test"][:len(test)]
  explain.figures.heatmap_grid(
      test.x, maps_by_row["Vanilla"], test.roi, os.path.join(workdir, "heatmaps.png"),
      titles=[f"{names[g]}, y={t}\nP({target}) = {p:.2f}"
              for g, t, p in zip(test.group, test.y, scores)],
      label="relevance, true label\n(max |R| = 1 per image)")
  return ("Saliency on the protected accessory's region", body), table, summaries


# --- Report notes ------------------------------------------------------------------------------

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
  from debiasjax.methods.postprocessing import CalibratedEqOddsState
  names = bench.info.get("groups", ["group 0", "group 1"])
  lines = []
  for label, d in result.debiased.items():
    if isinstance(d.state, CalibratedEqOddsState):
      priv, unpriv = float(d.state.priv_mix_rate), float(d.state.unpriv_mix_rate)
      lines.append(
          f"{label}: mix rates {priv:.3f} (privileged '{names[int(d.state.privileged)]}') and "
          f"{unpriv:.3f} (the others), AIF360's values. A group mixes in its base-rate "
          "classifier with that probability (clipped to [0, 1]); a negative rate means the "
          "trivial classifier costs less than the model for the cheaper group, so no mixing "
          "equalises the costs and the decisions stay the model's.")
  return lines


# --- The job -----------------------------------------------------------------------------------

class Outcome(NamedTuple):
  """What :func:`train_and_evaluate` produced: the trained run, the saliency summaries (images)
  and the files written."""
  trained: Trained
  saliency: Optional[dict]
  written: list


def train_and_evaluate(config, workdir: str, *, command: str = "",
                       overwrite: bool = False,
                       log: Callable[[str], None] = _silent) -> Outcome:
  """The main job: data, vanilla model (cached), methods, explanations, report in ``workdir``.

  Args:
    config: the ``ml_collections.ConfigDict`` of ``experiments/configs/main.py``.
    workdir: the run folder; refused when it already holds results unless ``overwrite``.
    command: the command line recorded in the outputs.
    log: called with progress lines (silent by default).
  """
  from debiasjax import report

  check_config(config)
  with report.run_outputs(workdir, overwrite=overwrite) as stage:
    trained, saliency = _train_evaluate_and_write(config, stage, command=command, log=log)
  written = [f for f in report.OUTPUTS if os.path.exists(os.path.join(workdir, f))]
  log(f"\nwrote {', '.join(written)} to {workdir}")
  return Outcome(trained, saliency, written)


def save_models(trained: Trained, folder: str) -> list:
  """Vanilla and every debiased model as :func:`debiasjax.save_debiased` folders named by their
  labels; returns the folders."""
  from debiasjax.debias import Debiased, threshold_rule
  from debiasjax.report import slug
  from debiasjax.saved import save_debiased
  models = {"Vanilla": Debiased(trained.model.apply, trained.variables, threshold_rule(0.5),
                                None), **trained.result.debiased}
  example = trained.bench.test.x[:1]
  return [save_debiased(os.path.join(folder, slug(label)), d, example, label=label)
          for label, d in models.items()]


def _train_evaluate_and_write(config, stage: str, *, command: str, log: Callable):
  """The main job's work, its outputs written into ``stage``: the trained run and the saliency
  summaries."""
  from debiasjax import report
  trained = train_and_debias(config, log=log)
  rows, bench = trained.result.rows, trained.bench
  kind = data_kind(config)
  log("\nTest split (" + ("balanced over the four cells" if config.data.phi is not None
                          or kind == "images" else "random 20%")
      + "); changes against Vanilla in brackets:\n")
  log(report.format_table(rows))
  sections, extra, saliency = [], {"timings": trained.timings}, None
  if kind == "images" and config.explain != "none":
    start = time.time()
    section, table, saliency = saliency_section(config, trained, stage, log=log)
    extra["saliency"] = saliency
    sections.append(section)
    trained.timings["explain_s"] = time.time() - start
    log("\n" + table)
  result = trained.result
  if config.get("save_models", True):
    start = time.time()
    saved = save_models(trained, os.path.join(stage, "models"))
    trained.timings["save_s"] = time.time() - start
    log(f"\nsaved {len(saved)} models (reload with dj.load_debiased) in models/")
  notes = equalized_odds_notes(rows, result, bench) + calibration_notes(result, bench)
  notes += [f"Pareto front ({config.pareto_metric.replace('_', ' ')} gap vs balanced "
            f"accuracy): {', '.join(result.pareto)}; plot in `pareto.png`.",
            f"Trained model cached in `{trained.cache}`.",
            "Timings: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f}s"
                                    for k, v in trained.timings.items()) + "."]
  report.write_results(stage, rows=rows, config=applicable(config), info=bench.info,
                       command=command, notes=notes, extra=extra, sections=sections)
  report.pareto_plot(rows, os.path.join(stage, "pareto.png"), gap=config.pareto_metric,
                     title=f"{bench.info['name']}: methods on the test split")
  return trained, saliency


# --- Seed sweep ----------------------------------------------------------------------------------

SEED_OUTPUTS = ("seeds.md", "seeds.json", "seeds.csv")
SEED_TABLE = (("balanced_accuracy", "Bal.acc"), ("auc", "AUC"), ("demographic_parity", "DP"),
              ("equalized_odds", "EO"), ("equal_opportunity", "EOpp"))
SEED_SALIENCY = (("rrf", "RRF"), ("hrf", "HRF"), ("adr", "ADR"), ("rddt", "RDDT significant"))


def check_seeds(seeds) -> list[int]:
  """At least two distinct integer seeds."""
  try:
    out = [int(v) for v in seeds]
  except (TypeError, ValueError):
    raise ValueError(f"seeds: expected integers, got {','.join(map(str, seeds))!r}") from None
  if len(out) < 2 or len(set(out)) != len(out):
    raise ValueError(f"seeds: expected at least 2 distinct seeds, got {out}")
  return out


def seed_rows(config, *, log: Callable[[str], None] = _silent) -> list[dict]:
  """One seed of the main job: its result rows, with the saliency metrics merged in."""
  trained = train_and_debias(config, log=log)
  rows = [dict(r) for r in trained.result.rows]
  if data_kind(config) == "images" and config.explain != "none":
    _, _, summaries = saliency_summaries(config, trained, log=log)
    for r in rows:
      r.update({k: summaries[r["method"]][k] for k, _ in SEED_SALIENCY
                if k in summaries[r["method"]]})
  return rows


def _seeds_csv(seeds: list[int], runs: list[list[dict]], keys) -> str:
  import csv
  import io
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(["seed", "method", *keys])
  for seed, rows in zip(seeds, runs):
    for r in rows:
      writer.writerow([seed, r["method"], *(r.get(k) for k in keys)])
  return buf.getvalue()


def run_seeds(config, seeds, workdir: str, *, command: str = "", overwrite: bool = False,
              log: Callable[[str], None] = _silent) -> dict:
  """The main job over ``seeds`` (each draws its own data, splits, initialisation and batch
  order and trains its own cached vanilla model): every metric and change against Vanilla as
  mean +- sd over the seeds, with improvement counts (:func:`debiasjax.report.seed_summary`),
  written to ``seeds.md``, ``seeds.json`` and ``seeds.csv``. Returns the summary."""
  from debiasjax import report
  seeds = check_seeds(seeds)
  check_config(config)
  with report.run_outputs(workdir, overwrite=overwrite, outputs=SEED_OUTPUTS,
                          last="seeds.json") as stage:
    out = _sweep(config, seeds, stage, command=command, log=log)
  log(f"\nwrote {', '.join(SEED_OUTPUTS)} to {workdir}")
  return out


def _sweep(config, seeds, stage: str, *, command: str, log: Callable) -> dict:
  from debiasjax import report
  explained = data_kind(config) == "images" and config.explain != "none"
  columns = SEED_TABLE + (SEED_SALIENCY if explained else ())
  keys, headers = [k for k, _ in columns], [h for _, h in columns]
  runs = []
  for seed in seeds:
    log(f"\n== seed {seed} ==")
    one = config.copy_and_resolve_references()
    with one.unlocked():
      one.seed = seed
    runs.append(seed_rows(one, log=log))
    log(report.format_table(runs[-1]))
  summary = report.seed_summary(runs, keys)
  table = report.seed_table(summary, keys, headers)
  log(f"\nOver seeds {', '.join(map(str, seeds))} (mean ± sd; changes against Vanilla):\n")
  log(table)
  settings = {k: v for k, v in applicable(config).items() if k != "seed"}   # seeds replace it
  body = "\n".join([
      "# debiasjax seed sweep", "", f"Command: `{command}`", "",
      f"Seeds {', '.join(map(str, seeds))}: each draws its own data, splits, initialisation and "
      "batch order and trains its own vanilla model. Cells: mean ± sample standard deviation over "
      "the seeds; for the methods, in brackets, the change against Vanilla (mean ± sd) and in "
      "how many seeds it is an improvement (k/n: balanced accuracy up; DP, EO, EOpp, RRF, HRF "
      "down; ADR > 0, relevance left the region). RDDT: seeds in which relevance in the region "
      "fell significantly (one-sided t-test, p < 0.01).", "",
      table, "", "## Configuration", "", "```json",
      json.dumps(settings, indent=2, sort_keys=True), "```", ""])
  report.atomic_write(os.path.join(stage, "seeds.md"), body)
  report.atomic_write(os.path.join(stage, "seeds.json"), json.dumps(
      {"command": command, "provenance": report.provenance(), "config": settings,
       "tables": {"seeds": table}, "seeds": seeds, "summary": summary,
       "runs": dict(zip(map(str, seeds), runs))}, indent=2, default=str))
  report.atomic_write(os.path.join(stage, "seeds.csv"), _seeds_csv(seeds, runs, keys))
  return {"seeds": seeds, "summary": summary, "runs": runs}
