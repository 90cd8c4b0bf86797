"""mathrl.distributed (one process here) and mathrl.preemption."""

import os
import pathlib
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import conftest
from mathrl import distributed
from mathrl import preemption
from mathrl import sharding

ROOT = pathlib.Path(__file__).resolve().parents[1]
_LAUNCHER_VARS = ("TPU_WORKER_HOSTNAMES", "SLURM_NTASKS",
                  "OMPI_COMM_WORLD_SIZE")


@pytest.fixture
def no_launcher(monkeypatch):
  for var in _LAUNCHER_VARS:
    monkeypatch.delenv(var, raising=False)


def test_cluster_environment_detection(monkeypatch, no_launcher):
  assert distributed.cluster_environment() is None
  # tpu_env's one-host placeholder is not a pod slice.
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "localhost")
  assert distributed.launcher_world_size() == 1
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.2,10.0.0.3")
  assert distributed.launcher_world_size() == 2
  assert distributed.cluster_environment() == "cloud_tpu"
  monkeypatch.delenv("TPU_WORKER_HOSTNAMES")
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert distributed.cluster_environment() == "slurm"


def test_initialize_is_a_noop_for_one_process(no_launcher):
  distributed.initialize()
  distributed.initialize(num_processes=1)
  assert not jax.distributed.is_initialized()
  assert distributed.is_leader()
  assert distributed.process_shard() == (0, 1)


def test_initialize_rejects_a_bad_process_id():
  with pytest.raises(ValueError, match="process_id=2"):
    distributed.initialize(coordinator_address="127.0.0.1:1234",
                           num_processes=2, process_id=2)


def test_global_batch_shards_rows_over_the_batch_axes():
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  rows = {"tokens": np.arange(24, dtype=np.int32).reshape(8, 3),
          "progress": np.float32(0.5)}
  out = distributed.global_batch(rows, mesh, sharding.TRAIN_RULES)
  np.testing.assert_array_equal(np.asarray(out["tokens"]), rows["tokens"])
  assert out["tokens"].sharding.spec == jax.sharding.PartitionSpec(
      ("data", "fsdp"), None)
  # 8 rows over data×fsdp = 4 shards: 2 rows per device.
  assert out["tokens"].addressable_shards[0].data.shape == (2, 3)
  assert float(out["progress"]) == 0.5


def test_gathers_are_copies_with_one_process():
  rows = {"r": np.arange(6).reshape(3, 2)}
  np.testing.assert_array_equal(distributed.allgather_rows(rows)["r"],
                                rows["r"])
  assert distributed.allgather_objects({"a": [1, "x"]}) == [{"a": [1, "x"]}]
  assert distributed.host_rows(10) == slice(0, 10)
  assert distributed.max_over_processes(7) == 7
  assert distributed.sum_over_processes({"n": 2.0}) == {"n": 2.0}
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  placed = distributed.global_from_host(
      {"x": np.arange(16.0).reshape(8, 2), "s": np.float32(3)}, mesh,
      sharding.TRAIN_RULES)
  assert placed["x"].sharding.spec == jax.sharding.PartitionSpec(
      ("data", "fsdp"), None)
  np.testing.assert_array_equal(distributed.to_host(placed["x"]),
                                np.arange(16.0).reshape(8, 2))
  assert float(placed["s"]) == 3.0


def test_guard_restores_the_previous_handler():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.PreemptionGuard() as guard:
    handler = guard._handler  # pylint: disable=protected-access
    assert signal.getsignal(signal.SIGTERM) == handler
    assert not guard.should_stop(0)
  assert signal.getsignal(signal.SIGTERM) == before


_LOOP = """
import os, signal, sys
from mathrl import preemption
with preemption.PreemptionGuard() as guard:
  for step in range(1, 100):
    if step == 3:
      os.kill(os.getpid(), signal.SIGTERM)   # arrives mid-step
    print("finished step", step, flush=True)
    if guard.should_stop(step):
      print("checkpoint", step, flush=True)
      guard.exit()
"""


def test_sigterm_finishes_the_step_checkpoints_and_exits_75():
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", _LOOP], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == preemption.EXIT_CODE == 75
  assert out.stdout.split("\n")[-3:] == [
      "finished step 3", "checkpoint 3", ""]


_PROCESS = """
import os, sys
os.environ["XLA_FLAGS"] += " --xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax
import numpy as np
from mathrl import distributed, sharding
jax.config.update("jax_cpu_collectives_implementation", "gloo")
pid, port = int(sys.argv[1]), sys.argv[2]
distributed.initialize(coordinator_address="127.0.0.1:" + port,
                       num_processes=2, process_id=pid)
mesh = sharding.make_mesh(data=-1)
index, count = distributed.process_shard()
rows = np.arange(24, dtype=np.float32).reshape(8, 3)[index * 4:index * 4 + 4]
x = distributed.global_batch({"x": rows}, mesh, sharding.TRAIN_RULES)["x"]
total = jax.jit(lambda x: x.sum(), out_shardings=jax.sharding.NamedSharding(
    mesh, jax.sharding.PartitionSpec()))(x)
full = np.arange(24, dtype=np.float32).reshape(8, 3)  # held by both
y = distributed.global_from_host({"y": full}, mesh, sharding.TRAIN_RULES)["y"]
objs = distributed.allgather_objects({"p": index, "t": "\u00e9" * (index + 1)})
print(index, count, jax.device_count(), x.shape, float(total),
      distributed.is_leader(), distributed.host_rows(8),
      float(distributed.to_host(y).sum()), y.addressable_shards[0].index,
      distributed.max_over_processes(index + 3),
      distributed.sum_over_processes({"n": index + 1.0}), objs, flush=True)
"""


def test_two_processes_assemble_one_global_batch():
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = str(s.getsockname()[1])
  env = dict(os.environ, XLA_FLAGS=conftest.SUITE_XLA_FLAGS)
  procs = [subprocess.Popen([sys.executable, "-c", _PROCESS, str(i), port],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
  # 2 processes × 4 devices; each gave rows 4i..4i+3 of arange(24) as
  # [8, 3]: the global batch is all 8 rows, sum 0 + 1 + ... + 23 = 276.
  # From the full rows held by both, process i places rows i (one per
  # device: its first shard is row 4i). Gathered: max(0+3, 1+3) = 4,
  # 1 + 2 = 3, and both processes' objects in process order.
  # (Gloo prints its connections first; the result is the last line.)
  objs = "[{'p': 0, 't': 'é'}, {'p': 1, 't': 'éé'}]"
  assert [o[0].strip().split("\n")[-1] for o in outs] == [
      "0 2 8 (8, 3) 276.0 True slice(0, 4, None) 276.0"
      f" (slice(0, 1, None), slice(None, None, None)) 4 {{'n': 3.0}} {objs}",
      "1 2 8 (8, 3) 276.0 False slice(4, 8, None) 276.0"
      f" (slice(4, 5, None), slice(None, None, None)) 4 {{'n': 3.0}} {objs}"]
