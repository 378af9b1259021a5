r"""DVGE (Zhang et al. 2023) trade-off curves and sensitive-probe ablation."""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Callable

import jax
import numpy as np

from debiasjax.reproductions.common import silent as _silent

DVGE_OUTPUTS = ("tradeoff.png", "tradeoff.csv", "probes.png", "results.json", "report.md")
ENCODERS = {"factor": "DVGE-D (FactorVAE)", "vae": "DVGE-N (plain VAE)",
            "model": "DVGE on the classifier's features"}


def _floats(text) -> list[float]:
  return [float(v) for v in str(text).split(",") if v.strip()]


def dvge(config, workdir: str, *, command: str = "", overwrite: bool = False,
         log: Callable[[str], None] = _silent) -> dict:
  """DVGE's trade-off curves and sensitive-probe ablation (``experiments/configs/dvge.py``),
  written to ``workdir``: for each encoder a VAE trained on the train split (cached), the
  sensitive classifier ``d`` and the task classifier ``g`` over the η grid (one vmapped
  program per classifier seed), the baselines (``g`` on latents without the sensitive
  dimensions; a gradient-reversal encoder over a λ grid) scored on the test split, and
  sensitive probes trained on the perturbed latents of each η1. Returns the results dict."""
  from debiasjax import report
  encoders = [e.strip() for e in str(config.encoders).split(",") if e.strip()]
  unknown = [e for e in encoders if e not in ENCODERS]
  if unknown or not encoders:
    raise ValueError(f"encoders: expected some of {list(ENCODERS)}, got {config.encoders!r}")
  if config.seeds < 1:
    raise ValueError(f"seeds: expected at least 1, got {config.seeds}")
  dvge_grid(config)
  with report.run_outputs(workdir, overwrite=overwrite, outputs=DVGE_OUTPUTS) as stage:
    out = _dvge_outputs(config, encoders, stage, command=command, log=log)
  log(f"wrote {', '.join(DVGE_OUTPUTS)} to {workdir}")
  return out


def train_vae(config, bench, encoder: str, *, log: Callable[[str], None] = _silent):
  """The VAE of ``encoder`` (``"factor"`` or ``"vae"``) trained on the train split's inputs, or
  restored from ``config.cache_dir`` (resumed after a kill); returns ``(vae, variables)``."""
  import hashlib
  from debiasjax import train
  from debiasjax.checkpoint import Checkpoints
  from debiasjax.methods import representation as D
  v = config.vae
  x = bench.train.x
  model = D.build_vae(x, latents=v.latents, hidden=v.hidden)
  trainer = D.vae_trainer(model, kind=encoder, gamma=v.gamma, learning_rate=v.learning_rate,
                          critic_learning_rate=v.critic_learning_rate)
  key = jax.random.key(config.seed)
  state = trainer.init(key, model.init(key, x[:1], key))
  # the settings, the architecture (every parameter's path and shape) and the data
  shapes = jax.tree_util.tree_map_with_path(lambda p, a: f"{jax.tree_util.keystr(p)}{a.shape}",
                                            state.params)
  digest = hashlib.sha256(json.dumps({"vae": v.to_dict(), "encoder": encoder,
                                      "seed": config.seed,
                                      "params": sorted(jax.tree.leaves(shapes))},
                                     sort_keys=True).encode())
  digest.update(np.ascontiguousarray(x).tobytes())
  cache = os.path.join(config.cache_dir, f"dvge-{config.data.name}-{encoder}-"
                       f"{digest.hexdigest()[:16]}")
  steps_per_epoch = max(1, len(x) // v.batch_size)
  num_steps = v.epochs * steps_per_epoch
  checkpoints = Checkpoints(cache)
  done = checkpoints.latest_step()
  log(f"  {ENCODERS[encoder]}: " + ("reusing the VAE cached in " + cache if done == num_steps
                                    else f"training the VAE for {v.epochs} epochs ({num_steps} "
                                    f"steps){f', resuming at {done}' if done else ''}"))
  start = time.time()

  def progress(step, metrics):
    log(f"    step {step}/{num_steps}  loss {float(metrics['loss']):.1f}  reconstruction "
        f"{float(metrics['reconstruction']):.1f}  kl {float(metrics['kl']):.2f}"
        + (f"  tc {float(metrics['tc']):.3f}" if "tc" in metrics else "")
        + f"  ({time.time() - start:.0f}s)")

  state = train.fit(trainer, state, {"x": x}, key=key, num_steps=num_steps,
                    batch_size=min(v.batch_size, len(x)), checkpoints=checkpoints,
                    save_every=steps_per_epoch, log=progress, log_every=steps_per_epoch * 5)
  return model, train.variables_of(state)


def classifier_features(config, bench, *, log: Callable[[str], None] = _silent) -> dict:
  """The ``"model"`` encoder: the penultimate features of the main job's vanilla classifier
  (``config.vanilla``, with this run's data, seed and cache: the main job's cached model),
  standardised with the train split's statistics so that ε and η act on the scale of a VAE's
  unit prior. ``{"train": [N, D], "test": [M, D]}``."""
  from debiasjax import pipeline
  from debiasjax.evaluate import scores_and_activations
  from debiasjax.models.taps import penultimate_layer
  vanilla = config.vanilla.copy_and_resolve_references()
  with vanilla.unlocked():
    vanilla.data, vanilla.seed, vanilla.cache_dir = config.data, config.seed, config.cache_dir
  model = pipeline.build_model(vanilla)
  variables, _ = pipeline.train_vanilla(vanilla, bench, model, log=lambda m: log(f"  {m}"))
  layer = penultimate_layer(model, variables, bench.train.x[:1])
  acts = {name: np.asarray(scores_and_activations(model, variables, split.x, layer)[1])
          for name, split in (("train", bench.train), ("test", bench.test))}
  acts = {k: a.reshape(len(a), -1) for k, a in acts.items()}
  mean, std = acts["train"].mean(0), acts["train"].std(0) + 1e-6
  log(f"  {ENCODERS['model']}: {layer} ({acts['train'].shape[1]} features)")
  return {k: ((a - mean) / std).astype(np.float32) for k, a in acts.items()}


def _gaps(y, pred, group) -> dict:
  """Accuracy, balanced accuracy, the positive rate and the seed's gaps of hard predictions on
  the test split (one confusion table: ``evaluate.fairness_summary``)."""
  from debiasjax.evaluate import fairness_summary
  summary = fairness_summary(y, pred, group)
  return {"positive_rate": float(np.mean(pred)),
          **{k: summary[k] for k in ("accuracy", "balanced_accuracy", "demographic_parity",
                                     "equal_opportunity", "equalized_odds")}}


def _stacked_init(trainers, key, variables):
  """The states of trainers that differ only in a hyper-parameter their state holds (η, λ),
  from one initialisation, stacked for one ``train.fit(..., stacked=True)`` sweep."""
  import jax.numpy as jnp
  return jax.tree.map(lambda *a: jnp.stack(a), *[t.init(key, variables) for t in trainers])


def dvge_on_latents(config, z: dict, labels: dict, *, seed: int,
                    log: Callable[[str], None] = _silent) -> dict:
  """One classifier seed on one encoder's latents: ``d``, the η grid, the baselines and the
  probes. ``z`` and ``labels`` hold the train and test splits (``labels[split] = (y, s)``)."""
  import jax.numpy as jnp
  from debiasjax import train
  from debiasjax.methods import representation as D
  c = config.classifier
  (y_tr, s_tr), (y_te, s_te) = labels["train"], labels["test"]
  z_tr, z_te = z["train"], z["test"]
  clf = D.latent_classifier(layers=c.layers, width=c.width)
  steps = lambda epochs: epochs * max(1, len(y_tr) // c.batch_size)
  key = jax.random.key(1000 + seed)
  d_vars = D.train_classifier(clf, z_tr, s_tr, key=key, num_steps=steps(c.sensitive_epochs),
                              batch_size=c.batch_size, learning_rate=c.learning_rate, seed=seed)
  sens_acc = float(jnp.mean(jnp.argmax(clf.apply(d_vars, z_te), -1) == s_te))

  # the grid of pushes (direction, step) and η, one vmapped program
  grid = dvge_grid(config)
  trainers = [D.dvge_trainer(clf, clf, d_vars, eta1=e1, eta2=e2, epsilon=config.epsilon,
                             clip=config.clip, sensitive_direction=direction, step=step,
                             learning_rate=c.learning_rate) for e1, e2, direction, step in grid]
  g_key = jax.random.fold_in(key, 1)
  states = _stacked_init(trainers, g_key, clf.init(g_key, z_tr[:1]))
  k = len(grid)
  states = train.fit(trainers[0], states, {"x": z_tr, "y": y_tr}, key=jnp.stack([g_key] * k),
                     num_steps=steps(c.task_epochs), batch_size=min(c.batch_size, len(y_tr)),
                     stacked=True, seed=[seed] * k)
  g_vars = train.variables_of(states)
  preds = np.asarray(jax.vmap(lambda v: jnp.argmax(clf.apply(v, z_te), -1))(g_vars))
  rows = [{"method": "DVGE", "eta1": e1, "eta2": e2, "direction": direction, "step": step,
           **_gaps(y_te, p, s_te)} for (e1, e2, direction, step), p in zip(grid, preds)]

  # baseline: g on the latents without the dimensions d leans on most
  dims = D.sensitive_dimensions(clf, d_vars, z_tr, count=config.removed_dims)
  zr_tr, zr_te = D.remove_dimensions(z_tr, dims), D.remove_dimensions(z_te, dims)
  r_vars = D.train_classifier(clf, zr_tr, y_tr, key=g_key, num_steps=steps(c.task_epochs),
                              batch_size=c.batch_size, learning_rate=c.learning_rate, seed=seed)
  rows.append({"method": "Sens. dims removed", "dims": [int(i) for i in dims],
               **_gaps(y_te, np.asarray(jnp.argmax(clf.apply(r_vars, zr_te), -1)), s_te)})

  # baseline: a gradient-reversal encoder over the λ grid, one vmapped program
  lams = _floats(config.adversary_lams)
  net = D.ReversalNet(layers=c.layers, width=c.width)
  a_trainers = [D.reversal_trainer(net, lam=lam, learning_rate=c.learning_rate) for lam in lams]
  a_states = _stacked_init(a_trainers, g_key, net.init(g_key, z_tr[:1], 1.0, method="both"))
  a_states = train.fit(a_trainers[0], a_states, {"x": z_tr, "y": y_tr, "group": s_tr},
                       key=jnp.stack([g_key] * len(lams)), num_steps=steps(c.task_epochs),
                       batch_size=min(c.batch_size, len(y_tr)), stacked=True,
                       seed=[seed] * len(lams))
  a_preds = np.asarray(jax.vmap(lambda p: jnp.argmax(net.apply({"params": p}, z_te), -1))(
      a_states.params))
  rows += [{"method": "Adversarial (GRL)", "lam": lam, **_gaps(y_te, p, s_te)}
           for lam, p in zip(lams, a_preds)]

  # the ablation: sensitive probes on the perturbed latents of every eta1 > 0 at probe_eta2
  probe_grid = [i for i, (e1, e2, _, _) in enumerate(grid) if e1 > 0 and e2 == config.probe_eta2]
  pick = lambda i: jax.tree.map(lambda a: a[i], g_vars)
  perturbed = [[D.perturbed_latents(clf, pick(i), clf, d_vars, zz, eta1=e1, eta2=e2,
                                    epsilon=config.epsilon, clip=config.clip,
                                    sensitive_direction=direction, step=step)
                for i in probe_grid for e1, e2, direction, step in [grid[i]]]
               for zz in (z_tr, z_te)]
  sets_tr = jnp.stack([jnp.asarray(z_tr), zr_tr] + perturbed[0])
  sets_te = jnp.stack([jnp.asarray(z_te), zr_te] + perturbed[1])
  best, _ = D.probe_accuracy(clf, sets_tr, s_tr, sets_te, s_te, key=jax.random.fold_in(key, 2),
                             epochs=config.probe_epochs, batch_size=c.batch_size,
                             learning_rate=c.learning_rate)
  probe_names = ["No removal", "Sens. dim. removed"] + [probe_name(grid[i]) for i in probe_grid]
  # what the perturbation does to d itself (its mean probability of its predicted class) and
  # the size of the push on the test latents, mean ‖z' − z‖₂
  confidence = lambda zz: float(jnp.mean(jnp.max(jax.nn.softmax(clf.apply(d_vars, zz)), -1)))
  shift = lambda zz: float(jnp.mean(jnp.linalg.norm(zz - sets_te[0], axis=-1)))
  log(f"    seed {seed}: d's test accuracy {sens_acc:.3f}; probes "
      + ", ".join(f"{n} {b:.3f}" for n, b in zip(probe_names, np.asarray(best))))
  return {"rows": rows, "sensitive_accuracy": sens_acc,
          "probes": dict(zip(probe_names, map(float, np.asarray(best)))),
          "sensitive_confidence": {n: confidence(zz) for n, zz in zip(probe_names, sets_te)},
          "shift": {n: shift(zz) for n, zz in zip(probe_names, sets_te)}}


PUSHES = {("toward", "gradient"): "toward d (paper)", ("away", "gradient"): "away from d",
          ("toward", "unit"): "toward d, unit step", ("away", "unit"): "away from d, unit step"}


def dvge_grid(config) -> list[tuple]:
  """``(eta1, eta2, direction, step)`` of every DVGE classifier the configuration asks for:
  each push (``config.directions`` × ``config.steps``) over the η grid (``config.eta1`` for
  the first push, ``config.other_eta1`` for the others); η1 = 0 once per step (its direction
  does not matter)."""
  directions = [d.strip() for d in str(config.directions).split(",") if d.strip()]
  steps = [u.strip() for u in str(config.steps).split(",") if u.strip()]
  from debiasjax.methods.representation import DIRECTIONS, STEPS
  for name, values, allowed in (("directions", directions, DIRECTIONS),
                                ("steps", steps, STEPS)):
    if not values or any(v not in allowed for v in values):
      raise ValueError(f"{name}: expected some of {list(allowed)}, got {config[name]!r}")
  first = (directions[0], steps[0])
  eta1 = lambda push: _floats(config.eta1 if push == first else config.other_eta1)
  grid = [(e1, e2, d, u) for u in steps for d in directions for e2 in _floats(config.eta2)
          for e1 in eta1((d, u)) if e1 > 0 or d == directions[0]]
  unperturbed = (0.0, 0.0, *first)        # g on the codes as they are: the reference point
  return grid if unperturbed in grid else [unperturbed] + grid


def probe_name(point: tuple) -> str:
  """``"<push>: <eta1>"``, the probe column of a grid point ``(eta1, eta2, direction, step)``."""
  return f"{PUSHES[point[2], point[3]]}: {point[0]:g}"


def _push_and_eta(name: str) -> tuple[str, str]:
  """``(push, eta1)`` of a probe column named by :func:`probe_name`."""
  push, eta1 = name.rsplit(": ", 1)
  return push, eta1


def _dvge_outputs(config, encoders, stage: str, *, command: str, log: Callable) -> dict:
  from debiasjax import pipeline
  from debiasjax.methods import representation as D
  from debiasjax.report import atomic_write, markdown_table, provenance
  bench = pipeline.load_benchmark(config)
  info = bench.info
  log(f"data: {info['name']} train {len(bench.train)} / test {len(bench.test)}; target "
      f"{info.get('target')}, sensitive {info.get('protected')}")
  labels = {"train": (bench.train.y, bench.train.group), "test": (bench.test.y, bench.test.group)}
  start = time.time()
  results = {}
  splits = (("train", bench.train), ("test", bench.test))
  for encoder in encoders:
    if encoder == "model":
      z = classifier_features(config, bench, log=log)
    else:
      vae, variables = train_vae(config, bench, encoder, log=log)
      z = {name: np.asarray(D.encode(vae, variables, split.x)) for name, split in splits}
    log(f"  {ENCODERS[encoder]}: latents encoded ({time.time() - start:.0f}s)")
    results[encoder] = [dvge_on_latents(config, z, labels, seed=s, log=log)
                        for s in range(config.seeds)]
  seconds = time.time() - start
  summary = _dvge_summary(results)
  tables = _dvge_tables(summary, encoders, markdown_table, config.probe_eta2)
  _dvge_figures(summary, encoders, stage, title=f"{info['name']}: target {info.get('target')}, "
                f"sensitive {info.get('protected')}, {config.seeds} classifier seeds")
  atomic_write(os.path.join(stage, "tradeoff.csv"), _dvge_csv(results))
  atomic_write(os.path.join(stage, "results.json"), json.dumps(
      {"command": command, "provenance": provenance(), "config": config.to_dict(),
       "seconds": seconds, "tables": tables, "summary": summary, "results": results},
      indent=1, default=str))
  text = (f"# DVGE (Zhang et al. 2023) on {info['name']}\n\n`{command}`\n\n"
          f"## Trade-off (test split, mean ± sd over {config.seeds} classifier seeds)\n\n"
          f"{tables['tradeoff']}\n\n## Sensitive probes on perturbed latents (the seed's "
          f"ablation tables)\n\n{tables['probes']}\n\n{seconds / 60:.1f} minutes.\n")
  atomic_write(os.path.join(stage, "report.md"), text)
  log("\n" + text)
  return {"summary": summary, "results": results, "tables": tables}


DVGE_METRICS = (("accuracy", "Accuracy"), ("balanced_accuracy", "Bal.acc"),
                ("positive_rate", "P(ŷ = 1)"), ("demographic_parity", "DP"),
                ("equal_opportunity", "EOpp"), ("equalized_odds", "EO"))


def _push(row: dict) -> tuple:
  return row.get("direction", "toward"), row.get("step", "gradient")


def _dvge_label(row: dict) -> str:
  if row["method"] == "DVGE" and row["eta1"] == row["eta2"] == 0:
    return "g on unperturbed codes (η = 0)"
  if row["method"] == "DVGE":
    push = "" if _push(row) == ("toward", "gradient") or row["eta1"] == 0 else \
        f", {PUSHES[_push(row)]}"
    step = ", unit step" if row["eta1"] == 0 and _push(row)[1] == "unit" else ""
    return f"DVGE η1={row['eta1']:g} η2={row['eta2']:g}{push}{step}"
  if "lam" in row:
    return f"{row['method']} λ={row['lam']:g}"
  return row["method"]


def _constant(point: dict) -> bool:
  """A (near-)constant classifier on average over seeds: its gaps are ~0 by construction."""
  from debiasjax.debias import CONSTANT
  rate = point.get("positive_rate", [0.5])[0]
  return not CONSTANT < rate < 1 - CONSTANT


def _mean_sd(values) -> list[float]:
  values = np.asarray(values, float)
  return [float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0]


def _dvge_summary(results: dict) -> dict:
  """Mean and sd over classifier seeds of every row, probe and ``d``'s accuracy."""
  out = {}
  for encoder, seeds in results.items():
    points = []
    for i, row in enumerate(seeds[0]["rows"]):
      point = {k: v for k, v in row.items() if k not in dict(DVGE_METRICS)}
      point["label"] = _dvge_label(row)
      point.update({k: _mean_sd([s["rows"][i][k] for s in seeds]) for k, _ in DVGE_METRICS})
      if _constant(point):
        point["label"] += " (constant)"
      points.append(point)
    out[encoder] = {
        "points": points,
        "probes": {name: _mean_sd([s["probes"][name] for s in seeds])
                   for name in seeds[0]["probes"]},
        "sensitive_confidence": {name: _mean_sd([s["sensitive_confidence"][name] for s in seeds])
                                 for name in seeds[0]["sensitive_confidence"]},
        "shift": {name: _mean_sd([s["shift"][name] for s in seeds]) for name in seeds[0]["shift"]},
        "sensitive_accuracy": _mean_sd([s["sensitive_accuracy"] for s in seeds])}
  return out


def _dvge_tables(summary: dict, encoders, markdown_table, eta2: float) -> dict:
  cell = lambda m: f"{m[0]:.3f} ± {m[1]:.3f}"
  rows = [[ENCODERS[e], p["label"]] + [cell(p[k]) for k, _ in DVGE_METRICS]
          for e in encoders for p in summary[e]["points"]]
  tradeoff = markdown_table(["Encoder", "Classifier"] + [h for _, h in DVGE_METRICS], rows)
  # the docs' summary: η1 = 0, the middle and the largest η1 of each push at the probes' η2,
  # and the baselines
  def key_rows(points):
    dvge = [p for p in points if p["method"] == "DVGE" and p["eta2"] == eta2]
    etas = sorted({p["eta1"] for p in dvge})
    keep = {etas[0], etas[len(etas) // 2], etas[-1]}
    return [p for p in points if p["method"] != "DVGE" or p in dvge and p["eta1"] in keep
            or p["eta1"] == p["eta2"] == 0]
  summary_rows = [[ENCODERS[e], p["label"]] + [cell(p[k]) for k, _ in DVGE_METRICS]
                  for e in encoders for p in key_rows(summary[e]["points"])]
  key = markdown_table(["Encoder", "Classifier"] + [h for _, h in DVGE_METRICS], summary_rows)
  # the seed's ablation tables: a row per push, a column per η1
  names = list(summary[encoders[0]]["probes"])
  pushes = list(dict.fromkeys(_push_and_eta(n)[0] for n in names[2:]))
  etas = list(dict.fromkeys(_push_and_eta(n)[1] for n in names[2:]))
  measures = (("best probe accuracy", "probes"), ("d's confidence", "sensitive_confidence"),
              ("shift ‖z' − z‖", "shift"))
  probe_rows = []
  for e in encoders:
    for label, field in measures:
      values = summary[e][field]
      for push in pushes:
        first = [cell(summary[e]["sensitive_accuracy"]) if field == "probes" else ""]
        probe_rows.append([ENCODERS[e], label, push] + first
                          + [cell(values[n]) for n in names[:2]]
                          + [cell(values[f"{push}: {eta}"]) if f"{push}: {eta}" in values
                             else "" for eta in etas])
  probes = markdown_table(["Encoder", "measure", "push", "d (test)"] + names[:2]
                          + [f"η1 = {eta}" for eta in etas], probe_rows)
  return {"tradeoff": tradeoff, "summary": key, "probes": probes}


def _dvge_csv(results: dict) -> str:
  import csv
  import io
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  keys = [k for k, _ in DVGE_METRICS]
  writer.writerow(["encoder", "seed", "method", "eta1", "eta2", "direction", "step", "lam",
                   *keys])
  for encoder, seeds in results.items():
    for seed, s in enumerate(seeds):
      for r in s["rows"]:
        writer.writerow([encoder, seed, r["method"], r.get("eta1", ""), r.get("eta2", ""),
                         r.get("direction", ""), r.get("step", ""), r.get("lam", ""),
                         *(r[k] for k in keys)])
  return buf.getvalue()


def _dvge_figures(summary: dict, encoders, stage: str, *, title: str) -> None:
  from debiasjax.report import pyplot, save_png
  plt = pyplot()
  gaps = (("demographic_parity", "DP"), ("equal_opportunity", "EOpp"))
  fig, axes = plt.subplots(len(gaps), len(encoders), figsize=(5.4 * len(encoders) + 0.8, 4.2 * 2),
                           squeeze=False, layout="constrained")
  for col, encoder in enumerate(encoders):
    points = summary[encoder]["points"]
    for row, (gap, short) in enumerate(gaps):
      ax = axes[row, col]
      plain = [p for p in points if p["method"] == "DVGE" and p["eta1"] == p["eta2"] == 0]
      dvge_points = [p for p in points if p["method"] == "DVGE" and p not in plain]
      zero = {(p["eta2"], _push(p)[1]): p for p in dvge_points if p["eta1"] == 0}
      pushes = list(dict.fromkeys(_push(p) for p in dvge_points))
      eta2s = sorted({p["eta2"] for p in dvge_points})
      for (push, marker), eta2 in itertools.product(zip(pushes, "os^Dv"), eta2s):
        line = [zero[eta2, push[1]]] * ((eta2, push[1]) in zero) + [
            p for p in dvge_points if p["eta2"] == eta2 and _push(p) == push and p["eta1"] > 0]
        xs, ys = [p["accuracy"][0] for p in line], [p[gap][0] for p in line]
        ax.plot(xs, ys, "-" if eta2 == max(eta2s) else ":", color="0.75", lw=1, zorder=1)
        ax.errorbar(xs, ys, xerr=[p["accuracy"][1] for p in line],
                    yerr=[p[gap][1] for p in line], fmt="none", ecolor="0.6", lw=0.8, zorder=2)
        sc = ax.scatter(xs, ys, c=[p["eta1"] for p in line], cmap="viridis", marker=marker,
                        vmin=0, vmax=max(p["eta1"] for p in dvge_points) or 1, s=30, zorder=3,
                        alpha=1.0 if eta2 == max(eta2s) else 0.5,
                        label=f"DVGE {PUSHES[push]}, η2 = {eta2:g}")
      ax.errorbar([p["accuracy"][0] for p in plain], [p[gap][0] for p in plain],
                  xerr=[p["accuracy"][1] for p in plain], yerr=[p[gap][1] for p in plain],
                  fmt="P", color="tab:blue", ms=10, label="g on unperturbed codes")
      adv = [p for p in points if "lam" in p]
      ax.errorbar([p["accuracy"][0] for p in adv], [p[gap][0] for p in adv],
                  xerr=[p["accuracy"][1] for p in adv], yerr=[p[gap][1] for p in adv],
                  fmt="x--", color="tab:red", ms=7, lw=1, label="gradient reversal (λ grid)")
      for p in adv:
        ax.annotate(f"λ={p['lam']:g}", (p["accuracy"][0], p[gap][0]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points", color="tab:red")
      removed = [p for p in points if p["method"] == "Sens. dims removed"]
      ax.errorbar([p["accuracy"][0] for p in removed], [p[gap][0] for p in removed],
                  xerr=[p["accuracy"][1] for p in removed], yerr=[p[gap][1] for p in removed],
                  fmt="*", color="k", ms=11, label="sensitive dims removed")
      ax.set_xlabel("test accuracy")
      ax.set_ylabel(f"{short} gap (test)")
      ax.set_title(f"{ENCODERS[encoder]}: {short}", fontsize=10)
      ax.grid(alpha=0.3)
      if row == 0 and col == len(encoders) - 1:
        fig.colorbar(sc, ax=axes[:, col], label="η1", shrink=0.6)
      if row == 0 and col == 0:
        ax.legend(fontsize=7, loc="best")
  fig.suptitle(title, fontsize=10)
  save_png(fig, os.path.join(stage, "tradeoff.png"))

  fig, axes = plt.subplots(1, len(encoders), figsize=(5.2 * len(encoders), 3.8), squeeze=False,
                           layout="constrained")
  for ax, encoder in zip(axes[0], encoders):
    probes = summary[encoder]["probes"]
    names = [n for n in probes if n not in ("No removal", "Sens. dim. removed")]
    for push in dict.fromkeys(_push_and_eta(n)[0] for n in names):
      mine = [n for n in names if _push_and_eta(n)[0] == push]
      ax.errorbar([float(_push_and_eta(n)[1]) for n in mine], [probes[n][0] for n in mine],
                  yerr=[probes[n][1] for n in mine], fmt="o-", capsize=3, ms=4,
                  label=f"DVGE {push}")
    for name, style in (("No removal", "--"), ("Sens. dim. removed", ":")):
      ax.axhline(probes[name][0], color="k", ls=style, lw=1, label=name)
    ax.set_xlabel("η1")
    ax.set_ylabel("best sensitive-probe accuracy (test)")
    ax.set_title(ENCODERS[encoder], fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  save_png(fig, os.path.join(stage, "probes.png"))
