"""The device layout (debiasjax.parallel): mesh building and flags in-process; every sharded
path against its one-device result, and a two-process run against a one-process run, in
subprocesses (the number of devices and processes is fixed before JAX starts)."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from debiasjax import parallel

HERE = os.path.dirname(os.path.abspath(__file__))


def test_one_device_places_nothing():
  assert parallel.current() is None
  assert parallel.size(parallel.DATA) == parallel.size(parallel.EVERY) == 1
  x = np.ones((3, 2))
  assert parallel.constrain(x, parallel.DATA) is x
  assert parallel.row_multiple(5) == 5
  assert parallel.local_block(parallel.sharding(parallel.DATA), (7, 3)) == (slice(0, 7),
                                                                          slice(0, 3))


def test_a_one_device_mesh_leaves_every_axis_out():
  m = parallel.parse("")
  assert m.axis_names == (parallel.DATA, parallel.MODELS) and m.shape[parallel.DATA] == 1
  assert parallel._spec(m, (parallel.DATA, None)) == P()
  with jax.set_mesh(m):
    assert parallel.current() is m
    assert parallel.put(np.ones((3, 2)), parallel.DATA).shape == (3, 2)
    out = parallel.stacked(lambda a: a * 2)(np.arange(3.0))
  np.testing.assert_array_equal(out, [0, 2, 4])


@pytest.mark.parametrize("spec, message", [
    ("data=2", "data x models = 1"), ("models=3", "models: expected a divisor"),
    ("data=0", "data: expected a positive int"), ("gpus=2", "mesh: expected 'data=D"),
    ("data=1,data=1", "mesh: expected"), ("data", "mesh: expected")])
def test_bad_mesh_flags_name_what_was_expected(spec, message):
  with pytest.raises(ValueError, match=message):
    parallel.parse(spec)


def test_a_mesh_without_a_data_axis_is_refused():
  with jax.set_mesh(jax.make_mesh((1,), ("batch",))):
    with pytest.raises(ValueError, match="mesh: expected a 'data' axis"):
      parallel.current()


def test_initialize_needs_the_three_explicit_settings_together(monkeypatch):
  with pytest.raises(ValueError, match="together"):
    parallel.initialize("localhost:1234")
  with pytest.raises(ValueError, match="process_id: expected 0..1"):
    parallel.initialize("localhost:1234", 2, 2)
  for name in ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "SLURM_NTASKS",
               "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE"):
    monkeypatch.delenv(name, raising=False)
  assert parallel.detected_cluster() is None
  assert parallel.initialize() is False             # a lone process starts nothing
  monkeypatch.setenv("SLURM_JOB_ID", "7")
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert parallel.detected_cluster() == "slurm"
  monkeypatch.setenv("SLURM_NTASKS", "1")
  assert parallel.detected_cluster() is None
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "t0,t1")
  assert parallel.detected_cluster() == "tpu"


def _env(devices: int) -> dict:
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
          "JAX_PLATFORMS": "cpu"}


def test_every_sharded_path_equals_one_device():
  """Training (one model and K stacked), scores, activations, LRP, IG, the searches'
  populations and threshold-optimizer bootstraps on 8 devices equal one device, laid out as
  documented (tests/sharded_worker.py)."""
  out = subprocess.run([sys.executable, os.path.join(HERE, "sharded_worker.py")], env=_env(8),
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-4000:]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_train_checkpoint_and_restore_to_the_one_process_parameters(tmp_path):
  """Two jax.distributed processes of 4 CPU devices each (every process feeding only its rows,
  orbax saving and restoring from both) end with the parameters and scores of one process on
  8 devices (tests/distributed_worker.py)."""
  worker = os.path.join(HERE, "distributed_worker.py")
  one, two = tmp_path / "one", tmp_path / "two"
  one.mkdir(), two.mkdir()
  port = str(_free_port())
  procs = [subprocess.Popen([sys.executable, worker, str(i), "2", port, str(two)], env=_env(4),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  single = subprocess.run([sys.executable, worker, "0", "1", "0", str(one)], env=_env(8),
                          capture_output=True, text=True, timeout=300)
  logs = [p.communicate(timeout=300)[0] for p in procs]
  assert single.returncode == 0, single.stderr[-3000:]
  for i, (p, log) in enumerate(zip(procs, logs)):
    assert p.returncode == 0 and f"process {i}: ok" in log, log[-3000:]
  a, b = np.load(one / "result.npz"), np.load(two / "result.npz")
  assert sorted(a.files) == sorted(b.files) and "head/kernel" in a.files
  for name in a.files:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-6, err_msg=name)
  assert sorted(os.listdir(two / "checkpoints")) == ["3", "6"]
