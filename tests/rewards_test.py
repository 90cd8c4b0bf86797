"""Tables of answer extraction and math equivalence, and reward functions."""

import functools

import numpy as np
import pytest

from mathrl import rewards
from mathrl.rewards import extract
from mathrl.rewards import functions
from mathrl.rewards import numeric


@pytest.fixture(scope="module")
def verifier():
  # The process-wide verifier behind `math_equal`; started once per session.
  return rewards.default_verifier().start()


EXTRACTION_CASES = (
    # (completion, expected answer)
    (r"so $x = \boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"\boxed{\frac{\sqrt{2}}{2}}", r"\frac{\sqrt{2}}{2}"),
    (r"Thus $\boxed 5$.", "5"),
    (r"first \boxed{1}, then \boxed{2}", "2"),
    (r"\fbox{7}", "7"),
    (r"\boxed{\{1,2\}}", r"\{1,2\}"),
    (r"\boxed{\left\{ 1 \right\}}", r"\left\{ 1 \right\}"),
    (r"\boxed{ 12 }", "12"),
    (r"\boxed{3} and then \boxed{4", "3"),  # unclosed last box: truncated
    (r"\boxed{a} then \boxed{b} \boxed{c", "b"),
    (r"\boxed{}", None),
    (r"\boxed{\text{(A)}}", r"\text{(A)}"),
    (r"\boxed{(1, 2]}", "(1, 2]"),
    ("Janet makes 9 * 2 = 18.\n#### 1,234", "1,234"),
    ("#### 18\n", "18"),
    ("The answer is 42.", "42"),
    (r"the final answer is $\frac{3}{4}$.", r"\frac{3}{4}"),
    ("The answer is: **17**", "17"),
    (r"Answer: \(x=2\)", "x=2"),
    ("The answer is 3.5.", "3.5"),
    ("So the answer is 12, because 3 * 4 = 12.", "12"),
    ("The answer is (1, 2), an interval", "(1, 2)"),
    (r"The answer is 4. Double-check: \boxed{5}", "5"),  # box beats phrase
    ("#### 3\nso the answer is 4", "3"),  # '####' beats the phrase
    ("no stated answer here", None),
    ("", None),
)


@pytest.mark.parametrize("completion, expected", EXTRACTION_CASES)
def test_extract_answer_table(completion, expected):
  assert rewards.extract_answer(completion) == expected


def test_extract_reads_only_the_tail():
  # The box sits 20_000 characters before the end; only the last
  # max_completion_chars (16_384 by default) are searched.
  text = r"\boxed{1}" + "x" * 20_000
  assert rewards.extract_answer(text) is None
  assert extract.extract_answer(text, max_completion_chars=30_000) == "1"


def test_extract_rejects_non_strings():
  with pytest.raises(TypeError, match="decode tokens first"):
    rewards.extract_answer([1, 2, 3])


def test_matching_braces_skips_escaped_braces():
  #            0123456789
  text = r"{a\{b}c{}"
  # `\{` at 2-3 is a literal; the group opened at 0 closes at 5.
  assert extract.matching_braces(text) == {0: 5, 7: 8}


EQUIVALENCE_CASES = (
    # (completion or answer, gold, expected)
    (r"\boxed{\frac{1}{2}}", r"\frac12", True),
    (r"\boxed{\dfrac{1}{2}}", "0.5", True),
    (r"\boxed{\frac{3}{4}}", "0.75", True),
    (r"\boxed{3/4}", r"\frac{3}{4}", True),
    ("The answer is 42.", "42", True),
    (r"the final answer is $\frac{3}{4}$", r"\frac34", True),
    ("#### 1,234", "1234", True),
    (r"\boxed{1,000}", "1000", True),
    (r"\boxed{1{,}000}", "1000", True),
    (r"\boxed{007}", "7", True),
    (r"\boxed{27.0}", "27", True),
    ("#### 72", "72.00", True),
    (r"\boxed{27.5}", "27", False),
    (r"\boxed{-3}", "-3", True),
    (r"\boxed{-3}", "3", False),
    ("-0", "0", True),
    # Percentages, math-verify's rule: p% reads as p or p/100.
    (r"\boxed{50\%}", "50", True),
    (r"\boxed{50}", r"50\%", True),
    (r"\boxed{0.5}", r"50\%", True),
    (r"\boxed{50}", "0.5", False),
    # Scientific notation.
    (r"\boxed{1.5e3}", "1500", True),
    (r"\boxed{1.5\times 10^{3}}", "1500", True),
    (r"\boxed{2^{10}}", "1024", True),
    # Roots and algebra.
    (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt2}{2}", True),
    (r"\boxed{\frac{\sqrt{3}}{3}}", r"\frac{1}{\sqrt{3}}", True),
    (r"\boxed{\sqrt{8}}", r"2\sqrt{2}", True),
    (r"\boxed{x^2+2x+1}", "(x+1)^2", True),
    (r"\boxed{2x+1}", "1+2x", True),
    (r"\boxed{3.14}", r"\pi", False),
    # Intervals, sets, tuples, matrices.
    (r"\boxed{(1, 2]}", "(1,2]", True),
    (r"\boxed{[1, 2]}", "(1,2]", False),
    (r"\boxed{(-\infty, 3)}", r"(-\infty,3)", True),
    (r"\boxed{x \in [2, 5)}", "[2,5)", True),
    (r"\boxed{\{1,2\}}", r"\{2,1\}", True),
    (r"\boxed{\{1, 2\}}", r"\{1, 3\}", False),
    (r"\boxed{(1,2)}", "(2,1)", False),
    (r"\boxed{(2,1)}", "(2, 1)", True),
    (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"(3,\frac{\pi}{2})", True),
    (
        r"\boxed{\begin{pmatrix} 1 \\ 2 \end{pmatrix}}",
        r"\begin{pmatrix}1\\2\end{pmatrix}",
        True,
    ),
    # Units, text, variables.
    (r"\boxed{5\text{ cm}}", "5", True),
    (r"\boxed{18 dollars}", "18", True),
    (r"\boxed{\$18}", "18", True),
    (r"\boxed{12^\circ}", "12", True),
    (r"\boxed{\text{(C)}}", "C", True),
    (r"\boxed{x = 5}", "5", True),
    # Which answer counts.
    (r"\boxed{1} no wait \boxed{2}", "2", True),
    (r"\boxed{1} no wait \boxed{2}", "1", False),
    (r"\fbox{9}", "9", True),
    (r"\boxed{}", "5", False),
    ("\\boxed{5", "5", False),  # a box cut short states no answer
    # Gold given as a full solution ending in a box.
    ("#### 18", r"She makes $9 \cdot 2 = \boxed{18}$ dollars.", True),
)


@pytest.mark.parametrize("pred, gold, expected", EQUIVALENCE_CASES)
def test_math_equal_table(verifier, pred, gold, expected):
  del verifier  # started: the table measures answers, not start-up
  assert rewards.math_equal(pred, gold) is expected


def test_unmarked_math_is_an_answer_and_prose_is_read_by_math_verify(
    verifier):
  # OlympiadBench-style long gold (164 characters, no box).
  gold = ",".join(["(1,0,1)", "(0,1,1)", r"(\frac{1}{\sqrt{3}}, 0, 1)"] * 6)
  assert len(gold) > 120
  assert verifier.equal(r"\boxed{" + gold + "}", gold)
  # One line of unmarked math is a bare answer, however long.
  assert verifier.equal(gold, gold)
  # Unmarked prose goes to math-verify's extraction; with no math in it
  # there is no answer to compare.
  assert verifier.grade("I could not solve this one.", "5") == (
      False, "worker:pred_unparsed")


def test_tables_are_large_enough():
  assert len(EXTRACTION_CASES) + len(EQUIVALENCE_CASES) >= 40


def test_plain_numbers_skip_the_workers(verifier):
  before = verifier.stats().get("fast_path", 0)
  assert verifier.equal("#### 1,000", "1000.0")
  assert not verifier.equal(r"\boxed{999}", "1000")
  assert verifier.stats()["fast_path"] == before + 2


@pytest.mark.parametrize(
    "text, value, percent",
    (
        ("1,234", 1234, False),
        ("0012.50", 12.5, False),
        (r"50\%", 50, True),
        ("x = -7", -7, False),
        (r"\$1{,}000.00", 1000, False),
        ("2.5e-3", 0.0025, False),
        (r"\frac{1}{2}", None, None),
        ("1,23", None, None),
    ),
)
def test_parse_number(text, value, percent):
  number = numeric.parse_number(text)
  if value is None:
    assert number is None
  else:
    assert float(number.value) == pytest.approx(value)
    assert number.percent is percent


def test_correctness_reward_values(verifier):
  completions = [r"\boxed{4}", "#### 5", "I have no idea",
                 r"\boxed{\frac{8}{2}}"]
  answers = ["4", "4", "4", "4"]
  # "I have no idea" states no answer at all.
  np.testing.assert_array_equal(
      functions.correctness(completions, answers, verifier=verifier),
      np.array([1, 0, 0, 1], np.float32),
  )
  np.testing.assert_array_equal(
      functions.correctness(
          completions, answers, verifier=verifier, incorrect_value=-1.0
      ),
      np.array([1, -1, -1, 1], np.float32),
  )


def test_boxed_format_reward():
  completions = [
      r"<think>2+2</think> so \boxed{4}",
      r"\boxed{4}",
      r"<think>2+2 \boxed{4}</think> done",  # box inside the block only
      r"<think>a</think><think>b</think>\boxed{4}",
      "4",
  ]
  np.testing.assert_array_equal(
      functions.boxed_format(completions), [1, 1, 1, 1, 0]
  )
  np.testing.assert_array_equal(
      functions.boxed_format(completions, require_think=True), [1, 0, 0, 0, 0]
  )
  # The chat template already opened <think>: only the closing tag appears.
  np.testing.assert_array_equal(
      functions.boxed_format(
          [r"2+2</think> \boxed{4}", r"<think>2+2</think> \boxed{4}"],
          require_think=True,
          think_opened_in_prompt=True,
      ),
      [1, 0],
  )


def test_dapo_overlong_penalty_golden():
  # (L_max, L_buf, f) = (20480, 4096, 1): the penalty starts at
  # 20480 - 4096 = 16384; 17408 -> -(1024 / 4096) = -0.25,
  # 18432 -> -(2048 / 4096) = -0.5, 20480 -> -(4096 / 4096) = -1,
  # and beyond L_max it stays at -f.
  lengths_B = np.array([10000, 16384, 17408, 18432, 20480, 30000])
  np.testing.assert_allclose(
      functions.dapo_overlong_penalty(
          lengths_B, max_length=20480, buffer_length=4096, penalty_factor=1.0
      ),
      [0.0, 0.0, -0.25, -0.5, -1.0, -1.0],
  )
  with pytest.raises(ValueError, match="buffer_length"):
    functions.dapo_overlong_penalty(lengths_B, max_length=10, buffer_length=20)


def test_kimi_length_reward_golden():
  # One group (G = 3) with lengths 100, 200, 300: min 100, span 200, so
  # λ = 0.5 - (ℓ - 100) / 200 = [0.5, 0.0, -0.5]. Correct ones get λ, wrong
  # ones min(0, λ). A second group of equal lengths gets 0.
  lengths_B = np.array([100, 200, 300, 50, 50, 50])
  correct_B = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
  np.testing.assert_allclose(
      functions.kimi_length_reward(lengths_B, correct_B, group_size=3),
      [0.5, 0.0, -0.5, 0.0, 0.0, 0.0],
  )


def test_reward_set_builds_a_named_matrix(verifier):
  reward_set = rewards.RewardSet([
      (
          "correctness",
          functools.partial(functions.correctness, verifier=verifier),
          1.0,
      ),
      ("format", functions.boxed_format, 0.5),
      (
          "overlong",
          functools.partial(
              functions.dapo_overlong_penalty, max_length=100, buffer_length=50
          ),
          1.0,
      ),
      ("length", functions.kimi_length_reward, 0.1),
  ])
  completions = [r"\boxed{4}", "#### 3", r"\boxed{4}", "The answer is 4."]
  answers = ["4"] * 4
  lengths_B = np.array([10, 75, 100, 30])
  rewards_BK = reward_set(
      completions, answers, lengths_B=lengths_B, group_size=2
  )
  assert reward_set.names == ("correctness", "format", "overlong", "length")
  assert rewards_BK.shape == (4, 4) and rewards_BK.dtype == np.float32
  # correctness [1, 0, 1, 1]; format [1, 0, 1, 0]; overlong: threshold
  # 100 - 50 = 50, so 75 -> -25/50 = -0.5 and 100 -> -1; length (groups of
  # 2): (10, 75) -> λ = [0.5, -0.5], wrong second keeps -0.5;
  # (100, 30) -> λ = [-0.5, 0.5], both correct.
  expected_BK = np.array([
      [1, 1, 0, 0.5],
      [0, 0, -0.5, -0.5],
      [1, 1, -1, -0.5],
      [1, 0, 0, 0.5],
  ], np.float32)
  np.testing.assert_allclose(rewards_BK, expected_BK)
  # total = 1·c + 0.5·f + 1·o + 0.1·ℓ, e.g. row 0: 1 + 0.5 + 0 + 0.05.
  np.testing.assert_allclose(
      reward_set.total(rewards_BK), [1.55, -0.55, 0.45, 1.05], rtol=1e-6
  )
  assert reward_set.metrics(rewards_BK)["reward/correctness"] == 0.75


def test_reward_set_errors():
  with pytest.raises(ValueError, match="duplicate"):
    rewards.RewardSet([("a", functions.boxed_format, 1.0)] * 2)
  overlong = rewards.RewardSet([(
      "overlong",
      functools.partial(
          functions.dapo_overlong_penalty, max_length=10, buffer_length=5
      ),
      1.0,
  )])
  with pytest.raises(ValueError, match="needs lengths_B"):
    overlong(["a"], ["b"])
  with pytest.raises(ValueError, match="expected \\(1,\\)"):
    overlong(["a"], ["b"], lengths_B=[1, 2])
