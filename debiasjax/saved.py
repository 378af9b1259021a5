"""Saved debiased models: take the chosen model away, reload it anywhere JAX runs.

``save_debiased(path, debiased, example_x)`` writes a folder with everything the model decides
with, whatever its method family (post-processor, concept edit, new weights):

* ``scores.jax`` -- the network as a serialised ``jax.export`` program ``x -> P(y = 1)``, with the
  weights (and any concept edit compiled into the network) inside and a symbolic batch size;
* ``decide.jax`` -- the decision rule ``(scores, groups) -> P(positive decision)`` (a threshold,
  or a post-processor with its fitted state), likewise;
* ``variables.npz`` -- the network's variables (``/``-joined paths), to fine-tune or inspect;
* ``meta.json`` -- the label, the input shape and dtype, the rule's threshold when it has one,
  and :func:`debiasjax.report.provenance`.

``load_debiased(path)`` gives a :class:`SavedModel` whose ``scores``, ``decide`` and
``predict`` equal the in-memory model's (tests/saved_test.py), with no Flax module, method
object or debiasjax configuration needed: only JAX. The programs are compiled for the platform
they were saved on (pass ``platforms=("cpu", "cuda")`` to save for several).

Example:
  dj.save_debiased("models/leace", result.debiased["LEACE"], bench.test.x[:1])
  model = dj.load_debiased("models/leace")
  decisions = model.predict(images, groups)          # P(positive decision) per row
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax import export

from debiasjax import report
from debiasjax.evaluate import positive_probability

FILES = ("scores.jax", "decide.jax", "variables.npz", "meta.json")


class SavedModel(NamedTuple):
  """A reloaded debiased model: ``scores(x)`` = P(y = 1) [N], ``decide(scores, groups)`` =
  P(positive decision) [N], ``predict(x, groups)`` both in turn; ``variables`` the network's
  and ``meta`` what :func:`save_debiased` recorded."""
  scores: Callable
  decide: Callable
  variables: dict
  meta: dict

  def predict(self, x, groups):
    return self.decide(self.scores(x), groups)


def _exported(fn, *avals, platforms):
  return export.export(jax.jit(fn), platforms=platforms)(*avals).serialize()


def save_debiased(path: str, debiased: Any, example_x, *, label: str = "",
                  overwrite: bool = False, platforms: Optional[Sequence[str]] = None) -> str:
  """Writes ``debiased`` (a :class:`~debiasjax.debias.Debiased`) into the folder ``path``
  (atomically: the folder appears complete or not at all); ``example_x`` is one input (or a
  batch) giving the shape and dtype of a row. Refuses an existing ``path`` unless
  ``overwrite``. Returns ``path``."""
  for field in ("apply_fn", "variables", "decide"):
    if not hasattr(debiased, field):
      raise ValueError(f"debiased: expected a Debiased (apply_fn, variables, decide, state), "
                       f"got {type(debiased).__name__}")
  x = np.asarray(example_x)
  if x.ndim < 2:
    raise ValueError(f"example_x: expected a batch [N, ...] of at least one row, got shape "
                     f"{x.shape}")
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"{path} exists; choose another folder or pass overwrite=True")
  batch, = export.symbolic_shape("batch")
  row = jax.ShapeDtypeStruct((batch,) + x.shape[1:], x.dtype)
  scores_blob = _exported(lambda xs: positive_probability(debiased.apply_fn(debiased.variables,
                                                                             xs)),
                          row, platforms=platforms)
  decide_blob = _exported(lambda s, g: jnp.asarray(debiased.decide(s, g), jnp.float32),
                          jax.ShapeDtypeStruct((batch,), jnp.float32),
                          jax.ShapeDtypeStruct((batch,), jnp.int32), platforms=platforms)
  flat = flat_variables(debiased.variables)
  threshold = getattr(getattr(debiased, "state", None), "threshold", None)
  meta = {"label": label, "input_shape": list(x.shape[1:]), "input_dtype": str(x.dtype),
          "threshold": (float(threshold) if threshold is not None and np.ndim(threshold) == 0
                        else None),
          "files": list(FILES), "provenance": report.provenance()}
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  stage = tempfile.mkdtemp(dir=parent, prefix=".saving-")
  try:
    for name, blob in (("scores.jax", scores_blob), ("decide.jax", decide_blob)):
      with open(os.path.join(stage, name), "wb") as f:
        f.write(blob)
    np.savez(os.path.join(stage, "variables.npz"), **flat)
    with open(os.path.join(stage, "meta.json"), "w") as f:
      json.dump(meta, f, indent=2)
    os.chmod(stage, 0o777 & ~report.umask())
    if os.path.exists(path):
      shutil.rmtree(path)
    os.replace(stage, path)
  finally:
    shutil.rmtree(stage, ignore_errors=True)
  return path


def flat_variables(variables) -> dict:
  """``{"params/stage1/conv/kernel": array, ...}``: every leaf by its ``/``-joined path (dict
  keys; an edit's state by its fields), as ``variables.npz`` holds them."""
  return {jax.tree_util.keystr(path, simple=True, separator="/"): np.asarray(v) for path, v in
          jax.tree_util.tree_leaves_with_path(jax.device_get(variables))}


def load_debiased(path: str) -> SavedModel:
  """The model :func:`save_debiased` wrote to ``path``."""
  missing = [name for name in FILES if not os.path.isfile(os.path.join(path, name))]
  if missing:
    raise FileNotFoundError(f"{path}: not a saved debiased model (missing {missing})")
  programs = {}
  for name in ("scores.jax", "decide.jax"):
    with open(os.path.join(path, name), "rb") as f:
      programs[name] = export.deserialize(bytearray(f.read()))
  with open(os.path.join(path, "meta.json")) as f:
    meta = json.load(f)
  with np.load(os.path.join(path, "variables.npz")) as f:
    variables = traverse_util.unflatten_dict({tuple(k.split("/")): f[k] for k in f.files})
  shape, dtype = tuple(meta["input_shape"]), np.dtype(meta["input_dtype"])

  def scores(x):
    x = np.asarray(x, dtype)
    if x.shape[1:] != shape:
      raise ValueError(f"x: expected rows of shape {shape}, got a batch of shape {x.shape}")
    return programs["scores.jax"].call(x)

  def decide(s, groups):
    return programs["decide.jax"].call(np.asarray(s, np.float32), np.asarray(groups, np.int32))

  return SavedModel(scores, decide, variables, meta)
