"""Checkpoints of any pytree (training states, variables, fitted method states) with orbax.

One small surface in front of orbax's ``CheckpointManager``: ``save`` writes a step atomically
(orbax writes into a temporary directory and renames it when complete), ``restore`` always
restores against a template of the expected structure, so NamedTuple states come back as they
went in. A JSON ``metadata`` dict (config, metrics) is stored beside each step.

Example:
  ckpt = Checkpoints("runs/cache/abc")
  ckpt.save(100, state, metadata={"seed": 0})
  state = ckpt.restore(state)           # latest step, same structure as the template
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpoints:
  """Numbered checkpoints of one pytree in ``directory`` (the newest ``max_to_keep`` kept;
  None keeps every one)."""

  def __init__(self, directory: str, *, max_to_keep: Optional[int] = 2):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options,
                                          item_names=("state", "metadata"))

  def latest_step(self) -> Optional[int]:
    """The newest complete step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every complete step kept, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, tree: Any, *, metadata: Optional[dict] = None) -> None:
    """Writes ``tree`` (and ``metadata``) as checkpoint ``step``."""
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), metadata=ocp.args.JsonSave(metadata or {})))
    self._manager.wait_until_finished()

  def restore(self, template: Any, *, step: Optional[int] = None) -> Any:
    """Restores checkpoint ``step`` (default: the latest) into the structure of ``template``."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract)))
    return restored.state

  def metadata(self, *, step: Optional[int] = None) -> dict:
    """The JSON metadata saved with checkpoint ``step`` (default: the latest)."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    return dict(restored.metadata)

  def close(self) -> None:
    self._manager.close()
