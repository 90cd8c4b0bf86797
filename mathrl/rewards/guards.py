"""Cheap checks that refuse hostile answers before sympy ever sees them.

These are the first line of defence (the worker's deadline is the last):
each check is a linear scan or a bounded regex on an answer already capped
at a few hundred characters, and a refused answer simply scores False.
Refused:
  * anything longer than `max_answer_chars`;
  * brace/bracket nesting deeper than `max_depth`;
  * power towers (`10^{10^{10}}`, `9**9**9`, `2^3^4`) and integer
    exponents above `max_exponent` (`2^{99999999}`) — sympy would try to
    build the number;
  * factorials of integers above `max_factorial`;
  * text that looks like code (`__`, `import`, `lambda`, `eval(`, ...).
    Nothing in mathrl evaluates answers as Python (see sympy_check), so
    this is defence in depth, and keeps such text out of logs and workers.
"""

import re

MAX_DEPTH = 24
MAX_EXPONENT = 10_000
MAX_FACTORIAL = 10_000

# (Not after a backslash: `\\lambda` is the LaTeX letter.)
_CODE_RE = re.compile(
    r"__|(?<!\\)\bimport\b|(?<!\\)\blambda\b|(?<!\\)\b(?:eval|exec|compile|"
    r"open|getattr|globals|locals|system|popen|subprocess)\s*\("
)
# An exponent: `^{...}`, `^digits`, `**digits` (digits runs are checked
# whole, which also refuses `10^100000` that LaTeX would read as 10^1 00000).
_EXPONENT_RE = re.compile(r"(?:\^|\*\*)\s*(\{[^{}]*\}|\(?[-+]?[\d.]+)")
# A power inside an exponent: `^{..^..}`, `^{{..}^..}`, `^(..^..)`, `^2^3`,
# `^{10}^{10}`, `**3**4`.
_TOWER_RE = re.compile(
    r"\^\s*\{[^{}]*(?:\^|\*\*)"
    r"|\^\s*\{[^{}]*\{[^{}]*\}[^{}]*(?:\^|\*\*)"
    r"|\^\s*\([^()]*(?:\^|\*\*)"
    r"|\^\s*(?:\{[^{}]*\}|\([^()]*\)|[^\s{(])\s*(?:\^|\*\*)"
    r"|\*\*\s*\(?[-+\w.]+\)?\s*(?:\*\*|\^)"
)
_FACTORIAL_RE = re.compile(r"(\d+)\s*!")
_INT_RE = re.compile(r"\d+")


def nesting_depth(text: str) -> int:
  """Deepest nesting of (), [] and {} (escaped braces count too)."""
  depth = deepest = 0
  for ch in text:
    if ch in "({[":
      depth += 1
      deepest = max(deepest, depth)
    elif ch in ")}]":
      depth = max(depth - 1, 0)
  return deepest


def _has_big_exponent(answer: str, max_exponent: int) -> bool:
  if _TOWER_RE.search(answer):
    return True
  for match in _EXPONENT_RE.finditer(answer):
    for digits in _INT_RE.findall(match.group(1)):
      if len(digits) > 12 or int(digits) > max_exponent:
        return True
  return False


def refusal_reason(
    answer: str,
    *,
    max_answer_chars: int,
    max_depth: int = MAX_DEPTH,
    max_exponent: int = MAX_EXPONENT,
    max_factorial: int = MAX_FACTORIAL,
    check_powers: bool = True,
) -> str | None:
  """Why `answer` must not be sent to sympy, or None if it may be.

  Args:
    answer: an extracted answer (short string).
    max_answer_chars: longest accepted answer.
    max_depth: deepest accepted bracket nesting.
    max_exponent: largest accepted integer in an exponent.
    max_factorial: largest accepted integer before `!`.
    check_powers: refuse big exponents and factorials. Prose (a whole
      solution that math-verify reads) passes False: a big power in its
      working must not void its final answer; the worker deadline still
      bounds whatever sympy is given.

  Returns:
    A short reason ('too long', 'too deep', 'huge exponent', 'huge
    factorial', 'looks like code'), or None.
  """
  if len(answer) > max_answer_chars:
    return "too long"
  if nesting_depth(answer) > max_depth:
    return "too deep"
  if _CODE_RE.search(answer):
    return "looks like code"
  if not check_powers:
    return None
  if ("^" in answer or "**" in answer) and _has_big_exponent(
      answer, max_exponent
  ):
    return "huge exponent"
  for digits in _FACTORIAL_RE.findall(answer):
    if len(digits) > 12 or int(digits) > max_factorial:
      return "huge factorial"
  return None
