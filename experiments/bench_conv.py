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
6. Against PyTorch (``--torch``, needs the test requirements): a torchvision ResNet-18 (width
   64, two classes) and our twin with the same weights, the training step (forward, backward,
   Adam; train-mode BatchNorm) and the eval forward at 64x64 and 128x128, torch on 2 threads.
7. Where the training step's time goes: each distinct convolution of that ResNet-18 at 64x64,
   batch 32, forward, input gradient and weight gradient, ours against torch's.

Prints milliseconds and the ratio (XLA / ours, torch / ours). Results are recorded in
docs/benchmarks.md.
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
flags.DEFINE_bool("torch", True, "Sections 6 and 7: against PyTorch (needs torch).")
flags.DEFINE_integer("threads", 2, "PyTorch's CPU threads.")
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


def torch_timed_ms(fn) -> float:
  """Median wall time of ``fn()`` in ms (PyTorch on the CPU runs synchronously)."""
  return 1000 * timed(fn, FLAGS.repeats)


def torch_step_table() -> list:
  """Section 6: ResNet-18 (width 64) training step and eval forward, ours against PyTorch's."""
  import torch

  from debiasjax import models, train
  from tests.torch_peers import import_torch_peers, resnet_variables, to_torch_images
  torchvision = import_torch_peers()[3]
  torch.set_num_threads(FLAGS.threads)
  torch.manual_seed(0)
  net = torchvision.models.resnet18(num_classes=2)
  model = models.ResNet18(num_classes=2, width=64)
  variables = resnet_variables(net)
  trainer = train.supervised(model, optax.adam(1e-3))
  update, forward = jax.jit(trainer.update), jax.jit(lambda v, x: model.apply(v, x))
  optimizer = torch.optim.Adam(net.parameters(), 1e-3)
  rng = np.random.default_rng(0)
  rows = []
  for kind, side, batch in (("training step", 64, 32), ("training step", 64, 64),
                            ("training step", 96, 32), ("training step", 128, 32),
                            ("eval forward", 64, 64), ("eval forward", 128, 32)):
    x = rng.uniform(size=(batch, side, side, 3)).astype(np.float32)
    y = (rng.uniform(size=batch) < 0.5).astype(np.int32)
    xt, yt = to_torch_images(torch, x), torch.as_tensor(y, dtype=torch.long)
    if kind == "training step":
      state = trainer.init(jax.random.key(0), variables)
      b = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
      ours = timed_ms(update, state, b, jax.random.key(0))

      def step():
        net.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(xt), yt).backward()
        optimizer.step()
      theirs = torch_timed_ms(step)
    else:
      ours = timed_ms(forward, variables, jnp.asarray(x))

      def infer():
        with torch.no_grad():
          return net.eval()(xt)
      theirs = torch_timed_ms(infer)
    rows.append([f"{kind}, {side}×{side}, batch {batch}", f"{theirs:.1f}", f"{ours:.1f}",
                 f"{theirs / ours:.2f}×", f"{1000 * batch / ours:.0f}"])
  return rows


def torch_conv_table() -> list:
  """Section 7: each distinct convolution of ResNet-18 (width 64) at 64x64, batch 32: forward,
  input gradient and weight gradient, ours (the models' conv) against torch's, with the count
  per network; the input gradient of the stem is not part of a training step."""
  import torch

  from debiasjax.models import layers
  torch.set_num_threads(FLAGS.threads)
  dn = ("NHWC", "HWIO", "NHWC")
  rng = np.random.default_rng(0)
  rows, totals = [], np.zeros(6)
  for name, hw, cin, cout, k, s, count in (
      ("stem 7×7/2, 64→32, 3→64", 64, 3, 64, 7, 2, 1),
      ("stage1 3×3/1, 16, 64→64", 16, 64, 64, 3, 1, 4),
      ("stage2 3×3/2, 16→8, 64→128", 16, 64, 128, 3, 2, 1),
      ("stage2 3×3/1, 8, 128→128", 8, 128, 128, 3, 1, 3),
      ("stage2 1×1/2 shortcut", 16, 64, 128, 1, 2, 1),
      ("stage3 3×3/2, 8→4, 128→256", 8, 128, 256, 3, 2, 1),
      ("stage3 3×3/1, 4, 256→256", 4, 256, 256, 3, 1, 3),
      ("stage3 1×1/2 shortcut", 8, 128, 256, 1, 2, 1),
      ("stage4 3×3/2, 4→2, 256→512", 4, 256, 512, 3, 2, 1),
      ("stage4 3×3/1, 2, 512→512", 2, 512, 512, 3, 1, 3),
      ("stage4 1×1/2 shortcut", 4, 256, 512, 1, 2, 1)):
    pad = ((k // 2, k // 2),) * 2
    x = jnp.asarray(rng.normal(size=(32, hw, hw, cin)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.05, jnp.float32)
    conv = lambda x, w: layers.conv_general_dilated(x, w, (s, s), pad, dimension_numbers=dn)
    g = jnp.ones_like(conv(x, w))
    ours = [timed_ms(jax.jit(conv), x, w),
            timed_ms(jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0]), x, w, g),
            timed_ms(jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0]), x, w, g)]
    xt = torch.tensor(np.asarray(x).transpose(0, 3, 1, 2)).contiguous().requires_grad_(True)
    wt = torch.tensor(np.asarray(w).transpose(3, 2, 0, 1)).contiguous().requires_grad_(True)
    yt = torch.nn.functional.conv2d(xt, wt, stride=s, padding=k // 2)
    gt = torch.ones_like(yt)

    def forward():
      with torch.no_grad():
        return torch.nn.functional.conv2d(xt, wt, stride=s, padding=k // 2)
    theirs = [torch_timed_ms(forward),
              torch_timed_ms(lambda: torch.autograd.grad(yt, xt, gt, retain_graph=True)),
              torch_timed_ms(lambda: torch.autograd.grad(yt, wt, gt, retain_graph=True))]
    row = [name]
    for o, t in zip(ours, theirs):
      row += [f"{o:.2f}", f"{t:.2f}"]
    rows.append(row + [str(count)])
    totals += count * np.array([v for pair in zip(ours, theirs) for v in pair])
  rows.append(["all convolutions (× count)", *(f"{v:.1f}" for v in totals), ""])
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
  if FLAGS.torch:
    show_table(tables, "torch_step", ["ResNet-18 (width 64)", "torch 2.13", "ours", "torch / ours",
                                      "ours, images/s"], torch_step_table())
    show_table(tables, "torch_conv", ["conv (batch 32, ms)", "fwd ours", "fwd torch",
                                      "input grad ours", "input grad torch", "weight grad ours",
                                      "weight grad torch", "count"], torch_conv_table())
  save_record(tables, batch=b, threads=FLAGS.threads)


if __name__ == "__main__":
  app.run(main)
