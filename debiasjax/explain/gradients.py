"""Gradient attributions for any ``apply_fn(x) -> logits``: gradient, gradient x input, SmoothGrad
and integrated gradients.

Integrated gradients (Sundararajan et al., 2017):

    IG(x) = (x - x') * integral_0^1 grad f_c(x' + alpha (x - x')) d alpha
          ~ (x - x') * sum_i w_i grad f_c(x' + alpha_i (x - x'))

with captum's quadratures: Gauss-Legendre (default, 50 nodes) or left/right/middle Riemann sums
and the trapezoid rule. Steps run ``max_batch // B`` at a time (``vmap``-ed groups in an unrolled
loop), so memory stays bounded like captum's ``internal_batch_size``. Completeness:
``sum IG = f_c(x) - f_c(x')`` up to the quadrature error.

All functions are pure; jit them with the variables as an argument so parameters are not baked
into the compiled program as constants.

Example:
  ig = jax.jit(lambda v, x, y: integrated_gradients(lambda x: model.apply(v, x), x, y))
  attributions = ig(variables, images, labels)                        # [B, H, W, C]
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from debiasjax.explain.lrp import output_weights

METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def quadrature(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
  """Nodes ``alpha`` in [0, 1] and weights (summing to 1) of captum's IG approximations."""
  if not isinstance(steps, (int, np.integer)) or steps < 1:
    raise ValueError(f"steps: expected a positive integer, got {steps!r}")
  if method == "gausslegendre":
    t, w = np.polynomial.legendre.leggauss(steps)
    return (t + 1) / 2, w / 2
  if method == "riemann_trapezoid":
    if steps < 2:
      raise ValueError(f"steps: the trapezoid rule needs at least 2 steps, got {steps}")
    w = np.full(steps, 1.0 / (steps - 1))
    w[[0, -1]] /= 2
    return np.linspace(0, 1, steps), w
  offsets = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}
  if method not in offsets:
    raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
  return (np.arange(steps) + offsets[method]) / steps, np.full(steps, 1.0 / steps)


def _target_gradient(apply_fn: Callable, x, weights=None, targets=None):
  """grad_x sum_b <w_b, f(x)_b>, plus the logits. Samples are independent, so one gradient of the
  batch sum is every sample's gradient."""
  def weighted(x):
    logits = apply_fn(x)
    w = output_weights(targets, logits) if weights is None else weights
    return jnp.sum(logits * jax.lax.stop_gradient(w)), logits
  return jax.grad(weighted, has_aux=True)(x)


def gradient(apply_fn: Callable, x, targets):
  """Saliency: ``grad_x f_target(x)``."""
  return _target_gradient(apply_fn, x, targets=targets)[0]


def gradient_x_input(apply_fn: Callable, x, targets):
  """``x * grad_x f_target(x)`` (equals LRP-0 on ReLU networks)."""
  return x * gradient(apply_fn, x, targets)


def smoothgrad(apply_fn: Callable, x, targets, key, *, noise_level: float = 0.1, samples: int = 20):
  """SmoothGrad (Smilkov et al., 2017): mean gradient over ``samples`` noisy copies,
  noise std = ``noise_level * (max(x_b) - min(x_b))`` per sample (zennit uses the batch range;
  per sample keeps explanations independent of the batch)."""
  if samples < 1:
    raise ValueError(f"samples: expected a positive integer, got {samples}")
  axes = tuple(range(1, jnp.ndim(x)))
  scale = noise_level * (jnp.max(x, axis=axes, keepdims=True) - jnp.min(x, axis=axes, keepdims=True))

  def one(key):
    return gradient(apply_fn, x + scale * jax.random.normal(key, x.shape, x.dtype), targets)
  return jnp.mean(jax.lax.map(one, jax.random.split(key, samples)), axis=0)


def integrated_gradients(apply_fn: Callable, x, targets, *, baseline=None, steps: int = 50,
                         method: str = "gausslegendre", max_batch: int = 512):
  """Integrated gradients of ``targets`` (class indices [B] or output weights [B, C]).

  Args:
    apply_fn: ``x -> logits`` (e.g. ``lambda x: model.apply(variables, x)``).
    x: inputs [B, ...].
    targets: class indices [B] or output weights [B, C].
    baseline: x' (default zeros), broadcastable to ``x``.
    steps: quadrature nodes (captum's ``n_steps``).
    method: one of :data:`METHODS`.
    max_batch: at most this many images (B x steps in a group) go through the model at once.

  Returns:
    Attributions shaped like ``x``.
  """
  x = jnp.asarray(x)
  baseline = jnp.zeros_like(x) if baseline is None else jnp.broadcast_to(jnp.asarray(baseline, x.dtype), x.shape)
  alphas, weights = quadrature(steps, method)
  per_group = max(1, min(steps, max_batch // max(1, x.shape[0])))
  groups = -(-steps // per_group)
  pad = groups * per_group - steps                  # zero-weight padding nodes
  alphas = np.concatenate([alphas, np.zeros(pad)]).reshape(groups, per_group).astype(x.dtype)
  weights = np.concatenate([weights, np.zeros(pad)]).reshape(groups, per_group).astype(x.dtype)
  return _integrated_gradients(apply_fn, x, targets, baseline, alphas, weights)


def _integrated_gradients(apply_fn, x, targets, baseline, alphas, weights):
  w_out = output_weights(targets, jax.eval_shape(apply_fn, x))
  diff = x - baseline

  def at(alpha):
    return _target_gradient(apply_fn, baseline + alpha * diff, weights=w_out)[0]

  # A Python loop, not lax.scan: XLA:CPU runs convolution gradients inside a while loop up to
  # 270x slower (docs/benchmarks.md); unrolled groups still bound the live batch.
  total = jnp.zeros_like(x)
  for alpha, weight in zip(alphas, weights):
    total = total + jnp.tensordot(weight, jax.vmap(at)(alpha), axes=1)
  return diff * total
