r"""Seed 001's quantitative experiment: every method's equalized odds next to the saliency
metrics (RRF, HRF, ADR, DIF, RDDT) with LRP and with IG, for each Yule's phi of the training
data and each accessory (its Fig. 3; appendix Figs. 4-6), the average maps per (protected
attribute, target) at one phi (its Fig. 2), and its two research questions as numbers.

A *cell* is one (accessory, phi, seed): the main job on those data (vanilla model trained or
cached, every method fitted on the debias split and evaluated on the balanced test split) and
the saliency metrics of every network under each attribution. Every cell is kept as it
finishes in ``<cache_dir>/sweep-<settings>/``, keyed by the settings that shape a cell (not the
lists of phis, accessories and seeds): a killed sweep resumes where it stopped, and a wider one
reuses the cells it shares.

The research questions, across methods x phi x seeds (cells where the method changed the
network or not, as the paper pools them): the Spearman correlation, with a bootstrap interval,
between each saliency shift out of the box (ADR; the falls of RRF and of HRF) and the fall in
equalized odds; and per method, in how many cells RDDT rejects (p < 0.01).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Callable

import numpy as np

from debiasjax.reproductions.common import silent as _silent

SWEEP_OUTPUTS = ("sweep.md", "sweep.csv", "results.json", "report.md")
SALIENCY = ("rrf", "hrf", "mrr", "adr", "dif", "rddt", "rddt_p")
FIGURE_METRICS = (("equalized_odds", "EO"), ("balanced_accuracy", "Bal.acc"), ("rrf", "RRF"),
                  ("hrf", "HRF"), ("adr", "ADR"), ("dif", "DIF"))
SHIFTS = (("adr", "ADR"), ("rrf_fall", "RRF fall"), ("hrf_fall", "HRF fall"))
SAME_MAPS = 1e-7      # |ADR| and |RRF change| below this: the network's maps are Vanilla's


def cells_of(config) -> list[tuple[str, float, int]]:
  """The sweep's cells, in the order they run: ``(accessory, phi, seed)``."""
  phis = [float(p) for p in str(config.phis).split(",") if p.strip()]
  accessories = [a.strip() for a in str(config.accessories).split(",") if a.strip()]
  seeds = [int(s) for s in str(config.seeds).split(",") if s.strip()]
  bad = [p for p in phis if not -1 <= p <= 1]
  if not phis or bad or not accessories or not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"phis, accessories, seeds: expected non-empty lists (phis in [-1, 1], "
                     f"seeds distinct), got {config.phis!r}, {config.accessories!r}, "
                     f"{config.seeds!r}")
  return [(a, p, s) for a in accessories for p in phis for s in seeds]


def attributions_of(config) -> list[str]:
  names = [a.strip() for a in str(config.attributions).split(",") if a.strip()]
  if not names or [a for a in names if a not in ("lrp", "ig")]:
    raise ValueError(f"attributions: expected some of 'lrp', 'ig', got {config.attributions!r}")
  return names


def cell_config(config, accessory: str, phi: float, seed: int):
  """The main job's configuration of one cell."""
  job = config.job.copy_and_resolve_references()
  job.data.accessory, job.data.phi, job.seed = accessory, float(phi), int(seed)
  job.methods = config.methods
  return job


def cell_folder(config) -> str:
  """Where the cells of these settings are kept (``cache_dir/sweep-<digest>``)."""
  shape = config.to_dict()
  for key in ("phis", "accessories", "seeds", "fig2_phi"):
    shape.pop(key, None)
  digest = hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()
  return os.path.join(config.job.cache_dir, f"sweep-{digest[:16]}")


def run_cell(config, accessory: str, phi: float, seed: int, *,
             log: Callable[[str], None] = _silent) -> tuple[list[dict], dict]:
  """One cell: the main job's rows (every method, Vanilla first) with each attribution's
  saliency metrics as ``<attribution>_<metric>``, and each network's average map per
  (protected group, target) on the explained test images: ``{"<attribution>/<method>":
  [2, 2, H, W]}`` (each image's signed map scaled to max |R| = 1; Fig. 2), with ``"roi"`` the
  share of those images whose accessory box covers each pixel."""
  from debiasjax import pipeline
  from debiasjax.data.dataset import roi_mask
  job = cell_config(config, accessory, phi, seed)
  trained = pipeline.train_and_debias(job, log=log)
  rows = [{k: v for k, v in r.items() if k != "ci"} for r in trained.result.rows]
  maps = {}
  for name in attributions_of(config):
    one = job.copy_and_resolve_references()
    one.explain = name
    test, by_row, summaries = pipeline.saliency_summaries(one, trained, log=log)
    for r in rows:
      r.update({f"{name}_{k}": summaries[r["method"]][k] for k in SALIENCY
                if k in summaries[r["method"]]})
    for label, m in by_row.items():
      maps[f"{name}/{label}"] = group_target_means(m, test.group, test.y)
    maps["roi"] = roi_mask(test.roi, *test.x.shape[1:3]).mean(0)
  return json.loads(json.dumps(rows, default=float)), maps


def group_target_means(maps, group, target) -> np.ndarray:
  """``[2, 2, H, W]``: the mean map of the images of each (protected group, target); zeros
  where a cell has no image."""
  maps, group, target = np.asarray(maps), np.asarray(group), np.asarray(target)
  out = np.zeros((2, 2) + maps.shape[1:], np.float32)
  for g in (0, 1):
    for t in (0, 1):
      chosen = (group == g) & (target == t)
      if chosen.any():
        out[g, t] = maps[chosen].mean(0)
  return out


def sweep(config, workdir: str, *, command: str = "", overwrite: bool = False,
          log: Callable[[str], None] = _silent, cell_runner=run_cell) -> dict:
  """Runs (or resumes) every cell of ``config`` (``experiments/configs/sweep.py``) and writes
  the tables, figures and research-question numbers to ``workdir``; returns the results
  dict. ``cell_runner``: what computes one cell (the tests' hook)."""
  from debiasjax import report
  from debiasjax.pipeline import check_config
  cells = cells_of(config)
  attributions_of(config)
  check_config(cell_config(config, *cells[0]))
  with report.run_outputs(workdir, overwrite=overwrite, outputs=SWEEP_OUTPUTS) as stage:
    out = _outputs(config, cells, stage, command=command, log=log, cell_runner=cell_runner)
  log(f"wrote {', '.join(SWEEP_OUTPUTS)} and the figures to {workdir}")
  return out


def _cell_name(accessory, phi, seed) -> str:
  return f"{accessory}-phi{phi:g}-seed{seed}"


def _outputs(config, cells, stage, *, command, log, cell_runner) -> dict:
  from debiasjax.report import atomic_write, provenance
  folder = cell_folder(config)
  start, done_here, results = time.perf_counter(), 0, {}
  for i, (accessory, phi, seed) in enumerate(cells):
    name = _cell_name(accessory, phi, seed)
    path = os.path.join(folder, name + ".json")
    if os.path.exists(path):
      with open(path) as f:
        results[name] = json.load(f)
      log(f"[{i + 1}/{len(cells)}] {name}: kept from {folder}")
      continue
    t = time.perf_counter()
    rows, maps = cell_runner(config, accessory, phi, seed, log=_silent)
    _save_maps(os.path.join(folder, name + ".maps.npz"), maps)
    atomic_write(path, json.dumps(rows))     # last: a cell is kept once its rows are
    results[name] = rows
    done_here += 1
    per_cell = (time.perf_counter() - start) / done_here
    left = sum(not os.path.exists(os.path.join(folder, _cell_name(*c) + ".json"))
               for c in cells[i + 1:])
    log(f"[{i + 1}/{len(cells)}] {name}: {time.perf_counter() - t:.0f}s; about "
        f"{left * per_cell / 60:.1f} min left")
  summary = summarise(results, cells, attributions_of(config))
  questions = research_questions(results, attributions_of(config), seed=0)
  overview = method_overview(results, cells, attributions_of(config))
  tables = {"overview": ("Every method over all cells: the trend of EO with φ (Spearman), mean "
                         "EO and balanced accuracy, (near-)constant classifiers, mean ADR and "
                         "RDDT's significant cells", overview_table(overview,
                                                                     attributions_of(config)))}
  tables.update(sweep_tables(summary, questions, cells, attributions_of(config)))
  for attribution in attributions_of(config):
    for accessory in dict.fromkeys(c[0] for c in cells):
      _figure(summary, attribution, accessory,
              os.path.join(stage, f"fig3_{attribution}_{accessory}.png"))
      _figure2(folder, cells, attribution, accessory, float(config.fig2_phi),
               os.path.join(stage, f"fig2_{attribution}_{accessory}.png"))
  atomic_write(os.path.join(stage, "sweep.csv"), _csv(results))
  text = "\n\n".join([f"# Seed 001's phi sweep\n\n`{command}`\n\n{len(cells)} cells "
                      f"(accessory x phi x seed), {time.perf_counter() - start:.0f}s in this "
                      f"run; cells kept in `{folder}`."] +
                     [f"## {title}\n\n{table}" for title, table in tables.values()]) + "\n"
  atomic_write(os.path.join(stage, "sweep.md"), text)
  atomic_write(os.path.join(stage, "report.md"), text)
  atomic_write(os.path.join(stage, "results.json"), json.dumps(
      {"command": command, "provenance": provenance(), "config": config.to_dict(),
       "tables": {key: table for key, (_, table) in tables.items()},
       "summary": summary, "questions": questions, "overview": overview, "cells": results},
      indent=1, default=float))
  log("\n" + text)
  return {"cells": results, "summary": summary, "questions": questions, "overview": overview}


def _save_maps(path: str, maps: dict) -> None:
  import io

  from debiasjax.report import atomic_write
  buf = io.BytesIO()
  np.savez_compressed(buf, **{k.replace("/", "|"): v for k, v in maps.items()})
  atomic_write(path, buf.getvalue())


def _load_maps(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with np.load(path) as f:
    return {k.replace("|", "/"): f[k] for k in f.files}


# Fig. 2's columns: the paper's six networks, as the presets label them
FIG2_METHODS = ("Vanilla", "ThrOpt (EO)", "Adversarial", "Zhang", "A-ClArC", "RR-ClArC")


def _figure2(folder: str, cells, attribution: str, accessory: str, phi: float,
             path: str) -> None:
  """Fig. 2: each network's average map per (protected group, target) at the sweep's phi
  nearest ``phi``, averaged over the seeds; a row per (PA, T), a column per network (red:
  relevance for the image's true class, blue: against it)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  phis = sorted({c[1] for c in cells if c[0] == accessory})
  at = min(phis, key=lambda p: abs(p - phi))
  runs = [_load_maps(os.path.join(folder, _cell_name(*c) + ".maps.npz")) for c in cells
          if c[0] == accessory and c[1] == at]
  runs = [r for r in runs if r]
  if not runs:
    return
  labels = [k.split("/", 1)[1] for k in runs[0] if k.startswith(attribution + "/")]
  shown = [m for m in FIG2_METHODS if m in labels] or labels
  combos = ((0, 0), (0, 1), (1, 0), (1, 1))
  fig, axes = plt.subplots(4, len(shown), figsize=(1.6 * len(shown) + 0.6, 7.0), squeeze=False)
  for j, method in enumerate(shown):
    mean = np.mean([r[f"{attribution}/{method}"] for r in runs], axis=0)
    for i, (g, t) in enumerate(combos):
      ax, m = axes[i, j], mean[g, t]
      bound = float(np.abs(m).max()) or 1.0
      ax.imshow(m, cmap="bwr", vmin=-bound, vmax=bound)    # red: for the true class
      if "roi" in runs[0]:
        ax.contour(runs[0]["roi"], levels=[0.5], colors="black", linewidths=0.8)
      ax.set_xticks([])
      ax.set_yticks([])
      if i == 0:
        ax.set_title(method, fontsize=8)
      if j == 0:
        ax.set_ylabel(f"PA={g}, T={t}", fontsize=8)
  fig.suptitle(f"{attribution.upper()}, {accessory}, φ = {at:g}: mean map per (protected "
               f"attribute, target), {len(runs)} seed(s)", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _value(row: dict, attribution: str, metric: str):
  key = metric if metric in ("equalized_odds", "balanced_accuracy") else f"{attribution}_{metric}"
  v = row.get(key)
  return None if v is None else float(v)


def summarise(results: dict, cells, attributions) -> dict:
  """``{attribution: {accessory: {method: {metric: {phi: [mean, sd]}}}}}`` over the seeds."""
  out = {}
  for attribution in attributions:
    for accessory, phi, _ in cells:
      runs = [results[_cell_name(a, p, s)] for a, p, s in cells if a == accessory and p == phi]
      for row in runs[0]:
        method = row["method"]
        for metric, _ in FIGURE_METRICS:
          values = [_value(r, attribution, metric) for rows in runs for r in rows
                    if r["method"] == method]
          values = [v for v in values if v is not None]
          if values:
            out.setdefault(attribution, {}).setdefault(accessory, {}).setdefault(
                method, {}).setdefault(metric, {})[str(phi)] = [float(np.mean(values)),
                                                                float(np.std(values))]
  return out


def shift_pairs(results: dict, attribution: str) -> dict:
  """Across every (cell, method other than Vanilla): each saliency shift and the fall in EO
  against the same cell's Vanilla, whether the method changed the network's maps (``changed``:
  not a post-processor, whose maps are Vanilla's), and RDDT's p-values per method."""
  pairs = {name: [] for name, _ in SHIFTS}
  eo_fall, changed, p_values = [], [], {}
  for rows in results.values():
    vanilla = next(r for r in rows if r["method"] == "Vanilla")
    for r in rows:
      if r["method"] == "Vanilla" or f"{attribution}_adr" not in r:
        continue
      eo_fall.append(vanilla["equalized_odds"] - r["equalized_odds"])
      pairs["adr"].append(r[f"{attribution}_adr"])
      pairs["rrf_fall"].append(vanilla[f"{attribution}_rrf"] - r[f"{attribution}_rrf"])
      pairs["hrf_fall"].append(vanilla[f"{attribution}_hrf"] - r[f"{attribution}_hrf"])
      # a mass-mean shift moves the logit by a constant where its probe fires: the same
      # gradients, maps equal to Vanilla's up to rounding (|ADR| ~ 1e-10)
      changed.append(abs(r[f"{attribution}_adr"]) > SAME_MAPS or
                     abs(r[f"{attribution}_rrf"] - vanilla[f"{attribution}_rrf"]) > SAME_MAPS)
      p_values.setdefault(r["method"], []).append(r[f"{attribution}_rddt_p"])
  return {"eo_fall": eo_fall, "shifts": pairs, "changed": changed, "p_values": p_values}


def research_questions(results: dict, attributions, *, seed: int = 0) -> dict:
  """Per attribution: Spearman's rho (bootstrap 95 % interval) of each saliency shift with
  the fall in EO over every method-cell (as the paper pools them) and over those whose network
  changed (``changed``: the post-processors left out), and RDDT's significant cells per
  method."""
  import jax
  from debiasjax.metrics.association import bootstrap_rank_correlation, significant_counts
  out = {}
  for attribution in attributions:
    p = shift_pairs(results, attribution)
    keep = np.asarray(p["changed"], bool)
    correlations, changed = {}, {}
    for name, _ in SHIFTS:
      x, y = np.asarray(p["shifts"][name]), np.asarray(p["eo_fall"])
      for into, chosen in ((correlations, slice(None)), (changed, keep)):
        if len(x[chosen]) >= 3 and np.ptp(x[chosen]) > 0 and np.ptp(y[chosen]) > 0:
          into[name] = bootstrap_rank_correlation(
              x[chosen], y[chosen], key=jax.random.key(seed), num_resamples=2000)._asdict()
    out[attribution] = {"correlations": correlations, "pairs": len(p["eo_fall"]),
                        "changed": changed, "changed_pairs": int(keep.sum()),
                        "rddt": significant_counts(p["p_values"], alpha=0.01)}
  return out


def method_overview(results: dict, cells, attributions) -> dict:
  """Per method, over every cell: Spearman's rho of phi with EO (does its bias grow with the
  training data's?), mean EO and balanced accuracy, how often it is (near-)constant, and per
  attribution its mean ADR and RDDT's significant cells: the paper's findings as numbers."""
  from debiasjax.metrics.association import rank_correlation, significant_counts
  by_name = {_cell_name(*c): c for c in cells}
  out = {}
  for method in dict.fromkeys(r["method"] for rows in results.values() for r in rows):
    picked = [(by_name[name][1], r) for name, rows in results.items() if name in by_name
              for r in rows if r["method"] == method]
    phi = np.array([p for p, _ in picked])
    eo = np.array([r["equalized_odds"] for _, r in picked])
    entry = {"cells": len(picked),
             "eo_vs_phi": (float(rank_correlation(phi, eo))
                           if len(phi) >= 3 and np.ptp(phi) > 0 and np.ptp(eo) > 0 else None),
             "eo": float(eo.mean()),
             "balanced_accuracy": float(np.mean([r["balanced_accuracy"] for _, r in picked])),
             "constant": int(sum(bool(r.get("constant")) for _, r in picked))}
    for attribution in attributions:
      adr = [r[f"{attribution}_adr"] for _, r in picked if f"{attribution}_adr" in r]
      p = [r[f"{attribution}_rddt_p"] for _, r in picked if f"{attribution}_rddt_p" in r]
      entry[f"{attribution}_adr"] = float(np.mean(adr)) if adr else None
      entry[f"{attribution}_rddt"] = (significant_counts({method: p}, alpha=0.01)[method][0]
                                      if p else None)
    out[method] = entry
  return out


def overview_table(overview: dict, attributions) -> str:
  from debiasjax.report import markdown_table
  header = ["Method", "cells", "ρ(φ, EO)", "EO", "Bal.acc", "constant"]
  for a in attributions:
    header += [f"ADR ({a.upper()})", f"RDDT ({a.upper()})"]
  rows = []
  for method, e in overview.items():
    row = [method, str(e["cells"]), "-" if e["eo_vs_phi"] is None else f"{e['eo_vs_phi']:+.2f}",
           f"{e['eo']:.3f}", f"{e['balanced_accuracy']:.3f}", str(e["constant"])]
    for a in attributions:
      row += ["-" if e[f"{a}_adr"] is None else f"{e[f'{a}_adr']:+.4f}",
              "-" if e[f"{a}_rddt"] is None else f"{e[f'{a}_rddt']} / {e['cells']}"]
    rows.append(row)
  return markdown_table(header, rows)


def sweep_tables(summary: dict, questions: dict, cells, attributions) -> dict:
  """``{key: (title, markdown table)}``: EO and each attribution's RRF per phi and method
  (``eo_<accessory>``, ``rrf_<attribution>_<accessory>``), balanced accuracy
  (``bal_acc_<accessory>``), and the research questions (``rq1_<attribution>``,
  ``rq2_<attribution>``)."""
  from debiasjax.report import markdown_table
  tables = {}
  phis = list(dict.fromkeys(c[1] for c in cells))
  header = ["Method"] + [f"φ = {p:g}" for p in phis]
  for accessory in dict.fromkeys(c[0] for c in cells):
    first = summary[attributions[0]][accessory]
    tables[f"eo_{accessory}"] = (
        f"Equalized odds, {accessory} (mean ± sd over seeds)", markdown_table(
            header, [[m] + [_cell(v["equalized_odds"].get(str(p))) for p in phis]
                     for m, v in first.items()]))
    tables[f"bal_acc_{accessory}"] = (
        f"Balanced accuracy, {accessory}", markdown_table(
            header, [[m] + [_cell(v["balanced_accuracy"].get(str(p))) for p in phis]
                     for m, v in first.items()]))
    for attribution in attributions:
      s = summary[attribution][accessory]
      tables[f"rrf_{attribution}_{accessory}"] = (
          f"RRF with {attribution.upper()}, {accessory}", markdown_table(
              header, [[m] + [_cell(v["rrf"].get(str(p)), 3) for p in phis]
                       for m, v in s.items()]))
  for attribution in attributions:
    q = questions[attribution]
    interval = lambda c: (f"{c['estimate']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]"
                          if c else "-")
    tables[f"rq1_{attribution}"] = (
        f"Research question 1 with {attribution.upper()}: Spearman's ρ [95 % bootstrap "
        f"interval] of each saliency shift with the fall in EO", markdown_table(
            ["Shift", f"all method-cells ({q['pairs']})",
             f"networks changed ({q['changed_pairs']}; no post-processor)"],
            [[label, interval(q["correlations"].get(name)), interval(q["changed"].get(name))]
             for name, label in SHIFTS]))
    tables[f"rq2_{attribution}"] = (
        f"Research question 2 with {attribution.upper()}: cells where RDDT is significant "
        f"(p < 0.01)", markdown_table(
            ["Method", "significant / cells"],
            [[m, f"{k} / {n}"] for m, (k, n) in q["rddt"].items()]))
  return tables


def _cell(v, digits: int = 3) -> str:
  return "-" if v is None else f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"


def _figure(summary: dict, attribution: str, accessory: str, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  s = summary[attribution][accessory]
  fig, axes = plt.subplots(2, 3, figsize=(13, 7))
  for ax, (metric, label) in zip(axes.ravel(), FIGURE_METRICS):
    for method, v in s.items():
      if metric not in v:
        continue
      phis = sorted(v[metric], key=float)
      mean = [v[metric][p][0] for p in phis]
      sd = [v[metric][p][1] for p in phis]
      # Vanilla on top, dashed: the post-processors share its maps and would hide it
      style = dict(color="black", lw=1.5, ls="--", zorder=5) if method == "Vanilla" else {}
      ax.errorbar([float(p) for p in phis], mean, yerr=sd, marker="o", ms=3, capsize=2,
                  label=method, **style)
    ax.set_title(label, fontsize=9)
    ax.set_xlabel("φ (train/debias splits)")
  axes[0, 0].legend(fontsize=7)
  fig.suptitle(f"{attribution.upper()}, {accessory}: mean ± sd over seeds", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _csv(results: dict) -> str:
  import csv
  import io
  keys = sorted({k for rows in results.values() for r in rows for k in r} - {"method"})
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(["cell", "method", *keys])
  for name, rows in results.items():
    for r in rows:
      writer.writerow([name, r["method"], *(r.get(k) for k in keys)])
  return buf.getvalue()
