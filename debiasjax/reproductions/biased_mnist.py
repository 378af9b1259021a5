r"""The Biased-MNIST table (Bahng et al. 2020; Nahon, Nguyen & Tartaglione 2023, Table 1) on the
procedural digits (:mod:`debiasjax.data.digits`): unbiased-test accuracy per training bias
rho for vanilla training, LfF, JTT, IRENE (given the true colours) and the unsupervised
Voronoi-cell method (mining during a vanilla run, then reweighting and IRENE's head on the
pseudo bias labels), every method's seeds trained in one vmapped program per run.

Protocol: for each rho, one training set of ``n_train`` digits whose background colour
agrees with the digit for a share rho (Bahng's assignment), an unbiased test (rho = 0.1) and a
biased one (rho = 1), the same for every method; seed k gives every method the same
initialisation and data order, so "beats vanilla" is counted per seed. The unsupervised methods
(LfF, JTT, Voronoi mining) get the training set through
:func:`~debiasjax.data.digits.hide_bias`; only IRENE reads the colours. Besides the accuracy:
the 10 x 10 accuracy of every (digit, colour) cell of the unbiased test, the mined set's
precision and recall against the truly bias-conflicting samples (and JTT's error set's), e*.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import jax
import numpy as np

from debiasjax.reproductions.common import silent as _silent

DIGITS_OUTPUTS = ("table.md", "accuracy.png", "cells.png", "results.json", "report.md")
METHODS = {"vanilla": "Vanilla", "lff": "LfF", "jtt": "JTT", "irene": "IRENE (colour labels)",
           "oracle": "Voronoi, colour labels", "online": "Voronoi mining (no labels)"}
PAPER_RHOS = (0.999, 0.997, 0.995, 0.99)
# Unbiased-test accuracy (%) on Biased-MNIST (MNIST digits, SimpleConvNet), Nahon et al. 2023,
# Table 1 (their vanilla re-run; LfF's row from the same table). No stored text gives IRENE's
# or JTT's Biased-MNIST numbers; EnD is the supervised method of the same group.
PUBLISHED = {"Vanilla": (11.2, 40.5, 72.4, 88.4), "LfF": (15.3, 63.7, 90.3, 95.1),
             "EnD (colour labels)": (52.3, 83.7, 93.9, 96.0),
             "Voronoi mining": (58.7, 92.7, 95.5, 97.7)}
PUBLISHED_SD = {"Voronoi mining": (21.8, 1.2, 0.8, 0.3), "EnD (colour labels)": (2.4, 1.0, 0.4,
                                                                               0.1)}


def _floats(text) -> list[float]:
  return [float(v) for v in str(text).split(",") if v.strip()]


def _names(text) -> list[str]:
  return [v.strip() for v in str(text).split(",") if v.strip()]


def check_config(config) -> tuple[list[float], list[str]]:
  """The rhos and methods of ``config``, or a ``ValueError`` naming the bad field."""
  rhos = _floats(config.rhos)
  if not rhos or any(not 0 < r < 1 for r in rhos):
    raise ValueError(f"rhos: expected biases in (0, 1) (a conflicting sample is needed), got "
                     f"{config.rhos!r}")
  methods = _names(config.methods)
  unknown = [m for m in methods if m not in METHODS]
  if unknown or not methods:
    raise ValueError(f"methods: expected some of {list(METHODS)}, got {config.methods!r}")
  if config.seeds < 1:
    raise ValueError(f"seeds: expected at least 1, got {config.seeds}")
  if config.model.name not in ("mlp", "cnn"):
    raise ValueError(f"model.name: expected 'mlp' or 'cnn', got {config.model.name!r}")
  if config.optimizer.name not in ("adam", "sgd"):
    raise ValueError(f"optimizer.name: expected 'adam' or 'sgd', got {config.optimizer.name!r}")
  if config.data.n_train < 10 * config.batch_size:
    raise ValueError(f"data.n_train: expected at least 10 batches of {config.batch_size}, got "
                     f"{config.data.n_train}")
  return rhos, methods


def network(config):
  """``(model, bottleneck layer)``: the MLP's last hidden layer or the CNN's pool."""
  from debiasjax import models
  m = config.model
  if m.name == "mlp":
    return (models.MLP(num_layers=m.layers, width=m.width, dropout=0.0, batch_norm=False,
                       num_classes=10), f"layer{m.layers}")
  return models.SimpleConvNet(num_classes=10, width=m.width, last_activation="tanh"), "pool"


def optimizer(config, steps_per_epoch: int):
  """Adam, or SGD with momentum 0.9, weight decay 1e-4 and x0.1 at the milestone epochs."""
  import optax
  from debiasjax.methods import irene
  o = config.optimizer
  if o.name == "adam":
    return optax.adam(o.learning_rate)
  schedule = optax.piecewise_constant_schedule(
      o.learning_rate, {int(e) * steps_per_epoch: 0.1 for e in o.milestones})
  return irene.sgd(schedule)


def biased_digits(config, workdir: str, *, command: str = "", overwrite: bool = False,
                  log: Callable[[str], None] = _silent) -> dict:
  """The table, its figures and the per-seed results (``experiments/configs/biased_digits.py``)
  written to ``workdir``; returns ``{rho: {method: {...per-seed lists...}}}``."""
  from debiasjax import report
  rhos, methods = check_config(config)
  with report.run_outputs(workdir, overwrite=overwrite, outputs=DIGITS_OUTPUTS) as stage:
    results = _outputs(config, rhos, methods, stage, command=command, log=log)
  log(f"wrote {', '.join(DIGITS_OUTPUTS)} to {workdir}")
  return results


def cell_accuracy(y, colour, pred) -> np.ndarray:
  """[..., 10, 10] accuracy of every (digit, colour) cell (NaN for an empty cell)."""
  y, colour, pred = np.asarray(y), np.asarray(colour), np.asarray(pred)
  hit = (pred == y).astype(np.float64)
  cell = y * 10 + colour
  counts = np.bincount(cell, minlength=100)
  sums = np.stack([np.bincount(cell, h, minlength=100) for h in hit.reshape(-1, len(y))])
  with np.errstate(invalid="ignore", divide="ignore"):
    out = np.where(counts > 0, sums / counts, np.nan)
  return out.reshape(*hit.shape[:-1], 10, 10)


def run_rho(config, rho: float, methods, *, log: Callable[[str], None] = _silent) -> dict:
  """Every method at one ``rho``: ``{method: {"unbiased": [K], "biased": [K], "cells":
  [K, 10, 10], "seconds": s, ...}}`` (accuracies in [0, 1])."""
  from debiasjax import evaluate, train
  from debiasjax.data.digits import biased_digits as make, digits_split, hide_bias
  from debiasjax.methods import irene, lff, online
  d = config.data
  bench = make(rho=rho, n_train=d.n_train, n_debias=10, n_test=d.n_test, seed=d.seed)
  biased_test = digits_split(d.n_biased_test, 1.0, seed=bench.info["biased_test_seed"])
  given = hide_bias(bench.train)
  conflicting = bench.train.y != bench.train.group
  model, layer = network(config)
  steps = d.n_train // config.batch_size
  tx = optimizer(config, steps)
  head_tx = irene.sgd(config.head_learning_rate)
  keys = jax.random.split(jax.random.key(d.seed), config.seeds)
  seeds = list(range(config.seeds))
  fit = dict(key=keys, seed=seeds, stacked=True, batch_size=config.batch_size,
             num_steps=config.epochs * steps)
  log(f"rho {rho}: {d.n_train} training digits, {int(conflicting.sum())} bias-conflicting")
  trained, extra, seconds = {}, {}, {}

  def timed(*names):
    """Times a block; a block of several methods (the two runs of the Voronoi method, the
    first of which is the vanilla run) gives each an equal share."""
    start = time.perf_counter()
    return lambda: seconds.update({n: (time.perf_counter() - start) / len(names)
                                   for n in names})

  if "online" in methods or "vanilla" in methods:
    done = timed("vanilla", "online")
    c = config.online
    trained["vanilla"], debiased, found, e_star = online.two_runs(
        model, layer, given.x, given.y, key=keys, num_classes=10, num_epochs=config.epochs,
        batch_size=config.batch_size, tx=tx, head_tx=head_tx, alpha=c.alpha, gamma=c.gamma,
        skip=c.skip)
    if "online" in methods:
      trained["online"] = debiased
      p, r = jax.vmap(online.precision_recall, (0, None))(found.misaligned, conflicting)
      extra["online"] = {"precision": p.tolist(), "recall": r.tolist(),
                         "e_star": np.asarray(e_star).tolist(),
                         "mined": np.asarray(found.misaligned).sum(-1).tolist()}
    done()
  if "oracle" in methods:
    # the reference's --bias_supervised: the debiased run given the true colours instead of b*
    done = timed("oracle")
    trained["oracle"] = _irene_run(model, layer, tx, head_tx, keys, fit, bench.train,
                                   online.mined_columns(online.mine(bench.train.y,
                                                                    bench.train.group, 10)),
                                   alpha=config.online.alpha, gamma=config.online.gamma)
    done()
  if "irene" in methods:
    done = timed("irene")
    trained["irene"] = _irene_run(model, layer, tx, head_tx, keys, fit, bench.train,
                                  {"private": bench.train.group}, alpha=config.irene.alpha,
                                  gamma=config.irene.gamma)
    done()
  if "lff" in methods:
    done = timed("lff")
    t = lff.lff_trainer(model, tx, labels=given.y, num_classes=10, q=config.lff.q,
                        ema=config.lff.ema)
    # the biased network from its own initialisation (the reference's two models)
    other = jax.random.split(jax.random.fold_in(jax.random.key(d.seed), 1), config.seeds)
    init = jax.vmap(lambda k, v, b: lff.init_biased(t.init(k, v), b))(
        keys, train.initial_variables(model, keys, given.x),
        train.initial_variables(model, other, given.x))
    state = train.fit(t, init, {"x": given.x, "y": given.y, "index": np.arange(d.n_train)},
                      **fit)
    trained["lff"] = train.variables_of(state)
    done()
  if "jtt" in methods:
    done = timed("jtt")
    _, trained["jtt"], errors = lff.jtt(
        model, given.x, given.y, key=keys, first_epochs=config.jtt.first_epochs,
        num_epochs=config.epochs, lambda_up=config.jtt.lambda_up,
        batch_size=config.batch_size, tx=tx)
    p, r = jax.vmap(online.precision_recall, (0, None))(errors, conflicting)
    extra["jtt"] = {"precision": p.tolist(), "recall": r.tolist(),
                    "error_set": np.asarray(errors).sum(-1).tolist()}
    done()

  out = {}
  for name in methods:
    pred = evaluate.predicted_classes(model, trained[name], bench.test.x, stacked=True)
    biased = evaluate.predicted_classes(model, trained[name], biased_test.x, stacked=True)
    out[name] = {"unbiased": (pred == bench.test.y).mean(-1).tolist(),
                 "biased": (biased == biased_test.y).mean(-1).tolist(),
                 "cells": cell_accuracy(bench.test.y, bench.test.group, pred).tolist(),
                 "seconds": seconds[name], **extra.get(name, {})}
    log(f"  {METHODS[name]:28s} unbiased {_pct(out[name]['unbiased'])}  biased "
        f"{_pct(out[name]['biased'])}  ({seconds[name]:.0f}s)")
  return out


def _irene_run(model, layer, tx, head_tx, keys, fit, split, columns, *, alpha, gamma):
  """IRENE's trainer from scratch on ``split`` with ``columns`` (``private``, optionally
  ``weight`` and ``mi_mask``) shared by every seed."""
  from debiasjax import train
  from debiasjax.methods import irene
  from debiasjax.models.taps import tap
  variables = train.initial_variables(model, keys, split.x)
  features = jax.eval_shape(tap(model, layer).activations,
                            jax.tree.map(lambda a: a[0], variables), split.x[:1])
  t = irene.irene_trainer(model, layer, features, num_private=10, alpha=alpha, gamma=gamma,
                          tx=tx, head_tx=head_tx)
  init = jax.vmap(t.init)(keys, variables)
  return train.variables_of(train.fit(t, init, {"x": split.x, "y": split.y, **columns},
                                      **fit))


def _pct(values) -> str:
  v = 100 * np.asarray(values, np.float64)
  return f"{v.mean():.1f} ± {v.std():.1f}"


def wins(results: dict, method: str) -> int:
  """Seeds in which ``method``'s unbiased accuracy exceeds vanilla's (same initialisation and
  data order)."""
  return int(np.sum(np.asarray(results[method]["unbiased"])
                    > np.asarray(results["vanilla"]["unbiased"])))


def tables(results: dict, rhos, methods, seeds: int) -> dict:
  """Markdown tables: ours (mean ± sd over seeds, %), wins over vanilla, the mined sets, the
  published rows."""
  from debiasjax.report import markdown_table
  order = sorted(rhos, reverse=True)
  head = ["Method"] + [f"ρ = {r}" for r in order]
  ours = markdown_table(head, [[METHODS[m]] + [_pct(results[r][m]["unbiased"]) for r in order]
                               for m in methods])
  biased = markdown_table(head, [[METHODS[m]] + [_pct(results[r][m]["biased"]) for r in order]
                                 for m in methods])
  beat = ("" if "vanilla" not in methods else markdown_table(
      head, [[METHODS[m]] + [f"{wins(results[r], m)} / {seeds}" for r in order]
             for m in methods if m != "vanilla"]))
  mined_rows = []
  for m, label in (("online", "Voronoi mining: mined set"), ("jtt", "JTT: error set")):
    if m in methods:
      mined_rows.append([label] + [
          f"P {np.mean(results[r][m]['precision']):.2f} R {np.mean(results[r][m]['recall']):.2f}"
          for r in order])
  mined = markdown_table(head, mined_rows) if mined_rows else ""
  published = markdown_table(["Method (MNIST digits)"] + [f"ρ = {r}" for r in PAPER_RHOS], [
      [name] + [f"{v}" + (f" ± {PUBLISHED_SD[name][i]}" if name in PUBLISHED_SD else "")
                for i, v in enumerate(values)] for name, values in PUBLISHED.items()])
  return {"unbiased": ours, "biased": biased, "wins": beat, "mined": mined,
          "published": published}


def _accuracy_figure(results: dict, rhos, methods, path: str, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  order = sorted(rhos)
  fig, ax = plt.subplots(figsize=(9, 4.4))
  x = [1 - r for r in order]
  colours = dict(zip(METHODS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
  for m in methods:
    v = 100 * np.asarray([results[r][m]["unbiased"] for r in order])
    ax.errorbar(x, v.mean(-1), yerr=v.std(-1), marker="o", capsize=3, label=METHODS[m],
                color=colours[m])
  for name, m in (("Vanilla", "vanilla"), ("LfF", "lff"), ("Voronoi mining", "online")):
    if m in methods:
      ax.plot([1 - r for r in PAPER_RHOS], PUBLISHED[name], ls=":", color=colours[m], alpha=0.8)
  ax.plot([], [], ls=":", color="grey", label="published (MNIST, CNN)")
  ax.axhline(10, color="black", lw=0.6, ls="--", label="chance")
  ax.set_xscale("log")
  ax.set_xticks(x, [str(r) for r in order])
  ax.minorticks_off()
  ax.set_xlabel("training bias ρ (share of digits on their class's colour)")
  ax.set_ylabel("unbiased-test accuracy (%)")
  ax.set_ylim(0, 100)
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  fig.tight_layout()
  fig.savefig(path, dpi=130)
  plt.close(fig)


def _cells_figure(results: dict, rhos, methods, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  order = sorted(rhos, reverse=True)
  fig, axes = plt.subplots(len(methods), len(order), squeeze=False,
                           figsize=(1.9 * len(order) + 0.8, 1.9 * len(methods)))
  for i, m in enumerate(methods):
    for j, r in enumerate(order):
      ax = axes[i, j]
      im = ax.imshow(np.nanmean(np.asarray(results[r][m]["cells"]), 0), vmin=0, vmax=1,
                     cmap="viridis")
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(f"ρ = {r}", fontsize=8)
      if j == 0:
        ax.set_ylabel(f"{METHODS[m]}\ndigit", fontsize=7)
      if i == len(methods) - 1:
        ax.set_xlabel("background colour", fontsize=7)
  fig.colorbar(im, ax=axes, shrink=0.6, label="accuracy (diagonal: bias-aligned)")
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _outputs(config, rhos, methods, stage: str, *, command: str, log: Callable) -> dict:
  from debiasjax.report import atomic_write, provenance
  start = time.perf_counter()
  model_name = (f"MLP {config.model.layers} x {config.model.width}" if config.model.name == "mlp"
                else f"SimpleConvNet (width {config.model.width})")
  log(f"biased digits: {model_name}, {config.seeds} seeds, {config.epochs} epochs, methods "
      f"{', '.join(methods)}")
  results = {}
  for rho in rhos:
    results[rho] = run_rho(config, rho, methods, log=log)
  total = time.perf_counter() - start
  t = tables(results, rhos, methods, config.seeds)
  title = (f"{model_name} on {config.data.n_train} procedural digits, {config.epochs} epochs, "
           f"{config.seeds} seeds (mean ± sd)")
  _accuracy_figure(results, rhos, methods, os.path.join(stage, "accuracy.png"),
                   f"{title}\ndotted: published on Biased-MNIST (MNIST, SimpleConvNet)")
  _cells_figure(results, rhos, methods, os.path.join(stage, "cells.png"))
  table = (f"Unbiased-test accuracy (%), {title}\n\n{t['unbiased']}\n\nPublished on "
           f"Biased-MNIST (Nahon et al. 2023, Table 1; SimpleConvNet, 60k MNIST digits, 80 "
           f"epochs)\n\n{t['published']}\n")
  atomic_write(os.path.join(stage, "table.md"), table)
  sections = [f"# The Biased-MNIST table on procedural digits\n\n`{command}`\n\n{model_name}, "
              f"{config.data.n_train} training digits, {config.epochs} epochs, {config.seeds} "
              f"seeds (initialisation and data order) trained in one vmapped program per run; "
              f"{total / 60:.1f} min in all.",
              f"## Unbiased-test accuracy (%, `accuracy.png`)\n\n{t['unbiased']}"]
  if t["wins"]:
    sections.append(f"## Seeds in which the method beats vanilla (same initialisation and data "
                    f"order)\n\n{t['wins']}")
  if t["mined"]:
    sections.append(f"## The bias-conflicting samples found without labels (precision P and "
                    f"recall R against the true ones, mean over seeds)\n\n{t['mined']}")
  sections += [f"## Biased-test accuracy (%, ρ = 1)\n\n{t['biased']}",
               "## Per (digit, colour) cell of the unbiased test: `cells.png`",
               f"## Published on Biased-MNIST (for context: MNIST digits, SimpleConvNet, 80 "
               f"epochs)\n\n{t['published']}"]
  text = "\n\n".join(sections) + "\n"
  atomic_write(os.path.join(stage, "results.json"), json.dumps(
      {"command": command, "provenance": provenance(), "config": config.to_dict(),
       "seconds": total, "tables": t,
       "results": {str(r): v for r, v in results.items()}}, indent=1))
  atomic_write(os.path.join(stage, "report.md"), text)
  log("\n" + text)
  return results
