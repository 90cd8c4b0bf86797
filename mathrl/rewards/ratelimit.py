"""Rate-limited, truncated log lines for per-sample reward events.

A training step scores thousands of completions; logging each timeout or
refused answer in full would flood the logs with multi-megabyte lines (a
model can emit 2 MB of braces). `RateLimitedLog` emits at most one line per
key per `interval_s`, says how many were suppressed since, and cuts every
quoted text to `max_chars`.
"""

import logging
import threading
import time

_LOG = logging.getLogger("mathrl.rewards")


def truncate(text: str, max_chars: int = 200) -> str:
  """`text` cut to about `max_chars`, noting the original length.

  Keeps `max_chars // 2` characters of the head and of the tail (where a
  final answer lives), quoted, around a note of the full length.
  """
  text = str(text)
  if len(text) <= max_chars:
    return text
  half = max(max_chars // 2, 1)
  return f"{text[:half]!r}…[{len(text)} chars]…{text[-half:]!r}"


class RateLimitedLog:
  """Logs at most one message per key every `interval_s` seconds.

  Args:
    logger: where lines go (default: the "mathrl.rewards" logger).
    interval_s: minimum seconds between two lines with the same key.
    max_chars: longest quoted text in a line (see `truncate`).
  """

  def __init__(
      self,
      logger: logging.Logger | None = None,
      *,
      interval_s: float = 30.0,
      max_chars: int = 200,
  ):
    self._logger = logger or _LOG
    self._interval_s = interval_s
    self.max_chars = max_chars
    self._lock = threading.Lock()
    self._last: dict[str, float] = {}
    self._suppressed: dict[str, int] = {}

  def warning(self, key: str, message: str, *quoted: str) -> bool:
    """Logs `message % truncated(quoted)` unless `key` logged recently.

    Args:
      key: rate-limit bucket, e.g. "timeout".
      message: %-format string with one %s per quoted text.
      *quoted: texts to quote (truncated to `max_chars`).

    Returns:
      True if the line was emitted.
    """
    now = time.monotonic()
    with self._lock:
      last = self._last.get(key)
      if last is not None and now - last < self._interval_s:
        self._suppressed[key] = self._suppressed.get(key, 0) + 1
        return False
      self._last[key] = now
      suppressed = self._suppressed.pop(key, 0)
    line = message % tuple(truncate(q, self.max_chars) for q in quoted)
    if suppressed:
      line += f" ({suppressed} similar messages suppressed)"
    self._logger.warning("%s", line)
    return True
