"""Rewards: answer extraction, bounded-time math equivalence, reward vectors.

Public API (stable):
  extract_answer(completion) -> str | None
      the last \\boxed{} (brace-matched), else '#### n', else 'answer is n'.
  math_equal(completion_or_answer, gold) -> bool
      bounded time (a few seconds at most), never executes its input.

Modules, one concern each:
  extract      final-answer extraction (pure Python, linear time)
  numeric      plain-number parsing and exact comparison (the fast path)
  guards       refusal of hostile answers before sympy
  pool         worker processes with a hard per-call deadline
  worker       the worker process entry point
  sympy_check  the math-verify call run inside a worker
  verify       MathVerifier / math_equal: the whole decision
  ratelimit    rate-limited, truncated warnings
  functions    reward functions (correctness, format, length, overlong)
  reward_set   named multi-reward vectors [B, K] (for GDPO and friends)
"""

from mathrl.rewards import extract
from mathrl.rewards import functions
from mathrl.rewards import reward_set
from mathrl.rewards import verify
from mathrl.rewards.extract import extract_answer
from mathrl.rewards.reward_set import RewardSet
from mathrl.rewards.verify import default_verifier
from mathrl.rewards.verify import math_equal
from mathrl.rewards.verify import MathVerifier

__all__ = [
    "MathVerifier",
    "RewardSet",
    "default_verifier",
    "extract",
    "extract_answer",
    "functions",
    "math_equal",
    "reward_set",
    "verify",
]
