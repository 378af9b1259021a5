"""Saliency-localisation metrics over a region R (Sztukiewicz et al., "Investigating the
relationship between debiasing and artifact removal using saliency maps", §3; DetoxAI
``core/xai.py``).

Maps are [B, H, W] (use :func:`heatmap` to sum relevance over channels) and the region a boolean
mask [B, H, W] or [H, W] (``debiasjax.data.roi_mask`` turns boxes into masks). Per image:

* RRF  = sum_R p / sum p                       (rectangle relevance fraction)
* HRF  = |{p in R : p > eps}| / |R|            (high-relevance fraction, eps = 0.05)
* MRR  = mean_R p / mean_{not R} p             (mean relevance ratio)
* DET  = one-sided one-sample t-test of mean_R p - mean(p with R zeroed) > 0 over images
* ADR  = mean_R (p_vanilla - p_debiased)       (average difference in region)
* DIF  = |{p in R : p_vanilla - p_debiased > tol}| / |R|   (tol = 1e-3 as DetoxAI; 0 is the
  paper's strict p_debiased < p_vanilla)
* RDDT = one-sided one-sample t-test of ADR > 0 over images, significant at p < 0.01.

Normalisation (:func:`normalize`): ``"raw"`` keeps the signed relevance; ``"detoxai"`` maps each
image to [0, 1] with 0.5 = no relevance, ``(r + m) / (2m)`` with ``m = max |r|``, then takes
``|s - 0.5| = |r| / (2m)`` (DetoxAI's ``abs_on_neutral``); ``"max_abs"`` is ``r / m``. The
two-model metrics only make sense on per-image normalised maps (a global scale change between
models would otherwise dominate). All functions are jittable and vmappable.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax.scipy.special import betainc

from debiasjax._checks import is_concrete

NORMALIZATIONS = ("raw", "detoxai", "max_abs")


class TTest(NamedTuple):
  """One-sided one-sample t-test of ``mean(d) > 0``: statistic, p-value, p < alpha, per-image d."""
  statistic: jnp.ndarray
  p_value: jnp.ndarray
  significant: jnp.ndarray
  differences: jnp.ndarray


def heatmap(relevance, *, channel_axis: int = -1):
  """Channel-summed relevance [B, H, W] of an NHWC relevance batch (the usual LRP heatmap)."""
  return jnp.sum(relevance, axis=channel_axis)


def _check_maps(maps, name="maps"):
  if jnp.ndim(maps) != 3:
    raise ValueError(f"{name}: expected saliency maps [B, H, W], got shape {jnp.shape(maps)}")
  if is_concrete(maps) and not bool(jnp.all(jnp.isfinite(maps))):
    raise ValueError(f"{name}: contains NaN or infinite values")


def _region(maps, mask):
  _check_maps(maps)
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise ValueError(f"mask: expected a boolean mask, got dtype {mask.dtype}")
  if mask.shape not in (maps.shape, maps.shape[1:]):
    raise ValueError(f"mask: expected shape {maps.shape} or {maps.shape[1:]}, got {mask.shape}")
  mask = jnp.broadcast_to(mask, maps.shape)
  if is_concrete(mask):
    empty = ~jnp.any(mask, axis=(1, 2))
    if bool(jnp.any(empty)):
      raise ValueError(f"mask: the region is empty for image(s) "
                       f"{jnp.flatnonzero(empty).tolist()[:10]}")
    if bool(jnp.any(jnp.all(mask, axis=(1, 2)))):
      raise ValueError("mask: the region covers a whole image; there is nothing outside it to "
                       "compare")
  return mask.astype(maps.dtype)


def normalize(maps, mode: str = "detoxai"):
  """Per-image normalisation of [B, H, W] maps: ``raw``, ``detoxai`` (|r| / 2 max|r|) or
  ``max_abs``."""
  _check_maps(maps)
  if mode not in NORMALIZATIONS:
    raise ValueError(f"mode: expected one of {NORMALIZATIONS}, got {mode!r}")
  if mode == "raw":
    return maps
  m = jnp.max(jnp.abs(maps), axis=(1, 2), keepdims=True)
  m = jnp.where(m == 0, 1.0, m)                       # an all-zero map stays zero
  return jnp.abs(maps) / (2 * m) if mode == "detoxai" else maps / m


def _mean_in(maps, region):
  return jnp.sum(maps * region, axis=(1, 2)) / jnp.sum(region, axis=(1, 2))


def rrf(maps, mask):
  """Rectangle relevance fraction per image: sum over R / sum over the image (0 for a zero map)."""
  region = _region(maps, mask)
  total = jnp.sum(maps, axis=(1, 2))
  inside = jnp.sum(maps * region, axis=(1, 2))
  return jnp.where(total == 0, 0.0, inside / jnp.where(total == 0, 1.0, total))


def hrf(maps, mask, *, threshold: float = 0.05):
  """High-relevance fraction per image: share of R's pixels above ``threshold``."""
  region = _region(maps, mask)
  return _mean_in((maps > threshold).astype(maps.dtype), region)


def mrr(maps, mask):
  """Mean relevance ratio per image: mean inside R / mean outside R (0 when outside is 0)."""
  region = _region(maps, mask)
  outside = _mean_in(maps, 1 - region)
  return jnp.where(outside == 0, 0.0, _mean_in(maps, region) / jnp.where(outside == 0, 1.0,
                                                                         outside))


def one_sided_t_test(d, *, alpha: float = 0.01) -> TTest:
  """One-sample t-test of H1: mean(d) > 0 (Student t with n - 1 degrees of freedom).

  Identical differences give t = +-inf (p = 0 or 1) and all-zero ones p = 1 (no evidence).
  """
  d = jnp.asarray(d)
  n = d.shape[0]
  if n < 2:
    raise ValueError(f"d: the t-test needs at least 2 images, got {n}")
  mean = jnp.mean(d)
  sd = jnp.std(d, ddof=1)
  t = jnp.where(sd > 0, mean / jnp.where(sd > 0, sd, 1.0) * jnp.sqrt(n),
                jnp.where(mean > 0, jnp.inf, jnp.where(mean < 0, -jnp.inf, 0.0)))
  df = n - 1.0
  tail = 0.5 * betainc(df / 2, 0.5, df / (df + jnp.where(jnp.isfinite(t), t * t, 1.0)))
  p = jnp.where(jnp.isinf(t), jnp.where(t > 0, 0.0, 1.0), jnp.where(t > 0, tail, 1.0 - tail))
  p = jnp.where((sd == 0) & (mean == 0), 1.0, p)
  return TTest(t, p, p < alpha, d)


def det(maps, mask, *, alpha: float = 0.01) -> TTest:
  """Distribution equivalence test: is mean_R p - mean(p with R zeroed) > 0 across images?"""
  region = _region(maps, mask)
  d = _mean_in(maps, region) - jnp.mean(maps * (1 - region), axis=(1, 2))
  return one_sided_t_test(d, alpha=alpha)


def _pair(vanilla, debiased, mask):
  _check_maps(debiased, "debiased")
  if jnp.shape(vanilla) != jnp.shape(debiased):
    raise ValueError(f"debiased: expected the vanilla maps' shape {jnp.shape(vanilla)}, "
                     f"got {jnp.shape(debiased)}")
  return _region(vanilla, mask)


def adr(vanilla, debiased, mask):
  """Average difference in region per image: mean over R of (vanilla - debiased)."""
  return _mean_in(vanilla - debiased, _pair(vanilla, debiased, mask))


def dif(vanilla, debiased, mask, *, tol: float = 1e-3):
  """Decreased intensity fraction per image: share of R where vanilla - debiased > ``tol``."""
  region = _pair(vanilla, debiased, mask)
  return _mean_in((vanilla - debiased > tol).astype(vanilla.dtype), region)


def rddt(vanilla, debiased, mask, *, alpha: float = 0.01) -> TTest:
  """Rectangle difference distribution test: one-sided t-test of the per-image ADR > 0."""
  return one_sided_t_test(adr(vanilla, debiased, mask), alpha=alpha)


def saliency_summary(maps, mask, *, vanilla=None, threshold: float = 0.05, tol: float = 1e-3,
                     alpha: float = 0.01) -> dict:
  """Dataset-level RRF / HRF / MRR (mean and std), DET, and against ``vanilla`` maps ADR / DIF /
  RDDT, as Python floats (maps already normalised)."""
  out = {}
  for name, values in (("rrf", rrf(maps, mask)), ("hrf", hrf(maps, mask, threshold=threshold)),
                       ("mrr", mrr(maps, mask))):
    out[name], out[name + "_std"] = float(jnp.mean(values)), float(jnp.std(values))
  test = det(maps, mask, alpha=alpha)
  out["det"], out["det_p"] = bool(test.significant), float(test.p_value)
  if vanilla is not None:
    for name, values in (("adr", adr(vanilla, maps, mask)), ("dif", dif(vanilla, maps, mask,
                                                                        tol=tol))):
      out[name], out[name + "_std"] = float(jnp.mean(values)), float(jnp.std(values))
    test = rddt(vanilla, maps, mask, alpha=alpha)
    out["rddt"], out["rddt_p"] = bool(test.significant), float(test.p_value)
  return out
