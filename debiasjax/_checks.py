"""Argument checks shared by the public functions.

Every check raises ``ValueError`` naming the argument, what was expected and what came. Checks
of *values* run on concrete arrays; under ``jit`` / ``vmap`` (tracers) only shapes are checked,
so traced callers pass static sizes such as ``num_groups`` explicitly, unless the traced code
runs under :func:`checked`, which turns the same value checks into ``checkify`` checks.
"""

from __future__ import annotations

import contextvars
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


def is_concrete(x) -> bool:
  """False for tracers (inside ``jit``, ``vmap``, ``grad``)."""
  return not isinstance(x, jax.core.Tracer)


_TRACED_CHECKS = contextvars.ContextVar("debiasjax_traced_checks", default=False)


def traced_check(ok, message: str) -> None:
  """Under :func:`checked`, a ``checkify`` check of traced values; elsewhere nothing."""
  if _TRACED_CHECKS.get():
    checkify.check(jnp.all(ok), message.replace("{", "{{").replace("}", "}}"))


def checked(fn: Callable) -> Callable:
  """``fn`` compiled with the library's value checks active on traced arrays.

  Inside ``jit`` or ``vmap`` the metrics and post-processors can check only shapes; code run
  through ``checked(fn)`` is traced with ``checkify`` checks of the same conditions (labels in
  {0, 1}, predictions and probabilities in [0, 1], finite scores and weights, group codes in
  0..num_groups-1), and the first that fails raises a ``ValueError`` with the check's message.
  ``fn`` should be a plain function (it is jitted here): a function already jitted and traced
  without the checks would keep its compiled program.

  Example:
    gap = dj.checked(lambda y, p, g: dj.metrics.equalized_odds_difference(
        y, p, g, num_groups=2))
    gap(y, p, g)          # ValueError if a group code is 2 or more, instead of ignoring it
  """
  compiled = jax.jit(checkify.checkify(fn, errors=checkify.user_checks))

  @functools.wraps(fn)
  def run(*args, **kwargs):
    token = _TRACED_CHECKS.set(True)
    try:
      error, out = compiled(*args, **kwargs)
    finally:
      _TRACED_CHECKS.reset(token)
    error.throw()
    return out
  return run


def check_numeric(name: str, x) -> None:
  """Refuses strings, objects and other non-numeric arrays before JAX sees them."""
  if isinstance(x, jax.Array):
    return
  kind = np.asarray(x).dtype.kind
  if kind not in "biuf":
    hint = (" (map labels such as 'F' / 'M' to codes 0..G-1 first: codes, names = "
            "dj.metrics.encode_groups(values), which also takes several columns for "
            "intersectional groups; dj.metrics.by_group takes them as they are)"
            if kind in "USO" else "")
    raise ValueError(f"{name}: expected numbers, got an array of dtype "
                     f"{np.asarray(x).dtype}{hint}")


def as_vector(name: str, x) -> jax.Array:
  """A non-empty 1-D numeric array."""
  if x is None:
    raise ValueError(f"{name}: expected a 1-D array, got None")
  check_numeric(name, x)
  arr = jnp.asarray(x)
  if arr.ndim != 1:
    raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
  if arr.shape[0] == 0:
    raise ValueError(f"{name}: expected at least one sample, got an empty array")
  return arr


def check_lengths(**arrays) -> None:
  """All given (non-None) arrays have the same leading size."""
  lengths = {k: v.shape[0] for k, v in arrays.items() if v is not None}
  if len(set(lengths.values())) > 1:
    raise ValueError("mismatched lengths: " + ", ".join(f"{k} has {n}" for k, n in lengths.items()))


def check_binary(name: str, x) -> None:
  """Concrete labels are all 0 or 1."""
  if not is_concrete(x):
    traced_check((x == 0) | (x == 1), f"{name}: expected binary labels in {{0, 1}}")
    return
  values = np.unique(np.asarray(x))
  if not np.isin(values, (0, 1)).all():
    raise ValueError(f"{name}: expected binary labels in {{0, 1}}, got values "
                     f"{values[:10].tolist()}")


def binary_vector(name: str, x) -> np.ndarray:
  """A non-empty 1-D NumPy vector of 0/1 labels (int64)."""
  arr = np.asarray(x)
  if arr.ndim != 1 or arr.size == 0:
    raise ValueError(f"{name}: expected a non-empty 1-D array, got shape {arr.shape}")
  values = np.unique(arr)
  if not np.isin(values, (0, 1)).all():
    raise ValueError(f"{name}: expected binary values in {{0, 1}}, got {values[:10].tolist()}")
  return arr.astype(np.int64)


def check_predictions(name: str, x) -> None:
  """Concrete predictions are hard labels or probabilities in [0, 1], never NaN."""
  if not is_concrete(x):
    traced_check((x >= 0) & (x <= 1), f"{name}: expected predictions in [0, 1] (no NaN)")
  else:
    v = np.asarray(x, dtype=np.float64)
    if np.isnan(v).any():
      raise ValueError(f"{name}: expected predictions in [0, 1], got {int(np.isnan(v).sum())} "
                       "NaN values")
    if v.min() < 0 or v.max() > 1:
      raise ValueError(f"{name}: expected hard labels or probabilities in [0, 1], "
                       f"got values in [{v.min():g}, {v.max():g}]")


def check_weights(w, name: str = "sample_weight") -> None:
  """Concrete sample weights are finite, non-negative and not all zero."""
  if w is not None and not is_concrete(w):
    traced_check(jnp.isfinite(w) & (w >= 0), f"{name}: expected finite non-negative weights")
  elif w is not None:
    v = np.asarray(w, dtype=np.float64)
    if not np.isfinite(v).all() or (v < 0).any():
      raise ValueError(f"{name}: expected finite non-negative weights, got "
                       f"{int((~np.isfinite(v)).sum())} non-finite and {int((v < 0).sum())} "
                       "negative")
    if v.sum() <= 0:
      raise ValueError(f"{name}: expected a positive total weight, got 0")


def check_scores(scores) -> jax.Array:
  """A float32 vector of finite scores."""
  s = as_vector("scores", scores)
  if not is_concrete(s):
    traced_check(jnp.isfinite(s), "scores: expected finite scores")
  else:
    v = np.asarray(s, np.float64)
    if not np.isfinite(v).all():
      raise ValueError(f"scores: expected finite scores, got {int((~np.isfinite(v)).sum())} NaN "
                       "or infinite values")
  return s.astype(jnp.float32)


def _fractional(codes: np.ndarray) -> bool:
  """Float group codes with a NaN or a fractional part."""
  return codes.dtype.kind == "f" and bool(np.isnan(codes).any() or (codes != np.round(codes)).any())


def resolve_groups(groups, num_groups: Optional[int], weight=None) -> int:
  """Checks group codes and returns the (static) number of groups."""
  if num_groups is not None and (not isinstance(num_groups, (int, np.integer)) or num_groups < 1):
    raise ValueError(f"num_groups: expected a positive int, got {num_groups!r}")
  if not is_concrete(groups):
    if num_groups is None:
      raise ValueError("num_groups: groups are traced (inside jit/vmap), so pass num_groups "
                       "explicitly; got None")
    traced_check((groups >= 0) & (groups < num_groups),
                 f"groups: expected codes in 0..{int(num_groups) - 1}")
    return int(num_groups)
  g = np.asarray(groups)
  if _fractional(g):
    raise ValueError("groups: expected integer group codes 0..G-1, got non-integer values")
  if g.dtype.kind not in "biuf":
    raise ValueError(f"groups: expected integer group codes 0..G-1, got dtype {g.dtype}")
  if g.min() < 0:
    raise ValueError(f"groups: expected codes >= 0, got {int(g.min())}")
  n = int(g.max()) + 1 if num_groups is None else int(num_groups)
  if g.max() >= n:
    raise ValueError(f"groups: expected codes < num_groups={n}, got {int(g.max())}")
  w = np.ones(g.shape) if weight is None or not is_concrete(weight) else np.asarray(weight)
  totals = np.bincount(g.astype(np.int64), weights=w, minlength=n)
  empty = np.flatnonzero(totals <= 0)
  if empty.size:
    raise ValueError(f"groups: expected every group in 0..{n - 1} to have samples, "
                     f"but group(s) {empty.tolist()} are empty")
  return n


def check_int(name: str, value, minimum: int) -> None:
  """An int (not bool) >= ``minimum``."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    raise ValueError(f"{name}: expected {what}, got {value!r}")


def check_positive(name: str, value) -> None:
  """A finite number > 0."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
      or not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name}: expected a positive number, got {value!r}")


def check_nonnegative(name: str, value) -> None:
  """A finite number >= 0."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
      or not math.isfinite(value) or value < 0:
    raise ValueError(f"{name}: expected a non-negative number, got {value!r}")


def check_option(name: str, value, options) -> None:
  """``value`` is one of ``options``."""
  if value not in options:
    raise ValueError(f"{name}: expected one of {sorted(options)}, got {value!r}")


def check_probability(name: str, value) -> None:
  """A concrete number in [0, 1]."""
  if is_concrete(value) and not 0.0 <= float(value) <= 1.0:
    raise ValueError(f"{name}: expected a value in [0, 1], got {value}")


def check_privileged(privileged, num_groups: int) -> int:
  """A group code in 0..num_groups-1."""
  if isinstance(privileged, bool) or not isinstance(privileged, (int, np.integer)) \
      or not 0 <= privileged < num_groups:
    raise ValueError(f"privileged: expected a group code in 0..{num_groups - 1}, got "
                     f"{privileged!r}")
  return int(privileged)


def metric_inputs(y_true, y_pred, groups, sample_weight, num_groups, privileged):
  """The checked inputs of a group metric: ``(y_true or None, y_pred, groups, weight or None,
  number of groups)``."""
  y_pred = as_vector("y_pred", y_pred)
  groups = as_vector("groups", groups)
  y_true = None if y_true is None else as_vector("y_true", y_true)
  w = None if sample_weight is None else as_vector("sample_weight", sample_weight)
  check_lengths(y_true=y_true, y_pred=y_pred, groups=groups, sample_weight=w)
  if y_true is not None:
    check_binary("y_true", y_true)
  check_predictions("y_pred", y_pred)
  check_weights(w)
  n = resolve_groups(groups, num_groups, w)
  if privileged is not None:
    check_privileged(privileged, n)
    if n < 2:
      raise ValueError("privileged: needs at least two groups, got 1")
  return y_true, y_pred, groups, w, n


def check_phi(phi, name: str = "phi") -> float:
  """Yule's phi: a finite number in [-1, 1]."""
  if isinstance(phi, bool) or not isinstance(phi, (int, float, np.floating, np.integer)) \
      or not math.isfinite(phi) or not -1.0 <= phi <= 1.0:
    raise ValueError(f"{name}: expected a number in [-1, 1], got {phi!r}")
  return float(phi)


def group_codes(groups, num_groups: Optional[int] = None, name: str = "groups") -> jax.Array:
  """Integer group codes >= 0 as an int32 vector; with ``num_groups`` (a rule with one setting
  per group) a code the fit never saw is refused. Under ``jit`` only the shape is checked."""
  g = as_vector(name, groups)
  if not is_concrete(g):
    upper = np.inf if num_groups is None else num_groups
    traced_check((g >= 0) & (g < upper), f"{name}: expected group codes the rule knows")
  else:
    v = np.asarray(g)
    if _fractional(v):
      raise ValueError(f"{name}: expected integer group codes, got non-integer values")
    bad = np.unique(v[(v < 0) | (v >= (np.inf if num_groups is None else num_groups))])
    if bad.size:
      expected = ("codes >= 0" if num_groups is None else
                  f"the group codes the rule was fitted on (0..{num_groups - 1})")
      raise ValueError(f"{name}: expected {expected}, got {bad[:10].tolist()}")
  return g.astype(jnp.int32)


def check_key(name: str, key) -> jax.Array:
  """A JAX PRNG key (``jax.random.key(seed)`` or a legacy ``PRNGKey``), not a bare int."""
  if isinstance(key, (jax.Array, np.ndarray)):
    dtype = key.dtype
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
      return key
    if dtype == np.uint32 and key.shape[-1:] == (2,):
      return key
  raise ValueError(f"{name}: expected a PRNG key such as jax.random.key(0), got "
                   f"{type(key).__name__} {key!r}"[:300])


def check_finite(name: str, x) -> None:
  """Concrete values contain no NaN or infinity."""
  if is_concrete(x):
    v = np.asarray(x)
    if v.dtype.kind == "f" and not np.isfinite(v).all():
      raise ValueError(f"{name}: expected finite values, got {int(np.isnan(v).sum())} NaN and "
                       f"{int(np.isinf(v).sum())} infinite")


def check_probabilities(name: str, x) -> None:
  """Concrete values are probabilities in [0, 1] (not logits)."""
  if not is_concrete(x):
    traced_check((x >= 0) & (x <= 1), f"{name}: expected probabilities P(y = 1) in [0, 1]")
  else:
    v = np.asarray(x, np.float64)
    if v.size and (v.min() < 0 or v.max() > 1):
      raise ValueError(f"{name}: expected probabilities P(y = 1) in [0, 1], got values in "
                       f"[{v.min():g}, {v.max():g}] (logits? apply a sigmoid or softmax first)")


def check_threshold(name: str, value) -> float:
  """A decision threshold on P(y = 1): a number strictly between 0 and 1."""
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
      or not 0.0 < float(value) < 1.0:
    raise ValueError(f"{name}: expected a threshold on P(y = 1) strictly between 0 and 1, got "
                     f"{value!r}")
  return float(value)
