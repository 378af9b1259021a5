"""Heatmaps for a dataset: LRP or integrated gradients in fixed-size compiled batches."""

from __future__ import annotations

import numpy as np

from debiasjax import parallel
from debiasjax.explain.gradients import integrated_gradients_in_groups
from debiasjax.explain.lrp import lrp
from debiasjax.explain.rules import Composite, epsilon_plus_flat
from debiasjax.metrics.saliency import heatmap
from debiasjax.progress import notify

METHODS = ("lrp", "ig")


def saliency_maps(model, variables, x, targets, *, method: str = "lrp",
                  composite: Composite = epsilon_plus_flat(), steps: int = 50,
                  batch_size: int = 64, progress=None) -> np.ndarray:
  """Channel-summed relevance [N, H, W] of ``targets`` for NHWC images ``x`` under ``model`` (a
  Flax module, or an ``apply_fn(variables, x)`` that calls one).

  Batches have a fixed size (the last one is padded) so one compiled program serves them all;
  on several devices they are split over the mesh's ``"data"`` axis, the variables replicated
  (:mod:`debiasjax.parallel`). ``progress("images", done, total)`` (:mod:`debiasjax.progress`)
  follows them.
  """
  if method not in METHODS:
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
  x, targets = np.asarray(x, np.float32), np.asarray(targets, np.int32)
  if x.ndim != 4 or len(targets) != len(x):
    raise ValueError(f"x, targets: expected NHWC images and one target each, got {x.shape} and "
                     f"{targets.shape}")
  if method == "lrp":
    explain = lambda v, xb, tb: lrp(model, v, xb, tb, composite=composite)
  else:
    apply_fn = getattr(model, "apply", model)
    explain = lambda v, xb, tb: integrated_gradients_in_groups(apply_fn, v, xb, tb, steps=steps)
  batch_size = parallel.row_multiple(batch_size)
  variables = parallel.put(variables)
  out = []
  notify(progress, "images", 0, len(x))
  for start in range(0, len(x), batch_size):
    xb, tb = x[start:start + batch_size], targets[start:start + batch_size]
    pad = batch_size - len(xb) if len(x) > batch_size else -len(xb) % parallel.size(parallel.DATA)
    if pad:
      xb = np.concatenate([xb, np.repeat(xb[-1:], pad, 0)])
      tb = np.concatenate([tb, np.repeat(tb[-1:], pad, 0)])
    xb, tb = parallel.global_rows((xb, tb))
    maps = parallel.to_host(heatmap(explain(variables, xb, tb)))
    out.append(maps[:len(maps) - pad])
    notify(progress, "images", min(start + batch_size, len(x)), len(x))
  return np.concatenate(out)
