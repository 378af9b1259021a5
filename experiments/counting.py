"""Images through a network, counted where the network computes them: for equal-work benchmarks.

:func:`counting_stem` wraps ``models.layers.conv_general_dilated`` (which our ResNets read when
they are traced) so that every convolution of RGB input (the stem) adds its batch to
``counts["forward"]`` when its output is computed and to ``counts["backward"]`` when its
gradient is. The tally is a ``jax.pure_callback`` that the output depends on: XLA removes it
together with a pass it finds dead (the layers before an edit that a suffix scorer replaces),
so the counts are what the compiled programs run. Under ``vmap`` over parameter sets every set
counts its batch.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from debiasjax.models import layers


def _tally(counts: dict, which: str):
  def add(rows):
    counts[which] += int(np.size(rows))
    return np.zeros(np.shape(rows)[:-1], np.float32)      # one per parameter set under vmap
  return lambda rows: jax.pure_callback(add, jax.ShapeDtypeStruct((), jnp.float32), rows,
                                        vmap_method="broadcast_all")


@contextlib.contextmanager
def counting_stem(counts: dict):
  """Within the block, programs traced from our models count the images through their stem
  into ``counts`` (keys ``"forward"`` and ``"backward"``, set to 0 here). Programs traced
  before the block (jit caches) do not count: trace the counted run inside it."""
  counts.update(forward=0, backward=0)
  conv = layers.conv_general_dilated

  # The tallies read one value per image of the output and of its gradient, so that under
  # vmap over parameter sets (the output batched) each set counts its images.
  @jax.custom_vjp
  def counted(y):
    return y + _tally(counts, "forward")(y[:, 0, 0, 0])

  def counted_fwd(y):
    return counted(y), None

  def counted_bwd(_, g):
    return (g + _tally(counts, "backward")(g[:, 0, 0, 0]),)

  counted.defvjp(counted_fwd, counted_bwd)

  def counting_conv(lhs, rhs, *args, **kwargs):
    out = conv(lhs, rhs, *args, **kwargs)
    return counted(out) if lhs.shape[-1] == 3 else out

  layers.conv_general_dilated = counting_conv
  try:
    yield counts
  finally:
    layers.conv_general_dilated = conv
    jax.effects_barrier()
