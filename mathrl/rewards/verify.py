"""`math_equal`: is a completion's final answer equal to the gold answer?

The decision, cheapest step first (all but the last run in the caller's
process, in microseconds, and never import sympy):
  1. Answers: `answers.pred_plan` / `answers.gold_plan` say where each
     side's answer is (last box, a cue after it, `#### n`, "answer is",
     a bare answer, or prose for math-verify to read; a gold may be a full
     solution or hold several boxes). A gold with no answer is counted as
     `gold_unextractable` and scores False; a completion with none too.
  2. Refusals (`guards.refusal_reason`): over-long, deeply nested, power
     towers, huge exponents or factorials, code-like text -> False.
  3. When both sides are single LaTeX answers: plain numbers (`numeric`),
     exact rational comparison -> True/False (near misses within 1e-6 go
     on to math-verify for its rounding rules); a decimal comma (`1,22`)
     against a plain number; identical text after whitespace/`\\left`/
     `\\right`/`\\dfrac` normalisation -> True.
  4. math-verify in a worker process (`sympy_check.check_plans`), with a
     hard wall-clock deadline enforced by `pool.ProcessPool`: a worker
     that misses it is killed and replaced, the answer is False, and the
     timeout is counted in `stats()`.

`stats()` counts the step that decided each comparison ("fast_path",
"decimal_comma", "same_text", "worker:<extraction step>", "timeout",
"gold_unextractable", ...); docs/grading.md explains the choices and the
known disagreements with other graders.

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
from typing import Any, Callable, Iterable, Mapping, Sequence

from mathrl.rewards import answers
from mathrl.rewards import extract
from mathrl.rewards import guards
from mathrl.rewards import numeric
from mathrl.rewards import pool
from mathrl.rewards import ratelimit
from mathrl.rewards import sympy_check

DEFAULT_TIMEOUT_S = 3.0
# Stats key of comparisons whose gold answer could not be extracted/parsed.
GOLD_UNEXTRACTABLE = "gold_unextractable"
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
    check_fn: the function run in a worker, `check_fn(pred_plan,
      gold_plan)` -> (verdict, step) or a bare verdict (`answers.Plan`s);
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
      check_fn: Callable[..., Any] = sympy_check.check_plans,
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
    """The text of the first answer form of `text`'s plan, or None.

    For logs and audits: a prose form gives its whole stretch of text.

    Args:
      text: a completion or a bare answer.
      gold: read `text` as a gold answer (`answers.gold_plan`).
    """
    plan = self.plan(text, gold=gold)
    return ", ".join(plan.forms[0].parts) if plan.forms else None

  def plan(self, text: str, *, gold: bool = False) -> answers.Plan:
    """`answers.pred_plan(text)` or `answers.gold_plan(text)`."""
    if gold:
      return answers.gold_plan(text, max_answer_chars=self.max_answer_chars)
    return answers.pred_plan(
        text,
        max_completion_chars=self.max_completion_chars,
        max_answer_chars=self.max_answer_chars,
    )

  def _refused(self, plan: answers.Plan, side: str) -> bool:
    forms = plan.forms + ((plan.alternative,) if plan.alternative else ())
    for form in forms:
      prose = form.kind == answers.PROSE
      cap = self.max_answer_chars
      if prose:
        cap = max(cap, answers.MAX_PROSE_CHARS)
      for part in form.parts:
        reason = guards.refusal_reason(
            part, max_answer_chars=cap, check_powers=not prose)
        if reason is not None:
          self._log.warning(
              "refused", f"math_equal: refused {side} ({reason}): %s", part
          )
          return True
    return False

  def _decide_locally(
      self, completion_or_answer: str, gold: str
  ) -> tuple[bool | None, str, answers.Plan, answers.Plan]:
    """Steps 1-3 of the module docstring, in the calling process.

    Returns:
      (verdict, step, pred plan, gold plan); verdict None means a worker
      must decide.
    """
    for name, value in (("completion_or_answer", completion_or_answer),
                        ("gold", gold)):
      if not isinstance(value, str):
        raise TypeError(
            f"math_equal: {name} must be a str, got {type(value).__name__}"
        )
    pred_plan = self.plan(completion_or_answer)
    gold_plan = self.plan(gold, gold=True)
    if not gold_plan.forms:
      self._log.warning(
          "no_gold", "math_equal: no answer in the gold (counted as "
          "gold_unextractable): %s", gold)
      return False, GOLD_UNEXTRACTABLE, pred_plan, gold_plan
    if not pred_plan.forms:
      return False, "no_answer", pred_plan, gold_plan
    if self._refused(pred_plan, "answer") or self._refused(gold_plan, "gold"):
      return False, "refused", pred_plan, gold_plan
    pred_form, gold_form = pred_plan.forms[0], gold_plan.forms[0]
    if pred_form.kind != answers.LATEX or gold_form.kind != answers.LATEX:
      return None, "", pred_plan, gold_plan
    verdict, step = _compare_plain(pred_form.parts[0], gold_form.parts[0])
    return verdict, step, pred_plan, gold_plan

  def _record(self, result: pool.CallResult, pred: answers.Plan,
              gold: answers.Plan) -> tuple[bool, str]:
    if result.ok:
      value = result.value
      verdict, step = value if isinstance(value, tuple) else (value, "check")
      self._count("worker")
      step = GOLD_UNEXTRACTABLE if step == "gold_unparsed" else f"worker:{step}"
      self._count(step)
      if step == GOLD_UNEXTRACTABLE:
        self._log.warning(
            "no_gold", "math_equal: math-verify reads no answer in the gold "
            "(counted as gold_unextractable): %s", str(gold.forms[:1]))
      return bool(verdict), step
    self._count(result.status)
    self._log.warning(
        result.status,
        f"math_equal: worker {result.status} after {result.seconds:.2f}s "
        "(scored False): answer=%s gold=%s %s",
        str(pred.forms[:1]),
        str(gold.forms[:1]),
        str(result.value or ""),
    )
    return False, result.status

  def _local(self, completion_or_answer: str, gold: str):
    verdict, step, pred, gold_plan = self._decide_locally(
        completion_or_answer, gold)
    self._count("calls")
    if verdict is not None:
      self._count(step)
    return verdict, step, pred, gold_plan

  def equal(self, completion_or_answer: str, gold: str) -> bool:
    """True iff the final answer of `completion_or_answer` equals `gold`.

    Args:
      completion_or_answer: a model completion or a bare answer (see
        `answers.pred_plan` for which answer is read).
      gold: the reference answer (bare, several boxes, or a full solution).

    Returns:
      The verdict; False on no answer, refused input, or timeout.

    Raises:
      TypeError: if an argument is not a str.
    """
    return self.grade(completion_or_answer, gold)[0]

  def grade(self, completion_or_answer: str, gold: str) -> tuple[bool, str]:
    """`equal` and the step that decided it ("fast_path", "worker:box",
    "timeout", "gold_unextractable", ...)."""
    verdict, step, pred, gold_plan = self._local(completion_or_answer, gold)
    if verdict is not None:
      return verdict, step
    result = self.worker_pool.call(
        self._check_fn, (pred, gold_plan), timeout_s=self.timeout_s
    )
    return self._record(result, pred, gold_plan)

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
    return [v for v, _ in self.grade_batch(completions, golds)]

  def grade_batch(
      self, completions: Sequence[str], golds: Sequence[str]
  ) -> list[tuple[bool, str]]:
    """`equal_batch` with each pair's deciding step (see `grade`)."""
    if len(completions) != len(golds):
      raise ValueError(
          f"equal_batch: {len(completions)} completions but {len(golds)} "
          "golds; pass one gold per completion (repeat each prompt's gold "
          "G times)."
      )
    graded: list[Any] = []
    pending = []
    for i, (completion, gold) in enumerate(zip(completions, golds)):
      verdict, step, pred, gold_plan = self._local(completion, gold)
      graded.append((verdict, step))
      if verdict is None:
        pending.append((i, pred, gold_plan))
    if pending:
      results = self.worker_pool.map(
          self._check_fn,
          [(pred, gold) for _, pred, gold in pending],
          timeout_s=self.timeout_s,
      )
      for (i, pred, gold), result in zip(pending, results):
        graded[i] = self._record(result, pred, gold)
    return [(bool(v), step) for v, step in graded]


def _compare_plain(pred: str, gold: str) -> tuple[bool | None, str]:
  """Steps 3-4: plain numbers (and decimal commas) and identical text."""
  pred_number = numeric.parse_number(pred)
  gold_number = numeric.parse_number(gold)
  if pred_number is not None and gold_number is not None:
    if numeric.numbers_equal(pred_number, gold_number):
      return True, "fast_path"
    if not numeric.nearly_equal(pred_number, gold_number):
      return False, "fast_path"
    return None, ""
  for number, other in ((pred_number, gold), (gold_number, pred)):
    comma = numeric.decimal_comma(other) if number is not None else None
    if comma is not None:
      equal = numeric.numbers_equal(number, numeric.Number(comma, False))
      return equal, "decimal_comma"
  if _canonical_text(pred) == _canonical_text(gold):
    return True, "same_text"
  return None, ""


def grading_metrics(
    steps: Mapping[str, int] | Iterable[str],
    since: Mapping[str, int] | None = None,
    *,
    prefix: str = "reward/",
) -> dict[str, float]:
  """The grading counts a run logs: unextractable golds, timeouts, ...

  Args:
    steps: deciding steps (from `MathVerifier.grade_batch`), or counts of
      them (`MathVerifier.stats()`).
    since: earlier counts to subtract (a `stats()` taken before).
    prefix: metric name prefix.

  Returns:
    {prefix + name: count} for gold_unextractable (the gold had no answer
    that could be read: those pairs scored 0), timeouts (worker deadline
    missed or no worker free: scored 0), grader_errors (the worker
    raised), no_answer (no answer could be read from the completion) and
    refused (hostile answers refused by the guards).
  """
  counts = collections.Counter(steps)  # a mapping's counts, or each step
  counts.subtract(since or {})
  return {
      f"{prefix}gold_unextractable": float(counts[GOLD_UNEXTRACTABLE]),
      f"{prefix}timeouts": float(counts["timeout"] + counts["unavailable"]),
      f"{prefix}grader_errors": float(counts["error"]),
      f"{prefix}no_answer": float(
          counts["no_answer"] + counts["worker:pred_unparsed"]),
      f"{prefix}refused": float(counts["refused"]),
  }


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
