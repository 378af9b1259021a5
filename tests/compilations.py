"""Counting compilations: how many programs JAX lowers (hence compiles, or loads from the
persistent cache) inside a block."""

import contextlib

import jax

LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"


@contextlib.contextmanager
def count_compilations():
  """Yields a list that collects the name of every function lowered inside the block."""
  lowered = []

  def listener(event, duration, **metadata):
    del duration
    if event == LOWERING_EVENT:
      lowered.append(metadata.get("fun_name"))

  jax.monitoring.register_event_duration_secs_listener(listener)
  try:
    yield lowered
  finally:
    jax.monitoring.unregister_event_duration_listener(listener)
