"""Multi-host start-up and per-process data: one code path for 1 or N hosts.

Every process runs the same command. Before any other JAX call:

  distributed.initialize(coordinator_address=..., num_processes=...,
                         process_id=...)   # or no arguments: detected

Without arguments, `jax.distributed.initialize()` is called only when a
multi-host launcher is visible (Cloud TPU pod slices, SLURM, Open MPI), and
JAX detects the coordinator and this process's index from it, as its
cluster plug-ins do; on one machine nothing happens. Then each process reads
its own shard of the prompt stream (`process_shard()`), and host data moves
between processes with a few collectives, each a plain copy with one
process:

  allgather_rows(tree)        every process's rows, in process order
  allgather_objects(obj)      every process's JSON value (texts, states)
  host_rows(n)                the block of n rows this process scores
  to_host(x)                  a whole global array, on every host
  global_batch(tree, ...)     global arrays from each process's own rows
  global_from_host(tree, ...) global arrays from rows every process holds

(both `jax.make_array_from_process_local_data`). Only the leader
(`is_leader()`) writes metrics and files; Orbax saves and restores from
every process.
"""

import json
import os
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np


def launcher_world_size() -> int:
  """Process count announced by a multi-host launcher (1 when none)."""
  hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
  sizes = [len([h for h in hosts.split(",") if h and h != "localhost"])]
  for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
    if os.environ.get(var, "").isdigit():
      sizes.append(int(os.environ[var]))
  return max(sizes + [1])


def cluster_environment() -> str | None:
  """'cloud_tpu', 'slurm' or 'mpi' when that launcher started >1 process."""
  if launcher_world_size() <= 1:
    return None
  if "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    return "cloud_tpu"
  if os.environ.get("SLURM_NTASKS", "").isdigit():
    return "slurm"
  return "mpi"


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
  """Starts multi-host JAX when configured; a no-op for one process.

  Args:
    coordinator_address: 'host:port' of process 0, or None (detected).
    num_processes: total number of processes, or None (detected).
    process_id: this process's index, or None (detected).
  """
  if jax.distributed.is_initialized():
    return
  if num_processes is not None and num_processes <= 1:
    return
  if coordinator_address is None and num_processes is None:
    if cluster_environment() is None:
      return
    jax.distributed.initialize()
    return
  if num_processes is not None and (
      process_id is None or not 0 <= process_id < num_processes):
    raise ValueError(
        f"process_id={process_id} must be in [0, {num_processes}) when"
        f" num_processes={num_processes} is given")
  jax.distributed.initialize(
      coordinator_address=coordinator_address,
      num_processes=num_processes,
      process_id=process_id,
  )


def initialize_from_config(section: Any) -> None:
  """`initialize` from a config's `distributed` section (empty/0: detect)."""
  initialize(
      coordinator_address=section.coordinator_address or None,
      num_processes=section.num_processes or None,
      process_id=section.process_id if section.num_processes else None,
  )


def is_leader() -> bool:
  """True on the process that writes metrics, configs and summaries."""
  return jax.process_index() == 0


def process_shard() -> tuple[int, int]:
  """(shard_index, shard_count) of this process's slice of a data stream."""
  return jax.process_index(), jax.process_count()


def global_batch(local_tree: Any, mesh: jax.sharding.Mesh, rules) -> Any:
  """Global arrays from each process's rows, split over the batch axes.

  Every leaf's first dimension is this process's rows (its shard of the
  global batch, in process order); the result's first dimension is the
  sum over processes, sharded by `rules`' 'batch' name on `mesh`. With one
  process this is a plain sharded `device_put`.

  Args:
    local_tree: numpy arrays [rows_here, ...] (scalars are replicated).
    mesh: the run's mesh over all global devices.
    rules: logical-axis rules (e.g. sharding.TRAIN_RULES).

  Returns:
    The same tree of global `jax.Array`s.
  """
  from mathrl import sharding  # pylint: disable=g-import-not-at-top

  count = jax.process_count()

  def one(x):
    x = np.asarray(x)
    shape = (x.shape[0] * count,) + x.shape[1:] if x.ndim else ()
    axes = ("batch",) + (None,) * (x.ndim - 1) if x.ndim else ()
    spec = sharding.logical_to_spec(axes, shape, mesh, rules)
    named = jax.sharding.NamedSharding(mesh, spec)
    return jax.make_array_from_process_local_data(named, x, shape)

  return jax.tree.map(one, local_tree)


# --- host data across processes ----------------------------------------------
# Each is a plain copy with one process, so single-host runs take the same
# code path at no cost. With several, every process must call them at the
# same point (they are collectives).


def host_rows(num_rows: int) -> slice:
  """This process's block of `num_rows` rows: [i·n/c, (i+1)·n/c).

  The rows a process reads, samples and scores; with equal shares (n a
  multiple of the process count c) block i is exactly process i's rows in
  `allgather_rows`' result.
  """
  i, c = process_shard()
  return slice(i * num_rows // c, (i + 1) * num_rows // c)


def allgather_rows(tree: Any) -> Any:
  """Every process's rows, concatenated in process order, on every process.

  Args:
    tree: numpy arrays [rows_here, ...], the same shapes on every process.

  Returns:
    The same tree of numpy arrays [count · rows_here, ...].
  """
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  return jax.tree.map(
      lambda x: np.asarray(multihost_utils.process_allgather(
          np.asarray(x), tiled=True)), tree)


def allgather_objects(obj: Any) -> list[Any]:
  """[process 0's obj, process 1's obj, ...] on every process.

  `obj` is any JSON-serialisable value (texts, iterator states, samples);
  it travels as its UTF-8 JSON bytes.
  """
  if jax.process_count() == 1:
    return [obj]
  data = np.frombuffer(json.dumps(obj).encode("utf-8"), np.uint8)
  sizes = multihost_utils.process_allgather(np.asarray([data.size]))
  sizes = np.asarray(sizes).reshape(-1)
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  every = np.asarray(multihost_utils.process_allgather(padded))
  return [json.loads(every[p, :sizes[p]].tobytes().decode("utf-8"))
          for p in range(len(sizes))]


def sum_over_processes(values: dict[str, float]) -> dict[str, float]:
  """{key: Σ over processes} of per-process counts (same keys everywhere)."""
  if jax.process_count() == 1:
    return dict(values)
  keys = sorted(values)
  every = allgather_rows(np.asarray([[values[k] for k in keys]], np.float64))
  return {k: float(v) for k, v in zip(keys, every.sum(axis=0))}


def max_over_processes(value: int) -> int:
  """The largest of the processes' integers (e.g. padded prompt widths)."""
  return int(allgather_rows(np.asarray([value], np.int64)).max())


def to_host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-process) array, as numpy, everywhere."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def global_from_host(tree: Any, mesh: jax.sharding.Mesh, rules) -> Any:
  """Global arrays from host arrays that every process holds in full.

  Each leaf's first dimension is split by `rules`' 'batch' name on `mesh`;
  each process hands `jax.make_array_from_process_local_data` the rows its
  own devices hold (any mesh layout; all rows when the batch is not split
  over processes). With one process this is a sharded `device_put`.

  Args:
    tree: numpy arrays [rows, ...] (scalars are replicated), identical on
      every process (e.g. a rollout assembled from gathered rewards).
    mesh: the run's mesh over all global devices.
    rules: logical-axis rules (e.g. sharding.TRAIN_RULES).

  Returns:
    The same tree of global `jax.Array`s.
  """
  from mathrl import sharding  # pylint: disable=g-import-not-at-top

  def one(x):
    x = np.asarray(x)
    axes = ("batch",) + (None,) * (x.ndim - 1) if x.ndim else ()
    spec = sharding.logical_to_spec(axes, x.shape, mesh, rules)
    named = jax.sharding.NamedSharding(mesh, spec)
    if not x.ndim:
      return jax.make_array_from_process_local_data(named, x, ())
    index = named.addressable_devices_indices_map(x.shape).values()
    start = min(i[0].start or 0 for i in index)
    stop = max(x.shape[0] if i[0].stop is None else i[0].stop
               for i in index)
    return jax.make_array_from_process_local_data(
        named, x[start:stop], x.shape)

  return jax.tree.map(one, tree)
