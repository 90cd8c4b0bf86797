"""The math-verify comparison that runs inside a worker process.

Only the worker imports math-verify/sympy (on first use; the parent only
refers to these functions by name), and only through `check`. Both answers
are parsed by math-verify's LaTeX parser (latex2sympy2_extended: a
grammar-based parser, no `eval`) and its plain expression extractor, whose
regular expression only admits digits, operators, dots and spaces before
sympy's `parse_expr` sees the text, so model text is never evaluated as
Python. math-verify's own signal timeouts are disabled here (they only
work in a main thread); the parent bounds the call by killing the worker.

Semantics are math-verify 0.9's `verify(gold, pred)` with its defaults
(float rounding to 6 decimals, strict symbol matching, no set-relation
comparison), which include: a percentage equals both its number and its
fraction (`50\\%` = 50 = 0.5), `x = 5` equals 5, `\\text{}` units are
dropped, sets are unordered and tuples ordered, intervals keep their ends.
"""

import functools
import importlib
import logging
import time


@functools.cache
def _math_verify():
  # Imported on first use, so that the parent process, which only needs
  # this module's functions by reference, never loads sympy.
  return importlib.import_module("math_verify")


@functools.cache
def _extraction_config() -> tuple:
  math_verify = _math_verify()
  return (
      math_verify.LatexExtractionConfig(boxed_match_priority=0),
      math_verify.ExprExtractionConfig(),
  )


def _parse(answer: str) -> list:
  return _math_verify().parse(
      "\\boxed{" + answer + "}",
      extraction_config=_extraction_config(),
      parsing_timeout=None,
  )


def check(pred: str, gold: str) -> bool:
  """True iff math-verify finds `pred` equivalent to `gold`.

  Args:
    pred: the model's answer (already extracted, e.g. a \\boxed content).
    gold: the reference answer.

  Returns:
    The verdict; False when either side does not parse.
  """
  gold_parsed = _parse(gold)
  if not gold_parsed:
    return False
  pred_parsed = _parse(pred)
  if not pred_parsed:
    return False
  return bool(
      _math_verify().verify(gold_parsed, pred_parsed, timeout_seconds=None)
  )


def sleep_then_check(seconds: float, pred: str, gold: str) -> bool:
  """`check` after a delay: lets tests simulate a stuck verification."""
  time.sleep(seconds)
  return check(pred, gold)


def warmup() -> None:
  """Worker start-up: quiet math-verify's logs, pay first-call costs."""
  # math-verify logs each parse failure with the full input (and warns that
  # its timeout is disabled); the parent does its own rate-limited logging.
  for name in ("math_verify", "latex2sympy2_extended"):
    logging.getLogger(name).setLevel(logging.CRITICAL)
  check("\\frac{1}{2}", "0.5")
  check("(1, 2]", "x = 3")
