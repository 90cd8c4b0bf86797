"""`math_equal`: is a completion's final answer equal to the gold answer?

The decision, cheapest step first (all but the last run in the caller's
process, in microseconds, and never import sympy):
  1. Answers: `extract_answer` on both sides (so a full worked solution can
     serve as gold); a side with no answer marker is taken as a bare answer
     if it is short (a prediction: one line of at most
     `extract.MAX_PHRASE_ANSWER_CHARS`; a gold: `max_answer_chars`), else it
     has no answer and the result is False.
  2. Refusals (`guards.refusal_reason`): over-long, deeply nested, power
     towers, huge exponents or factorials, code-like text -> False.
  3. Plain numbers (`numeric`): exact rational comparison -> True/False.
     Near misses (within 1e-6) go on to math-verify for its rounding rules.
  4. Identical after whitespace/`\\left`/`\\right`/`\\dfrac` normalisation
     -> True.
  5. math-verify in a worker process (`sympy_check.check`), with a hard
     wall-clock deadline enforced by `pool.ProcessPool`: a worker that
     misses it is killed and replaced, the answer is False, and the
     timeout is counted in `stats()`.

So every call returns within about `timeout_s` (default 3 s) whatever the
input, nothing a model wrote is ever `eval`-ed or `sympify`-ed, and log
lines about bad input are rate-limited and truncated. The only slow call is
the first one that needs a worker (it starts the pool: seconds, once); call
`MathVerifier.start()` during set-up to take that off the first step.
"""

import atexit
import collections
import os
import re
import threading
from typing import Any, Callable, Sequence

from mathrl.rewards import extract
from mathrl.rewards import guards
from mathrl.rewards import numeric
from mathrl.rewards import pool
from mathrl.rewards import ratelimit
from mathrl.rewards import sympy_check

DEFAULT_TIMEOUT_S = 3.0
# One worker per core, up to 8 (each holds sympy: ~150 MB).
DEFAULT_NUM_WORKERS = max(1, min(8, os.cpu_count() or 1))

_LATEX_NOISE_RE = re.compile(r"\s+|\\left|\\right|\\!|\\,|\\;|\\ ")


def _canonical_text(answer: str) -> str:
  answer = _LATEX_NOISE_RE.sub("", answer)
  return answer.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")


class MathVerifier:
  """Bounded-time math answer checker with its own worker pool.

  Args:
    num_workers: worker processes for the math-verify step.
    timeout_s: hard wall-clock bound of the worker step of one comparison
      (waiting for a free worker included); a miss scores False.
    max_completion_chars: only this many trailing characters of a
      completion are searched for its answer.
    max_answer_chars: longer answers are refused (False).
    memory_limit_mb: address-space cap per worker.
    check_fn: the function run in a worker, `check_fn(pred, gold) -> bool`;
      must be importable by reference (tests pass a slowed-down one).
    log: where rate-limited warnings go.
  """

  def __init__(
      self,
      *,
      num_workers: int = DEFAULT_NUM_WORKERS,
      timeout_s: float = DEFAULT_TIMEOUT_S,
      max_completion_chars: int = extract.MAX_COMPLETION_CHARS,
      max_answer_chars: int = extract.MAX_ANSWER_CHARS,
      memory_limit_mb: int = 4096,
      check_fn: Callable[[str, str], bool] = sympy_check.check,
      log: ratelimit.RateLimitedLog | None = None,
  ):
    if timeout_s <= 0:
      raise ValueError(f"MathVerifier: timeout_s must be > 0, got {timeout_s}")
    self.num_workers = num_workers
    self.timeout_s = timeout_s
    self.max_completion_chars = max_completion_chars
    self.max_answer_chars = max_answer_chars
    self._memory_limit_mb = memory_limit_mb
    self._check_fn = check_fn
    self._log = log or ratelimit.RateLimitedLog()
    self._pool: pool.ProcessPool | None = None
    self._pool_lock = threading.Lock()
    self._stats_lock = threading.Lock()
    self._stats = collections.Counter()

  def start(self) -> "MathVerifier":
    """Starts the worker pool now (otherwise the first worker call does)."""
    with self._pool_lock:
      if self._pool is None:
        self._pool = pool.ProcessPool(
            self.num_workers,
            init="mathrl.rewards.sympy_check:warmup",
            memory_limit_mb=self._memory_limit_mb,
        )
    return self

  @property
  def worker_pool(self) -> pool.ProcessPool:
    """The worker pool (started on first access)."""
    return self.start()._pool

  def close(self) -> None:
    """Stops the workers (a later call starts new ones)."""
    with self._pool_lock:
      if self._pool is not None:
        self._pool.close()
        self._pool = None

  def _count(self, key: str) -> None:
    with self._stats_lock:
      self._stats[key] += 1

  def stats(self) -> dict[str, int]:
    """How comparisons were decided so far (e.g. 'fast_path', 'timeout')."""
    with self._stats_lock:
      return dict(self._stats)

  def answer_of(self, text: str, *, gold: bool = False) -> str | None:
    """The final answer of a completion, or `text` itself if it is short.

    Args:
      text: a completion or a bare answer.
      gold: `text` is a reference answer (trusted data): a bare one may be
        as long as `max_answer_chars` and span lines.

    Returns:
      `extract_answer(text)` if it finds one; else the stripped text when
      it holds no (broken) box and is short: for a prediction one line of
      at most `extract.MAX_PHRASE_ANSWER_CHARS` (longer unmarked text is
      prose, not an answer, and not worth a worker call); else None.
    """
    answer = extract.extract_answer(
        text,
        max_completion_chars=self.max_completion_chars,
        max_answer_chars=self.max_answer_chars,
    )
    if answer is not None:
      return answer
    cap = self.max_answer_chars
    if not gold:
      cap = min(cap, extract.MAX_PHRASE_ANSWER_CHARS)
    if len(text) > 4 * cap or "\\boxed" in text or "\\fbox" in text:
      return None  # prose, or a box cut short: no stated answer
    bare = extract.strip_answer(text)
    if not bare or len(bare) > cap or (not gold and "\n" in bare):
      return None
    return bare

  def _decide_locally(
      self, completion_or_answer: str, gold: str
  ) -> tuple[bool | None, str, str]:
    """Steps 1-4 of the module docstring, in the calling process.

    Returns:
      (verdict, pred answer, gold answer); verdict None means a worker must
      decide.
    """
    for name, value in (("completion_or_answer", completion_or_answer),
                        ("gold", gold)):
      if not isinstance(value, str):
        raise TypeError(
            f"math_equal: {name} must be a str, got {type(value).__name__}"
        )
    self._count("calls")
    pred_answer = self.answer_of(completion_or_answer)
    gold_answer = self.answer_of(gold, gold=True)
    if gold_answer is None:
      self._count("no_gold_answer")
      self._log.warning("no_gold", "math_equal: gold has no answer: %s", gold)
      return False, "", ""
    if pred_answer is None:
      self._count("no_answer")
      return False, "", gold_answer
    for side, answer in (("answer", pred_answer), ("gold", gold_answer)):
      reason = guards.refusal_reason(
          answer, max_answer_chars=self.max_answer_chars
      )
      if reason is not None:
        self._count("refused")
        self._log.warning(
            "refused", f"math_equal: refused {side} ({reason}): %s", answer
        )
        return False, pred_answer, gold_answer
    pred_number = numeric.parse_number(pred_answer)
    gold_number = numeric.parse_number(gold_answer)
    if pred_number is not None and gold_number is not None:
      if numeric.numbers_equal(pred_number, gold_number):
        self._count("fast_path")
        return True, pred_answer, gold_answer
      if not numeric.nearly_equal(pred_number, gold_number):
        self._count("fast_path")
        return False, pred_answer, gold_answer
    if _canonical_text(pred_answer) == _canonical_text(gold_answer):
      self._count("same_text")
      return True, pred_answer, gold_answer
    return None, pred_answer, gold_answer

  def _record(self, result: pool.CallResult, pred: str, gold: str) -> bool:
    if result.ok:
      self._count("worker")
      return bool(result.value)
    self._count(result.status)
    self._log.warning(
        result.status,
        f"math_equal: worker {result.status} after {result.seconds:.2f}s "
        "(scored False): answer=%s gold=%s %s",
        pred,
        gold,
        str(result.value or ""),
    )
    return False

  def equal(self, completion_or_answer: str, gold: str) -> bool:
    """True iff the final answer of `completion_or_answer` equals `gold`.

    Args:
      completion_or_answer: a model completion (its last \\boxed{}, `####`
        or "answer is" answer is used) or a bare answer.
      gold: the reference answer (bare, or a full solution with \\boxed{}).

    Returns:
      The verdict; False on no answer, refused input, or timeout.

    Raises:
      TypeError: if an argument is not a str.
    """
    verdict, pred, gold_answer = self._decide_locally(
        completion_or_answer, gold
    )
    if verdict is not None:
      return verdict
    result = self.worker_pool.call(
        self._check_fn, (pred, gold_answer), timeout_s=self.timeout_s
    )
    return self._record(result, pred, gold_answer)

  def equal_batch(
      self, completions: Sequence[str], golds: Sequence[str]
  ) -> list[bool]:
    """`equal` over pairs, with the worker steps spread over all workers.

    Each pair's worker step keeps its own `timeout_s` bound; waiting for a
    free worker (e.g. behind a respawn after a kill) is bounded separately
    (`pool.ProcessPool.map`'s `wait_s`), so a stuck pair costs one pair's
    score, not its neighbours'.

    Args:
      completions: B completions (or bare answers).
      golds: B gold answers.

    Returns:
      B verdicts, in order.
    """
    if len(completions) != len(golds):
      raise ValueError(
          f"equal_batch: {len(completions)} completions but {len(golds)} "
          "golds; pass one gold per completion (repeat each prompt's gold "
          "G times)."
      )
    verdicts: list[Any] = []
    pending = []
    for i, (completion, gold) in enumerate(zip(completions, golds)):
      verdict, pred, gold_answer = self._decide_locally(completion, gold)
      verdicts.append(verdict)
      if verdict is None:
        pending.append((i, pred, gold_answer))
    if pending:
      results = self.worker_pool.map(
          self._check_fn,
          [(pred, gold) for _, pred, gold in pending],
          timeout_s=self.timeout_s,
      )
      for (i, pred, gold), result in zip(pending, results):
        verdicts[i] = self._record(result, pred, gold)
    return [bool(v) for v in verdicts]


_DEFAULT: MathVerifier | None = None
_DEFAULT_LOCK = threading.Lock()


def default_verifier() -> MathVerifier:
  """The process-wide verifier behind `math_equal` (created on first use)."""
  global _DEFAULT
  with _DEFAULT_LOCK:
    if _DEFAULT is None:
      _DEFAULT = MathVerifier()
    return _DEFAULT


def math_equal(completion_or_answer: str, gold: str) -> bool:
  """True iff the final answer in `completion_or_answer` equals `gold`.

  Bounded time (about `DEFAULT_TIMEOUT_S` after the worker pool is up),
  never executes its input; see the module docstring for the rules.

  Args:
    completion_or_answer: a model completion or a bare answer.
    gold: the reference answer, bare or inside a full solution.

  Returns:
    The verdict.
  """
  return default_verifier().equal(completion_or_answer, gold)


@atexit.register
def _close_default() -> None:
  if _DEFAULT is not None:
    _DEFAULT.close()
