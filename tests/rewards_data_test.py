"""Extraction and equivalence on the real benchmark files (`shared_dir`)."""

import json
import random

import pytest

from mathrl import rewards
from mathrl.rewards import sympy_check

SAMPLE = 200


@pytest.fixture(scope="module")
def verifier():
  return rewards.default_verifier().start()


def _sample(path, n=SAMPLE, seed=0):
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f]
  return random.Random(seed).sample(records, min(n, len(records)))


def test_gsm8k_solutions_match_their_gold(shared_dir, verifier):
  # GSM8K: `answer` is a worked solution ending in "#### n".
  records = _sample(shared_dir / "data" / "gsm8k" / "test.jsonl")
  golds = [r["answer"].split("####")[-1].strip() for r in records]
  assert all(rewards.extract_answer(r["answer"]) == g
             for r, g in zip(records, golds))
  verdicts = verifier.equal_batch([r["answer"] for r in records], golds)
  assert sum(verdicts) == len(records)


def test_math500_solutions_match_their_gold(shared_dir, verifier):
  # MATH-500: `solution` ends in \boxed{...}; `answer` is the gold answer.
  records = _sample(shared_dir / "data" / "math500" / "test.jsonl")
  verdicts = verifier.equal_batch(
      [r["solution"] for r in records], [r["answer"] for r in records]
  )
  assert sum(verdicts) == len(records)


def test_math500_through_math_verify(shared_dir, verifier):
  # The same pairs straight through the worker's math-verify step (no fast
  # path, no text shortcut): every boxed answer must parse and verify.
  records = _sample(shared_dir / "data" / "math500" / "test.jsonl")
  pairs = [(rewards.extract_answer(r["solution"]), r["answer"])
           for r in records]
  assert all(pred is not None for pred, _ in pairs)
  results = verifier.worker_pool.map(sympy_check.check, pairs, timeout_s=3.0)
  failures = [(p, r.status, r.value) for p, r in zip(pairs, results)
              if r.value is not True]
  assert not failures


def test_math500_mismatched_answers_are_rejected(shared_dir, verifier):
  # Each solution against the next problem's answer. A few coincide
  # (e.g. two problems whose answer is 3), so allow 3% agreement; a
  # verifier that says True too easily fails here.
  records = _sample(shared_dir / "data" / "math500" / "test.jsonl", n=100)
  shifted = records[1:] + records[:1]
  verdicts = verifier.equal_batch(
      [r["solution"] for r in records], [r["answer"] for r in shifted]
  )
  coincide = sum(
      rewards.extract_answer(a["solution"]) == b["answer"]
      for a, b in zip(records, shifted)
  )
  assert sum(verdicts) <= max(3, coincide + 1)
