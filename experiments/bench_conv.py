r"""Benchmark: our convolution and max-pool paths against XLA's own operations, in the same run.

  python -m experiments.bench_conv                       # about 3 minutes on 2 CPU cores

1. Each conv of ResNet-18's stage 4 on 64x64 inputs (batch 64, forward + both gradients).
2. A full ResNet-18 training step (64x64, batch 64) built with our conv vs XLA's conv.
3. The same training step dispatched from Python vs inside a rolled ``lax.scan``: why
   ``debiasjax.train.fit`` runs convolutional models one step per call on CPU.
4. The ResNet stem's input gradients (what LRP and IG need): the 7x7/2 convolution's and the
   3x3/2 max-pool's, XLA's own against ``models.layers``.

Prints milliseconds and the ratio (XLA / ours). Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

flags.DEFINE_integer("repeats", 5, "Timed repetitions per measurement (after one warm-up).")
flags.DEFINE_integer("batch", 64, "Batch size.")
FLAGS = flags.FLAGS


def timed(fn, *args) -> float:
  """Median wall time of ``fn(*args)`` in ms, after one compile/warm-up call."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1000 * float(np.median(times))


def conv_table(batch: int) -> None:
  from debiasjax.models import layers
  dn = ("NHWC", "HWIO", "NHWC")
  print("\n1. ResNet-18 stage-4 convolutions (64x64 input), forward + gradients, ms")
  print(f"{'conv':36s} {'XLA':>9s} {'ours':>9s} {'ratio':>7s}")
  cases = [("3x3/2, 4x4x256 -> 2x2x512", 4, 256, 512, 3, 2),
           ("3x3/1, 2x2x512 -> 2x2x512", 2, 512, 512, 3, 1),
           ("1x1/2, 4x4x256 -> 2x2x512 (shortcut)", 4, 256, 512, 1, 2)]
  rng = np.random.default_rng(0)
  for name, hw, cin, cout, k, s in cases:
    x = jnp.asarray(rng.normal(size=(batch, hw, hw, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.02, jnp.float32)
    pad = ((k // 2, k // 2),) * 2
    res = []
    for conv in (jax.lax.conv_general_dilated, layers.conv_general_dilated):
      f = lambda x, w, conv=conv: conv(x, w, (s, s), pad, dimension_numbers=dn)
      grads = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(f(x, w) ** 2), argnums=(0, 1)))
      res.append(timed(grads, x, w))
    print(f"{name:36s} {res[0]:9.1f} {res[1]:9.1f} {res[0] / res[1]:6.1f}x")


def train_step_fn(width: int, batch: int):
  from debiasjax import models, train
  model = models.ResNet18(width=width)
  trainer = train.supervised(model, optax.adam(1e-3))
  key = jax.random.key(0)
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, 64, 64, 3)), jnp.float32)
  batch_ = {"x": x, "y": jnp.zeros((batch,), jnp.int32)}
  state = trainer.init(key, model.init(key, x[:1]))
  return trainer, state, batch_, key


def step_table(batch: int) -> None:
  from debiasjax.models import layers
  ours = layers.conv_general_dilated
  print("\n2. ResNet-18 training step (64x64, Adam), ms per step")
  print(f"{'model':22s} {'XLA conv':>9s} {'ours':>9s} {'ratio':>7s} {'ours img/s':>11s}")
  for width in (64, 16):
    res = []
    for conv in (jax.lax.conv_general_dilated, ours):
      layers.conv_general_dilated = conv       # read by ResNet.__call__ at trace time
      try:
        trainer, state, b, key = train_step_fn(width, batch)
        res.append(timed(jax.jit(trainer.update), state, b, key))
      finally:
        layers.conv_general_dilated = ours
    print(f"{f'ResNet-18, width {width}':22s} {res[0]:9.1f} {res[1]:9.1f} {res[0] / res[1]:6.1f}x "
          f"{1000 * batch / res[1]:11.0f}")


def loop_table(batch: int) -> None:
  print("\n3. ResNet-18 width 16: 4 training steps, ms per step")
  trainer, state, b, key = train_step_fn(16, batch)
  update = jax.jit(trainer.update)

  def python_loop(state):
    for _ in range(4):
      state, _ = update(state, b, key)
    return state

  scanned = jax.jit(lambda s: jax.lax.scan(lambda s, _: trainer.update(s, b, key), s, None,
                                           length=4)[0])
  loop_ms, scan_ms = timed(python_loop, state) / 4, timed(scanned, state) / 4
  print(f"{'dispatched from Python':24s} {loop_ms:9.1f}")
  print(f"{'inside lax.scan':24s} {scan_ms:9.1f}   ({scan_ms / loop_ms:.0f}x slower: XLA:CPU conv "
        "gradients in while loops)")


def stem_table(batch: int) -> None:
  from debiasjax.models import layers
  print("\n4. ResNet-18 stem, gradient with respect to the input, ms")
  print(f"{'op':40s} {'XLA':>9s} {'ours':>9s} {'ratio':>7s}")
  dn = ("NHWC", "HWIO", "NHWC")
  rng = np.random.default_rng(0)
  pool_pad = ((1, 1), (1, 1))
  for side in (64, 128):
    x = jnp.asarray(rng.uniform(size=(batch, side, side, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(7, 7, 3, 64)) * 0.1, jnp.float32)
    a = jnp.asarray(rng.uniform(size=(batch, side // 2, side // 2, 64)), jnp.float32)
    cases = [(f"7x7/2 conv, {side}x{side}x3 -> {side // 2}x{side // 2}x64", x,
              [lambda x, w, conv=conv: conv(x, w, (2, 2), ((3, 3), (3, 3)), dimension_numbers=dn)
               for conv in (jax.lax.conv_general_dilated, layers.conv_general_dilated)]),
             (f"3x3/2 max-pool, {side // 2}x{side // 2}x64", a,
              [lambda a, w: jax.lax.reduce_window(a, -jnp.inf, jax.lax.max, (1, 3, 3, 1),
                                                  (1, 2, 2, 1), ((0, 0), *pool_pad, (0, 0))),
               lambda a, w: layers.max_pool(a, (3, 3), (2, 2), pool_pad)])]
    for name, inputs, (theirs, ours) in cases:
      g = jnp.ones_like(ours(inputs, w))
      # inputs, weights and output gradient are arguments, so XLA cannot fold them as constants
      res = [timed(jax.jit(lambda v, w, g, f=f: jax.vjp(lambda v: f(v, w), v)[1](g)[0]),
                   inputs, w, g) for f in (theirs, ours)]
      print(f"{name:40s} {res[0]:9.1f} {res[1]:9.1f} {res[0] / res[1]:6.1f}x")


def main(argv):
  del argv
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, batch {FLAGS.batch}")
  conv_table(FLAGS.batch)
  step_table(FLAGS.batch)
  loop_table(FLAGS.batch)
  stem_table(FLAGS.batch)


if __name__ == "__main__":
  app.run(main)
