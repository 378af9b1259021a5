r"""Does the saliency evaluation see the shortcut? The control of seed 001's saliency metrics: a
vanilla model trained where the accessory says nothing of the label (phi = 0) against one that
leans on it (phi = 0.8, the main job's), per seed; the accessory box's relevance fraction
(RRF) and high-relevance fraction (HRF) must separate them, with LRP and with IG, or the
metrics cannot say whether a debiased model still looks at the accessory.

For each attribution (an LRP composite or IG) and each model: maps of the first ``n_explain``
test images for the target the metrics explain, normalised as the metrics read them (|R| / 2
max|R|, DetoxAI's), the box's RRF and HRF, and where the dataset-averaged map puts its mass
(the top two rows and left two columns, the box, the bottom and right border, each relative to
the image mean): a map that lights the border is an artefact of the rule, not of the model.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable

import numpy as np

from debiasjax.reproductions.common import silent as _silent

CONTROL_OUTPUTS = ("control.md", "maps.png", "results.json", "report.md")


def attribution(name: str, config):
  """``(method, composite)`` of an attribution name: ``ig`` or ``lrp:<composite>``."""
  from debiasjax.explain import rules
  if name == "ig":
    return "ig", None
  kind, _, composite = name.partition(":")
  if kind != "lrp" or composite not in rules.COMPOSITES:
    raise ValueError(f"attributions: expected 'ig' or 'lrp:<composite>' with a composite of "
                     f"{list(rules.COMPOSITES)}, got {name!r}")
  return "lrp", rules.named(composite, bounds=tuple(config.vanilla.pixel_range))


def border_profile(mean_map: np.ndarray, box: np.ndarray) -> dict:
  """Where an averaged map [H, W] puts its mass, each region's mean relative to the image's:
  the top two rows and left two columns, the (average) box, the bottom and right border."""
  m = mean_map / max(float(mean_map.mean()), 1e-12)
  top_left = np.zeros_like(m, bool)
  top_left[:2], top_left[:, :2] = True, True
  bottom_right = np.zeros_like(m, bool)
  bottom_right[-2:], bottom_right[:, -2:] = True, True
  return {"top_left": float(m[top_left].mean()), "box": float(m[box].mean()),
          "bottom_right": float(m[bottom_right].mean()),
          "peak": [int(v) for v in np.unravel_index(int(m.argmax()), m.shape)]}


def saliency_control(config, workdir: str, *, command: str = "", overwrite: bool = False,
                     log: Callable[[str], None] = _silent) -> dict:
  """The control (``experiments/configs/saliency_control.py``) written to ``workdir``; returns
  ``{attribution: {phi: {"rrf": [per seed], "hrf": [...], "profile": ...}}}``."""
  from debiasjax import report
  names = [a.strip() for a in str(config.attributions).split(",") if a.strip()]
  for name in names:
    attribution(name, config)
  phis = [float(p) for p in str(config.phis).split(",")]
  if len(phis) != 2:
    raise ValueError(f"phis: expected the control's two values (e.g. '0,0.8'), got "
                     f"{config.phis!r}")
  with report.run_outputs(workdir, overwrite=overwrite, outputs=CONTROL_OUTPUTS) as stage:
    out = _outputs(config, names, phis, stage, command=command, log=log)
  log(f"wrote {', '.join(CONTROL_OUTPUTS)} to {workdir}")
  return out


def _outputs(config, names, phis, stage, *, command, log):
  from debiasjax import explain, pipeline
  from debiasjax.data.dataset import roi_mask
  from debiasjax.metrics import saliency as sal
  from debiasjax.report import atomic_write, markdown_table, provenance
  start = time.perf_counter()
  results = {n: {str(p): {"rrf": [], "hrf": [], "accuracy": []} for p in phis} for n in names}
  averaged = {}
  for phi in phis:
    for seed in range(config.seeds):
      job = config.vanilla.copy_and_resolve_references()
      job.data.phi, job.seed = phi, seed
      bench = pipeline.load_benchmark(job)
      model = pipeline.build_model(job)
      variables, _ = pipeline.train_vanilla(job, bench, model, log=log)
      test = bench.test.take(slice(0, config.n_explain))
      mask = np.asarray(roi_mask(test.roi, *test.x.shape[1:3]))
      pred = np.asarray(model.apply(variables, test.x)).argmax(-1)
      targets = np.ones_like(test.y) if config.target == "positive" else test.y
      for name in names:
        method, composite = attribution(name, config)
        kwargs = {} if composite is None else {"composite": composite}
        maps = np.asarray(explain.saliency_maps(model, variables, test.x, targets,
                                                method=method, **kwargs))
        maps = np.asarray(sal.normalize(maps, config.normalization))
        r = results[name][str(phi)]
        r["rrf"].append(float(np.mean(sal.rrf(maps, mask))))
        r["hrf"].append(float(np.mean(sal.hrf(maps, mask))))
        r["accuracy"].append(float(np.mean(pred == test.y)))
        if seed == 0:
          averaged[name, phi] = maps.mean(0)
          r["profile"] = border_profile(maps.mean(0), mask.mean(0) > 0.5)
        log(f"phi {phi} seed {seed} {name}: RRF {r['rrf'][-1]:.4f} HRF {r['hrf'][-1]:.3f}")
  lo, hi = (str(p) for p in phis)
  rows = []
  for name in names:
    r = results[name]
    cells = [name]
    for metric in ("rrf", "hrf"):
      a, b = np.asarray(r[lo][metric]), np.asarray(r[hi][metric])
      cells += [f"{a.mean():.4f} ± {a.std():.4f}", f"{b.mean():.4f} ± {b.std():.4f}",
                f"{int(np.sum(b > a))} / {len(a)}"]
    p = r[hi]["profile"]
    cells += [f"{p['top_left']:.2f}", f"{p['box']:.2f}", f"{p['bottom_right']:.2f}"]
    rows.append(cells)
  table = markdown_table(
      ["Attribution", f"RRF φ={lo}", f"RRF φ={hi}", "seeds RRF up", f"HRF φ={lo}",
       f"HRF φ={hi}", "seeds HRF up", "top-left rows/cols ÷ mean", "box ÷ mean",
       "bottom/right border ÷ mean"], rows)
  _maps_figure(averaged, names, phis, os.path.join(stage, "maps.png"))
  target = ("the positive class (smiling)" if config.target == "positive"
            else "each image's true label")
  text = (f"# Saliency control: φ = {lo} against φ = {hi}\n\n`{command}`\n\n"
          f"{config.seeds} seeds per φ, the first {config.n_explain} test images, relevance of "
          f"{target}, maps normalised `{config.normalization}`; the profile is the φ = {hi} "
          f"seed-0 model's averaged map ({(time.perf_counter() - start) / 60:.1f} min in all)."
          f"\n\n{table}\n")
  atomic_write(os.path.join(stage, "control.md"), table + "\n")
  atomic_write(os.path.join(stage, "results.json"), json.dumps(
      {"command": command, "provenance": provenance(), "config": config.to_dict(),
       "tables": {"control": table}, "results": results}, indent=1))
  atomic_write(os.path.join(stage, "report.md"), text)
  log("\n" + text)
  return results


def _maps_figure(averaged: dict, names, phis, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(len(phis), len(names), squeeze=False,
                           figsize=(2.6 * len(names), 2.7 * len(phis)))
  for j, name in enumerate(names):
    for i, phi in enumerate(phis):
      ax = axes[i, j]
      m = averaged[name, phi]
      ax.imshow(m / max(float(m.max()), 1e-12), cmap="hot", vmin=0, vmax=1)
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(f"{name}\nφ = {phi}", fontsize=8)
  fig.suptitle("dataset-averaged |relevance| (seed 0; each map scaled to its maximum)",
               fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
