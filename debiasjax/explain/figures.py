"""Saliency figures (PNG, written atomically): example images next to their heatmaps with the
region of interest, and heatmaps averaged per (protected, target) cell with one column per model
(the layout of Fig. 2 in Sztukiewicz et al.)."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from debiasjax.report import pyplot, save_png


def _box(ax, roi, color="black"):
  from matplotlib.patches import Rectangle
  y0, x0, y1, x1 = (float(v) for v in roi)
  ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.2, ec=color))


def _show_map(ax, m):
  lim = float(np.max(np.abs(m))) or 1.0
  ax.imshow(m, cmap="bwr", vmin=-lim, vmax=lim)


def _image(x):
  x = np.asarray(x, np.float32)
  lo, hi = float(x.min()), float(x.max())
  return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def heatmap_grid(images, maps, roi, path: str, *, titles: Optional[Sequence[str]] = None,
                 columns: int = 8) -> None:
  """Each image above its heatmap (red positive, blue negative) with its ROI box.

  Args:
    images: [N, H, W, C] images; maps: [N, H, W] heatmaps; roi: [N, 4] boxes (y0, x0, y1, x1).
  """
  n = min(len(images), columns)
  if n == 0 or len(maps) < n or len(roi) < n:
    raise ValueError(f"images, maps, roi: expected at least one of each and equal counts, got "
                     f"{len(images)}, {len(maps)}, {len(roi)}")
  fig, axes = pyplot().subplots(2, n, figsize=(1.6 * n, 3.4), dpi=110, squeeze=False)
  for i in range(n):
    axes[0, i].imshow(_image(images[i]))
    _show_map(axes[1, i], np.asarray(maps[i]))
    for ax in axes[:, i]:
      _box(ax, roi[i], "yellow" if ax is axes[0, i] else "black")
      ax.set_xticks([])
      ax.set_yticks([])
    if titles is not None:
      axes[0, i].set_title(titles[i], fontsize=7)
  save_png(fig, path)


def cell_average_figure(maps_by_model: Mapping[str, np.ndarray], group, y, roi, path: str, *,
                        images=None, group_names: Sequence[str] = ("PA=0", "PA=1"),
                        target_names: Sequence[str] = ("T=0", "T=1")) -> None:
  """Heatmaps averaged over each (protected, target) cell: a row per cell, a column per model
  (plus the cell's mean image when ``images`` is given); the mean ROI box is drawn.

  Args:
    maps_by_model: name -> [N, H, W] normalised heatmaps of the same N images.
    group, y: [N] protected attribute and target of those images; roi: [N, 4] boxes.
  """
  group, y, roi = np.asarray(group), np.asarray(y), np.asarray(roi, np.float32)
  names = list(maps_by_model)
  if not names:
    raise ValueError("maps_by_model: expected at least one model's maps")
  cells = [(g, t) for g in (0, 1) for t in (0, 1) if np.any((group == g) & (y == t))]
  extra = images is not None
  fig, axes = pyplot().subplots(len(cells), len(names) + extra, squeeze=False,
                           figsize=(1.9 * (len(names) + extra), 1.9 * len(cells)), dpi=110)
  for r, (g, t) in enumerate(cells):
    sel = (group == g) & (y == t)
    box = roi[sel].mean(0)
    if extra:
      axes[r, 0].imshow(_image(np.asarray(images)[sel].mean(0)))
      axes[r, 0].set_ylabel(f"{group_names[g]}, {target_names[t]}", fontsize=8)
    for c, name in enumerate(names):
      ax = axes[r, c + extra]
      _show_map(ax, np.asarray(maps_by_model[name])[sel].mean(0))
      if r == 0:
        ax.set_title(name, fontsize=8)
      if c + extra == 0:
        ax.set_ylabel(f"{group_names[g]}, {target_names[t]}", fontsize=8)
    for ax in axes[r]:
      _box(ax, box)
      ax.set_xticks([])
      ax.set_yticks([])
  save_png(fig, path)
