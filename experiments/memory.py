r"""Bytes per device of the big programs at real size, read from XLA's compiled memory analysis.

  python -m experiments.memory                      # ResNet-50, 224², global batch 256, 8 devices
  python -m experiments.memory --model=resnet18 --image=64 --devices=4

Nothing runs and no accelerator is needed: every program is lowered with abstract inputs laid
out on the mesh (the batch over ``"data"``, the variables replicated) and compiled, and
``compiled.memory_analysis()`` gives each device's argument, output and temporary bytes. On a
CPU the devices are XLA's fake host devices (``--devices`` sets their number before JAX
starts); on GPUs or TPUs the local accelerators are used as they are and ``--devices`` must
match them. Programs: one training step (AdamW, the main job's trainer), one LRP batch
(EpsilonPlusFlat) and one integrated-gradients step group (``--ig_nodes`` quadrature nodes).
"""

from __future__ import annotations

import os
import sys

from absl import flags

from experiments.cli import define_network_flags, network_from_flags

define_network_flags()
flags.DEFINE_integer("image", 224, "Image side (pixels).")
flags.DEFINE_integer("batch", 256, "Global batch (split over the devices).")
flags.DEFINE_integer("devices", 8, "Devices (fake host devices on a CPU).")
flags.DEFINE_integer("ig_nodes", 4, "Quadrature nodes in one integrated-gradients step group.")
FLAGS = flags.FLAGS


def _abstract(tree, sharding):
  import jax
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _row(name, compiled):
  m = compiled.memory_analysis()
  mib = lambda b: f"{b / 2**20:,.0f}"
  peak = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes \
      - m.alias_size_in_bytes
  return [name, mib(m.argument_size_in_bytes), mib(m.output_size_in_bytes),
          mib(m.temp_size_in_bytes), mib(m.alias_size_in_bytes), mib(peak)]


def run():
  import jax
  import jax.numpy as jnp
  import optax

  from debiasjax import parallel, train
  from debiasjax.explain.lrp import _lrp
  from debiasjax.explain.gradients import _compiled_group, step_groups
  from experiments.cli import save_record, show_table

  if jax.device_count() != FLAGS.devices:
    raise ValueError(f"devices: expected the {jax.device_count()} devices present, got "
                     f"{FLAGS.devices}")
  if FLAGS.batch % FLAGS.devices:
    raise ValueError(f"batch: expected a multiple of the {FLAGS.devices} devices, got "
                     f"{FLAGS.batch}")
  model = network_from_flags()
  b, s = FLAGS.batch, FLAGS.image
  mesh = parallel.mesh()
  rows, same = parallel.sharding(parallel.DATA, m=mesh), parallel.sharding(m=mesh)
  x = jax.ShapeDtypeStruct((b, s, s, 3), jnp.float32, sharding=rows)
  y = jax.ShapeDtypeStruct((b,), jnp.int32, sharding=rows)
  key = jax.random.key(0)
  variables = jax.eval_shape(model.init, key, jax.ShapeDtypeStruct((1, s, s, 3), jnp.float32))
  trainer = train.supervised(model, optax.adamw(1e-3, weight_decay=1e-4))
  state = _abstract(jax.eval_shape(trainer.init, key, variables), same)
  variables = _abstract(variables, same)
  num_params = sum(a.size for a in jax.tree.leaves(variables["params"]))

  out = []
  with jax.set_mesh(mesh):
    step = jax.jit(trainer.update).lower(state, {"x": x, "y": y}, key)
    out.append(_row("training step (AdamW)", step.compile()))
    explain = jax.jit(lambda v, x, t: _lrp(model, v, x, t)).lower(variables, x, y)
    out.append(_row("LRP batch (EpsilonPlusFlat)", explain.compile()))
    alphas, weights = step_groups(50, "gausslegendre", 1, FLAGS.ig_nodes)
    group = _compiled_group(model.apply).lower(variables, x, y, x, alphas[0], weights[0])
    out.append(_row(f"IG step group ({len(alphas[0])} nodes of 50)", group.compile()))
  header = ["program", "arguments MiB", "outputs MiB", "temporaries MiB", "aliased MiB",
            "total MiB"]
  tables = {}
  note = (f"{FLAGS.model}, {s}x{s}, global batch {b} over {FLAGS.devices} "
          f"{jax.devices()[0].platform} devices ({b // FLAGS.devices} images each), "
          f"{num_params / 1e6:.1f} M parameters replicated, {FLAGS.precision}; bytes per "
          "device from compiled.memory_analysis() (total = arguments + outputs + "
          "temporaries - aliased).")
  show_table(tables, "memory", header, out, note)
  save_record(tables)


def main():
  # The fake device count must be set before JAX starts.
  count = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--devices=")), "8")
  if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={count}").strip()
  from experiments.cli import define_record_flag, run_cli
  define_record_flag()
  run_cli(run)


if __name__ == "__main__":
  main()
