"""Rewards: answer extraction, bounded-time math equivalence, reward vectors.

Public API (stable):
  extract_answer(completion) -> str | None
      the last \\boxed{} (brace-matched), else '#### n', else 'answer is n'.
  math_equal(completion_or_answer, gold) -> bool
      bounded time (a few seconds at most), never executes its input.
  grading_report(samples_jsonl) -> dict
      how a file of (completion, gold) pairs was graded, and where plain
      math-verify disagrees.
  grading_metrics(steps) -> dict
      counts logged by runs: reward/gold_unextractable, reward/timeouts...

How answers are read and compared, and why: docs/grading.md.

Modules, one concern each:
  extract      final-answer extraction (pure Python, linear time)
  answers      where each side's answer is: a plan for the grader
  numeric      plain-number parsing and exact comparison (the fast path)
  guards       refusal of hostile answers before sympy
  pool         worker processes with a hard per-call deadline
  worker       the worker process entry point
  sympy_check  the math-verify call run inside a worker
  verify       MathVerifier / math_equal: the whole decision
  report       grading_report: audit a file of (completion, gold) pairs
  audit        `python -m mathrl.rewards.audit FILE` (the report's CLI)
  ratelimit    rate-limited, truncated warnings
  functions    reward functions (correctness, format, length, overlong)
  reward_set   named multi-reward vectors [B, K] (for GDPO and friends)
"""

from mathrl.rewards import answers
from mathrl.rewards import extract
from mathrl.rewards import functions
from mathrl.rewards import report
from mathrl.rewards import reward_set
from mathrl.rewards import verify
from mathrl.rewards.extract import extract_answer
from mathrl.rewards.report import grading_report
from mathrl.rewards.reward_set import RewardSet
from mathrl.rewards.verify import default_verifier
from mathrl.rewards.verify import grading_metrics
from mathrl.rewards.verify import math_equal
from mathrl.rewards.verify import MathVerifier

__all__ = [
    "MathVerifier",
    "RewardSet",
    "answers",
    "default_verifier",
    "extract",
    "extract_answer",
    "functions",
    "grading_metrics",
    "grading_report",
    "math_equal",
    "report",
    "reward_set",
    "verify",
]
