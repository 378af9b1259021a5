r"""Benchmark: our convolution and max-pool paths against XLA's own operations, in the same run.

  python -m experiments.bench_conv                       # about 3 minutes on 2 CPU cores

1. Each conv of ResNet-18's stage 4 on 64x64 inputs (batch 64, forward + both gradients).
2. A full ResNet-18 training step (64x64, batch 64) built with our conv vs XLA's conv.
3. The same training step dispatched from Python vs inside a rolled ``lax.scan``: why
   ``debiasjax.train.fit`` runs convolutional models one step per call on CPU.
4. The ResNet stem's input gradients (what LRP and IG need): the 7x7/2 convolution's and the
   3x3/2 max-pool's, XLA's own against ``models.layers``.
5. The DVGE decoder's 4x4/2 transposed convolutions (forward + both gradients): XLA's dilated
   form against ``models.layers.conv_transpose_2x`` (four stride-1 2x2 convolutions).

Prints milliseconds and the ratio (XLA / ours). Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from experiments.cli import define_record_flag, save_record, show_table, timed

define_record_flag()
flags.DEFINE_integer("repeats", 5, "Timed repetitions per measurement (after one warm-up).")
flags.DEFINE_integer("batch", 64, "Batch size.")
FLAGS = flags.FLAGS


def timed_ms(fn, *args) -> float:
  """Median wall time of ``fn(*args)`` in ms, after one compile/warm-up call."""
  return 1000 * timed(lambda: fn(*args), FLAGS.repeats)


def row(name: str, xla: float, ours: float, *more) -> list:
  return [name, f"{xla:.1f}", f"{ours:.1f}", f"{xla / ours:.1f}×", *more]


def conv_table(batch: int) -> list:
  """Section 1: ResNet-18's stage-4 convolutions on 64x64 inputs, forward + both gradients."""
  from debiasjax.models import layers
  dn = ("NHWC", "HWIO", "NHWC")
  cases = [("3x3/2, 4x4x256 → 2x2x512", 4, 256, 512, 3, 2),
           ("3x3/1, 2x2x512 → 2x2x512", 2, 512, 512, 3, 1),
           ("1x1/2, 4x4x256 → 2x2x512 (shortcut)", 4, 256, 512, 1, 2)]
  rows = []
  rng = np.random.default_rng(0)
  for name, hw, cin, cout, k, s in cases:
    x = jnp.asarray(rng.normal(size=(batch, hw, hw, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.02, jnp.float32)
    pad = ((k // 2, k // 2),) * 2
    res = []
    for conv in (jax.lax.conv_general_dilated, layers.conv_general_dilated):
      f = lambda x, w, conv=conv: conv(x, w, (s, s), pad, dimension_numbers=dn)
      grads = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
      res.append(timed_ms(grads, x, w))
    rows.append(row(name, *res))
  return rows


def train_step_fn(width: int, batch: int):
  from debiasjax import models, train
  model = models.ResNet18(width=width)
  trainer = train.supervised(model, optax.adam(1e-3))
  key = jax.random.key(0)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, 64, 64, 3)), jnp.float32)
  batch_ = {"x": x, "y": jnp.zeros((batch,), jnp.int32)}
  state = trainer.init(key, model.init(key, x[:1]))
  return trainer, state, batch_, key


def step_table(batch: int) -> list:
  """Section 2: one ResNet-18 training step (64x64, Adam), built with XLA's conv and ours."""
  from debiasjax.models import layers
  ours = layers.conv_general_dilated
  rows = []
  for width in (64, 16):
    res = []
    for conv in (jax.lax.conv_general_dilated, ours):
      layers.conv_general_dilated = conv       # read by ResNet.__call__ at trace time
      try:
        trainer, state, b, key = train_step_fn(width, batch)
        res.append(timed_ms(jax.jit(trainer.update), state, b, key))
      finally:
        layers.conv_general_dilated = ours
    rows.append(row(f"ResNet-18, width {width}", *res, f"{1000 * batch / res[1]:.0f}"))
  return rows


def loop_table(batch: int) -> list:
  """Section 3: four ResNet-18 (width 16) training steps dispatched from Python or in a scan."""
  trainer, state, b, key = train_step_fn(16, batch)
  update = jax.jit(trainer.update)

  def python_loop(state):
    for _ in range(4):
      state, _ = update(state, b, key)
    return state

  scanned = jax.jit(lambda s: jax.lax.scan(lambda s, _: trainer.update(s, b, key), s, None,
                                           length=4)[0])
  loop_ms, scan_ms = timed_ms(python_loop, state) / 4, timed_ms(scanned, state) / 4
  return [["dispatched from Python", f"{loop_ms:.1f}", "1×"],
          ["inside a rolled `lax.scan`", f"{scan_ms:.1f}", f"{scan_ms / loop_ms:.0f}× slower"]]


def stem_table(batch: int) -> list:
  """Section 4: the ResNet stem's gradients with respect to the input (LRP and IG need them)."""
  from debiasjax.models import layers
  rows = []
  dn = ("NHWC", "HWIO", "NHWC")
  rng = np.random.default_rng(0)
  pool_pad = ((1, 1), (1, 1))
  for side in (64, 128):
    x = jnp.asarray(rng.uniform(size=(batch, side, side, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(7, 7, 3, 64)) * 0.1, jnp.float32)
    a = jnp.asarray(rng.uniform(size=(batch, side // 2, side // 2, 64)), jnp.float32)
    cases = [(f"7×7/2 conv, {side}×{side}×3 → {side // 2}×{side // 2}×64", x,
              [lambda x, w, conv=conv: conv(x, w, (2, 2), ((3, 3), (3, 3)), dimension_numbers=dn)
               for conv in (jax.lax.conv_general_dilated, layers.conv_general_dilated)]),
             (f"3×3/2 max-pool, {side // 2}×{side // 2}×64", a,
              [lambda a, w: jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                                                  (1, 2, 2, 1), ((0, 0), *pool_pad, (0, 0))),
               lambda a, w: layers.max_pool(a, (3, 3), (2, 2), pool_pad)])]
    for name, inputs, (theirs, ours) in cases:
      g = jnp.ones_like(ours(inputs, w))
      # inputs, weights and output gradient are arguments, so XLA cannot fold them as constants
      res = [timed_ms(jax.jit(lambda v, w, g, f=f: jax.vjp(lambda v: f(v, w), v)[1](g)[0]),
                   inputs, w, g) for f in (theirs, ours)]
      rows.append(row(name, *res))
  return rows


def transpose_table(batch: int) -> list:
  """Section 5: the DVGE decoder's 4x4/2 transposed convolutions (64x64 output), forward and
  both gradients: XLA's dilated form against ``layers.conv_transpose_2x`` (sub-pixel form)."""
  from debiasjax.models import layers
  dn = ("NHWC", "HWIO", "NHWC")
  rng = np.random.default_rng(0)
  rows = []
  for cin, cout, side in ((64, 64, 4), (64, 32, 8), (32, 32, 16), (32, 3, 32)):
    x = jnp.asarray(rng.normal(size=(batch, side, side, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(4, 4, cin, cout)) * 0.05, jnp.float32)
    dilated = lambda x, w: jax.lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), ((2, 2),) * 2,
                                                        lhs_dilation=(2, 2), dimension_numbers=dn)
    res = [timed_ms(jax.jit(jax.value_and_grad(lambda x, w, f=f: jnp.sum(f(x, w) ** 2),
                                            argnums=(0, 1))), x, w)
           for f in (dilated, layers.conv_transpose_2x)]
    rows.append(row(f"{side}×{side}×{cin} → {2 * side}×{2 * side}×{cout}", *res))
  return rows


def main(argv):
  del argv
  b = FLAGS.batch
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, batch {b}", flush=True)
  tables, ms = {}, ["XLA", "ours", "ratio"]
  show_table(tables, "conv", ["conv"] + ms, conv_table(b))
  show_table(tables, "step", ["model", "XLA conv", "ours", "ratio", "ours, images/s"],
             step_table(b))
  show_table(tables, "scan", ["four training steps", "ms per step", "against Python"],
             loop_table(b))
  show_table(tables, "stem", ["op"] + ms, stem_table(b))
  show_table(tables, "transpose", ["4×4/2 transposed conv"] + ms, transpose_table(b))
  save_record(tables, batch=b)


if __name__ == "__main__":
  app.run(main)
