"""What the command-line programs share: printing, the recorded command, default run folders,
and one-line errors for bad input."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags


flags.DEFINE_string("mesh", "", "The device layout, 'data=D,models=M': batches split over D "
                    "devices, stacks of models (candidates, seeds, λ) over M (default: every "
                    "device on data).")
flags.DEFINE_string("coordinator_address", "", "host:port of process 0 in a multi-process run "
                    "(with --num_processes and --process_id; a TPU slice, Slurm or Open MPI is "
                    "detected without them).")
flags.DEFINE_integer("num_processes", None, "Processes of a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")


def define_flags(config_file: str, workdir_default: str):
  """``--config`` (an ml_collections file of ``experiments/configs``, with an optional
  ``:arg``), ``--workdir`` and ``--overwrite``; returns the config flag."""
  try:      # ml_collections reads the --config.<field> overrides of sys.argv here
    config = config_flags.DEFINE_config_file(
        "config", os.path.join(os.path.dirname(__file__), "configs", config_file),
        "The configuration file (and an optional ':arg').", lock_config=True)
  except (AttributeError, KeyError) as error:
    _unknown_field(error, sys.argv)
  flags.DEFINE_string("workdir", None, f"Output folder (default {workdir_default}).")
  flags.DEFINE_bool("overwrite", False, "Allow writing into a workdir that holds results.")
  return config


def define_network_flags() -> None:
  """``--model`` (a ResNet of ``models.RESNETS``) and ``--precision`` (its computation dtype)
  for the device programs (:func:`network_from_flags`)."""
  flags.DEFINE_enum("model", "resnet50", ["resnet18", "resnet34", "resnet50"], "The network.")
  flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                    "Computation dtype of the network (parameters stay float32).")


def network_from_flags():
  """The two-class ResNet of ``--model`` computing in ``--precision``."""
  import jax.numpy as jnp
  from debiasjax import models
  dtype = jnp.bfloat16 if flags.FLAGS.precision == "bfloat16" else jnp.float32
  return models.RESNETS[flags.FLAGS.model](num_classes=2, dtype=dtype)


def define_record_flag() -> None:
  """``--record``: where a program writes the tables it prints (see :func:`save_record`)."""
  flags.DEFINE_string("record", None, "Also write the printed tables (Markdown), the command and "
                      "the provenance to this JSON file (python -m experiments.regenerate keeps "
                      "them in docs/results/ and quotes them in the docs).")


def show_table(tables: dict, name: str, header, rows, note: str = "") -> None:
  """Prints a Markdown table (and a note under it) and keeps it in ``tables[name]``."""
  from debiasjax.report import markdown_table
  tables[name] = markdown_table(header, rows) + (f"\n\n{note}" if note else "")
  print(f"\n{tables[name]}", flush=True)


def save_record(tables: dict, **extra) -> None:
  """With ``--record=PATH``: ``{"command", "provenance", "tables", **extra}`` written atomically
  to PATH, the record ``experiments.regenerate`` renders into the docs."""
  from debiasjax.parallel import is_primary
  path = flags.FLAGS.record
  if path and is_primary():
    from debiasjax import report
    report.atomic_write(path, json.dumps({"command": command_line(),
                                          "provenance": report.provenance(), "tables": tables,
                                          **extra}, indent=1, default=str) + "\n")
    print(f"wrote {path}", flush=True)


def timed(fn, repeats: int, warmup: int = 1) -> float:
  """Median wall time of ``fn()`` over ``repeats`` calls (results ready), after ``warmup``."""
  import statistics
  import jax
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def log(message: str) -> None:
  """Prints a line; in a multi-process run tagged with the process index (a program that has
  not started JAX's multi-process runtime, e.g. ``regenerate``, starts no JAX backend here)."""
  jax = sys.modules.get("jax")
  several = jax is not None and jax.distributed.is_initialized() and jax.process_count() > 1
  print(f"[process {jax.process_index()}] {message}" if several else message, flush=True)


def command_line() -> str:
  """The command as the user typed it: ``$DEBIASJAX_COMMAND`` when a script of ``scripts/`` set
  it, else the module form."""
  if os.environ.get("DEBIASJAX_COMMAND"):
    return os.environ["DEBIASJAX_COMMAND"].strip()
  module = os.path.splitext(os.path.relpath(sys.argv[0]))[0].replace(os.sep, ".")
  return f"python -m {module} " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def overrides(argv=None) -> list[str]:
  """``field=value`` of every ``--config.<path>=<value>`` of the command line (the config
  file's argument as ``config=<arg>``), in order; the cache folder left out."""
  out = []
  for arg in (sys.argv if argv is None else argv)[1:]:
    name, _, value = arg.lstrip("-").partition("=")
    if name == "config" and ":" in value:
      out += [t for t in value.split(":", 1)[1].split(",") if t]
    elif name.startswith("config.") and name != "config.cache_dir":
      out.append(f"{name.split('.')[-1]}={value}")
  return out


def default_workdir(name: str, argv=None) -> str:
  """``runs/<time>-<name>[-<what differs from the defaults>]``, e.g.
  ``runs/20261130-101500-faces-resnet18-phi=0.9-methods=leace``."""
  parts = [name] + [re.sub(r"[^A-Za-z0-9_.,=+-]+", "_", o) for o in overrides(argv)
                    if o not in name.split("-")]
  label = "-".join(parts)[:120]
  return os.path.join("runs", f"{time.strftime('%Y%m%d-%H%M%S')}-{label}")


def compilation_cache(directory: str = "") -> str:
  """Keeps compiled programs on disk (JAX's persistent compilation cache), so a command run
  again, or a refit that compiles the same program, loads them instead of compiling: in
  ``directory``, ``$DEBIASJAX_COMPILATION_CACHE``, or ``~/.cache/debiasjax/xla``."""
  import jax
  directory = directory or os.environ.get("DEBIASJAX_COMPILATION_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "debiasjax", "xla")
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return directory


def _fail(message: str) -> None:
  print(f"error: {message}", file=sys.stderr)
  sys.exit(2)


def _unknown_field(error, argv) -> None:
  """One line for a ``--config.<field>`` override the configuration does not have."""
  text = str(error).replace("\\", "")
  found = re.search(r"'(\w+)'", text)
  field = found.group(1) if found else text
  maybe = re.search(r'Did you mean "(\w+)"', text)
  given = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")
           and a.split("=")[0].split(".")[-1] == field]
  _fail(f"{given[0] if given else field}: the configuration has no field {field!r}"
        + (f"; did you mean {maybe.group(1)!r}?" if maybe else
           " (a run's report.md lists every field under Configuration)"))


def parse_flags(argv):
  """absl's flag parsing with every mistake as one line on stderr (exit status 2): an unknown
  flag or ``--config.<field>``, a value of the wrong type, a bad config argument, or a stray
  positional argument."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as error:
    message = str(error)
    if "Traceback" in message:      # an error of the config file, wrapped with its traceback
      message = f"{message.split(':')[0]}: {message.strip().splitlines()[-1]}"
    _fail(f"{message} (--helpshort lists the flags)")
  except (AttributeError, KeyError) as error:
    _unknown_field(error, argv)
  if len(rest) > 1:
    _fail(f"unexpected arguments {rest[1:]}; flags are written --name=value")
  return rest


def run_cli(run_fn) -> None:
  """``app.run`` of :func:`cli` (``run_fn``) with :func:`parse_flags`."""
  app.run(cli(run_fn), flags_parser=parse_flags)


def cli(run_fn):
  """An ``app.run`` main that starts the multi-process runtime when there is one, sets the
  ``--mesh`` layout, calls ``run_fn()`` (with the compilation cache on) and turns bad input into
  one line on stderr."""
  def main(argv):
    del argv                                 # parse_flags has refused positional arguments
    logging.set_verbosity(logging.WARNING)   # orbax logs every checkpoint step at INFO
    try:
      import jax
      from debiasjax import parallel
      FLAGS = flags.FLAGS
      parallel.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
      compilation_cache()
      with jax.set_mesh(parallel.parse(FLAGS.mesh)) if FLAGS.mesh else contextlib.nullcontext():
        run_fn()
    except (ValueError, FileNotFoundError, FileExistsError) as error:
      _fail(str(error))
  return main
