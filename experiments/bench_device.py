r"""Throughput on whatever accelerator is present, over all its local devices.

  python -m experiments.bench_device                          # ResNet-50, 64² and 224²
  python -m experiments.bench_device --precision=bfloat16     # bf16 matrix products
  python -m experiments.bench_device --model=resnet18 --sizes=32 --batch=4 --candidates=4

Every program runs data-parallel over every local device (the default mesh of
:mod:`debiasjax.parallel`: a global batch of ``--batch`` images per device, split over
``"data"``, the variables replicated) and is timed after compilation (median of ``--repeats``):
forward, input gradient, LRP (EpsilonPlusFlat), integrated gradients (``--ig_steps``
Gauss-Legendre nodes, as ``saliency_maps`` runs them), one AdamW training step, and random
perturbation search (candidates scored per second on a debias split of ``--split`` images).
When a CUDA build of torch imports, zennit's LRP and captum's IG on the same torchvision
network run in the same process and the ratio is printed; otherwise the table says so.
Prints a Markdown table for docs/benchmarks.md (``--record`` keeps it).
"""

from __future__ import annotations


from absl import flags

from experiments.cli import define_network_flags, define_record_flag, log, network_from_flags, \
    run_cli, save_record, show_table, timed

define_record_flag()
define_network_flags()
flags.DEFINE_list("sizes", ["64", "224"], "Image sides.")
flags.DEFINE_integer("batch", 64, "Images per device in a batch.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (median).")
flags.DEFINE_integer("ig_steps", 50, "Integrated-gradient steps.")
flags.DEFINE_integer("candidates", 32, "Random-perturbation candidates timed.")
flags.DEFINE_integer("split", 512, "Images in the debias split the search scores.")
FLAGS = flags.FLAGS


def cuda_peers():
  """``(torch, zennit, captum, torchvision)`` when a CUDA torch imports, else None."""
  try:
    from tests import torch_peers
    peers = torch_peers.import_torch_peers()
  except Exception:       # no torch, or torchvision that does not import
    return None
  return peers if peers[0].cuda.is_available() else None


def run():
  import jax
  import numpy as np
  import optax

  from debiasjax import explain as ex
  from debiasjax import evaluate, parallel, train
  from debiasjax.data.dataset import Split
  from debiasjax.methods import search
  from debiasjax.methods.objective import Objective

  model = network_from_flags()
  n = jax.local_device_count()
  b = FLAGS.batch * n
  peers = cuda_peers()
  device = jax.local_devices()[0]
  log(f"jax {jax.__version__}: {n} x {device.device_kind} ({device.platform}), {FLAGS.model}, "
      f"{FLAGS.precision}, global batch {b}; peers: "
      + ("zennit and captum on CUDA torch" if peers else "none (no CUDA build of torch imports)"))
  grad = jax.jit(lambda v, x, t: ex.gradient(lambda x: model.apply(v, x), x, t))
  lrp = jax.jit(lambda v, x, t: ex.lrp(model, v, x, t))
  trainer = train.supervised(model, optax.adamw(1e-3, weight_decay=1e-4))
  step = jax.jit(trainer.update)
  forward = jax.jit(model.apply)
  rows, sizes = {}, list(map(int, FLAGS.sizes))
  with jax.set_mesh(parallel.mesh()):
    for size in sizes:
      rng = np.random.default_rng(size)
      x_host = rng.normal(size=(b, size, size, 3)).astype(np.float32)
      variables = parallel.put(model.init(jax.random.key(0), x_host[:1]))
      x = parallel.put(x_host, parallel.DATA)
      t = parallel.put(rng.integers(0, 2, b).astype(np.int32), parallel.DATA)
      state = parallel.put(trainer.init(jax.random.key(1), variables))
      key = jax.random.key(2)
      rate = lambda seconds, count=b: count / seconds
      cells = {
          "forward (img/s)": rate(timed(lambda: forward(variables, x), FLAGS.repeats)),
          "input gradient (img/s)": rate(timed(lambda: grad(variables, x, t), FLAGS.repeats)),
          "LRP EpsilonPlusFlat (img/s)": rate(timed(lambda: lrp(variables, x, t),
                                                    FLAGS.repeats)),
          f"IG, {FLAGS.ig_steps} steps (img/s)": rate(timed(
              lambda: ex.integrated_gradients_in_groups(model.apply, variables, x, t,
                                                        steps=FLAGS.ig_steps, max_batch=128 * n),
              max(1, FLAGS.repeats // 2))),
          "training step, AdamW (img/s)": rate(timed(
              lambda: step(state, {"x": x, "y": t}, key)[0], FLAGS.repeats)),
      }
      split = Split(x=np.resize(x_host, (FLAGS.split, size, size, 3)),
                    y=rng.integers(0, 2, FLAGS.split), group=rng.integers(0, 2, FLAGS.split))
      rp = search.random_perturbation(objective=Objective("v2", "statistical_parity"),
                                      num_candidates=FLAGS.candidates, num_thresholds=101)
      score_fn = evaluate.score_function(model)
      cells["random perturbation (candidates/s)"] = rate(timed(
          lambda: rp.search(score_fn, variables, split, key).trace["score"], 1),
          FLAGS.candidates + 1)
      if peers:
        cells.update(_peer_cells(peers, FLAGS.model, x_host, np.asarray(t), cells))
      rows[size] = cells
      log(f"{size}x{size}: " + ", ".join(f"{k} {v:.4g}" for k, v in cells.items()
                                         if isinstance(v, float)))
  tables = {}
  names = list(rows[sizes[0]])
  show_table(tables, "device", [""] + [f"{s}×{s}" for s in sizes],
             [[k] + [_cell(rows[s][k]) for s in sizes] for k in names],
             f"{n} x {device.device_kind}, {FLAGS.model}, {FLAGS.precision}, {FLAGS.batch} images "
             "per device" + ("" if peers else "; peers not run: no CUDA build of torch imports"))
  save_record(tables, devices=n, device_kind=device.device_kind)


def _cell(v):
  return f"{v:.4g}" if isinstance(v, float) else str(v)


def _peer_cells(peers, model_name, x_host, targets, ours) -> dict:
  """zennit's LRP and captum's IG on CUDA (one GPU, as they run), with our ratio."""
  from tests import torch_peers
  torch, zennit, captum, torchvision = peers
  tmodel = getattr(torchvision.models, model_name)(num_classes=2).cuda().eval()
  xt = torch_peers.to_torch_images(torch, x_host).cuda()

  def sync(fn):
    def run():
      out = fn()
      torch.cuda.synchronize()
      return out
    return run
  b = len(x_host)
  z = b / timed(sync(lambda: torch_peers.zennit_epsilon_plus_flat(
      torch, zennit, tmodel, xt, targets, resnet=True)), FLAGS.repeats)
  c = b / timed(sync(lambda: torch_peers.captum_integrated_gradients(
      torch, captum, tmodel, xt, targets, steps=FLAGS.ig_steps, internal_batch_size=128)), 1)
  lrp_key = "LRP EpsilonPlusFlat (img/s)"
  ig_key = next(k for k in ours if k.startswith("IG"))
  return {"zennit LRP (img/s)": z, "ours / zennit": f"{ours[lrp_key] / z:.1f}×",
          "captum IG (img/s)": c, "ours / captum": f"{ours[ig_key] / c:.1f}×"}


if __name__ == "__main__":
  run_cli(run)
