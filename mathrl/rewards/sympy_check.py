"""The math-verify comparison that runs inside a worker process.

Only the worker imports math-verify/sympy (on first use; the parent only
refers to these functions by name), and only through `check` and
`check_plans`. Both answers
are parsed by math-verify's LaTeX parser (latex2sympy2_extended: a
grammar-based parser, no `eval`) and its plain expression extractor, whose
regular expression only admits digits, operators, dots and spaces before
sympy's `parse_expr` sees the text, so model text is never evaluated as
Python. math-verify's own signal timeouts are disabled here (they only
work in a main thread); the parent bounds the call by killing the worker.

`check_plans` reads each side's `answers.Plan` (the first form that parses
is the answer; see mathrl/rewards/answers.py) and compares them with
math-verify 0.9's `verify(gold, pred)`: float rounding to 6 decimals,
strict symbol matching, and set-relation comparison allowed (so
`x \\in [-2, 7]` equals `-2 \\le x \\le 7` both ways). A prediction's set
of boxed answers is compared too when the gold holds several answers.
Semantics include: a percentage equals both its number and its
fraction (`50\\%` = 50 = 0.5), `x = 5` equals 5, `\\text{}` units are
dropped, sets are unordered and tuples ordered, intervals keep their ends.
"""

import functools
import importlib
import logging
import time

from mathrl.rewards import answers


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


def _parse_prose(text: str) -> list:
  return _math_verify().parse(
      text, extraction_config=_extraction_config(), parsing_timeout=None
  )


def _first_expr(parsed: list):
  """The first sympy object of a parse, or None (a string fallback)."""
  for item in parsed:
    if not isinstance(item, str):
      return item
  return None


def _parse_set(parts: tuple[str, ...]) -> list:
  """Several answers as one sympy FiniteSet.

  The parts are parsed as one comma-separated list (as math-verify reads
  `a, b`); if that is not a set, each part is parsed alone and the results
  (sets among them flattened) are collected.
  """
  finite_set = importlib.import_module("latex2sympy2_extended.sets").FiniteSet
  joined = ", ".join(parts)
  parsed = _parse(joined)
  if isinstance(_first_expr(parsed), finite_set):
    return parsed
  items = []
  for part in parts:
    expr = _first_expr(_parse(part))
    if expr is None:
      return []
    items.extend(expr.args if isinstance(expr, finite_set) else [expr])
  return [finite_set(*items), joined]


def _parse_form(form: answers.Form) -> list:
  if form.kind == answers.SET:
    return _parse_set(form.parts)
  if form.kind == answers.PROSE:
    return _parse_prose(form.parts[0])
  return _parse(form.parts[0])


def _read(forms) -> tuple[list, answers.Form | None]:
  """The first form that parses to a sympy object; else the first string."""
  fallback = ([], None)
  for form in forms:
    parsed = _parse_form(form)
    if _first_expr(parsed) is not None:
      return parsed, form
    if parsed and fallback[1] is None:
      fallback = (parsed, form)
  return fallback


def _holds_several(parsed: list, form: answers.Form) -> bool:
  if form.kind == answers.SET:
    return True
  finite_set = importlib.import_module("latex2sympy2_extended.sets").FiniteSet
  expr = _first_expr(parsed)
  return isinstance(expr, finite_set) and len(expr.args) > 1


def _verify(gold: list, pred: list) -> bool:
  return bool(_math_verify().verify(
      gold, pred, allow_set_relation_comp=True, timeout_seconds=None
  ))


def check_plans(
    pred_plan: answers.Plan, gold_plan: answers.Plan
) -> tuple[bool, str]:
  """Verdict and deciding step for two `answers.Plan`s.

  Args:
    pred_plan: how to read the prediction.
    gold_plan: how to read the gold answer.

  Returns:
    (verdict, step): step is the prediction form's step that decided
    ("box", "cue", "prose", ...; "boxes" when the set of boxes matched),
    or "gold_unparsed" / "pred_unparsed" when a side gives nothing.
  """
  gold, gold_form = _read(gold_plan.forms)
  if gold_form is None:
    return False, "gold_unparsed"
  pred, pred_form = _read(pred_plan.forms)
  if pred_form is not None and _verify(gold, pred):
    return True, pred_form.step
  alternative = pred_plan.alternative
  if alternative is not None and _holds_several(gold, gold_form):
    if _verify(gold, _parse_form(alternative)):
      return True, alternative.step
  if pred_form is None:
    return False, "pred_unparsed"
  return False, pred_form.step


def check(pred: str | answers.Plan, gold: str | answers.Plan) -> bool:
  """True iff math-verify finds `pred` equivalent to `gold`.

  Args:
    pred: the model's answer (already extracted, e.g. a \\boxed content),
      or an `answers.Plan` (then this is `check_plans(pred, gold)[0]`).
    gold: the reference answer (or its Plan).

  Returns:
    The verdict; False when either side does not parse.
  """
  if isinstance(pred, answers.Plan):
    return check_plans(pred, gold)[0]
  gold_parsed = _parse(gold)
  if not gold_parsed:
    return False
  pred_parsed = _parse(pred)
  if not pred_parsed:
    return False
  return _verify(gold_parsed, pred_parsed)


def plain_math_verify(completion: str, gold: str) -> bool:
  """Plain math-verify on the whole texts, for audits (`report`).

  Its own extraction of both sides (LaTeX with boxes first, then plain
  expressions; the rightmost match of the best-ranked pattern) and
  `verify` with its defaults: what a user of math-verify alone would get.
  """
  gold_parsed = _parse_prose(gold)
  pred_parsed = _parse_prose(completion)
  return bool(_math_verify().verify(
      gold_parsed, pred_parsed, timeout_seconds=None))


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
  _parse_prose("The final answer is $1$. Answer: 2")  # compiles its regexes
