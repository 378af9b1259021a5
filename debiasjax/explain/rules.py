"""LRP rules and composites (Bach et al., 2015; Montavon et al., 2019), zennit's semantics.

Relevance is carried as *activation x modified gradient*: a rule re-parametrises the output of
one Conv/Dense layer ``z = lin(a; W, b)`` as

    y = sg(z) + (z_rho - sg(z_rho)) * sg(z / stab(z_rho))        (sg = stop_gradient)

so the forward value is unchanged while the backward pass delivers
``a * grad_a = a * J_rho^T (R / stab(z_rho))``, the rule's input relevance with ``R = z * grad_z``.
ReLU, max-pooling, reshapes and residual sums then need no rule at all: the plain gradient is
zennit's Pass rule on activations, winner-take-all on max-pooling, and the proportional (Norm)
split at every sum and mean, with epsilon -> 0.

zennit instead stabilises those splits (its Norm rule on ``Sum`` and ``AvgPool``:
``R_i = a_i R / stab(z)``, eps = 1e-6), which moves relevance wherever a sum is within a few eps
of 0. :func:`zennit_compatible` turns that on for the sums and means a model marks
(:class:`debiasjax.models.layers.Sum`, ``GlobalAvgPool``, both used by our ResNets); the default
keeps the exact split, which conserves relevance at every sum. (Stock zennit also leaves each
merged BatchNorm as ``x / sqrt(1 + eps)`` rather than the identity, ~4e-5 of max|R| on a
ResNet-18; we fold exactly.)

``stab(z) = z + eps * sign(z)`` with ``sign(0) = +1`` (zennit's stabiliser).

First-layer rules (Flat, WSquare, ZBox) have terms without the ``a *`` factor; they route those
terms through an auxiliary input ``delta`` (zero, shaped like the model input) whose gradient is
their relevance: the explainer returns ``x * grad_x + grad_delta``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Union

import jax.numpy as jnp
from jax import lax

sg = lax.stop_gradient
Lin = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def stabilize(z, eps: float):
  """``z + eps * sign(z)`` with ``sign(0) = +1`` (zennit's default stabiliser)."""
  return z + jnp.where(z >= 0, eps, -eps).astype(z.dtype)


def _ratio(z, denominator):
  """``z / denominator``, 0 where the denominator is exactly 0 (only possible with eps = 0)."""
  safe = jnp.where(denominator == 0, 1.0, denominator)
  return jnp.where(denominator == 0, 0.0, z / safe)


def _through(z, z_rho, eps):
  """Zero-valued term whose gradient sends ``R / stab(z_rho)`` back through ``z_rho``."""
  return (z_rho - sg(z_rho)) * sg(_ratio(z, stabilize(z_rho, eps)))


def _pos(t):
  return jnp.maximum(t, 0)


def _neg(t):
  return jnp.minimum(t, 0)


def _signed_sum(lin: Lin, a, w_for_pos, w_for_neg, b):
  """``lin(a+, w_for_pos, b) + lin(a-, w_for_neg, 0)``; the second conv only runs when some a < 0.

  Every layer after a ReLU has ``a >= 0``, so this costs one extra convolution there, not two.
  Only the negative part sits in the ``cond``: XLA:CPU runs convolutions (and their gradients)
  inside a conditional far below their normal speed, so the always-needed positive part stays
  in the main program (EpsilonPlusFlat on ResNet-18: 0.85 s -> 0.57 s per batch of 64).
  """
  positive = lin(_pos(a), w_for_pos, b)
  negative = lambda: lin(_neg(a), w_for_neg, jnp.zeros_like(b))
  return positive + lax.cond(jnp.any(a < 0), negative, lambda: jnp.zeros_like(positive))


@dataclasses.dataclass(frozen=True)
class Epsilon:
  """LRP-epsilon: ``R_in = a * W^T (R / stab_eps(z))``; ``epsilon=0`` is LRP-0 (gradient x
  input)."""
  epsilon: float = 1e-6
  needs_delta = False

  def __call__(self, z, lin, a, w, b, delta=None):
    return sg(z) + _through(z, z, self.epsilon)


@dataclasses.dataclass(frozen=True)
class ZPlus:
  """z+ (alpha=1, beta=0): ``z+ = W+ a+ + W- a- + b+``, ``R_in = a+ W+^T s + a- W-^T s``,
  ``s = R / stab(z+)``."""
  stabilizer: float = 1e-6
  needs_delta = False

  def __call__(self, z, lin, a, w, b, delta=None):
    z_plus = _signed_sum(lin, a, _pos(w), _neg(w), _pos(b))
    return sg(z) + _through(z, z_plus, self.stabilizer)


@dataclasses.dataclass(frozen=True)
class AlphaBeta:
  """alpha-beta: ``alpha * [positive split] - beta * [negative split]`` with alpha - beta = 1."""
  alpha: float = 2.0
  beta: float = 1.0
  stabilizer: float = 1e-6
  needs_delta = False

  def __post_init__(self):
    if self.alpha < 0 or self.beta < 0 or abs(self.alpha - self.beta - 1.0) > 1e-12:
      raise ValueError(f"AlphaBeta: expected alpha, beta >= 0 with alpha - beta = 1, got "
                       f"alpha={self.alpha}, beta={self.beta}")

  def __call__(self, z, lin, a, w, b, delta=None):
    z_alpha = _signed_sum(lin, a, _pos(w), _neg(w), _pos(b))
    z_beta = _signed_sum(lin, a, _neg(w), _pos(w), _neg(b))
    return (sg(z) + self.alpha * _through(z, z_alpha, self.stabilizer)
            - self.beta * _through(z, z_beta, self.stabilizer))


@dataclasses.dataclass(frozen=True)
class Gamma:
  """Generalised gamma (Andeol et al., 2021; zennit): outputs with z > 0 use ``W + gamma W+`` on a+
  and ``W + gamma W-`` on a-; outputs with z < 0 the opposite pairing."""
  gamma: float = 0.25
  stabilizer: float = 1e-6
  needs_delta = False

  def __call__(self, z, lin, a, w, b, delta=None):
    g = self.gamma
    up = lambda t: t + g * _pos(t)
    down = lambda t: t + g * _neg(t)
    z_up = _signed_sum(lin, a, up(w), down(w), up(b))
    z_down = _signed_sum(lin, a, down(w), up(w), down(b))
    return (sg(z) + sg((z > 0).astype(z.dtype)) * _through(z, z_up, self.stabilizer)
            + sg((z < 0).astype(z.dtype)) * _through(z, z_down, self.stabilizer))


@dataclasses.dataclass(frozen=True)
class Flat:
  """Flat (Lapuschkin et al., 2019): relevance spread uniformly over each receptive field
  (WSquare with unit weights and no bias). First layer only."""
  stabilizer: float = 1e-6
  needs_delta = True

  def __call__(self, z, lin, a, w, b, delta=None):
    z_flat = lin(1.0 + delta, jnp.ones_like(w), jnp.zeros_like(b))
    return sg(z) + _through(z, z_flat, self.stabilizer)


@dataclasses.dataclass(frozen=True)
class WSquare:
  """w-square (Montavon et al., 2017): ``R_in = (W^2)^T (R / stab(W^2 1 + b^2))``; first layer
  only."""
  stabilizer: float = 1e-6
  needs_delta = True

  def __call__(self, z, lin, a, w, b, delta=None):
    z_sq = lin(1.0 + delta, w * w, b * b)
    return sg(z) + _through(z, z_sq, self.stabilizer)


@dataclasses.dataclass(frozen=True)
class ZBox:
  """z-box (Montavon et al., 2017) for inputs bounded by ``low <= x <= high`` (in the model's input
  space; scalars or per-channel tuples):
  ``R_in = x * W^T s - low * W+^T s - high * W-^T s``, ``s = R / stab(W x - W+ low - W- high)``.
  First layer only."""
  low: Union[float, tuple] = 0.0
  high: Union[float, tuple] = 1.0
  stabilizer: float = 1e-6
  needs_delta = True

  def __call__(self, z, lin, a, w, b, delta=None):
    low = jnp.broadcast_to(jnp.asarray(self.low, a.dtype), a.shape) * (1.0 + delta)
    high = jnp.broadcast_to(jnp.asarray(self.high, a.dtype), a.shape) * (1.0 + delta)
    z_box = lin(a, w, b) - lin(low, _pos(w), _pos(b)) - lin(high, _neg(w), _neg(b))
    return sg(z) + _through(z, z_box, self.stabilizer)


Rule = Union[Epsilon, ZPlus, AlphaBeta, Gamma, Flat, WSquare, ZBox]


@dataclasses.dataclass(frozen=True)
class Composite:
  """Which rule each Conv/Dense layer gets.

  Attributes:
    conv: rule of every ``nn.Conv``.
    dense: rule of every ``nn.Dense``.
    first: rule of the first Conv/Dense layer the model calls (None: its type's rule).
    by_name: ``((module path, rule), ...)`` overriding the above, e.g. ``(("head", Epsilon(0.)),)``;
      a path is ``/``-separated (``"stage4/block2/conv1"``) and also matches its submodules.
    sum_stabilizer: None (default): sums and means split exactly in proportion to their terms
      (plain gradient); a float eps: zennit's Norm rule ``R_i = a_i R / stab_eps(z)`` at every
      ``layers.Sum`` and ``layers.GlobalAvgPool``.
  """
  conv: Rule = ZPlus()
  dense: Rule = Epsilon()
  first: Optional[Rule] = None
  by_name: tuple = ()
  sum_stabilizer: Optional[float] = None

  def rule(self, kind: str, path: tuple, is_first: bool) -> Rule:
    name = "/".join(path)
    for prefix, rule in self.by_name:
      if name == prefix or name.startswith(prefix.rstrip("/") + "/"):
        return rule
    if is_first and self.first is not None:
      return self.first
    return self.conv if kind == "conv" else self.dense


def norm(z, eps: float):
  """zennit's Norm rule at a sum or mean ``z``: value ``z``, relevance ``a_i R / stab_eps(z)``."""
  return sg(z) + _through(z, z, eps)


def zennit_compatible(composite: Composite, stabilizer: float = 1e-6) -> Composite:
  """``composite`` with zennit's stabilised Norm rule on sums and means (see module doc):
  ``lrp(..., composite=zennit_compatible(epsilon_alpha2_beta1()))`` equals zennit's
  ``EpsilonAlpha2Beta1`` with the ResNet canonizer to float64 rounding."""
  return dataclasses.replace(composite, sum_stabilizer=float(stabilizer))


def lrp_zero() -> Composite:
  """LRP-0 everywhere: equals gradient x input of the (BatchNorm-folded) model."""
  return Composite(conv=Epsilon(0.0), dense=Epsilon(0.0))


def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  """z+ on convolutions, epsilon on dense layers (zennit ``EpsilonPlus``)."""
  return Composite(conv=ZPlus(stabilizer), dense=Epsilon(epsilon))


def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  """``EpsilonPlus`` with Flat on the first layer (zennit ``EpsilonPlusFlat``), the default."""
  return Composite(conv=ZPlus(stabilizer), dense=Epsilon(epsilon), first=Flat(stabilizer))


def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  """alpha=2, beta=1 on convolutions, epsilon on dense layers (zennit ``EpsilonAlpha2Beta1``)."""
  return Composite(conv=AlphaBeta(2.0, 1.0, stabilizer), dense=Epsilon(epsilon))


def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
  """``EpsilonAlpha2Beta1`` with Flat on the first layer."""
  return Composite(conv=AlphaBeta(2.0, 1.0, stabilizer), dense=Epsilon(epsilon),
                   first=Flat(stabilizer))


def epsilon_gamma_box(low, high, *, epsilon: float = 1e-6, gamma: float = 0.25,
                      stabilizer: float = 1e-6) -> Composite:
  """Gamma on convolutions, epsilon on dense layers, z-box(low, high) on the first layer
  (zennit ``EpsilonGammaBox``; its authors advise EpsilonPlus(Flat) for ResNets)."""
  as_static = lambda v: (tuple(float(t) for t in jnp.ravel(jnp.asarray(v))) if jnp.ndim(v)
                         else float(v))
  return Composite(conv=Gamma(gamma, stabilizer), dense=Epsilon(epsilon),
                   first=ZBox(as_static(low), as_static(high), stabilizer))


COMPOSITES = {
    "lrp_zero": lrp_zero,
    "epsilon_plus": epsilon_plus,
    "epsilon_plus_flat": epsilon_plus_flat,
    "epsilon_alpha2_beta1": epsilon_alpha2_beta1,
    "epsilon_alpha2_beta1_flat": epsilon_alpha2_beta1_flat,
    "epsilon_gamma_box": epsilon_gamma_box,
}


COMPOSITE_NAMES = {"lrp_zero": "LRP-0", "epsilon_plus": "EpsilonPlus",
                   "epsilon_plus_flat": "EpsilonPlusFlat",
                   "epsilon_alpha2_beta1": "EpsilonAlpha2Beta1",
                   "epsilon_alpha2_beta1_flat": "EpsilonAlpha2Beta1Flat",
                   "epsilon_gamma_box": "EpsilonGammaBox"}


def named(name: str, *, bounds=(0.0, 1.0)) -> Composite:
  """The composite of ``name`` (a key of :data:`COMPOSITES`); ``bounds``: the inputs' range,
  the z-box rule's (``epsilon_gamma_box`` only)."""
  if name not in COMPOSITES:
    raise ValueError(f"composite: expected one of {list(COMPOSITES)}, got {name!r}")
  if name == "epsilon_gamma_box":
    return epsilon_gamma_box(*bounds)
  return COMPOSITES[name]()
