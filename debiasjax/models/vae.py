r"""Variational auto-encoders: the encoders DVGE perturbs the latents of.

Zhang et al. (2023), "Model Debiasing via Gradient-based Explanation on Representation", encode
64×64 CelebA images with the FactorVAE architecture of Kim & Mnih (2018) (their code:
``DexterJZ/DVGE``): four 4×4/2 convolutions of 32, 32, 64, 64 channels, a 4×4 convolution to
256 and a 1×1 convolution to ``2·z`` (mean and log-variance, z = 10), and the mirrored decoder
of 4×4/2 transposed convolutions (computed in sub-pixel form,
:func:`~debiasjax.models.layers.conv_transpose_2x`), whose logits give a Bernoulli likelihood
per pixel. Tables get an MLP encoder and decoder with a Gaussian likelihood of learnt variance
per column.

* :func:`conv_vae` / :func:`mlp_vae` build a :class:`VAE` (``encode``, ``decode``, and
  ``__call__(x, key)``: a reparameterised sample ``z = μ + σ ⊙ ε`` and the decoder's output).
* :class:`Discriminator`: FactorVAE's total-correlation critic (an MLP of 5 × 1000 LeakyReLU
  units and 2 logits) telling codes ``q(z)`` from dimension-wise permuted ones ``∏_j q(z_j)``.

Losses and the trainer (plain VAE, β-VAE, FactorVAE) are in :mod:`debiasjax.methods.dvge`.

Example:
  vae = conv_vae(latents=10)
  variables = vae.init(key, jnp.zeros((1, 64, 64, 3)), key)
  mu, logvar = vae.apply(variables, x, method=VAE.encode)
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from debiasjax.models.layers import ConvTranspose2x


class ConvEncoder(nn.Module):
  """4×4/2 convolutions down to 4×4, a 4×4 convolution to ``hidden`` and a 1×1 one to
  ``2·latents``. The input side must be ``4·2^k`` with ``k <= len(channels)``; a smaller
  image uses the last ``k`` of ``channels`` (64×64: all four)."""
  latents: int = 10
  channels: Sequence[int] = (32, 32, 64, 64)
  hidden: int = 256

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32)
    for c in self.channels[len(self.channels) - downsamplings(x.shape[1], self.channels):]:
      x = nn.relu(nn.Conv(c, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)))(x))
    x = nn.relu(nn.Conv(self.hidden, (4, 4), padding="VALID")(x))
    out = nn.Conv(2 * self.latents, (1, 1))(x).reshape(x.shape[0], 2 * self.latents)
    return out[:, :self.latents], out[:, self.latents:]


class ConvDecoder(nn.Module):
  """The encoder mirrored: a 1×1 convolution to ``hidden``, a 4×4 transposed convolution to
  4×4 (of a 1×1 map: a dense layer), and 4×4/2 transposed convolutions up to ``side``; logits
  of ``out_channels``."""
  side: int = 64
  out_channels: int = 3
  channels: Sequence[int] = (32, 32, 64, 64)
  hidden: int = 256

  @nn.compact
  def __call__(self, z):
    x = nn.relu(nn.Dense(self.hidden)(z))
    k = downsamplings(self.side, self.channels)
    # 64×64: 1×1 -> 4×4 (64) -> 8 (64) -> 16 (32) -> 32 (32) -> 64 (out_channels logits)
    widths = list(reversed(self.channels[len(self.channels) - k:])) + [self.out_channels]
    # a 4×4 transposed convolution of a 1×1 map is a dense layer to 4·4·C
    x = nn.Dense(16 * widths[0])(x).reshape(x.shape[0], 4, 4, widths[0])
    for c in widths[1:]:
      x = ConvTranspose2x(c)(nn.relu(x))
    return x


def downsamplings(side: int, channels: Sequence[int]) -> int:
  """``k`` with ``side == 4·2^k``; a ValueError for any other side."""
  k = math.log2(side / 4) if side >= 4 else -1
  if k != int(k) or not 0 <= k <= len(channels):
    sides = [4 * 2 ** i for i in range(len(channels) + 1)]
    raise ValueError(f"x: expected square images with a side in {sides}, got side {side}")
  return int(k)


class MLPEncoder(nn.Module):
  """Dense ReLU layers of ``hidden`` units, then ``2·latents``."""
  latents: int = 10
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, x):
    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    out = nn.Dense(2 * self.latents)(x)
    return out[:, :self.latents], out[:, self.latents:]


class MLPDecoder(nn.Module):
  """The encoder mirrored; a Gaussian per feature: ``(means [N, F], log-variances [F])``, the
  log-variances learnt (one per feature). With a fixed unit variance on standardised columns
  encoding a column gains at most ½ nat, less than it costs in KL, and the posterior collapses
  (the census table: KL 0.3 nats after 1,900 steps); a learnt variance lets a column the
  latents predict be reconstructed tightly."""
  features: int
  hidden: Sequence[int] = (64, 64)

  @nn.compact
  def __call__(self, z):
    for width in reversed(self.hidden):
      z = nn.relu(nn.Dense(width)(z))
    logvar = self.param("logvar", nn.initializers.zeros, (self.features,))
    return nn.Dense(self.features)(z), logvar


class VAE(nn.Module):
  """``encode(x) -> (μ, log σ²)``, ``decode(z) -> likelihood parameters``, and
  ``__call__(x, key) -> (decoded, μ, log σ², z)`` with ``z = μ + σ ⊙ ε``, ``ε ~ N(0, I)``
  drawn from ``key``. ``likelihood`` names the decoder's output: ``"bernoulli"`` (logits, for
  images in [0, 1]) or ``"gaussian"`` (means and learnt log-variances, for standardised
  tables)."""
  encoder: nn.Module
  decoder: nn.Module
  likelihood: str = "bernoulli"

  def encode(self, x):
    return self.encoder(x)

  def decode(self, z):
    return self.decoder(z)

  def __call__(self, x, key):
    mu, logvar = self.encoder(x)
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)
    return self.decoder(z), mu, logvar, z


def conv_vae(*, latents: int = 10, side: int = 64, out_channels: int = 3,
             channels: Sequence[int] = (32, 32, 64, 64), hidden: int = 256) -> VAE:
  """The paper's convolutional VAE for ``side × side`` images (a Bernoulli decoder)."""
  downsamplings(side, channels)
  return VAE(ConvEncoder(latents, tuple(channels), hidden),
             ConvDecoder(side, out_channels, tuple(channels), hidden), "bernoulli")


def mlp_vae(features: int, *, latents: int = 10, hidden: Sequence[int] = (64, 64)) -> VAE:
  """An MLP VAE for ``features`` standardised columns (a Gaussian decoder, variance learnt)."""
  return VAE(MLPEncoder(latents, tuple(hidden)), MLPDecoder(features, tuple(hidden)), "gaussian")


class Discriminator(nn.Module):
  """FactorVAE's critic: ``layers`` LeakyReLU(0.2) layers of ``width`` units and 2 logits,
  class 0 for codes of ``q(z)``, class 1 for dimension-wise permuted codes."""
  layers: int = 5
  width: int = 1000

  @nn.compact
  def __call__(self, z):
    for _ in range(self.layers):
      z = nn.leaky_relu(nn.Dense(self.width)(z), 0.2)
    return nn.Dense(2)(z)


class Encoded(nn.Module):
  """A classifier on an encoder's posterior means: ``classifier(μ(x))``, one Linen module (so
  LRP, integrated gradients, taps and saved models treat it as any network)."""
  encoder: nn.Module
  classifier: nn.Module

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return self.classifier(self.encoder(x)[0])
