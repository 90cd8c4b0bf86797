"""Entry point of a ProcessPool worker: `python -m mathrl.rewards.worker`.

The worker reads `(function, args)` pairs from a socket inherited from the
parent (file descriptor `--fd`), runs them one at a time and sends back
`(status, value)`: ('ok', return value) or ('error', short description).
The functions are the parent's own library functions, pickled by reference;
model text only ever travels as string arguments. The parent enforces the
deadline by killing this process, so no timeout logic lives here.

Safety set-up before anything runs: an address-space cap (RLIMIT_AS), exit
when the parent is gone (a watchdog thread), and SIGINT ignored (Ctrl-C in
the parent should not print a traceback per worker).
"""

import argparse
import importlib
import os
import signal
import threading
import time
from multiprocessing import connection

_MAX_ERROR_CHARS = 300


def _limit_memory(limit_mb: int) -> None:
  if limit_mb <= 0:
    return
  try:
    import resource  # pylint: disable=g-import-not-at-top  (POSIX only)

    limit = limit_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
  except (ImportError, ValueError, OSError):
    pass


def _die_with_parent(parent_pid: int, period_s: float = 1.0) -> None:
  """Exits this process soon after the parent is gone, even mid-task.

  A worker idle in `recv` sees EOF when the parent dies; a busy one would
  not, so a daemon thread polls the parent pid. (PR_SET_PDEATHSIG is no
  substitute: it fires when the parent *thread* that started the worker
  exits, and the pool respawns workers from short-lived threads.)
  """

  def watch():
    while True:
      time.sleep(period_s)
      if os.getppid() != parent_pid:
        os._exit(0)  # pylint: disable=protected-access

  threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _run_init(spec: str | None) -> None:
  if not spec:
    return
  module_name, _, function_name = spec.partition(":")
  module = importlib.import_module(module_name)
  if function_name:
    getattr(module, function_name)()


def serve(conn: connection.Connection) -> None:
  """Answers requests until the parent closes the socket."""
  while True:
    try:
      fn, args = conn.recv()
    except (EOFError, OSError):
      return
    try:
      reply = ("ok", fn(*args))
    except Exception as e:  # pylint: disable=broad-except
      reply = ("error", f"{type(e).__name__}: {e}"[:_MAX_ERROR_CHARS])
    try:
      conn.send(reply)
    except (OSError, ValueError):
      return


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--fd", type=int, required=True)
  parser.add_argument("--memory_limit_mb", type=int, default=0)
  parser.add_argument("--init", default=None)
  parser.add_argument("--parent_pid", type=int, required=True)
  flags = parser.parse_args()
  if os.getppid() != flags.parent_pid:  # the parent is already gone
    return
  _die_with_parent(flags.parent_pid)
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  conn = connection.Connection(flags.fd)
  try:
    _run_init(flags.init)
    _limit_memory(flags.memory_limit_mb)
  except Exception as e:  # pylint: disable=broad-except
    conn.send(f"init failed: {type(e).__name__}: {e}"[:_MAX_ERROR_CHARS])
    return
  conn.send("ready")
  serve(conn)


if __name__ == "__main__":
  main()
