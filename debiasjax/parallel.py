"""The device layout: one mesh, two axes, and the few placements every compiled path uses.

The mesh (:func:`mesh`) has a ``"data"`` axis, over which the rows of a batch are split, and a
``"models"`` axis, over which stacks of models are split (search candidates, seeds, λ values).
A program chooses its layout once, with JAX's own context::

  with jax.set_mesh(parallel.mesh(models=2)):      # 8 devices: data 4 x models 2
    result = debiasjax.debias(...)

Without one, every device is on ``"data"`` (:func:`current`); on one device nothing is placed
and every path is the single-device program. Placement is by ``NamedSharding`` under ``jit``
(GSPMD propagates it through the program), so a sharded path computes what the unsharded one
does; only the order of cross-device sums can differ (results equal to float rounding).

Several hosts (a TPU slice, a Slurm allocation, several GPU machines) start JAX's runtime with
:func:`initialize` before anything else; each process then builds only its own rows of a global
batch (:func:`global_rows`, :func:`local_block`), and :func:`is_primary` says which one
writes results.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AbstractMesh, AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, MODELS = "data", "models"


def mesh(data: Optional[int] = None, models: int = 1, *,
         devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A ``(data, models)`` mesh over ``devices`` (default: every device of every process);
  ``data`` defaults to what ``models`` leaves. Axes are ``Auto``: shardings propagate."""
  devices = list(jax.devices() if devices is None else devices)
  for name, value in (("models", models), ("data", data if data is not None else 1)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name}: expected a positive int, got {value!r}")
  if data is None:
    if len(devices) % models:
      raise ValueError(f"models: expected a divisor of the {len(devices)} devices, got {models}")
    data = len(devices) // models
  if data * models != len(devices):
    raise ValueError(f"mesh: expected data x models = {len(devices)} (the devices), got "
                     f"{data} x {models}")
  return jax.make_mesh((data, models), (DATA, MODELS), axis_types=(AxisType.Auto,) * 2,
                       devices=devices)


def parse(spec: str) -> Mesh:
  """The mesh of a ``--mesh`` flag: ``"data=4,models=2"``, ``"models=8"`` or ``""`` (every
  device on ``data``)."""
  sizes = {}
  for part in filter(None, (p.strip() for p in spec.split(","))):
    name, sep, value = part.partition("=")
    if not sep or name not in (DATA, MODELS) or not value.isdigit() or name in sizes:
      raise ValueError(f"mesh: expected 'data=D,models=M' (either may be left out), got {spec!r}")
    sizes[name] = int(value)
  return mesh(sizes.get(DATA), sizes.get(MODELS, 1))


@functools.lru_cache(maxsize=1)
def _every_device_on_data() -> Mesh:
  return mesh()


def current() -> Optional[Union[Mesh, AbstractMesh]]:
  """The mesh the paths use: the one set with ``jax.set_mesh`` (it must have a ``"data"``
  axis; a ``"models"`` axis is optional), else every device on ``"data"`` when there is more
  than one device, else None (one device: nothing is placed)."""
  try:
    m = jax.sharding.get_mesh()
  except ValueError:                       # inside jit: the same mesh, without its devices
    m = jax.sharding.get_abstract_mesh()
  if not m.empty:
    if DATA not in m.axis_names:
      raise ValueError(f"mesh: expected a '{DATA}' axis (and optionally '{MODELS}'), got "
                       f"{m.axis_names}; build it with debiasjax.parallel.mesh")
    return m
  return _every_device_on_data() if jax.device_count() > 1 else None


def size(axis: Any, m: Optional[Mesh] = None) -> int:
  """Devices along ``axis`` (a name or a tuple of names) of the mesh ``m`` (default
  :func:`current`); 1 without one."""
  m = current() if m is None else m
  names = axis if isinstance(axis, tuple) else (axis,)
  return int(np.prod([m.shape[a] for a in names if m is not None and a in m.axis_names]))


EVERY = (DATA, MODELS)     # a leading axis split over every device (e.g. bootstrap resamples)


def _spec(m: Mesh, spec: Sequence[Any]) -> P:
  """``spec`` with the axes ``m`` lacks or has of size 1 left out (replicated)."""
  def keep(entry):
    names = tuple(a for a in (entry if isinstance(entry, tuple) else (entry,))
                  if a in m.axis_names and m.shape[a] > 1)
    return names[0] if len(names) == 1 else (names or None)
  kept = [keep(a) for a in spec]
  while kept and kept[-1] is None:
    kept.pop()
  return P(*kept)


def sharding(*spec: Optional[str], m: Optional[Mesh] = None) -> Optional[NamedSharding]:
  """``NamedSharding(mesh, P(*spec))`` on the current mesh (None without one); ``sharding()``
  is replicated."""
  m = current() if m is None else m
  return None if m is None else NamedSharding(m, _spec(m, spec))


def constrain(tree: Any, *spec: Optional[str]) -> Any:
  """Inside ``jit``: every leaf's leading axes laid out as ``spec`` (e.g. ``constrain(zs,
  MODELS)``); uneven sizes are padded by XLA. The identity without a mesh."""
  if current() is None:
    return tree
  return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(
      a, sharding(*spec[:jnp.ndim(a)])), tree)


def put(tree: Any, *spec: Optional[str]) -> Any:
  """Outside ``jit``: ``tree`` on the devices as ``spec`` says (``put(x)``: replicated).
  Leading sizes must be divisible by the axes they are split over (see :func:`pad_rows`)."""
  s = sharding(*spec)
  if s is None:
    return jax.device_put(tree)
  for leaf in jax.tree.leaves(tree):
    for axis, name in zip(np.shape(leaf), spec):
      if name is not None and axis % size(name):
        raise ValueError(f"put: a leading size {axis} cannot be split over the {size(name)} "
                         f"devices of '{name}'; pad it to a multiple first")
  return jax.tree.map(lambda a: jax.device_put(a, sharding(*spec[:np.ndim(a)])), tree)


def stacked(fn, axis: Any = MODELS):
  """``jit(vmap(fn))`` whose mapped (leading) axis is split over the mesh's ``axis``: a stack of
  models (search candidates, seeds, λ values, bootstrap resamples) spread over the devices,
  each device running its share of the stack. Every argument is mapped."""
  def run(*args):
    return jax.vmap(fn)(*constrain(args, axis))
  return jax.jit(run)


def row_multiple(batch_size: int) -> int:
  """``batch_size`` rounded up to a multiple of the ``"data"`` axis."""
  n = size(DATA)
  return -(-batch_size // n) * n


def local_block(s: Optional[NamedSharding], shape: Sequence[int]) -> tuple:
  """The slices of a global array of ``shape`` that this process's devices hold under the
  sharding ``s`` (every index in a one-process run or without a sharding)."""
  if s is None or jax.process_count() == 1:
    return tuple(slice(0, n) for n in shape)
  spans = list(s.addressable_devices_indices_map(tuple(shape)).values())
  return tuple(slice(min(sp[d].start or 0 for sp in spans),
                     max(n if sp[d].stop is None else sp[d].stop for sp in spans))
               for d, n in enumerate(shape))


def global_rows(batch: Any) -> Any:
  """A host batch (a pytree of arrays with one leading size, every process holding the same)
  on the devices, split over ``"data"``: each process puts only its own block of rows, with
  ``jax.make_array_from_process_local_data``."""
  s = sharding(DATA)
  if s is None:
    return jax.device_put(batch)

  def one(a):
    a = np.asarray(a)
    return jax.make_array_from_process_local_data(s, a[local_block(s, a.shape[:1])], a.shape)
  return jax.tree.map(one, batch)


def to_host(tree: Any) -> Any:
  """NumPy copies of ``tree``'s arrays, gathered from every process when they are spread over
  several (``multihost_utils.process_allgather``)."""
  def one(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(jax.device_get(a))
  return jax.tree.map(one, tree)


def is_primary() -> bool:
  """Whether this process writes results, figures and logs (process 0)."""
  return jax.process_index() == 0


def detected_cluster() -> Optional[str]:
  """The cluster JAX's runtime would detect from the environment: ``"tpu"`` (a multi-host
  Cloud TPU slice), ``"slurm"`` (a job step of several tasks), ``"mpi"`` (Open MPI) or None."""
  env = os.environ
  if env.get("TPU_WORKER_HOSTNAMES", "").count(",") or env.get("MEGASCALE_COORDINATOR_ADDRESS"):
    return "tpu"
  if int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_JOB_ID" in env:
    return "slurm"
  if int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1:
    return "mpi"
  return None


def initialize(coordinator_address: str = "", num_processes: Optional[int] = None,
               process_id: Optional[int] = None, *,
               local_device_ids: Optional[Sequence[int]] = None) -> bool:
  """Starts JAX's multi-process runtime (``jax.distributed.initialize``) when this is one of
  several processes: with the explicit coordinator ``host:port``, process count and id, or
  what the environment gives (TPU slice, Slurm, Open MPI). Call it before any other JAX call.
  Returns whether the runtime was started; a lone process on a lone machine starts nothing.
  """
  explicit = (bool(coordinator_address), num_processes is not None, process_id is not None)
  if any(explicit) and not all(explicit):
    raise ValueError("initialize: expected coordinator_address, num_processes and process_id "
                     f"together (or none, to detect the cluster), got coordinator_address="
                     f"{coordinator_address!r}, num_processes={num_processes!r}, "
                     f"process_id={process_id!r}")
  if all(explicit):
    if not 0 <= process_id < num_processes:
      raise ValueError(f"process_id: expected 0..{num_processes - 1}, got {process_id}")
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               local_device_ids=local_device_ids)
    return True
  if detected_cluster() is None:
    return False
  jax.distributed.initialize(local_device_ids=local_device_ids)
  return True
