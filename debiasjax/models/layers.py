"""Layer helpers shared by the models: a convolution and a max-pooling with fast CPU paths.

``conv_general_dilated`` is a drop-in for ``jax.lax.conv_general_dilated`` that Flax's
``nn.Conv(conv_general_dilated=...)`` accepts. XLA's CPU convolution is up to 80x below its
usual throughput when the output map is tiny (a 3x3 conv producing 2x2 maps, as in stage 4 of a
ResNet on 64x64 images: 534 ms vs 10 ms for the same 2x2x512->512 conv as shifted matmuls,
batch 64, 2 cores). On the CPU backend such convs are computed as a sum of ``kh * kw`` shifted
matrix products; everywhere else, and on every other backend, XLA's convolution is used. The
modules stay plain ``nn.Conv``, so every tool that recognises ``nn.Conv`` (LRP rules, taps)
sees an ordinary convolution.

Strided convolutions of few input channels (a ResNet stem: 7x7/2 on RGB) keep XLA's forward
and weight gradient, but take their input gradient through the space-to-depth input: the
``s x s`` blocks of the input become channels, the convolution becomes a stride-1 one of
``ceil(k / s)`` taps, and its input gradient is a plain convolution (24 against 49 ms for the
stem at 64x64, 87 against 195 ms at 128x128, batch 64), where XLA's is a slow dilated one.

``max_pool`` is ``flax.linen.max_pool`` with a hand-written gradient: XLA's ``select_and_scatter``
takes 77 ms for the ResNet stem's 3x3/2 pool (batch 64, 32x32x64 maps, 2 cores) where a sum of
``kh * kw`` masked, padded copies of the output gradient takes 18 ms. Both route
each window's gradient to its first maximal element in row-major order, and sum in the same order:
the results are equal bit for bit.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# Convs whose output has at most this many spatial positions take the matmul path on CPU.
SMALL_OUTPUT_POSITIONS = 4
# Strided convs with at most this many input channels take the space-to-depth input gradient on CPU.
SPACE_TO_DEPTH_CHANNELS = 4

_NHWC = lax.ConvDimensionNumbers(lhs_spec=(0, 3, 1, 2), rhs_spec=(3, 2, 0, 1), out_spec=(0, 3, 1,
                                                                                         2))


def _explicit_padding(padding, in_hw, kernel_hw, strides):
  if isinstance(padding, str):
    return lax.padtype_to_pads(in_hw, kernel_hw, strides, padding)
  return [tuple(p) for p in padding]


def _shifted_matmul_conv(lhs, rhs, strides, pads):
  """NHWC x HWIO convolution as a sum of strided-slice matmuls."""
  kh, kw = rhs.shape[:2]
  x = jnp.pad(lhs, ((0, 0), *pads, (0, 0)))
  out_h = (x.shape[1] - kh) // strides[0] + 1
  out_w = (x.shape[2] - kw) // strides[1] + 1
  out = None
  for i in range(kh):
    for j in range(kw):
      patch = x[:, i : i + strides[0] * (out_h - 1) + 1 : strides[0],
                j : j + strides[1] * (out_w - 1) + 1 : strides[1], :]
      term = jnp.einsum("bhwc,cf->bhwf", patch, rhs[i, j], precision=lax.Precision.HIGHEST)
      out = term if out is None else out + term
  return out


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` with fast CPU paths for tiny output maps and for the input
  gradient of strided convs of few channels (see module doc)."""
  def xla_conv(lhs, rhs):
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, batch_group_count=batch_group_count,
        precision=precision, preferred_element_type=preferred_element_type)

  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  plain = (lhs.ndim == 4 and dn == _NHWC and feature_group_count == 1
           and batch_group_count == 1 and all(d == 1 for d in (lhs_dilation or (1, 1)))
           and all(d == 1 for d in (rhs_dilation or (1, 1))))
  if not plain:
    return xla_conv(lhs, rhs)
  strides = tuple(window_strides)
  pads = _explicit_padding(padding, lhs.shape[1:3], rhs.shape[:2], strides)
  out_h = (lhs.shape[1] + sum(pads[0]) - rhs.shape[0]) // strides[0] + 1
  out_w = (lhs.shape[2] + sum(pads[1]) - rhs.shape[1]) // strides[1] + 1
  if out_h * out_w <= SMALL_OUTPUT_POSITIONS:
    return lax.platform_dependent(
        lhs, rhs, cpu=lambda a, b: _shifted_matmul_conv(a, b, strides, pads), default=xla_conv)
  if (max(strides) > 1 and lhs.shape[3] <= SPACE_TO_DEPTH_CHANNELS
      and preferred_element_type is None):
    return lax.platform_dependent(
        lhs, rhs, cpu=lambda a, b: _strided_conv(a, b, strides, tuple(map(tuple, pads)), precision),
        default=xla_conv)
  return xla_conv(lhs, rhs)


def _xla_conv(lhs, rhs, strides, pads, precision):
  return lax.conv_general_dilated(lhs, rhs, strides, pads, dimension_numbers=_NHWC,
                                  precision=precision)


def _space_to_depth_conv(lhs, rhs, strides, pads, precision):
  """The NHWC x HWIO convolution as a stride-1 convolution of the space-to-depth input:
  ``out[i] = sum_u x[s i + u] w[u]`` with ``u = s a + p`` is ``sum_a X[i + a, p] W[a, p]``."""
  (sh, sw), (kh, kw, c, f) = strides, rhs.shape
  x = jnp.pad(lhs, ((0, 0), *pads, (0, 0)))
  out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
  ah, aw = -(-kh // sh), -(-kw // sw)                    # taps of the stride-1 convolution
  h, w = sh * (out_h + ah - 1), sw * (out_w + aw - 1)
  x = jnp.pad(x, ((0, 0), (0, max(0, h - x.shape[1])), (0, max(0, w - x.shape[2])), (0, 0)))
  x = x[:, :h, :w].reshape(-1, h // sh, sh, w // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
  kernel = jnp.pad(rhs, ((0, ah * sh - kh), (0, aw * sw - kw), (0, 0), (0, 0)))
  kernel = kernel.reshape(ah, sh, aw, sw, c, f).transpose(0, 2, 1, 3, 4, 5)
  return _xla_conv(x.reshape(*x.shape[:3], sh * sw * c), kernel.reshape(ah, aw, sh * sw * c, f),
                   (1, 1), ((0, 0), (0, 0)), precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _strided_conv(lhs, rhs, strides, pads, precision):
  return _xla_conv(lhs, rhs, strides, pads, precision)


def _strided_conv_fwd(lhs, rhs, strides, pads, precision):
  return _strided_conv(lhs, rhs, strides, pads, precision), (lhs, rhs)


def _strided_conv_bwd(strides, pads, precision, residuals, g):
  """XLA's weight gradient; the input gradient through the space-to-depth form. Both maps are
  linear, so their transposes apply ``g`` without computing a forward pass."""
  lhs, rhs = residuals
  d_lhs, = jax.linear_transpose(lambda a: _space_to_depth_conv(a, rhs, strides, pads, precision),
                                lhs)(g)
  d_rhs, = jax.linear_transpose(lambda b: _xla_conv(lhs, b, strides, pads, precision), rhs)(g)
  return d_lhs, d_rhs


_strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


def max_pool(x, window: tuple[int, int], strides: tuple[int, int],
             padding: tuple[tuple[int, int], tuple[int, int]]):
  """NHWC max-pooling, ``-inf`` padded, whose gradient is a sum of masked shifted copies."""
  return _max_pool(x, tuple(window), tuple(strides), tuple(map(tuple, padding)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1),
                           ((0, 0), *padding, (0, 0)))


def _max_pool_fwd(x, window, strides, padding):
  out = _max_pool(x, window, strides, padding)
  return out, (x, out)


def _max_pool_bwd(window, strides, padding, residuals, g):
  """d out / d x routes ``g`` of each window to its first maximal input (row-major)."""
  x, out = residuals
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-np.inf)
  out_h, out_w = out.shape[1:3]
  taken = jnp.zeros(out.shape, bool)
  copies = []
  for i in range(window[0]):
    for j in range(window[1]):
      rows = i + strides[0] * (out_h - 1) + 1
      cols = j + strides[1] * (out_w - 1) + 1
      hit = (xp[:, i:rows:strides[0], j:cols:strides[1]] == out) & ~taken
      taken = taken | hit
      placed = [(0, 0, 0), (i, xp.shape[1] - rows, strides[0] - 1),
                (j, xp.shape[2] - cols, strides[1] - 1), (0, 0, 0)]
      copies.append(lax.pad(jnp.where(hit, g, 0).astype(g.dtype), jnp.zeros((), g.dtype), placed))
  # Summed in the order select_and_scatter visits the windows (row-major), which reaches an
  # input through its largest offset first: the same floating-point result.
  grad = jnp.zeros_like(xp)
  for copy in reversed(copies):
    grad = grad + copy
  (top, _), (left, _) = padding
  return (grad[:, top:top + x.shape[1], left:left + x.shape[2]],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


class Sum(nn.Module):
  """``x1 + x2 + ...`` as a named, parameter-free module: a residual sum that LRP can see.

  LRP splits a sum's relevance in proportion to its terms; with a composite's
  ``sum_stabilizer`` set it uses zennit's Norm rule here (:mod:`debiasjax.explain.rules`).
  """

  @nn.compact
  def __call__(self, *terms):
    return functools.reduce(lambda a, b: a + b, terms)


class GlobalAvgPool(nn.Module):
  """Mean over the spatial axes of an NHWC map (a named module, so it can be tapped, and LRP's
  Norm rule reaches it like zennit's on ``AdaptiveAvgPool2d``)."""

  @nn.compact
  def __call__(self, x):
    return jnp.mean(x, axis=(1, 2))


NORM_RULE_MODULES = (Sum, GlobalAvgPool)


# (rows or columns of x, taps of the 4-wide kernel) that each output phase reads: output
# 2m + a of a 4x4/2 transposed convolution (PyTorch's kernel 4, stride 2, padding 1) sums
# x[m - 1] w[3] + x[m] w[1] for a = 0 and x[m] w[2] + x[m + 1] w[0] for a = 1.
_PHASE_TAPS = {0: ((1, 0), (3, 1)), 1: ((0, 1), (2, 0))}    # a: (padding, kernel taps)


def conv_transpose_2x(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A 4x4/2 transposed convolution that doubles the side (PyTorch's ``ConvTranspose2d(k=4,
  s=2, p=1)``; ``kernel`` [4, 4, C_in, C_out] indexed as PyTorch's, NHWC) as four stride-1 2x2
  convolutions, one per output phase, interleaved (sub-pixel form). Equal to the transposed
  convolution (``lax.conv_general_dilated`` with ``lhs_dilation=2`` and the flipped kernel,
  tested); on XLA:CPU its gradients are several times faster than the dilated form's
  (``experiments/bench_conv.py``, section 5)."""
  dn = ("NHWC", "HWIO", "NHWC")
  phases = []
  for a in (0, 1):
    row_pad, rows = _PHASE_TAPS[a]
    row = []
    for b in (0, 1):
      col_pad, cols = _PHASE_TAPS[b]
      k = jnp.stack([jnp.stack([kernel[i, j] for j in cols]) for i in rows])
      row.append(jax.lax.conv_general_dilated(x, k, (1, 1), (row_pad, col_pad),
                                              dimension_numbers=dn))
    phases.append(jnp.stack(row, axis=3))                      # [N, H, W, 2, C]
  y = jnp.stack(phases, axis=2)                                # [N, H, 2, W, 2, C]
  n, h, _, w, _, c = y.shape
  return y.reshape(n, 2 * h, 2 * w, c)


class ConvTranspose2x(nn.Module):
  """A 4x4/2 transposed convolution with bias that doubles the side
  (:func:`conv_transpose_2x`)."""
  features: int

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (4, 4, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return conv_transpose_2x(x, kernel) + bias.reshape(1, 1, 1, -1)
