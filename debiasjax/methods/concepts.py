"""Concepts in activation space: CAVs and the erasers P-ClArC, mass-mean shift and LEACE.

A *concept* (the protected accessory, an artifact) is a binary label per sample; its
activations at a tapped layer ``a`` ([N, D] vectors or [N, H, W, C] maps) are pooled per
sample for fitting (``"max"`` / ``"mean"`` over space, the ClArC default being max, or
``"none"``: the full map). Everything here is a pure function of arrays: fits jit and vmap
(e.g. over bootstrap weights), the edits compile into the model
(:class:`~debiasjax.models.taps.Intervened`) and never build a D x D matrix.

Erasers (factories returning an :class:`Eraser` ``(fit, apply)``; hyper-parameters in the
factory, the fitted state arrays only):

* :func:`p_clarc` -- P-ClArC (Anders et al. 2022) ``h(a) = a + v (L - v^T pool(a))`` with
  ``L = v^T mu_0`` (``(I - v v^T) a + v v^T mu_0`` for full maps; a uniform spatial shift for
  pooled maps, which lands the pooled coordinate exactly on ``L``); ``level="concept"``
  (``L = v^T mu_1``) is A-ClArC's artifact injection; ``reactive=True`` edits only samples an
  SVM CAV reads the concept in (R-ClArC).
* :func:`mass_mean` -- Marks & Tegmark's intervention ``h(a) = a - (mu_1 - mu_0)`` (poster
  ``000``), applied to the samples a probe reads the concept in. Applied to every sample it is
  a constant translation that leaves the concept linearly decodable.
* :func:`leace` -- LEACE (Belrose et al. 2023), the least-squares affine eraser after which no
  linear probe beats a constant: ``r(x) = x - W^+ P_{W Sigma_xz} W (x - E x)``.

The kernels underneath: :func:`fit_cav` -- a concept activation vector ``v`` (unit norm) with
the clean and concept means: ``signal`` (pattern CAV, Haufe et al.; ``cov(x, t) / var(t)`` =
the mass-mean difference ``mu_1 - mu_0``), ``lda`` (``Sigma_w^-1 (mu_1 - mu_0)``, Marks &
Tegmark's covariance-corrected probe), or filter CAVs ``ridge``, ``logistic``, ``svm`` (no
intercept, class-balanced weights, regularisation by k-fold cross-validation as in the ClArC
code); :func:`project_to`, :func:`mass_mean_shift`, :func:`fit_leace`.

Example:
  eraser = leace()
  state = eraser.fit(tap.activations(variables, x), protected, concept_weights(protected, y))
  logits = tap.apply(variables, x_test, functools.partial(eraser.apply, state))
  states = jax.vmap(eraser.fit, in_axes=(None, None, 0))(acts, protected, bootstrap_weights)
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from debiasjax import _checks

POOLINGS = ("max", "mean", "none")
CAV_KINDS = ("signal", "lda", "ridge", "logistic", "svm")
LEVELS = ("clean", "concept")
REGULARISATION_GRID = tuple(10.0 ** k for k in range(-5, 5))   # the ClArC code's 1e-5 ... 1e4


class Eraser(NamedTuple):
  """``fit(activations, concept, weights=None) -> state`` and ``apply(state, activations) ->
  activations``: an edit of one layer's output, fitted on a concept (jittable, vmappable over
  ``weights``)."""
  fit: Callable[..., Any]
  apply: Callable[[Any, jax.Array], jax.Array]


class CAV(NamedTuple):
  """A unit concept direction in pooled activation space and the two class means there.

  ``direction`` and the means have the per-sample shape of the pooled activations: [C] for
  pooled maps, [D] for vectors, [H, W, C] for full maps.
  """
  direction: jax.Array
  mean_clean: jax.Array
  mean_concept: jax.Array

  @property
  def clean_level(self) -> jax.Array:
    """``L0 = v^T mu_0``."""
    return dot(self.mean_clean[None], self.direction)[0]

  @property
  def concept_level(self) -> jax.Array:
    """``L1 = v^T mu_1``."""
    return dot(self.mean_concept[None], self.direction)[0]

  @property
  def difference(self) -> jax.Array:
    """``mu_1 - mu_0``."""
    return self.mean_concept - self.mean_clean


def pool(a: jax.Array, pooling: str) -> jax.Array:
  """Per-sample pooled activations: spatial max / mean of NHWC maps, or ``a`` itself."""
  _checks.check_option("pooling", pooling, POOLINGS)
  if a.ndim == 4 and pooling != "none":
    return a.max(axis=(1, 2)) if pooling == "max" else a.mean(axis=(1, 2))
  return a


def dot(p: jax.Array, v: jax.Array) -> jax.Array:
  """``[N]`` inner products of each sample of ``p`` [N, *v.shape] with ``v``."""
  return jnp.tensordot(p, v, axes=v.ndim)


def _broadcast(m: jax.Array, v: jax.Array, ndim: int) -> jax.Array:
  """``m[n] * v`` shaped to add to activations of rank ``ndim`` (v covers the trailing axes)."""
  return m.reshape((-1,) + (1,) * (ndim - 1)) * v.reshape((1,) * (ndim - v.ndim) + v.shape)


def _binary(name: str, values, n: int) -> jax.Array:
  """Binary labels of length ``n``; checked (both classes occur) when concrete."""
  if not _checks.is_concrete(values):
    if jnp.shape(values) != (n,):
      raise ValueError(f"{name}: expected {n} labels, one per sample, got shape "
                       f"{jnp.shape(values)}")
    return jnp.asarray(values).astype(jnp.int32)
  values = _checks.binary_vector(name, values)
  if values.shape != (n,):
    raise ValueError(f"{name}: expected {n} labels, one per sample, got {values.shape[0]}")
  if values.min() == values.max():
    raise ValueError(f"{name}: both classes must occur, got only {int(values[0])}")
  return jnp.asarray(values, jnp.int32)


def _weights(weights, n: int) -> Optional[jax.Array]:
  if weights is None:
    return None
  w = jnp.asarray(weights)
  w = w if jnp.issubdtype(w.dtype, jnp.floating) else w.astype(jnp.result_type(float))
  if w.shape != (n,):
    raise ValueError(f"weights: expected {n} finite non-negative weights, got shape {w.shape}")
  v = np.asarray(w) if _checks.is_concrete(w) else None
  if v is not None and not (np.isfinite(v).all() and (v >= 0).all()):
    raise ValueError(f"weights: expected {n} finite non-negative weights, got non-finite or "
                     "negative values")
  return w


def concept_weights(concept, target=None):
  """Sample weights for fitting a concept, normalised to mean 1.

  Without ``target``: class-balanced (``1 / n_c``, as the ClArC code weights CAV fits). With
  ``target``: Kamiran & Calders' reweighing ``w(c, y) = P(c) P(y) / P(c, y)``, under which the
  concept is independent of the target, so a direction fitted for the concept does not also
  carry the target it co-occurs with (the mean difference then averages the within-class
  differences). Concrete labels give a float32 NumPy vector (computed in float64); traced ones
  (inside ``jit`` / ``vmap``) a JAX array.
  """
  traced = not (_checks.is_concrete(concept) and (target is None or _checks.is_concrete(target)))
  xp = jnp if traced else np
  c = _binary("concept", concept, len(concept))
  c = (c if traced else np.asarray(c)).astype(xp.float32 if traced else np.float64)
  if target is None:
    w = xp.where(c == 1, 1.0 / c.sum(), 1.0 / (1 - c).sum())
  else:
    y = _binary("target", target, c.shape[0])
    y = (y if traced else np.asarray(y)).astype(c.dtype)
    p_c = xp.where(c == 1, c.mean(), 1 - c.mean())
    p_y = xp.where(y == 1, y.mean(), 1 - y.mean())
    cell = (2 * c + y).astype(xp.int32)
    p_cell = (jnp.bincount(cell, length=4) if traced else np.bincount(cell, minlength=4))[cell]
    w = p_c * p_y / (p_cell / c.shape[0])
  return (w / w.mean()).astype(xp.float32)


def _weighted_means(x, c, w):
  w1, w0 = w * c, w * (1 - c)
  return (w0 @ x) / w0.sum(), (w1 @ x) / w1.sum()


def _pooled_within_covariance(x, c, w, mu0, mu1):
  centred = x - jnp.where(c[:, None] == 1, mu1[None], mu0[None])
  return (centred * w[:, None]).T @ centred / w.sum()


def _linear_loss(kind: str, beta, x, t, w, reg):
  """Objectives without intercept on targets t = +-1 (sklearn's conventions): ridge
  ``sum w (t - x b)^2 + alpha |b|^2``; logistic and squared-hinge SVM
  ``C sum w loss(t x b) + |b|^2 / 2``."""
  margin = t * (x @ beta)
  if kind == "ridge":
    return jnp.sum(w * (t - x @ beta) ** 2) + reg * beta @ beta
  losses = jax.nn.softplus(-margin) if kind == "logistic" else jnp.maximum(0.0, 1.0 - margin) ** 2
  return reg * jnp.sum(w * losses) + 0.5 * beta @ beta


def _fit_linear(kind: str, x, t, w, reg, iterations: int = 300):
  """Minimises :func:`_linear_loss`: closed form for ridge, L-BFGS otherwise."""
  if kind == "ridge":
    d = x.shape[1]
    if d <= x.shape[0]:
      return jnp.linalg.solve((x * w[:, None]).T @ x + reg * jnp.eye(d), (x * w[:, None]).T @ t)
    # Dual form for wide activations: b = X^T (W X X^T + alpha I)^-1 W t.
    n = x.shape[0]
    return x.T @ jnp.linalg.solve(w[:, None] * (x @ x.T) + reg * jnp.eye(n), w * t)
  loss = functools.partial(_linear_loss, kind, x=x, t=t, w=w, reg=reg)
  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(loss)

  def step(_, carry):
    beta, state = carry
    value, grad = value_and_grad(beta, state=state)
    updates, state = solver.update(grad, state, beta, value=value, grad=grad, value_fn=loss)
    return optax.apply_updates(beta, updates), state

  beta = jnp.zeros(x.shape[1], x.dtype)
  return jax.lax.fori_loop(0, iterations, step, (beta, solver.init(beta)))[0]


@functools.partial(jax.jit, static_argnames=("kind", "folds"))
def _cross_validate(kind: str, x, t, w, grid, folds: int):
  """Weighted accuracy of every regularisation value, averaged over ``folds`` folds."""
  fold = jnp.arange(x.shape[0]) % folds

  def score(reg, k):
    train = (fold != k).astype(x.dtype)
    beta = _fit_linear(kind, x, t, w * train, reg)
    hit = (jnp.sign(x @ beta) == t).astype(x.dtype)
    held = w * (1 - train)
    return jnp.sum(held * hit) / jnp.sum(held)

  return jax.vmap(lambda reg: jax.vmap(lambda k: score(reg, k))(jnp.arange(folds)).mean())(grid)


def fit_cav(activations, concept, *, kind: str = "signal", pooling: str = "max",
            weights=None, regularisation: Optional[float] = None, folds: int = 5,
            seed: int = 0) -> CAV:
  """Fits a concept activation vector (jittable; vmaps over ``weights``).

  Args:
    activations: [N, D] vectors or [N, H, W, C] maps of the tapped layer.
    concept: [N] binary concept labels (1 = the concept / artifact is present).
    kind: ``signal`` (default; pattern CAV = normalised mass-mean difference), ``lda``,
      ``ridge``, ``logistic`` or ``svm`` (see the module doc).
    pooling: ``max`` (default), ``mean`` or ``none`` for maps; ignored for vectors.
    weights: [N] sample weights (default: class-balanced, :func:`concept_weights`).
    regularisation: ridge's alpha or the classifiers' C; default: chosen from
      :data:`REGULARISATION_GRID` by ``folds``-fold cross-validation (samples shuffled with
      ``seed``).

  Returns:
    A :class:`CAV` (unit direction, weighted clean and concept means).
  """
  _checks.check_option("kind", kind, CAV_KINDS)
  _checks.check_option("pooling", pooling, POOLINGS)
  a = jnp.asarray(activations)
  if a.ndim not in (2, 4) or not jnp.issubdtype(a.dtype, jnp.floating):
    raise ValueError(f"activations: expected float [N, D] vectors or [N, H, W, C] maps, got "
                     f"{a.dtype} {a.shape}")
  c = _binary("concept", concept, a.shape[0])
  w = _weights(weights, a.shape[0])
  cav, norm = _fit_cav(a, c, w, regularisation, kind=kind, pooling=pooling, folds=folds,
                       seed=seed)
  if _checks.is_concrete(norm) and not bool(norm > 0):
    raise ValueError("activations: the concept's classes have identical activations; no "
                     "direction to fit")
  return cav


@functools.partial(jax.jit, static_argnames=("kind", "pooling", "folds", "seed"))
def _fit_cav(a, c, w, regularisation, *, kind, pooling, folds, seed):
  """:func:`fit_cav` after the checks, one compiled program: ``(CAV, norm of the raw
  direction)``."""
  p = pool(a, pooling)
  shape = p.shape[1:]
  x = p.reshape(p.shape[0], -1).astype(jnp.float32)
  cj = c.astype(x.dtype)
  if w is None:   # class-balanced (concept_weights without a target)
    w = jnp.where(cj == 1, 1.0 / cj.sum(), 1.0 / (1 - cj).sum())
    w = w / w.mean()
  mu0, mu1 = _weighted_means(x, cj, w)
  if kind == "signal":
    direction = mu1 - mu0
  elif kind == "lda":
    sigma = _pooled_within_covariance(x, cj, w, mu0, mu1)
    direction = jnp.linalg.pinv(sigma, hermitian=True, rtol=1e-6) @ (mu1 - mu0)
  else:
    t = 2.0 * cj - 1.0
    if regularisation is None:
      order = np.random.default_rng(seed).permutation(x.shape[0])
      grid = jnp.asarray(REGULARISATION_GRID, x.dtype)
      scores = _cross_validate(kind, x[order], t[order], w[order], grid, folds)
      regularisation = grid[jnp.argmax(scores)]
    direction = _fit_linear(kind, x, t, w, regularisation)
  norm = jnp.linalg.norm(direction)
  safe = jnp.where(norm > 0, norm, 1.0)
  return CAV((direction / safe).reshape(shape), mu0.reshape(shape), mu1.reshape(shape)), norm


# --- Edits: pure functions a -> a' to insert at the tapped layer ------------------------------

def project_to(cav: CAV, level: Optional[jax.Array] = None, *, pooling: str = "max",
               gate: Optional[CAV] = None, alpha: float = 1.0) -> Callable[[jax.Array], jax.Array]:
  """P-ClArC's projection: moves every sample's coordinate along ``v`` to ``level``.

  ``h(a) = a + alpha * (level - v^T pool(a)) v`` (``v`` broadcast over space for pooled maps,
  so the pooled coordinate lands exactly on ``level``). ``level`` defaults to the clean level
  ``L0 = v^T mu_0`` (P-ClArC: ``(I - v v^T) a + v v^T mu_0`` on full maps); A-ClArC uses the
  concept level ``L1``. With ``gate`` (a CAV of the same ``pooling``) only samples with
  ``v_g^T pool(a) > 0`` are edited (reactive P-ClArC; pass an SVM CAV). Memory O(D):
  ``v v^T`` is never formed.
  """
  level = cav.clean_level if level is None else level

  def edit(a):
    p = pool(a, pooling)
    m = alpha * (level - dot(p, cav.direction))
    if gate is not None:
      m = m * (dot(p, gate.direction) > 0)
    return a + _broadcast(m.astype(a.dtype), cav.direction.astype(a.dtype), a.ndim)

  return edit


def probe_score(cav: CAV, a: jax.Array, *, pooling: str = "none") -> jax.Array:
  """``v^T (pool(a) - (mu_0 + mu_1) / 2)``: positive where the probe reads the concept."""
  middle = 0.5 * (cav.mean_clean + cav.mean_concept)
  return dot(pool(a, pooling) - middle[None], cav.direction)


def mass_mean_shift(cav: CAV, *, probe: Optional[CAV] = None,
                    pooling: str = "none") -> Callable[[jax.Array], jax.Array]:
  """Mass-mean intervention ``h(a) = a - g(a) (v^T (mu_1 - mu_0)) v`` (Marks & Tegmark 2023).

  For a ``signal`` CAV the shift is exactly ``mu_1 - mu_0`` (poster ``000``); for an ``lda``
  CAV it is the covariance-corrected direction rescaled to the mean difference's projection.
  ``g(a) = 1`` where ``probe`` reads the concept (:func:`probe_score` > 0): the concept's
  samples move onto the clean mean, the clean ones stay, so both class means coincide and
  the concept's first moment is erased. ``probe=None`` shifts every sample: a constant
  translation, after which the concept is exactly as decodable as before.
  """
  shift = dot(cav.difference[None], cav.direction)[0] * cav.direction

  def edit(a):
    g = (jnp.ones(a.shape[0], a.dtype) if probe is None
         else (probe_score(probe, a, pooling=pooling) > 0).astype(a.dtype))
    return a - _broadcast(g, shift.astype(a.dtype), a.ndim)

  return edit


# --- The erasers ------------------------------------------------------------------------------

class ClarcState(NamedTuple):
  """P-ClArC's concept (a CAV) and, for reactive P-ClArC, the gate (an SVM CAV; else None)."""
  cav: CAV
  gate: Optional[CAV]


@functools.cache   # equal settings, one Eraser: edited networks share programs
def p_clarc(*, cav: str = "signal", pooling: str = "max", reactive: bool = False,
            alpha: float = 1.0, level: str = "clean") -> Eraser:
  """P-ClArC (Anders et al. 2022): ``h(a) = a + alpha (L - v^T pool(a)) v`` with ``v`` a
  ``cav``-kind CAV of the concept (:func:`fit_cav`).

  Args:
    cav, pooling: the CAV's kind and pooling (:func:`fit_cav`).
    reactive: edit only samples an SVM CAV reads the concept in (R-ClArC).
    alpha: strength of the projection (1: onto the level).
    level: ``"clean"`` (``L = v^T mu_0``: remove the concept, P-ClArC) or ``"concept"``
      (``L = v^T mu_1``: inject it into every sample, A-ClArC's augmentation).
  """
  _checks.check_option("cav", cav, CAV_KINDS)
  _checks.check_option("pooling", pooling, POOLINGS)
  _checks.check_option("level", level, LEVELS)

  def fit(activations, concept, weights=None) -> ClarcState:
    fitted = fit_cav(activations, concept, kind=cav, pooling=pooling, weights=weights)
    gate = (fit_cav(activations, concept, kind="svm", pooling=pooling, weights=weights)
            if reactive else None)
    return ClarcState(fitted, gate)

  def apply(state: ClarcState, a):
    target = state.cav.clean_level if level == "clean" else state.cav.concept_level
    return project_to(state.cav, target, pooling=pooling, gate=state.gate, alpha=alpha)(a)

  return Eraser(fit, apply)


class MassMeanState(NamedTuple):
  """The mass-mean CAV and the probe that gates the shift (None: every sample moves)."""
  cav: CAV
  probe: Optional[CAV]


@functools.cache   # equal settings, one Eraser: edited networks share programs
def mass_mean(*, direction: str = "signal", gated: bool = True,
              pooling: str = "none") -> Eraser:
  """Mass-mean shift ``h(a) = a - (mu_concept - mu_clean)`` (poster ``000``, Marks & Tegmark)
  on the samples the covariance-corrected (LDA) probe reads the concept in
  (:func:`mass_mean_shift`); ``direction="lda"`` shifts along the probe's direction instead.
  ``gated=False`` shifts every sample (a constant translation)."""
  if direction not in ("signal", "lda"):
    raise ValueError(f"direction: expected 'signal' or 'lda', got {direction!r}")
  _checks.check_option("pooling", pooling, POOLINGS)

  def fit(activations, concept, weights=None) -> MassMeanState:
    fitted = fit_cav(activations, concept, kind=direction, pooling=pooling, weights=weights)
    probe = None
    if gated:
      probe = fitted if direction == "lda" else fit_cav(activations, concept, kind="lda",
                                                        pooling=pooling, weights=weights)
    return MassMeanState(fitted, probe)

  def apply(state: MassMeanState, a):
    return mass_mean_shift(state.cav, probe=state.probe, pooling=pooling)(a)

  return Eraser(fit, apply)


# --- LEACE ----------------------------------------------------------------------------------

class LeaceState(NamedTuple):
  """``r(x) = x - ((x - bias) proj_right^T) proj_left^T`` on flattened per-sample activations;
  the projection matrix ``I - proj_left proj_right`` is stored as two D x k factors."""
  proj_left: jax.Array    # [D, k]
  proj_right: jax.Array   # [k, D]
  bias: jax.Array         # [D]

  def __call__(self, a: jax.Array) -> jax.Array:
    return erase(self, a)


def erase(state: LeaceState, a: jax.Array) -> jax.Array:
  """Applies a fitted LEACE eraser to [N, ...] activations."""
  x = a.reshape(a.shape[0], -1)
  x = x - ((x - state.bias[None]) @ state.proj_right.T) @ state.proj_left.T
  return x.reshape(a.shape)


def optimal_linear_shrinkage(s: jax.Array, n) -> jax.Array:
  """``alpha S + beta (tr S / p) I`` with the RMT-optimal coefficients (the estimator of the
  ``concept-erasure`` package) for a biased sample covariance ``s`` of ``n`` samples."""
  p = s.shape[-1]
  eps = jnp.finfo(s.dtype).eps
  trace = jnp.trace(s)
  sigma0 = jnp.eye(p, dtype=s.dtype) * trace / p
  sigma0_norm = jnp.sum(sigma0 ** 2)
  prod_trace = jnp.trace(s @ sigma0)
  top = trace * trace * sigma0_norm / n
  bottom = jnp.sum(s ** 2) * sigma0_norm - prod_trace * prod_trace
  alpha = 1 - (top + eps) / (bottom + eps)
  beta = (1 - alpha) * (prod_trace + eps) / (sigma0_norm + eps)
  return alpha * s + beta * sigma0


def _concept_columns(z) -> jax.Array:
  """Binary labels become one column (as the package's ``z.reshape(n, -1)``); concrete integer
  classes with more than two values become one-hot columns (the package would erase one
  direction); [N, k] values stay."""
  if not _checks.is_concrete(z):
    return z.astype(jnp.float32) if z.ndim == 2 else z.astype(jnp.float32)[:, None]
  z = np.asarray(z)
  if z.ndim == 2:
    return z.astype(np.float32)
  values = np.unique(z)
  if not (len(values) <= 2 and np.isin(values, (0, 1)).all()):
    return (z[:, None] == values[None]).astype(np.float32)
  return z.astype(np.float32)[:, None]


def _leace(x, z, w, *, method, shrinkage, svd_tol):
  n = w.sum()
  mean_x = (w @ x) / n
  mean_z = (w @ z) / n
  xc, zc = x - mean_x[None], z - mean_z[None]
  sigma_xz = (xc * w[:, None]).T @ zc / (n - 1)
  if method == "leace":
    s_hat = (xc * w[:, None]).T @ xc
    s_hat = (s_hat + s_hat.T) / 2
    sigma = optimal_linear_shrinkage(s_hat / n, n) if shrinkage else s_hat / (n - 1)
    eigenvalues, vectors = jnp.linalg.eigh(sigma)
    keep = eigenvalues > eigenvalues[-1] * x.shape[1] * jnp.finfo(x.dtype).eps
    eigenvalues = jnp.maximum(eigenvalues, 0.0)
    safe = jnp.where(keep, eigenvalues, 1.0)
    whiten = (vectors * jnp.where(keep, jax.lax.rsqrt(safe), 0.0)[None]) @ vectors.T
    unwhiten = (vectors * jnp.where(keep, jnp.sqrt(safe), 0.0)[None]) @ vectors.T
  else:
    whiten = unwhiten = jnp.eye(x.shape[1], dtype=x.dtype)
  u, s, _ = jnp.linalg.svd(whiten @ sigma_xz, full_matrices=False)
  u = u * (s > svd_tol)[None]
  return LeaceState(unwhiten @ u, u.T @ whiten, mean_x)


def _check_leace_options(method: str, svd_tol: float) -> None:
  if method not in ("leace", "orth"):
    raise ValueError(f"method: expected 'leace' or 'orth', got {method!r}")
  if not svd_tol > 0:
    raise ValueError(f"svd_tol: expected a positive tolerance, got {svd_tol!r}")


def fit_leace(activations, concept, *, weights=None, method: str = "leace",
              shrinkage: bool = True, svd_tol: float = 0.01) -> LeaceState:
  """Fits LEACE on per-sample flattened activations (the ``concept-erasure`` package's
  estimator, with optional sample weights; jittable, vmappable over ``weights``).

  Args:
    activations: [N, ...] activations (flattened per sample: D = prod of the rest; the fit
      forms D x D covariances, so tap a layer of moderate size).
    concept: [N] binary labels, [N] integer classes (one-hot encoded; concrete labels only) or
      [N, k] values.
    weights: optional [N] sample weights (e.g. :func:`concept_weights` with the target, so the
      eraser does not also remove the target the concept co-occurs with).
    method: ``leace`` (whitened, least-squares optimal) or ``orth`` (orthogonal projection off
      the cross-covariance: P-ClArC with the pattern direction for a binary concept).
    shrinkage: RMT-optimal linear shrinkage of the covariance (default, as the package).
    svd_tol: singular values of the whitened cross-covariance at or below it are dropped.
      It is absolute: a rare concept's singular value can fall below 0.01, and then nothing is
      erased; pass balanced ``weights`` or a smaller value.

  Precision: the fit computes in the activations' floating dtype (float64 under
  ``jax_enable_x64`` with float64 inputs). Weights are rescaled to sum to N, the number of
  rows, and the shrinkage and the ``n - 1`` correction use N: weights that sum to N (bootstrap
  counts) equal the repeated rows exactly, other integer weights equal repeated rows only up to
  that sample size (with ``shrinkage=False``, up to the factor ``(N' - 1) / (N - 1)``).

  The package's ``constrain_cov_trace`` is not needed: with ``W = Sigma^{+1/2}`` and ``u`` in
  its range, the erased covariance is ``Sigma - W^+ u u^T W^+``, whose trace never exceeds
  ``tr Sigma``, so that constraint never binds.
  """
  _check_leace_options(method, svd_tol)
  a = jnp.asarray(activations)
  if not jnp.issubdtype(a.dtype, jnp.floating):
    a = a.astype(jnp.float32)
  if a.ndim < 2 or a.shape[0] < 2:
    raise ValueError(f"activations: expected [N, ...] with N >= 2, got shape {a.shape}")
  if jnp.shape(concept)[0] != a.shape[0] or jnp.ndim(concept) > 2:
    raise ValueError(f"concept: expected {a.shape[0]} labels ([N] or [N, k]), got "
                     f"{jnp.shape(concept)}")
  w = _weights(weights, a.shape[0])
  return _leace_jit(a, _concept_columns(concept), w, method=method, shrinkage=shrinkage,
                    svd_tol=svd_tol)


@functools.partial(jax.jit, static_argnames=("method", "shrinkage"))
def _leace_jit(a, z, w, *, method, shrinkage, svd_tol):
  w = jnp.ones(a.shape[0], a.dtype) if w is None else w.astype(a.dtype)
  w = w * (a.shape[0] / w.sum())
  return _leace(a.reshape(a.shape[0], -1), z.astype(a.dtype), w, method=method,
                shrinkage=shrinkage, svd_tol=svd_tol)
LeaceEraser = LeaceState   # the fitted eraser is callable: ``state(a)``


def leace(*, method: str = "leace", shrinkage: bool = True, svd_tol: float = 0.01) -> Eraser:
  """LEACE (Belrose et al. 2023) of a concept on the layer's flattened output
  (:func:`fit_leace`)."""
  _check_leace_options(method, svd_tol)

  def fit(activations, concept, weights=None) -> LeaceState:
    return fit_leace(activations, concept, weights=weights, method=method, shrinkage=shrinkage,
                     svd_tol=svd_tol)

  return Eraser(fit, erase)
