"""Grading agreement: the categories where graders disagree, both ways.

Each category has equal and not-equal cases written for this file (none
copied from another grader's tables), plus the counting of unreadable
golds and timeouts, the audit report and its command line.
"""

import functools
import json

import numpy as np
import pytest

from mathrl import rewards
from mathrl.rewards import answers
from mathrl.rewards import audit
from mathrl.rewards import functions
from mathrl.rewards import sympy_check

_LONG_WORK = (
    "We expand the product and collect the terms of equal degree. "
    "Substituting $u = t^2$ turns the equation into a quadratic, whose "
    "discriminant $\\Delta = 49 - 4 \\cdot 6 = 25$ is a perfect square. "
) * 12


@pytest.fixture(scope="module")
def verifier():
  return rewards.default_verifier().start()


CATEGORY_CASES = {
    "decimal comma": (
        ("1,22", "1.22", True),
        ("0,111", "0.111", True),
        (r"\boxed{3,75}", "3.75", True),
        ("1000,5", "1000.5", True),
        ("3,75", "3.5", False),
        ("1,222", "1.222", False),  # thousands: 1222
        ("1, 22", "1.22", False),  # a list of two numbers
    ),
    "math after a cue, no box": (
        ("Answer $$ 7 $$", "7", True),
        ("Answer \\[ 12 \\]", "12", True),
        ("Answer: \\( 3+4 \\)", "7", True),
        ("Answer $$ \\frac{2}{6} $$", r"\frac13", True),
        ("Answer $$ 7 $$", "8", False),
        ("Answer \\[ 12 \\]", "-12", False),
    ),
    "relations": (
        ("So $y \\geq 2$.", "y >= 2", True),
        ("We get $t \\lt 4$.", "t < 4", True),
        ("Hence $t \\neq 1$.", "t != 1", True),
        (r"\boxed{a \le 3}", r"a \leq 3", True),
        (r"\boxed{x \in [-1,3]}", r"-1 \le x \le 3", True),
        (r"\boxed{-1 \le x \le 3}", r"x \in [-1,3]", True),
        ("So $y \\geq 2$.", "y > 2", False),
        ("Hence $t \\neq 1$.", "t = 1", False),
        (r"\boxed{x \in [-1,3)}", r"-1 \le x \le 3", False),
    ),
    "matrices and intervals": (
        (r"\boxed{\begin{pmatrix}1&0\\0&1\end{pmatrix} + "
         r"\begin{pmatrix}1&2\\0&1\end{pmatrix}}",
         r"\begin{pmatrix}2&2\\0&2\end{pmatrix}", True),
        (r"\boxed{2\begin{pmatrix}1\\3\end{pmatrix}}",
         r"\begin{pmatrix}2\\6\end{pmatrix}", True),
        (r"\boxed{(0.25, 1.5]}", r"(\frac14, \frac32]", True),
        (r"\boxed{[-0.5, \infty)}", r"[-\frac12, \infty)", True),
        (r"\boxed{\begin{pmatrix}1&0\\0&1\end{pmatrix} + "
         r"\begin{pmatrix}1&2\\0&1\end{pmatrix}}",
         r"\begin{pmatrix}2&2\\0&3\end{pmatrix}", False),
        (r"\boxed{(0.25, 1.5)}", r"(\frac14, \frac32]", False),
    ),
    "final answer in prose": (
        (_LONG_WORK + "Final Answer: The smallest $k$ is 17.", "17", True),
        (_LONG_WORK + "So the total number of tiles is $45$.", "45", True),
        (_LONG_WORK + "Therefore the area is $\\frac{9}{2}$.", "4.5", True),
        (_LONG_WORK + "Final Answer: The smallest $k$ is 17.", "18", False),
        (_LONG_WORK + "So the total number of tiles is $45$.", "54", False),
    ),
    "a final answer restated after the box": (
        (r"first $\boxed{200}$, then more work. Final Answer: The final "
         r"answer is $450$. I hope it is correct.", "450", True),
        (r"first $\boxed{200}$, then more work. Final Answer: The final "
         r"answer is $450$. I hope it is correct.", "200", False),
    ),
    "several boxes": (
        (r"\boxed{2}, \boxed{5}, \boxed{7}", r"\{2, 5, 7\}", True),
        (r"\boxed{2} and \boxed{5}", "5, 2", True),
        (r"\boxed{(1, 3)} \quad\text{and}\quad \boxed{(4, 0)}",
         "(1, 3), (4, 0)", True),
        (r"\boxed{2}, \boxed{5}, \boxed{7}", r"\{2, 5\}", False),
        (r"\boxed{(1, 3)} and \boxed{(4, 0)}", "(1, 3), (4, 1)", False),
        # One answer expected: the last box counts.
        (r"\boxed{3}. Wait, that is wrong: \boxed{4}", "4", True),
        (r"\boxed{3}. Wait, that is wrong: \boxed{4}", "3", False),
        (r"\boxed{3}, \boxed{4}", "3", False),
        # A gold holding several boxes.
        ("4", r"$\boxed{4}$", True),
        (r"\boxed{-1, 5}", r"\boxed{5} and \boxed{-1}", True),
        (r"\boxed{5}", r"\boxed{5} and \boxed{-1}", False),
    ),
    "gold is a worked solution": (
        ("12", r"We find $3x = 36$, so $x = \boxed{12}$.", True),
        (r"\boxed{36}", "She pays 4 * 9 = 36 dollars.\n#### 36", True),
        ("13", r"We find $3x = 36$, so $x = \boxed{12}$.", False),
    ),
}
_CASES = [(category, pred, gold, expected)
          for category, cases in CATEGORY_CASES.items()
          for pred, gold, expected in cases]


@pytest.mark.parametrize("category, pred, gold, expected", _CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(_CASES)])
def test_categories_both_ways(verifier, category, pred, gold, expected):
  del verifier, category
  assert rewards.math_equal(pred, gold) is expected


def test_every_category_has_both_directions():
  for category, cases in CATEGORY_CASES.items():
    assert {expected for _, _, expected in cases} == {True, False}, category


def test_plans_say_where_the_answer_is():
  plan = answers.pred_plan(r"\boxed{1}, \boxed{2} and \boxed{3}")
  assert plan.forms == (answers.Form(answers.LATEX, ("3",), "box"),)
  assert plan.alternative == answers.Form(answers.SET, ("1", "2", "3"),
                                          "boxes")
  # Boxes far apart are not one list: no alternative.
  assert answers.pred_plan(
      r"\boxed{1} is wrong; redo the sum. \boxed{2}").alternative is None
  assert answers.pred_plan("Answer $$ 9 $$").step == "prose"
  assert answers.pred_plan("(1, 2]").step == "bare"
  assert answers.pred_plan("#### 5").step == "gsm8k"
  assert answers.pred_plan(r"\boxed{5").forms == ()  # cut short
  assert answers.gold_plan(r"\boxed{}").forms == ()
  assert answers.is_prose("The largest $n$ is 34")
  assert not answers.is_prose(r"x \in [2, 5) \text{ meters}")


def test_unreadable_golds_and_timeouts_are_counted():
  # A worker that always misses its 0.5 s deadline stands in for a stuck
  # sympy call.
  slow = rewards.MathVerifier(
      num_workers=1, timeout_s=0.5,
      check_fn=functools.partial(sympy_check.sleep_then_check, 60.0),
  ).start()
  try:
    reward_set = rewards.RewardSet([(
        "correctness",
        functools.partial(functions.correctness, verifier=slow), 1.0)])
    # (fast path, gold with an empty box, worker step that times out)
    rewards_BK = reward_set(
        ["#### 4", r"\boxed{4}", r"\boxed{\frac{1}{3}}"],
        ["4", r"\boxed{}", "1/3"])
    np.testing.assert_array_equal(rewards_BK[:, 0], [1, 0, 0])
    logged = reward_set.grading_metrics()
    assert logged["reward/gold_unextractable"] == 1
    assert logged["reward/timeouts"] == 1
    # Counts cover the calls since the last read, then start again.
    assert reward_set.grading_metrics()["reward/timeouts"] == 0
  finally:
    slow.close()


def test_grading_metrics_from_counts():
  before = {"timeout": 2, "gold_unextractable": 1}
  now = {"timeout": 5, "unavailable": 1, "gold_unextractable": 1,
         "error": 1, "fast_path": 9, "no_answer": 2,
         "worker:pred_unparsed": 1}
  got = rewards.grading_metrics(now, before)
  # timeouts: (5 - 2) deadline misses + 1 with no free worker = 4.
  assert got["reward/timeouts"] == 4
  # no_answer: 2 with nothing to read + 1 math-verify read nothing in = 3.
  assert got["reward/no_answer"] == 3
  assert got["reward/gold_unextractable"] == 0
  assert got["reward/grader_errors"] == 1


def _write_pairs(path, pairs, extra_lines=()):
  with open(path, "w", encoding="utf-8") as f:
    for completion, gold in pairs:
      f.write(json.dumps({"completion": completion, "gold": gold}) + "\n")
    for line in extra_lines:
      f.write(line + "\n")


def test_grading_report(verifier, tmp_path):
  path = tmp_path / "samples.jsonl"
  _write_pairs(path, [
      ("#### 12", "12"),                              # fast path
      (r"\boxed{3} then \boxed{4}", "4"),             # last box, fast path
      ("Answer $$ 9 $$", "9"),                        # prose
      (r"\boxed{2}", r"\boxed{"),                     # unreadable gold
  ], extra_lines=["not json", json.dumps({"completion": "5"})])
  report = rewards.grading_report(path, verifier=verifier)
  assert report["num_pairs"] == 4
  assert [line for line, _ in report["skipped_lines"]] == [5, 6]
  assert report["accuracy"] == 0.75
  assert report["gold_unextractable"] == 1 and report["timeouts"] == 0
  assert report["unextractable_golds"] == [{"line": 4, "gold": r"\boxed{"}]
  assert report["decided_by"]["fast_path"] == 0.5  # 2 of the 4 pairs
  assert report["extracted_by"]["box"] == 0.5
  # Plain math-verify reads the two boxes of line 2 as the set {3, 4}.
  lines = {d["line"] for d in report["disagreements"]}
  assert 2 in lines
  assert report["num_disagreements"] == len(report["disagreements"])


def test_audit_command_line(verifier, tmp_path, capsys):
  del verifier
  path = tmp_path / "samples.jsonl"
  _write_pairs(path, [(r"\boxed{\frac{1}{2}}", "0.5"), ("#### 3", "4")])
  out = tmp_path / "report.json"
  assert audit.main([str(path), "--json", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "pairs: 2" in printed and "accuracy: 0.5000" in printed
  assert json.loads(out.read_text())["num_pairs"] == 2
  with pytest.raises(SystemExit):
    audit.main([str(tmp_path / "missing.jsonl")])
