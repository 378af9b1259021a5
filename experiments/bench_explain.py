r"""Benchmark: LRP (EpsilonPlusFlat) and integrated gradients against zennit and captum.

  python -m experiments.bench_explain              # ~20 min on 2 CPU cores (captum IG dominates)
  python -m experiments.bench_explain --sizes=64 --skip_captum
  python -m experiments.bench_explain --per_layer  # each conv of ResNet-18 at 64x64, XLA vs torch

One torchvision ResNet-18 (1000 classes, random weights, random BatchNorm statistics) and its
exported Flax twin, the same random batch (64 images at each size). Ours: jit-compiled, timed
after compilation (median of repeats); peers: torch on ``--threads`` threads, zennit with its
ResNet canonizer (composite built per call, as zennit is used); IG with Gauss-Legendre nodes,
ours ``integrated_gradients_in_groups`` (as ``saliency_maps`` runs it) and captum's, both with
``--ig_batch`` images per model call (captum's ``internal_batch_size``). Prints images per
second, our speed-up, LRP time / forward time, and the largest difference between our and the
peer's maps relative to max |R|.
Needs the test requirements (torch, zennit, captum). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.metadata
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from experiments.cli import define_record_flag, save_record, show_table, timed

define_record_flag()
flags.DEFINE_list("sizes", ["64", "128"], "Image sizes.")
flags.DEFINE_integer("batch", 64, "Images per batch.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (peers' IG: 1).")
flags.DEFINE_integer("ig_steps", 50, "Integrated-gradient steps.")
flags.DEFINE_integer("ig_batch", 128, "Images per model call in IG (ours and captum's).")
flags.DEFINE_integer("threads", 2, "torch threads.")
flags.DEFINE_bool("skip_captum", False, "Skip captum's IG (the slowest peer).")
flags.DEFINE_bool("per_layer", False, "Instead: time each convolution of ResNet-18 (64x64 inputs), "
                  "forward and input gradient, ours (XLA) against torch.")
FLAGS = flags.FLAGS


# ResNet-18's convolutions on 64x64 inputs: (name, map side, in, out, kernel, stride, pad, count).
RESNET18_CONVS = [("stem 7x7/2, 64->32, 3->64", 64, 3, 64, 7, 2, 3, 1),
                  ("stage1 3x3/1, 16, 64->64", 16, 64, 64, 3, 1, 1, 4),
                  ("stage2 3x3/2, 16->8, 64->128", 16, 64, 128, 3, 2, 1, 1),
                  ("stage2 3x3/1, 8, 128->128", 8, 128, 128, 3, 1, 1, 3),
                  ("stage2 1x1/2 shortcut", 16, 64, 128, 1, 2, 0, 1),
                  ("stage3 3x3/2, 8->4, 128->256", 8, 128, 256, 3, 2, 1, 1),
                  ("stage3 3x3/1, 4, 256->256", 4, 256, 256, 3, 1, 1, 3),
                  ("stage3 1x1/2 shortcut", 8, 128, 256, 1, 2, 0, 1),
                  ("stage4 3x3/2, 4->2, 256->512", 4, 256, 512, 3, 2, 1, 1),
                  ("stage4 3x3/1, 2, 512->512", 2, 512, 512, 3, 1, 1, 3),
                  ("stage4 1x1/2 shortcut", 4, 256, 512, 1, 2, 0, 1)]


def per_layer_table(torch, batch: int) -> None:
  """Milliseconds per convolution, forward and input gradient, ours (the models' conv on XLA)
  against torch on the same shapes: where a gradient or LRP pass spends its time."""
  from debiasjax.models import layers
  repeats = max(FLAGS.repeats, 5)
  total, rows = np.zeros(4), []
  for name, side, c_in, c_out, k, stride, pad, count in RESNET18_CONVS:
    rng = np.random.default_rng(0)
    x = rng.random((batch, side, side, c_in), np.float32)
    w = (0.1 * rng.normal(size=(k, k, c_in, c_out))).astype(np.float32)
    conv = lambda x, w: layers.conv_general_dilated(
        x, w, (stride, stride), [(pad, pad)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    forward = jax.jit(conv)
    g = jnp.ones_like(forward(x, w))
    input_grad = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    xt = torch.tensor(x).permute(0, 3, 1, 2).contiguous().requires_grad_(True)
    wt = torch.tensor(w).permute(3, 2, 0, 1).contiguous()
    tconv = lambda: torch.nn.functional.conv2d(xt, wt, stride=stride, padding=pad)
    gt = torch.ones_like(tconv())

    def torch_forward():
      with torch.no_grad():
        return tconv()

    ours_f = timed(lambda: forward(x, w), repeats)
    ours_g = timed(lambda: input_grad(x, w, g), repeats)
    torch_f = timed(torch_forward, repeats)
    torch_g = timed(lambda: torch.autograd.grad(tconv(), xt, gt)[0], repeats) - torch_f
    row = 1000 * np.array([ours_f, torch_f, ours_g, torch_g])
    total += count * row
    rows.append([name, *(f"{v:.1f}" for v in row), str(count)])
    print(f"{name:32s} " + " ".join(f"{v:8.1f}" for v in row) + f"  x{count}", flush=True)
  rows.append(["all convolutions (× count)", *(f"{v:.0f}" for v in total), ""])
  tables = {}
  show_table(tables, "per_layer", [f"conv (batch {batch}, ms)", "fwd ours", "fwd torch",
                                   "input grad ours", "input grad torch", "count"], rows)
  save_record(tables, batch=batch)


def main(argv):
  del argv
  from debiasjax import explain as ex
  from debiasjax.models import ResNet18
  from tests import torch_peers

  torch, zennit, captum, torchvision = torch_peers.import_torch_peers()
  torch.set_num_threads(FLAGS.threads)
  if FLAGS.per_layer:
    return per_layer_table(torch, FLAGS.batch)
  torch.manual_seed(0)
  tmodel = torch_peers.randomize_batch_norm(torch, torchvision.models.resnet18(num_classes=1000))
  model = ResNet18(num_classes=1000)
  variables = jax.device_put(torch_peers.resnet_variables(tmodel))
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
        f"({FLAGS.threads} threads), zennit {importlib.metadata.version('zennit')}, captum "
        f"{captum.__version__}")

  forward = jax.jit(lambda v, x: model.apply(v, x))
  grad = jax.jit(lambda v, x, t: ex.gradient(lambda x: model.apply(v, x), x, t))
  lrp = jax.jit(lambda v, x, t: ex.lrp(model, v, x, t))

  def ig(v, x, t):
    return ex.integrated_gradients_in_groups(model.apply, v, x, t, steps=FLAGS.ig_steps,
                                             max_batch=FLAGS.ig_batch)

  b = FLAGS.batch
  sizes, cells = list(map(int, FLAGS.sizes)), {}
  for size in sizes:
    x = np.random.default_rng(size).normal(size=(b, size, size, 3)).astype(np.float32)
    xt = torch_peers.to_torch_images(torch, x)
    targets = np.asarray(jnp.argmax(forward(variables, x), -1))
    t_fwd = timed(lambda: forward(variables, x), FLAGS.repeats)
    t_grad = timed(lambda: grad(variables, x, targets), FLAGS.repeats)
    t_lrp = timed(lambda: lrp(variables, x, targets), FLAGS.repeats)

    def zennit_lrp():
      return torch_peers.zennit_epsilon_plus_flat(torch, zennit, tmodel, xt, targets, resnet=True)

    t_zennit = timed(zennit_lrp, max(1, FLAGS.repeats - 1))
    theirs = torch_peers.to_nhwc(zennit_lrp())
    err = float(np.max(np.abs(np.asarray(lrp(variables, x,
                                             targets)) - theirs)) / np.max(np.abs(theirs)))
    rate = lambda t: f"{b / t:.3g} img/s"
    cells[size] = {"forward": [rate(t_fwd), "", ""], "gradient": [rate(t_grad), "", ""],
                   "LRP EpsilonPlusFlat": [f"{rate(t_lrp)} (LRP / forward {t_lrp / t_fwd:.1f})",
                                           f"zennit {rate(t_zennit)}",
                                           f"{t_zennit / t_lrp:.1f}×"]}
    print(f"\nResNet-18, batch {b}, {size}x{size}")
    print(f"  forward            ours {b / t_fwd:8.1f} img/s")
    print(f"  gradient           ours {b / t_grad:8.1f} img/s")
    print(f"  LRP EpsilonPlusFlat ours {b / t_lrp:8.1f} img/s | zennit {b / t_zennit:7.2f} img/s | "
          f"x{t_zennit / t_lrp:5.1f} | LRP/forward {t_lrp / t_fwd:4.2f} | max diff {err:.1e}")
    t_ig = timed(lambda: ig(variables, x, targets), max(1, FLAGS.repeats - 1))
    line = f"  IG {FLAGS.ig_steps} steps (GL)   ours {b / t_ig:8.2f} img/s"
    ig_row = cells[size][f"IG, {FLAGS.ig_steps} Gauss-Legendre steps"] = [rate(t_ig), "", ""]
    if not FLAGS.skip_captum:
      def captum_ig():
        return torch_peers.captum_integrated_gradients(torch, captum, tmodel, xt, targets,
                                                       steps=FLAGS.ig_steps,
                                                       internal_batch_size=FLAGS.ig_batch)
      start = time.perf_counter()
      theirs = torch_peers.to_nhwc(captum_ig())
      t_captum = time.perf_counter() - start
      err = float(np.max(np.abs(np.asarray(ig(variables, x,
                                              targets)) - theirs)) / np.max(np.abs(theirs)))
      line += f" | captum {b / t_captum:7.3f} img/s | x{t_captum / t_ig:5.1f} | max diff {err:.1e}"
      ig_row[1:] = [f"captum {rate(t_captum)}", f"{t_captum / t_ig:.1f}×"]
    print(line, flush=True)
  header = [""] + [f"{s}×{s} {c}" for s in sizes for c in ("ours", "peer", "ratio")]
  tables = {}
  show_table(tables, "explain", header, [[name] + [c for s in sizes for c in cells[s][name]]
                                         for name in cells[sizes[0]]])
  save_record(tables, batch=b, ig_batch=FLAGS.ig_batch, captum=not FLAGS.skip_captum)


if __name__ == "__main__":
  app.run(main)
