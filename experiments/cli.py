"""What the command-line programs share: printing, the recorded command, default run folders,
and one-line errors for bad input."""

from __future__ import annotations

import os
import shlex
import sys
import time

from absl import app, flags, logging
from ml_collections import config_flags


def define_flags(config_file: str, workdir_default: str):
  """``--config`` (an ml_collections file of ``experiments/configs``, with an optional
  ``:arg``), ``--workdir`` and ``--overwrite``; returns the config flag."""
  config = config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "configs", config_file),
      "The configuration file (and an optional ':arg').", lock_config=True)
  flags.DEFINE_string("workdir", None, f"Output folder (default {workdir_default}).")
  flags.DEFINE_bool("overwrite", False, "Allow writing into a workdir that holds results.")
  return config


def log(message: str) -> None:
  print(message, flush=True)


def command_line() -> str:
  """The command as the user typed it (module form)."""
  module = os.path.splitext(os.path.relpath(sys.argv[0]))[0].replace(os.sep, ".")
  return f"python -m {module} " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def default_workdir(name: str) -> str:
  """``runs/<time>-<name>``."""
  return os.path.join("runs", f"{time.strftime('%Y%m%d-%H%M%S')}-{name}")


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


def cli(run_fn):
  """An ``app.run`` main that calls ``run_fn()`` (with the compilation cache on) and turns bad
  input into one line on stderr."""
  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)   # orbax logs every checkpoint step at INFO
    compilation_cache()
    try:
      run_fn()
    except (ValueError, FileNotFoundError, FileExistsError) as error:
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)
  return main
