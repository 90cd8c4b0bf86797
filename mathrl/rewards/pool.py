"""A small pool of worker processes with a hard wall-clock deadline per call.

Math verification runs sympy on text a model wrote, and sympy can take
unbounded time or memory on hostile input (`10^{10^{10}}`, deep nesting).
Signal-based timeouts (math-verify's own) only work in the main thread, so
the bound is enforced here instead, from the parent: every call is sent to a
persistent worker process over a socket, the parent waits at most
`timeout_s`, and a worker that misses its deadline is killed (SIGKILL) and
replaced in the background. The caller gets a `CallResult` with status
'timeout' and carries on.

Workers are fresh interpreters (`python -m mathrl.rewards.worker`, started
with fork+exec by `subprocess`), never `os.fork()` copies of the parent: the
trainer holds JAX threads, and a forked copy of a threaded process can
deadlock. A fresh interpreter also never re-runs the user's `__main__`, so
the pool works from scripts without a `__main__` guard and from notebooks.
Each worker caps its own address space (`memory_limit_mb`) and exits soon
after its parent does (EOF on the socket, or a watchdog thread when busy).
The pool closes its workers at interpreter exit (atexit).

Example:
  pool = ProcessPool(num_workers=2, init="mathrl.rewards.sympy_check:warmup")
  result = pool.call(sympy_check.check, ("1/2", "0.5"), timeout_s=3.0)
  if result.status == "ok": ...
"""

import atexit
import collections
import concurrent.futures
import dataclasses
import functools
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
import weakref
from multiprocessing import connection
from typing import Any, Callable, Sequence

import mathrl

_OK = "ok"
_TIMEOUT = "timeout"
_ERROR = "error"
_UNAVAILABLE = "unavailable"

# Pools alive in this process, closed at exit so no worker outlives us.
_LIVE_POOLS: "weakref.WeakSet[ProcessPool]" = weakref.WeakSet()


@dataclasses.dataclass(frozen=True)
class CallResult:
  """The outcome of one call in a worker.

  Attributes:
    status: 'ok' (value holds the return value), 'error' (the function
      raised; value holds a short description), 'timeout' (the deadline
      passed; the worker was killed), or 'unavailable' (no worker was free
      before the deadline).
    value: the return value, or an error description, or None.
    seconds: wall-clock seconds the call took, waiting included.
  """

  status: str
  value: Any
  seconds: float

  @property
  def ok(self) -> bool:
    return self.status == _OK


class _Worker:
  """One worker process and the parent's end of its socket."""

  def __init__(self, init: str | None, memory_limit_mb: int):
    parent_sock, child_sock = socket.socketpair()
    package_root = str(pathlib.Path(mathrl.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH", "")) if p
    )
    # Workers never touch an accelerator (keep JAX, if ever imported, on
    # CPU) and run one task at a time: no BLAS thread pools, whose per-thread
    # buffers would also eat into the address-space cap on big hosts.
    env["JAX_PLATFORMS"] = "cpu"
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
      env[var] = "1"
    args = [
        sys.executable,
        "-m",
        "mathrl.rewards.worker",
        "--fd",
        str(child_sock.fileno()),
        "--memory_limit_mb",
        str(memory_limit_mb),
        "--parent_pid",
        str(os.getpid()),
    ]
    if init:
      args += ["--init", init]
    self.process = subprocess.Popen(
        args,
        pass_fds=(child_sock.fileno(),),
        stdin=subprocess.DEVNULL,
        env=env,
        close_fds=True,
    )
    child_sock.close()
    self.conn = connection.Connection(parent_sock.detach())
    self.ready = False

  def poll_ready(self, timeout: float) -> bool:
    """True once the worker has reported that its imports are done."""
    if self.ready:
      return True
    try:
      if self.conn.poll(max(timeout, 0.0)):
        message = self.conn.recv()
        self.ready = message == "ready"
        if not self.ready:
          raise RuntimeError(f"worker start-up failed: {message!r:.300}")
    except (EOFError, OSError):
      return False
    return self.ready

  def alive(self) -> bool:
    return self.process.poll() is None

  def kill(self) -> None:
    """SIGKILL the process and reap it; safe to call twice."""
    if self.process.poll() is None:
      self.process.kill()
    try:
      self.process.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
      pass
    try:
      self.conn.close()
    except OSError:
      pass


class ProcessPool:
  """Persistent worker processes; each call has a hard wall-clock deadline.

  Thread-safe: `call` may run in many threads at once (each takes its own
  worker). `map` fans a batch out over all workers.

  Args:
    num_workers: number of worker processes.
    init: optional "module:function" run once in each worker before it
      reports ready (imports, warm-up), so start-up cost is not charged to
      the first calls' deadlines.
    memory_limit_mb: address-space cap of each worker (RLIMIT_AS, Linux);
      0 disables.
    start_timeout_s: how long the constructor waits for the first worker to
      become ready. Respawns after a kill are not waited for.
  """

  def __init__(
      self,
      num_workers: int = 2,
      *,
      init: str | None = None,
      memory_limit_mb: int = 4096,
      start_timeout_s: float = 120.0,
  ):
    if num_workers < 1:
      raise ValueError(f"ProcessPool: num_workers must be >= 1, got "
                       f"{num_workers}")
    self.num_workers = num_workers
    self._init = init
    self._memory_limit_mb = memory_limit_mb
    self._lock = threading.Lock()
    self._promote_lock = threading.Lock()
    self._idle: collections.deque[_Worker] = collections.deque()
    self._starting: list[_Worker] = []
    self._all: set[_Worker] = set()  # idle, starting and busy workers
    self._closed = False
    self._stats = collections.Counter()
    for _ in range(num_workers):
      self._starting.append(self._spawn())
    _LIVE_POOLS.add(self)
    if not self.wait_ready(start_timeout_s, count=1):
      self.close()
      raise RuntimeError(
          f"ProcessPool: no worker became ready within {start_timeout_s}s; "
          "check that `python -m mathrl.rewards.worker` runs in this "
          "environment."
      )

  def _spawn(self) -> _Worker:
    """Starts a worker; the caller holds the lock (or is the constructor)."""
    self._stats["spawned"] += 1  # under the caller's lock
    worker = _Worker(self._init, self._memory_limit_mb)
    self._all.add(worker)
    return worker

  def _top_up(self) -> None:
    """Starts workers until there are num_workers; the caller holds the lock.

    A failed start (e.g. out of processes) is counted and retried on a later
    call, so the pool degrades to fewer workers instead of raising.
    """
    while not self._closed and len(self._all) < self.num_workers:
      try:
        self._starting.append(self._spawn())
      except OSError:
        self._stats["spawn_failures"] += 1
        return

  def _promote_started(self, timeout: float) -> None:
    """Moves workers that finished starting into the idle queue.

    One thread at a time reads start-up messages (two readers of one
    socket could steal each other's messages); others just wait a little.
    """
    if not self._promote_lock.acquire(timeout=max(timeout, 0.0)):
      return
    try:
      self._promote_started_locked(timeout)
    finally:
      self._promote_lock.release()

  def _promote_started_locked(self, timeout: float) -> None:
    with self._lock:
      starting = list(self._starting)
    if not starting:
      if timeout > 0:
        time.sleep(min(timeout, 0.01))
      return
    conns = [w.conn for w in starting]
    try:
      connection.wait(conns, timeout=max(timeout, 0.0))
    except OSError:
      pass
    for worker in starting:
      try:
        ready = worker.poll_ready(0.0)
      except RuntimeError:
        ready = False
        worker.kill()
      with self._lock:
        if worker not in self._starting:
          continue
        if ready:
          self._starting.remove(worker)
          self._idle.append(worker)
        elif not worker.alive():
          self._starting.remove(worker)
          self._all.discard(worker)
          self._stats["start_failures"] += 1
          self._top_up()

  def wait_ready(self, timeout_s: float, count: int | None = None) -> bool:
    """Waits until `count` workers (default all) are ready; True if so."""
    count = self.num_workers if count is None else count
    deadline = time.monotonic() + timeout_s
    while True:
      with self._lock:
        n_ready = len(self._idle)
      if n_ready >= count:
        return True
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        return False
      self._promote_started(min(remaining, 0.1))

  def _acquire(self, deadline: float) -> _Worker | None:
    while True:
      with self._lock:
        if self._closed:
          raise RuntimeError("ProcessPool: the pool is closed.")
        while self._idle:
          worker = self._idle.popleft()
          if worker.alive():
            return worker
          worker.kill()
          self._all.discard(worker)
        self._top_up()
      remaining = deadline - time.monotonic()
      if remaining <= 0:
        return None
      self._promote_started(min(remaining, 0.05))

  def _release(self, worker: _Worker) -> None:
    with self._lock:
      if self._closed:
        worker.kill()
      else:
        self._idle.append(worker)

  def _replace(self, worker: _Worker) -> None:
    worker.kill()
    with self._lock:
      self._all.discard(worker)
      self._top_up()

  def _count(self, key: str) -> None:
    with self._lock:
      self._stats[key] += 1

  def call(
      self,
      fn: Callable[..., Any],
      args: Sequence[Any],
      *,
      timeout_s: float,
      wait_s: float | None = None,
  ) -> CallResult:
    """Runs `fn(*args)` in a worker, killing it if it takes over `timeout_s`.

    Args:
      fn: a module-level function (pickled by reference, so the worker must
        be able to import it).
      args: positional arguments (picklable).
      timeout_s: wall-clock bound of the call. With `wait_s` None this
        includes waiting for a free worker, so the call returns within
        about `timeout_s` whatever happens.
      wait_s: if given, waiting for a free worker has its own bound and
        `timeout_s` counts from the moment the work is handed over (batch
        scoring uses this so items queued behind a respawn are not lost).

    Returns:
      A CallResult; never raises for a slow or failing `fn`.
    """
    start = time.monotonic()
    worker = self._acquire(start + (timeout_s if wait_s is None else wait_s))
    if worker is None:
      self._count(_UNAVAILABLE)
      return CallResult(_UNAVAILABLE, None, time.monotonic() - start)
    deadline = (start if wait_s is None else time.monotonic()) + timeout_s
    try:
      worker.conn.send((fn, tuple(args)))
      if worker.conn.poll(max(deadline - time.monotonic(), 0.0)):
        status, value = worker.conn.recv()
        self._release(worker)
        self._count(status)
        return CallResult(status, value, time.monotonic() - start)
    except Exception as e:  # pylint: disable=broad-except
      # The worker died (EOF, reset) or the pipe holds a half-sent or
      # unreadable message (pickling errors): either way it is unusable.
      self._replace(worker)
      self._count(_ERROR)
      return CallResult(
          _ERROR, f"worker failed: {e!r}"[:300], time.monotonic() - start
      )
    self._replace(worker)
    self._count(_TIMEOUT)
    return CallResult(_TIMEOUT, None, time.monotonic() - start)

  def map(
      self,
      fn: Callable[..., Any],
      args_list: Sequence[Sequence[Any]],
      *,
      timeout_s: float,
      wait_s: float | None = 60.0,
  ) -> list[CallResult]:
    """`call` for each args tuple, spread over all workers, in order.

    Each item may run `timeout_s` once a worker takes it, and may wait
    `wait_s` for a worker (a respawn after a kill takes seconds); the batch
    takes about len(args_list) / num_workers times the per-item time.
    """
    if not args_list:
      return []
    run = functools.partial(self.call, fn, timeout_s=timeout_s, wait_s=wait_s)
    if len(args_list) == 1 or self.num_workers == 1:
      return [run(a) for a in args_list]
    with concurrent.futures.ThreadPoolExecutor(self.num_workers) as executor:
      return list(executor.map(run, args_list))

  def pids(self) -> list[int]:
    """Process ids of the current workers (starting, idle or busy)."""
    with self._lock:
      return sorted(w.process.pid for w in self._all)

  def stats(self) -> dict[str, int]:
    """Counts of call outcomes and worker spawns since the pool started."""
    with self._lock:
      return dict(self._stats)

  def close(self) -> None:
    """Kills all workers. Idempotent; also runs at interpreter exit."""
    with self._lock:
      self._closed = True
      workers = list(self._all)
      self._all.clear()
      self._idle.clear()
      self._starting.clear()
    for worker in workers:
      worker.kill()

  def __enter__(self) -> "ProcessPool":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


@atexit.register
def _close_all_pools() -> None:
  for pool in list(_LIVE_POOLS):
    pool.close()
