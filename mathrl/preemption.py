"""Stop cleanly when the machine is about to be taken away.

Spot/preemptible Cloud TPU VMs and SLURM send SIGTERM some seconds before
they stop a job; on Cloud TPU, JAX also learns of a coming maintenance
event through its preemption sync point. The training loop asks, after
every step, whether to stop:

  guard = preemption.PreemptionGuard()
  with guard:
    for step in ...:
      state = train_step(state, batch)
      if guard.should_stop(step):
        checkpoint.save(step, state, force=True)
        guard.exit()          # exit status EXIT_CODE: "rerun me"

The signal handler only sets a flag, so the current step always finishes
and its checkpoint is complete. With several processes, `should_stop`
agrees across all of them (every process stops after the same step).
Rerunning the same command resumes from that checkpoint.
"""

import signal
import sys
import threading
from typing import Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to
# retry". Distinct from a crash (1) and from success (0).
EXIT_CODE = 75


class PreemptionGuard:
  """Turns SIGTERM (and JAX's preemption notice) into a stop after a step."""

  def __init__(self, signals: Sequence[int] = (signal.SIGTERM,)):
    self._signals = tuple(signals)
    self._event = threading.Event()
    self._previous = {}
    self.signal_received: int | None = None

  def _handler(self, signum, frame):
    del frame
    self.signal_received = signum
    self._event.set()

  def __enter__(self):
    for s in self._signals:
      self._previous[s] = signal.signal(s, self._handler)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
    return False

  def requested(self) -> bool:
    """This process got a stop signal."""
    return self._event.is_set()

  def should_stop(self, step: int) -> bool:
    """True on every process once any of them must stop (after `step`).

    One process: the local flag. Several: the flags of all processes,
    gathered, or JAX's preemption sync point for `step` (Cloud TPU
    maintenance notices), so that all processes checkpoint the same step.
    """
    local = self.requested()
    if jax.process_count() == 1:
      return local
    flags = multihost_utils.process_allgather(np.asarray([local]))
    stop = bool(np.any(flags))
    try:
      stop = multihost_utils.reached_preemption_sync_point(step) or stop
    except RuntimeError:
      pass  # No preemption sync manager (not on Cloud TPU).
    return stop

  def exit(self) -> None:
    """Leaves the process with EXIT_CODE (after the checkpoint is written)."""
    sys.exit(EXIT_CODE)
