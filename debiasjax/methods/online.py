"""Bias mining from Voronoi cells at the bottleneck (Nahon, Nguyen & Tartaglione, ICCV 2023;
``renahon/mining_bias_target_alignment_from_voronoi_cells``), without bias labels.

During a vanilla run, before each epoch, the training set is passed in eval mode: the centroid
``c_k`` of class k is the mean bottleneck feature of the samples correctly classified as k, and
the boundary between classes i and j is the perpendicular bisector of their centroids,
``w = c_j - c_i``, ``b = (|c_i|^2 - |c_j|^2) / 2``. A misclassified sample (target t,
prediction p) lies ``|w . z + b| / |w|`` beyond the t/p boundary; normalised by the mean
centroid norm, ``rel = dist * K / sum_k |c_k|``. The epoch where the mean ``rel`` of the
misclassified samples peaks, e*, is when the bias is learned best: at e* the misclassified
samples are the bias-misaligned ones and their predicted class is the pseudo bias label b*.
The debiased run then weights every sample by ``1 / rho_t`` (aligned) or ``1 / (1 - rho_t)``
(misaligned), ``rho_t`` the share of class t classified correctly at e* (only when every
``rho_t`` lies strictly in (0, 1), as the reference), and removes b* from the bottleneck with
IRENE's head and MI term on the pseudo-misaligned samples (:mod:`debiasjax.methods.irene`).

Every function here is pure and fixed-shape (masks, no boolean indexing): it jits and vmaps
over seeds. The reference skips the first epoch (``warmup_epochs=1``); :func:`peak_epoch`
takes the epochs to skip.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def class_centroids(z: jax.Array, y: jax.Array, pred: jax.Array, num_classes: int):
  """``(centroids [K, D], counts [K])``: the mean feature of the correctly classified samples
  of each class (zeros for a class with none)."""
  hit = jax.nn.one_hot(y, num_classes, dtype=z.dtype) * (pred == y)[:, None].astype(z.dtype)
  counts = hit.sum(0)
  return hit.T @ z / jnp.maximum(counts, 1.0)[:, None], counts


def boundary_distances(z: jax.Array, y: jax.Array, pred: jax.Array, centroids: jax.Array):
  """Every sample's normalised distance ``rel`` to the bisector of its target's and its
  prediction's centroids (0 for correctly classified samples)."""
  ci, cj = centroids[y], centroids[pred]
  w = cj - ci
  b = 0.5 * (jnp.sum(ci * ci, -1) - jnp.sum(cj * cj, -1))
  norm = jnp.linalg.norm(w, axis=-1)
  dist = jnp.abs(jnp.sum(w * z, -1) + b) / jnp.where(norm > 0, norm, 1.0)
  scale = centroids.shape[0] / jnp.maximum(jnp.linalg.norm(centroids, axis=-1).sum(), 1e-12)
  return jnp.where(pred != y, dist * scale, 0.0)


def epoch_score(z: jax.Array, y: jax.Array, pred: jax.Array, num_classes: int) -> jax.Array:
  """The mean ``rel`` of the misclassified samples of one eval pass (0 when none is)."""
  centroids, _ = class_centroids(z, y, pred, num_classes)
  rel = boundary_distances(z, y, pred, centroids)
  wrong = (pred != y).sum()
  return jnp.where(wrong > 0, rel.sum() / jnp.maximum(wrong, 1), 0.0)


def peak_epoch(scores: jax.Array, skip: int = 1) -> jax.Array:
  """e*: the index of the largest score, ignoring the first ``skip`` entries."""
  scores = jnp.asarray(scores)
  return jnp.argmax(jnp.where(jnp.arange(scores.shape[-1]) < skip, -jnp.inf, scores), -1)


class Mined(NamedTuple):
  """What the mining gives the debiased run: pseudo bias labels, which samples count as
  misaligned, per-sample weights and the per-class aligned shares ``rho``."""
  bias: jax.Array          # b*: the class predicted at e* [N]
  misaligned: jax.Array    # prediction != target at e* [N]
  weight: jax.Array        # 1 / rho_t or 1 / (1 - rho_t) [N]
  rho: jax.Array           # [K]


def mine(y: jax.Array, pred: jax.Array, num_classes: int) -> Mined:
  """Pseudo bias labels and weights from the predictions ``pred`` at e*: ``rho_t = 1 -
  #misaligned_t / #class_t``; weights ``1 / rho_t`` (aligned) and ``1 / (1 - rho_t)``
  (misaligned) when every ``rho_t`` is in (0, 1), else all ones (the reference's rule)."""
  misaligned = pred != y
  onehot = jax.nn.one_hot(y, num_classes)
  per_class = onehot.sum(0)
  rho = 1.0 - (onehot * misaligned[:, None]).sum(0) / jnp.maximum(per_class, 1.0)
  usable = jnp.all((rho > 0) & (rho < 1))
  r = rho[y]
  weight = jnp.where(misaligned, 1.0 / jnp.where(r < 1, 1.0 - r, 1.0), 1.0 / jnp.where(r > 0, r,
                                                                                       1.0))
  return Mined(pred, misaligned, jnp.where(usable, weight, 1.0), rho)


def precision_recall(flagged: jax.Array, truth: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Precision and recall of the flagged samples against the true bias-conflicting ones."""
  flagged, truth = flagged.astype(jnp.float32), truth.astype(jnp.float32)
  both = jnp.sum(flagged * truth)
  return both / jnp.maximum(flagged.sum(), 1.0), both / jnp.maximum(truth.sum(), 1.0)
