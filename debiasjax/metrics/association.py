"""Whether two measurements move together across cells (methods x phi x seeds): Spearman's rank
correlation with a percentile-bootstrap interval, and counts of significant tests.

Seed 001 asks whether moving relevance out of the protected region (ADR, the falls of RRF and
HRF) goes with a fall in the bias (equalized odds): :func:`rank_correlation` over the cells and
:func:`bootstrap_rank_correlation` for its interval (cells resampled with replacement, all
resamples in one vmapped program); :func:`significant_counts` counts, per method, the cells in
which RDDT rejects.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from debiasjax import _checks


def average_ranks(x: jax.Array) -> jax.Array:
  """Ranks 1..n of ``x`` [n], ties given their average rank (as ``scipy.stats.rankdata``)."""
  x = jnp.asarray(x)
  below = jnp.sum(x[None, :] < x[:, None], axis=1)
  equal = jnp.sum(x[None, :] == x[:, None], axis=1)
  return below + (equal + 1) / 2.0


def _pearson(a: jax.Array, b: jax.Array) -> jax.Array:
  a, b = a - a.mean(), b - b.mean()
  denominator = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
  return jnp.where(denominator > 0, jnp.sum(a * b) / jnp.where(denominator > 0, denominator, 1.0),
                   jnp.nan)


def rank_correlation(x, y) -> jax.Array:
  """Spearman's rho of ``x`` and ``y`` [n]: Pearson's correlation of their average ranks (NaN
  when either is constant). Equals ``scipy.stats.spearmanr``."""
  return _spearman(*_pair(x, y))


def _spearman(x: jax.Array, y: jax.Array) -> jax.Array:
  return _pearson(average_ranks(x), average_ranks(y))


class Interval(NamedTuple):
  estimate: float       # rho on the cells themselves
  low: float            # the percentile interval's ends
  high: float
  resamples: int        # resamples with a defined rho (not constant on either side)


def bootstrap_rank_correlation(x, y, *, key: jax.Array, num_resamples: int = 2000,
                               level: float = 0.95) -> Interval:
  """Spearman's rho with a percentile-bootstrap interval at ``level``: the cells resampled with
  replacement ``num_resamples`` times (one vmapped program); resamples where either side is
  constant are dropped."""
  x, y = _pair(x, y)
  _checks.check_key("key", key)
  _checks.check_int("num_resamples", num_resamples, 10)
  if not 0 < level < 1:
    raise ValueError(f"level: expected a probability in (0, 1), got {level!r}")
  n = x.shape[0]
  picks = jax.random.randint(key, (num_resamples, n), 0, n)
  rhos = np.asarray(jax.jit(jax.vmap(lambda i: _spearman(x[i], y[i])))(picks))
  rhos = rhos[np.isfinite(rhos)]
  tail = (1 - level) / 2
  low, high = ((float(np.quantile(rhos, tail)), float(np.quantile(rhos, 1 - tail)))
               if len(rhos) else (float("nan"), float("nan")))
  return Interval(float(_spearman(x, y)), low, high, int(len(rhos)))


def significant_counts(p_values: Mapping[str, Sequence[float]], *,
                       alpha: float = 0.01) -> dict[str, tuple[int, int]]:
  """Per method, ``(cells with p < alpha, cells)`` of its tests' p-values (NaN: not tested,
  not counted)."""
  if not 0 < alpha < 1:
    raise ValueError(f"alpha: expected a level in (0, 1), got {alpha!r}")
  out = {}
  for method, values in p_values.items():
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if np.any((v < 0) | (v > 1)):
      raise ValueError(f"p_values[{method!r}]: expected p-values in [0, 1], got {v.min()} .. "
                       f"{v.max()}")
    out[method] = (int(np.sum(v < alpha)), int(len(v)))
  return out


def _pair(x, y) -> tuple[jax.Array, jax.Array]:
  x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
  if x.ndim != 1 or x.shape != y.shape or x.shape[0] < 3:
    raise ValueError(f"x, y: expected two vectors of one length >= 3, got shapes {x.shape} and "
                     f"{y.shape}")
  if not (bool(jnp.all(jnp.isfinite(x))) and bool(jnp.all(jnp.isfinite(y)))):
    raise ValueError("x, y: expected finite values (a cell without a measurement is dropped "
                     "before)")
  return x, y
