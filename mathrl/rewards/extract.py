"""Final-answer extraction from model completions; pure Python, linear time.

`extract_answer` looks, in this order of priority, for
  1. the last complete `\\boxed{...}` or `\\fbox{...}` (braces matched, with
     `\\{`/`\\}` treated as literal braces), or the TeX single-token form
     `\\boxed 5`;
  2. the last GSM8K-style `#### 42` line;
  3. the last "answer is ..." / "answer: ..." phrase ("The answer is 42.",
     "the final answer is $\\frac{3}{4}$").
Math delimiters (`$...$`, `\\(...\\)`, `\\[...\\]`), surrounding bold marks
and a trailing full stop are removed from the result.

Everything here is bounded on purpose, for hostile completions: only the
last `max_completion_chars` characters are searched (the final answer is at
the end), an answer longer than `max_answer_chars` (`MAX_PHRASE_ANSWER_CHARS`
for "answer is" phrases) counts as no answer, and
brace matching is one stack pass over the text (no recursion, no regex
backtracking), so 100k levels of nesting or a 2 MB completion cost
milliseconds.
"""

import re

# Keep the tail: answers come last, and scanning is linear in this length.
MAX_COMPLETION_CHARS = 16_384
# A final answer longer than this is not an answer (MATH-500's longest gold
# answer has 53 characters).
MAX_ANSWER_CHARS = 1_000
# Answers stated in prose ("the answer is ...") or given bare, without a
# box, must be shorter still: a longer phrase is prose, not an answer, and
# would only cost a worker call to reject.
MAX_PHRASE_ANSWER_CHARS = 120

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_GSM8K_RE = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS_RE = re.compile(r"(?i)\banswer\s*(?:is\b|:)\s*:?\s*")
# End of a phrase answer: a full stop before a space or the end, a newline,
# or a comma/semicolon before a word ("is 5, because ...").
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)|\n|[,;]\s+(?=[A-Za-z]{2,})")
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def matching_braces(text: str) -> dict[int, int]:
  """Index of each `{` mapped to the index of its matching `}`.

  One pass with an explicit stack. A backslash escapes the next character,
  so `\\{` and `\\}` (LaTeX literal braces) and `\\\\` do not count.
  Unmatched braces are left out.

  Args:
    text: any string.

  Returns:
    {open_index: close_index} for every matched pair.
  """
  pairs = {}
  stack = []
  i, n = 0, len(text)
  while i < n:
    ch = text[i]
    if ch == "\\":
      i += 2
      continue
    if ch == "{":
      stack.append(i)
    elif ch == "}" and stack:
      pairs[stack.pop()] = i
    i += 1
  return pairs


def _box_at(
    text: str, start: int, pairs: dict[int, int] | None,
    max_answer_chars: int,
) -> tuple[str, int, dict[int, int] | None] | None:
  """(content, end, pairs) of the box whose name ends at `start`, or None.

  None for an unclosed or malformed box; `pairs` (the brace matching) is
  computed on first need and handed back for reuse.
  """
  i = start
  while i < len(text) and text[i] in " \t":
    i += 1
  if i < len(text) and text[i] == "{":
    if pairs is None:
      pairs = matching_braces(text)
    close = pairs.get(i)
    if close is None:
      return None
    return text[i + 1 : close], close + 1, pairs
  if i > start:
    match = re.match(r"[^\s$]+", text[i : i + max_answer_chars + 1])
    if match is not None:
      return match.group(0), i + match.end(), pairs
  return None  # `\boxed\frac..` or `\boxed` at the very end: malformed


def last_boxed(
    text: str, *, max_answer_chars: int = MAX_ANSWER_CHARS
) -> str | None:
  """Content of the last complete `\\boxed{..}` / `\\fbox{..}` in `text`.

  An unclosed box (a truncated completion) is skipped in favour of the
  previous complete one. `\\boxed 5` (TeX's single-token argument) gives
  "5". An empty or over-long last box gives None.

  Args:
    text: the completion (or its tail).
    max_answer_chars: longest accepted content.

  Returns:
    The stripped content, or None.
  """
  pairs = None
  for match in reversed(list(_BOX_RE.finditer(text))):
    found = _box_at(text, match.end(), pairs, max_answer_chars)
    if found is None:
      continue
    content, _, pairs = found
    content = content.strip()
    if not content or len(content) > max_answer_chars:
      return None
    return content
  return None


def boxed_spans(
    text: str, *, max_answer_chars: int = MAX_ANSWER_CHARS,
    max_boxes: int = 64,
) -> list[tuple[int, int, str]]:
  """Every complete box in `text`: (start, end, stripped content), in order.

  Unclosed boxes are skipped; empty and over-long ones are kept with
  content "", so a caller still sees where they are. Only the last
  `max_boxes` boxes are looked at (linear time).

  Args:
    text: the completion (or its tail).
    max_answer_chars: contents longer than this come back as "".
    max_boxes: keep at most this many (the last ones).

  Returns:
    [(start of `\\boxed`, index after its closing brace, content)].
  """
  spans = []
  pairs = None
  for match in list(_BOX_RE.finditer(text))[-max_boxes:]:
    found = _box_at(text, match.end(), pairs, max_answer_chars)
    if found is None:
      continue
    content, end, pairs = found
    content = content.strip()
    if len(content) > max_answer_chars:
      content = ""
    spans.append((match.start(), end, content))
  return spans


def gsm8k_answer(
    text: str, *, max_answer_chars: int = MAX_ANSWER_CHARS
) -> str | None:
  """The rest of the line after the last `####` (GSM8K's gold format)."""
  matches = list(_GSM8K_RE.finditer(text))
  if not matches:
    return None
  answer = strip_answer(matches[-1].group(1))
  if not answer or len(answer) > max_answer_chars:
    return None
  return answer


def _delimited_prefix(text: str) -> str | None:
  """The content of a math span that opens `text`, e.g. `$x$ is ..` -> `x`."""
  for open_, close in _DELIMITERS:
    if text.startswith(open_):
      end = text.find(close, len(open_))
      if end < 0:
        return None
      return text[len(open_) : end]
  return None


def answer_is(
    text: str, *, max_answer_chars: int = MAX_PHRASE_ANSWER_CHARS
) -> str | None:
  """What follows the last "answer is" / "answer:" in `text`.

  A math span right after the phrase is taken whole ("is $\\frac{3}{4}$");
  otherwise the answer runs to the end of the sentence (a full stop
  followed by a space or the end, a newline, or a comma or semicolon
  followed by a word: "is 5, because ...").
  """
  matches = list(_ANSWER_IS_RE.finditer(text))
  if not matches:
    return None
  rest = text[matches[-1].end() : matches[-1].end() + 4 * max_answer_chars]
  rest = rest.lstrip("* ")
  answer = _delimited_prefix(rest)
  if answer is None:
    end = _SENTENCE_END_RE.search(rest)
    answer = rest[: end.start()] if end else rest
  answer = strip_answer(answer)
  if not answer or len(answer) > max_answer_chars:
    return None
  return answer


def strip_answer(answer: str) -> str:
  """Removes math delimiters, bold marks and a trailing full stop."""
  answer = answer.strip()
  for _ in range(4):  # nested wrappers such as **$42$**.
    before = answer
    answer = answer.strip("*").strip()
    for open_, close in _DELIMITERS:
      if (
          answer.startswith(open_)
          and answer.endswith(close)
          and len(answer) >= len(open_) + len(close)
      ):
        answer = answer[len(open_) : len(answer) - len(close)].strip()
        break
    if answer.endswith(".") and not answer.endswith(".."):
      answer = answer[:-1].rstrip()
    if answer == before:
      break
  return answer


def extract_answer(
    completion: str,
    *,
    max_completion_chars: int = MAX_COMPLETION_CHARS,
    max_answer_chars: int = MAX_ANSWER_CHARS,
) -> str | None:
  """The final answer in a completion, or None if it states none.

  Priority: last complete `\\boxed{}`/`\\fbox{}`, then the last `#### n`
  line, then the last "answer is n" phrase. Only the last
  `max_completion_chars` characters are searched.

  Args:
    completion: model output (any length; only its tail is read).
    max_completion_chars: how much of the end of the completion to search.
    max_answer_chars: longest accepted answer; longer gives None. Phrase
      answers ("answer is ...") are also capped at MAX_PHRASE_ANSWER_CHARS.

  Returns:
    The answer string with delimiters stripped, or None.

  Raises:
    TypeError: if `completion` is not a str.
  """
  if not isinstance(completion, str):
    raise TypeError(
        "extract_answer: completion must be a str (decode tokens first), "
        f"got {type(completion).__name__}"
    )
  text = completion[-max_completion_chars:]
  for finder, cap in (
      (last_boxed, max_answer_chars),
      (gsm8k_answer, max_answer_chars),
      (answer_is, min(max_answer_chars, MAX_PHRASE_ANSWER_CHARS)),
  ):
    answer = finder(text, max_answer_chars=cap)
    if answer is not None:
      return answer
  return None
