r"""Benchmark: LRP (EpsilonPlusFlat) and integrated gradients against zennit and captum.

  python -m experiments.bench_explain                    # ~20 minutes on 2 CPU cores (captum IG dominates)
  python -m experiments.bench_explain --sizes=64 --skip_captum

One torchvision ResNet-18 (1000 classes, random weights, random BatchNorm statistics) and its
exported Flax twin, the same random batch (64 images at each size). Ours: jit-compiled, timed
after compilation (median of repeats); peers: torch on ``--threads`` threads, zennit with its
ResNet canonizer (composite built per call, as zennit is used), captum IG with Gauss-Legendre
and ``internal_batch_size=512``. Prints images per second, our speed-up, LRP time / forward
time, and the largest difference between our and the peer's maps relative to max |R|.
Needs the test requirements (torch, zennit, captum). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.metadata
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

flags.DEFINE_list("sizes", ["64", "128"], "Image sizes.")
flags.DEFINE_integer("batch", 64, "Images per batch.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (peers' IG: 1).")
flags.DEFINE_integer("ig_steps", 50, "Integrated-gradient steps.")
flags.DEFINE_integer("threads", 2, "torch threads.")
flags.DEFINE_bool("skip_captum", False, "Skip captum's IG (the slowest peer).")
FLAGS = flags.FLAGS


def timed(fn, repeats: int, warmup: int = 1) -> float:
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv):
  del argv
  from debiasjax import explain as ex
  from debiasjax.models import ResNet18
  from experiments import torch_peers

  torch, zennit, captum, torchvision = torch_peers.import_torch_peers()
  torch.set_num_threads(FLAGS.threads)
  torch.manual_seed(0)
  tmodel = torch_peers.randomize_batch_norm(torch, torchvision.models.resnet18(num_classes=1000))
  model = ResNet18(num_classes=1000)
  variables = jax.device_put(torch_peers.resnet_variables(tmodel))
  print(f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
        f"({FLAGS.threads} threads), zennit {importlib.metadata.version('zennit')}, captum {captum.__version__}")

  forward = jax.jit(lambda v, x: model.apply(v, x))
  grad = jax.jit(lambda v, x, t: ex.gradient(lambda x: model.apply(v, x), x, t))
  lrp = jax.jit(lambda v, x, t: ex.lrp(model, v, x, t))
  ig = jax.jit(lambda v, x, t: ex.integrated_gradients(lambda x: model.apply(v, x), x, t,
                                                       steps=FLAGS.ig_steps))
  b = FLAGS.batch
  for size in map(int, FLAGS.sizes):
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
    err = float(np.max(np.abs(np.asarray(lrp(variables, x, targets)) - theirs)) / np.max(np.abs(theirs)))
    print(f"\nResNet-18, batch {b}, {size}x{size}")
    print(f"  forward            ours {b / t_fwd:8.1f} img/s")
    print(f"  gradient           ours {b / t_grad:8.1f} img/s")
    print(f"  LRP EpsilonPlusFlat ours {b / t_lrp:8.1f} img/s | zennit {b / t_zennit:7.2f} img/s | "
          f"x{t_zennit / t_lrp:5.1f} | LRP/forward {t_lrp / t_fwd:4.2f} | max diff {err:.1e}")
    t_ig = timed(lambda: ig(variables, x, targets), max(1, FLAGS.repeats - 1))
    line = f"  IG {FLAGS.ig_steps} steps (GL)   ours {b / t_ig:8.2f} img/s"
    if not FLAGS.skip_captum:
      def captum_ig():
        return torch_peers.captum_integrated_gradients(torch, captum, tmodel, xt, targets,
                                                       steps=FLAGS.ig_steps, internal_batch_size=512)
      start = time.perf_counter()
      theirs = torch_peers.to_nhwc(captum_ig())
      t_captum = time.perf_counter() - start
      err = float(np.max(np.abs(np.asarray(ig(variables, x, targets)) - theirs)) / np.max(np.abs(theirs)))
      line += f" | captum {b / t_captum:7.3f} img/s | x{t_captum / t_ig:5.1f} | max diff {err:.1e}"
    print(line, flush=True)


if __name__ == "__main__":
  app.run(main)
