"""Saliency figures (PNG, written atomically): example images next to their heatmaps with the
region of interest, and heatmaps averaged per (protected, target) cell with one column per model
(the layout of Fig. 2 in Sztukiewicz et al.)."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from debiasjax.report import pyplot, save_png


def _box(ax, roi, color="black"):
  """Draws the box ``(y0, x0, y1, x1)``, or each of K boxes [K, 4]."""
  from matplotlib.patches import Rectangle
  for y0, x0, y1, x1 in np.asarray(roi, np.float32).reshape(-1, 4):
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=1.2, ec=color))


def _show_map(ax, m, lim=None):
  """A signed map on a diverging colormap centred at 0 (red positive, blue negative)."""
  lim = lim or float(np.max(np.abs(m))) or 1.0
  return ax.imshow(m, cmap="bwr", vmin=-lim, vmax=lim)


def _image(x):
  x = np.asarray(x, np.float32)
  lo, hi = float(x.min()), float(x.max())
  return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def heatmap_grid(images, maps, roi, path: str, *, titles: Optional[Sequence[str]] = None,
                 columns: int = 8, label: str = "relevance") -> None:
  """Each image above its signed heatmap (red positive, blue negative evidence, one shared
  scale and colorbar) with its ROI box.

  Args:
    images: [N, H, W, C] images; maps: [N, H, W] heatmaps; roi: [N, 4] boxes (y0, x0, y1, x1)
      or [N, K, 4] (a box per protected attribute).
    titles: a title per image (e.g. its groups and the model's score).
    label: the colorbar's label.
  """
  n = min(len(images), columns)
  if n == 0 or len(maps) < n or len(roi) < n:
    raise ValueError(f"images, maps, roi: expected at least one of each and equal counts, got "
                     f"{len(images)}, {len(maps)}, {len(roi)}")
  fig, axes = pyplot().subplots(2, n, figsize=(1.65 * n + 0.9, 3.7), dpi=110, squeeze=False,
                                layout="constrained")
  lim = float(np.max(np.abs(np.asarray(maps[:n])))) or 1.0
  for i in range(n):
    axes[0, i].imshow(_image(images[i]))
    im = _show_map(axes[1, i], np.asarray(maps[i]), lim)
    for ax in axes[:, i]:
      _box(ax, roi[i], "yellow" if ax is axes[0, i] else "black")
      ax.set_xticks([])
      ax.set_yticks([])
    if titles is not None:
      axes[0, i].set_title(titles[i], fontsize=7)
  bar = fig.colorbar(im, ax=axes[1, :], shrink=1.0, aspect=10, pad=0.01)
  bar.set_label(label, fontsize=7)
  bar.ax.tick_params(labelsize=7)
  save_png(fig, path)


def cell_average_figure(maps_by_model: Mapping[str, np.ndarray], group, y, roi, path: str, *,
                        images=None, group_names: Sequence[str] = ("PA=0", "PA=1"),
                        target_names: Sequence[str] = ("T=0", "T=1"),
                        reference: Optional[str] = None,
                        titles: Optional[Mapping[str, str]] = None) -> None:
  """Signed heatmaps averaged over each (protected, target) cell: a row per cell, the cell's
  mean image first (when ``images`` is given), then a column per model, with the mean ROI box.
  With ``reference`` (e.g. ``"Vanilla"``) that model's mean maps are shown and every other
  column shows its *change* against them (model - reference), on its own shared scale: what a
  method moved is visible even where the maps look alike. One colorbar per scale.

  Args:
    maps_by_model: name -> [N, H, W] heatmaps of the same N images (signed, per image scaled).
    group, y: [N] protected attribute and target of those images; roi: [N, 4] or [N, K, 4]
      boxes.
    titles: column titles by name (default: the name; differences add "minus <reference>").
  """
  group, y, roi = np.asarray(group), np.asarray(y), np.asarray(roi, np.float32)
  names = list(maps_by_model)
  if not names:
    raise ValueError("maps_by_model: expected at least one model's maps")
  if reference is not None and reference not in maps_by_model:
    raise ValueError(f"reference: {reference!r} is not among the models {names}")
  cells = [(g, t) for g in (0, 1) for t in (0, 1) if np.any((group == g) & (y == t))]
  means = {n: [np.asarray(maps_by_model[n])[(group == g) & (y == t)].mean(0) for g, t in cells]
           for n in names}
  shown = {n: (means[n] if reference is None or n == reference else
               [m - r for m, r in zip(means[n], means[reference])]) for n in names}
  plain = [n for n in names if reference is None or n == reference]
  changes = [n for n in names if n not in plain]
  lim_plain = max(float(np.max(np.abs(m))) for n in plain for m in shown[n]) or 1.0
  lim_change = (max(float(np.max(np.abs(m))) for n in changes for m in shown[n]) or 1.0
                if changes else None)
  extra = images is not None
  ordered = plain + changes
  fig, axes = pyplot().subplots(len(cells), len(ordered) + extra, squeeze=False,
                                figsize=(1.9 * (len(ordered) + extra) + 1.6, 1.9 * len(cells)
                                         + 0.5), dpi=110, layout="constrained")
  titles = dict(titles or {})
  images_plain = images_change = None
  for r, (g, t) in enumerate(cells):
    sel = (group == g) & (y == t)
    box = roi[sel].mean(0)
    if extra:
      axes[r, 0].imshow(_image(np.asarray(images)[sel].mean(0)))
      if r == 0:
        axes[r, 0].set_title("mean image", fontsize=8)
    axes[r, 0].set_ylabel(f"{group_names[g]},\n{target_names[t]}", fontsize=8)
    for c, name in enumerate(ordered):
      ax = axes[r, c + extra]
      if name in changes:
        images_change = _show_map(ax, shown[name][r], lim_change)
      else:
        images_plain = _show_map(ax, shown[name][r], lim_plain)
      if r == 0:
        title = titles.get(name, name)
        ax.set_title(title if name in plain else f"{title}\nminus {reference}", fontsize=8)
    for ax in axes[r]:
      _box(ax, box)
      ax.set_xticks([])
      ax.set_yticks([])
  fig.colorbar(images_plain, ax=axes[:, extra:extra + len(plain)], shrink=0.8, pad=0.01,
               label="mean relevance")
  if changes:
    fig.colorbar(images_change, ax=axes[:, extra + len(plain):], shrink=0.8, pad=0.01,
                 label=f"change against {reference}")
  save_png(fig, path)
