"""Which answer a completion (or a gold) states: a plan for the grader.

Pure Python, linear time, no sympy: this runs in the caller's process and
decides *where* the answer is; the worker (`sympy_check.check_plans`)
decides what it means. An answer is a `Form`:

  latex  one answer, parsed as the content of a `\\boxed{}` (the LaTeX
         parser then reads sets, intervals, tuples, relations, matrices);
  set    several answers (several boxes), compared as one set;
  prose  a stretch of text that math-verify's own extraction reads
         (cue words such as "final answer is" / "Answer:", display and
         inline math, plain numbers, the rightmost match winning).

A prediction's plan (`pred_plan`), in order:
  1. boxes: the last complete `\\boxed{}`/`\\fbox{}` (the last-box rule); if
     "final answer" follows the last box, the text from there on is read
     first (a restated final answer supersedes the box);
     when the completion ends in several boxes listed together
     (`\\boxed{1}, \\boxed{2}`,
     `\\boxed{a} \\quad\\text{and}\\quad \\boxed{b}`),
     the set of their distinct answers is kept as an alternative, used
     only when the gold holds several answers;
  2. a GSM8K `#### n` line;
  3. an "answer is ..." phrase, if what follows is math rather than prose;
  4. one line of unmarked math, no prose words (a bare answer such as
     `(1, 2]`);
  5. otherwise the tail of the text as prose.
A gold's plan (`gold_plan`): the distinct answers of its last box and the
boxes listed with it (one: that answer; several: their set), else
`#### n`, else the bare gold (prose when it holds math delimiters inside,
or is long and reads as prose: a worked solution). Each plan lists forms
tried in order; the first that parses wins. docs/grading.md has the
reasons and the known disagreements with other graders.
"""

import re
from typing import NamedTuple

from mathrl.rewards import extract
from mathrl.rewards import numeric

LATEX = "latex"
SET = "set"
PROSE = "prose"

# How much of an unboxed completion is read as prose (math-verify scans it
# with many patterns; the final answer is at the end).
MAX_PROSE_CHARS = 4_000

# A restated final answer after the last box supersedes it.
_CUE_RE = re.compile(r"(?i)\bfinal\s+answer\b")
# A lower-case word of 3+ letters (an initial capital allowed) that is not
# a LaTeX command: prose, not math (`ABC`, `SRMC` are names of things).
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z][a-z]{2,}(?![A-Za-z])")
# Words that bare math answers do contain.
_MATH_WORDS = frozenset(
    ("and", "sin", "cos", "tan", "cot", "sec", "csc", "log", "exp", "deg",
     "max", "min", "mod", "gcd", "lcm", "inf", "infty", "sqrt", "frac",
     "pmatrix", "bmatrix", "matrix", "cup", "cap", "arcsin", "arccos",
     "arctan", "sinh", "cosh", "tanh", "cdot", "times", "div", "cis")
)
# Between two boxes of one list of answers: spacing and math delimiters.
_GAP_NOISE_RE = re.compile(r"\\q?quad|\\[,;:! ]|\\[\[\]()]|\$|[.;:]")
_MAX_GAP_CHARS = 60
_DELIMITER_RE = re.compile(r"(?<!\\)\$|\\[()\[\]]")
_GAP_WORD_RE = re.compile(r"[A-Za-z0-9]+")
_TEXT_ARG_RE = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mbox|operatorname|mathbf)\s*\{[^{}]*\}"
)


class Form(NamedTuple):
  """One reading of an answer.

  Attributes:
    kind: LATEX, SET or PROSE (see the module docstring).
    parts: the answer text(s): one for LATEX and PROSE, several for SET.
    step: the extraction step that found it, for statistics ("box",
      "boxes", "cue", "gsm8k", "phrase", "bare", "prose").
  """

  kind: str
  parts: tuple[str, ...]
  step: str


class Plan(NamedTuple):
  """The readings of one side of a comparison.

  Attributes:
    forms: tried in order; the first that parses is the answer.
    alternative: for a prediction, the set of the boxes listed together at
      its end (or None), compared only when the gold holds several answers.
  """

  forms: tuple[Form, ...]
  alternative: Form | None = None

  @property
  def step(self) -> str:
    return self.forms[0].step if self.forms else "none"


def _is_math(text: str) -> bool:
  """Not prose, or a plain number with a unit word ("18 dollars")."""
  return not is_prose(text) or numeric.parse_number(text) is not None


def is_prose(text: str) -> bool:
  """True if `text` holds words (3+ letters, outside `\\text{}` and commands)
  that are not math: "The largest $n$ is 34" is prose, `x \\in [2, 5)` and
  `\\sin x + 1` are not."""
  text = _TEXT_ARG_RE.sub(" ", text)
  return any(w.lower() not in _MATH_WORDS for w in _WORD_RE.findall(text))


def _lists_answers(gap: str) -> bool:
  """True if the text between two boxes joins them into one list of
  answers: no word or number at all (spacing, delimiters, punctuation), or
  a comma or an "and"/"or" in a short gap (`\\quad \\text{and} \\quad`)."""
  if len(gap) > _MAX_GAP_CHARS:
    return False
  gap = _TEXT_ARG_RE.sub(lambda m: " " + m.group(0).split("{", 1)[1][:-1], gap)
  gap = _GAP_NOISE_RE.sub(" ", gap)
  if "," in gap:
    return True
  words = [w.lower() for w in _GAP_WORD_RE.findall(gap)]
  return not words or "and" in words or "or" in words


def _last_chain(text: str, spans):
  """The boxes that end the text and are joined as one list of answers."""
  chain = [spans[-1]]
  for span in reversed(spans[:-1]):
    if not _lists_answers(text[span[1]:chain[0][0]]):
      break
    chain.insert(0, span)
  return chain


def _distinct(contents: list[str]) -> list[str]:
  seen = []
  for content in contents:
    content = extract.strip_answer(content)
    if content and content not in seen:
      seen.append(content)
  return seen


def _boxed_forms(text: str, spans, step: str) -> list[Form]:
  """The forms of a boxed prediction: a cue after the last box, the box."""
  forms = []
  after = text[spans[-1][1]:]
  cue = None
  for cue in _CUE_RE.finditer(after):
    pass
  if cue is not None:
    forms.append(Form(PROSE, (after[cue.start():][:MAX_PROSE_CHARS],), "cue"))
  if spans[-1][2]:
    forms.append(Form(LATEX, (extract.strip_answer(spans[-1][2]),), step))
  return forms


def pred_plan(
    completion: str,
    *,
    max_completion_chars: int = extract.MAX_COMPLETION_CHARS,
    max_answer_chars: int = extract.MAX_ANSWER_CHARS,
) -> Plan:
  """How to read the final answer of a completion (module docstring).

  Args:
    completion: a model completion, or a bare answer.
    max_completion_chars: only this many trailing characters are read.
    max_answer_chars: longer boxed answers count as none.

  Returns:
    The Plan; `Plan(())` when the completion states no answer (e.g. its
    only box is cut short).
  """
  text = completion[-max_completion_chars:]
  spans = extract.boxed_spans(text, max_answer_chars=max_answer_chars)
  if spans:
    boxes = _distinct([c for _, _, c in _last_chain(text, spans)])
    alternative = None
    if len(boxes) > 1:
      alternative = Form(SET, tuple(boxes), "boxes")
    return Plan(tuple(_boxed_forms(text, spans, "box")), alternative)
  if "\\boxed" in text or "\\fbox" in text:
    return Plan(())  # a box cut short: no stated answer
  gsm8k = extract.gsm8k_answer(text, max_answer_chars=max_answer_chars)
  if gsm8k is not None:
    return Plan((Form(LATEX, (gsm8k,), "gsm8k"),))
  tail = text[-MAX_PROSE_CHARS:]
  prose = Form(PROSE, (tail,), "prose")
  phrase = extract.answer_is(text)
  if phrase is not None and _is_math(phrase):
    return Plan((Form(LATEX, (phrase,), "phrase"), prose))
  bare = extract.strip_answer(text)
  if (bare and len(bare) <= max_answer_chars and "\n" not in bare
      and _is_math(bare)):
    if not _has_inner_delimiters(bare):
      return Plan((Form(LATEX, (bare,), "bare"),))
    return Plan((prose, Form(LATEX, (bare,), "bare")))
  return Plan((prose,))


def _has_inner_delimiters(text: str) -> bool:
  """Math delimiters inside the text: math set in prose, not a bare answer.

  `\\$` (a dollar sign) is not a delimiter.
  """
  return bool(_DELIMITER_RE.search(text))


def gold_plan(
    gold: str, *, max_answer_chars: int = extract.MAX_ANSWER_CHARS
) -> Plan:
  """How to read a gold answer: bare, several boxes, or a full solution.

  Args:
    gold: the reference answer (trusted data, any length).
    max_answer_chars: longest accepted answer.

  Returns:
    The Plan; `Plan(())` when no answer can be taken from it.
  """
  spans = extract.boxed_spans(gold, max_answer_chars=max_answer_chars)
  boxes = _distinct([c for _, _, c in spans and _last_chain(gold, spans)])
  if len(boxes) == 1:
    return Plan((Form(LATEX, (boxes[0],), "box"),))
  if boxes:
    return Plan((Form(SET, tuple(boxes), "boxes"),))
  if spans:
    return Plan(())  # empty or over-long boxes only
  if "\\boxed" in gold or "\\fbox" in gold:
    # An unclosed box: trusted data, so let math-verify try to read it
    # (it takes the box to the last `}`); if it cannot, the worker reports
    # the gold as unextractable.
    return Plan((Form(PROSE, (gold[-MAX_PROSE_CHARS:],), "prose"),))
  gsm8k = extract.gsm8k_answer(gold, max_answer_chars=max_answer_chars)
  if gsm8k is not None:
    return Plan((Form(LATEX, (gsm8k,), "gsm8k"),))
  bare = extract.strip_answer(gold)
  if not bare:
    return Plan(())
  forms = []
  if _has_inner_delimiters(bare) or (
      len(bare) > extract.MAX_PHRASE_ANSWER_CHARS and is_prose(bare)):
    forms.append(Form(PROSE, (gold[-MAX_PROSE_CHARS:],), "prose"))
  if len(bare) <= max_answer_chars:
    forms.append(Form(LATEX, (bare,), "bare"))
  return Plan(tuple(forms))
