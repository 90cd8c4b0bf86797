"""Plain-number answers, compared exactly in the parent without sympy.

Most GSM8K-style answers are plain numbers; comparing them needs no worker.
`parse_number` accepts an optional sign, digits with comma thousands
separators (`1,234`, LaTeX `1{,}234`; a first group of 1-3 digits that
does not start with 0), leading zeros, a decimal part,
scientific `e` notation (`1.5e3`), currency (`$`, `\\$`), a trailing
percent sign, a trailing `\\text{..}` unit or plain unit words
(`5\\text{ cm}`, `18 dollars`), a leading `x =`, and a number wrapped in
`\\textbf{}` or in parentheses (`\\textbf{(073)}`, as AIME solutions box).
Values are exact `fractions.Fraction`s (built from the decimal string,
never from a float), so `27.0` = `27` and `0.1 + 0.2`-style float noise
cannot occur.

Percentages follow math-verify 0.9: `p\\%` stands for either p or p/100, so
`50\\%` = `50` = `0.5`, while `50` != `0.5`.
"""

import decimal
import fractions
import re
from typing import NamedTuple

# Larger decimal exponents are left to the worker (and its deadline).
_MAX_SCI_EXPONENT = 400
_NUMBER_RE = re.compile(
    r"[+-]?(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][+-]?\d{1,4})?"
    r"|[+-]?\.\d+(?:[eE][+-]?\d{1,4})?"
)
# One comma that cannot separate thousands (`1,22`, `0,111`, `1000,99`).
_DECIMAL_COMMA_RE = re.compile(r"[+-]?\d+,\d+")
_THOUSANDS_RE = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+")
_WRAPPER_RE = re.compile(r"\\(?:textbf|mathbf)\s*\{([^{}]*)\}")
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*")
_TEXT_UNIT_RE = re.compile(
    r"\\(?:text|textbf|mbox|mathrm|rm)\s*\{\s*[A-Za-z][A-Za-z .]*\}\s*$"
)
# Trailing unit words ("18 dollars", "5 cm"); not "pi", "e", "i" (math).
_WORD_UNIT_RE = re.compile(r"\s+(?!(?:pi|e|i)\b)[A-Za-z]{2,}(?:\s+[A-Za-z]+)*$")
_SPACING_RE = re.compile(r"\\[!,;: ]|\\q?quad")


class Number(NamedTuple):
  """A parsed plain number.

  Attributes:
    value: the exact value.
    percent: True if written with a percent sign.
  """

  value: fractions.Fraction
  percent: bool


def _strip_decorations(answer: str) -> tuple[str, bool]:
  text = answer.strip().replace("\u2212", "-")
  text = _SPACING_RE.sub("", text).replace("{,}", ",")
  text = text.strip("$ ").replace("\\$", "")
  if text.startswith("\\left(") or "\\frac" in text:
    return text, False  # not a plain number; let the worker decide
  wrapped = _WRAPPER_RE.fullmatch(text)
  if wrapped:  # AIME solutions box `\\textbf{(073)}`
    text = wrapped.group(1).strip()
  if text.startswith("(") and text.endswith(")") and "," not in text:
    text = text[1:-1].strip()
  text = _ASSIGNMENT_RE.sub("", text)
  text = _TEXT_UNIT_RE.sub("", text).strip()
  percent = False
  for sign in ("\\%", "%", "\\text{%}"):
    if text.endswith(sign):
      text, percent = text[: -len(sign)].strip(), True
      break
  text = _WORD_UNIT_RE.sub("", text).strip()
  return text.rstrip("."), percent


def parse_number(answer: str) -> Number | None:
  """The exact value of a plain-number answer, or None if it is not one.

  Args:
    answer: an extracted answer, e.g. "1,234", "27.0", "50\\%", "x = 5".

  Returns:
    Number(value, percent), or None for anything else (fractions in LaTeX,
    expressions, intervals, ...), which the worker handles.
  """
  if len(answer) > 100:
    return None
  text, percent = _strip_decorations(answer)
  if not text or _NUMBER_RE.fullmatch(text) is None:
    return None
  text = text.replace(",", "")
  try:
    dec = decimal.Decimal(text)
  except decimal.InvalidOperation:
    return None
  if abs(dec.as_tuple().exponent) > _MAX_SCI_EXPONENT or dec.adjusted() > (
      _MAX_SCI_EXPONENT
  ):
    return None
  return Number(fractions.Fraction(dec), percent)


def decimal_comma(answer: str) -> fractions.Fraction | None:
  """The value of `answer` read with a decimal comma, or None.

  Only a single comma that no thousands reading explains counts: `1,22` is
  1.22 and `0,111` is 0.111, but `1,222` (thousands) and `1, 22` (a list)
  give None. The caller decides when this reading applies (mathrl uses it
  only against a plain-number other side, since MATH writes lists of
  roots as `-2,1`).

  Args:
    answer: an extracted answer.

  Returns:
    The exact value, or None.
  """
  if len(answer) > 100:
    return None
  text, percent = _strip_decorations(answer)
  if percent or not _DECIMAL_COMMA_RE.fullmatch(text):
    return None
  if _THOUSANDS_RE.fullmatch(text):
    return None
  return fractions.Fraction(decimal.Decimal(text.replace(",", ".")))


def _candidates(number: Number) -> tuple[fractions.Fraction, ...]:
  if number.percent:
    return (number.value, number.value / 100)
  return (number.value,)


def numbers_equal(pred: Number, gold: Number) -> bool:
  """Exact equality, with math-verify's reading of percentages.

  Args:
    pred: the model's number.
    gold: the reference number.

  Returns:
    True iff some reading of `pred` equals some reading of `gold`, where a
    percentage p% reads as p or p/100 and any other number as itself.
  """
  return bool(set(_candidates(pred)) & set(_candidates(gold)))


def nearly_equal(pred: Number, gold: Number, rel_tol: float = 1e-6) -> bool:
  """True if some readings differ by at most `rel_tol` relative.

  Used to decide whether a non-exact match deserves math-verify's rounding
  rules (worker) or is plainly different (False at once).
  """
  for p in _candidates(pred):
    for g in _candidates(gold):
      if abs(p - g) <= rel_tol * max(abs(g), abs(p), 1):
        return True
  return False
