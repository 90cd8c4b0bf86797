"""MQR: multi-aspect question reformulation (MathForge, arXiv:2601.20614).

Each training question is rewritten along one "aspect" at a time so that it
becomes harder to solve while its gold answer stays exactly the same; the
rewrites are trained on together with the originals (see
`pipeline.MixedSource`). The three aspects of the paper:

  background   wrap the problem in an unrelated story (or a new, more
               elaborate one when it already has a story);
  term         coin an abstract term for a central concept and restate the
               problem with it;
  sub_problem  replace a definite numerical condition by an independent
               sub-problem whose answer is that value.

This module is the pure part: prompt templates, the parser that keeps the
rewritten question only, the filters (empty, malformed, copy, answer leak,
answer not preserved), per-aspect statistics, the output records and the
by-eye report. Generation back ends live in `mqr_backends`, the driver in
`mqr_augment`.

  python -m mathrl.data.mqr WORKDIR/mqr.jsonl [N]   # N examples per aspect
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
import collections
import dataclasses
import difflib
import hashlib
import json
import os
import re
import sys
from typing import Any

from mathrl.data import records as records_lib

ASPECTS = ("background", "term", "sub_problem")
# Reasons a rewrite is rejected, in the order the filters apply them.
# "failed": the generator's (or the solver's) request failed after its
# retries; "bad_response": the endpoint's reply was not a well-formed
# completion; the rest judge the text.
REJECTIONS = ("failed", "bad_response", "empty", "malformed", "copy", "leak",
              "not_preserved")
TEMPLATE_VERSION = "mqr-v1"

SYSTEM = (
    "You are an expert author of competition mathematics problems. You "
    "rewrite a given problem so that it becomes harder to solve while its "
    "final answer stays exactly the same."
)
USER = """Rewrite the math problem below.

Problem:
{question}

Its final answer is: {answer}
The rewritten problem must have exactly this final answer.

How to rewrite it: {instruction}

Rules:
- Keep every condition needed to reach the same final answer.
- Do not state, hint at, or solve for the answer.
- Write only the new problem, between <problem> and </problem>, with no \
solution and no commentary."""
INSTRUCTIONS = {
    "background": (
        "Place the problem inside a story or real-world setting that seems "
        "connected to it but leaves its mathematics unchanged. If the "
        "problem already has a setting, replace it with a new, more "
        "elaborate one."
    ),
    "term": (
        "Coin a new, abstract mathematical term for a concept at the heart "
        "of the problem, define it precisely, and restate the whole "
        "problem in terms of it."
    ),
    "sub_problem": (
        "Choose a numerical condition of the problem that has a definite "
        "value and replace that value by an independent sub-problem, from "
        "any branch of mathematics (algebra, geometry, number theory, "
        "combinatorics, ...), whose answer is that value."
    ),
}
_OPEN, _CLOSE = "<problem>", "</problem>"
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)
_LABEL_RE = re.compile(
    r"^\s*(\*\*)?(rewritten|new|reformulated)?\s*(problem|question)\s*:"
    r"(\*\*)?\s*", re.IGNORECASE)
_FENCE_RE = re.compile(r"^```[a-z]*\n?|\n?```$")
_WORD_RE = re.compile(r"[^0-9a-z]+")


@dataclasses.dataclass(frozen=True)
class Template:
  """The reformulation prompt: a system message, a user message, aspects.

  `{question}`, `{answer}` and `{instruction}` in `user` are replaced by
  plain substitution (LaTeX braces need no escaping).

  Attributes:
    system: the system message ("" sends none).
    user: the user message.
    instructions: aspect name -> instruction text.
    version: recorded in every output record; `make_template` derives it.
  """

  system: str = SYSTEM
  user: str = USER
  instructions: Mapping[str, str] = dataclasses.field(
      default_factory=lambda: dict(INSTRUCTIONS))
  version: str = TEMPLATE_VERSION

  def __post_init__(self):
    for field in ("{question}", "{answer}", "{instruction}"):
      if field not in self.user:
        raise ValueError(
            f"MQR user template lacks {field}; it must contain {{question}},"
            " {answer} and {instruction}")

  def messages(self, question: str, answer: str,
               aspect: str) -> list[dict[str, str]]:
    """Chat messages asking for one rewrite of `question` along `aspect`."""
    if aspect not in self.instructions:
      raise ValueError(
          f"unknown MQR aspect {aspect!r}; this template has "
          f"{sorted(self.instructions)}")
    user = (self.user.replace("{instruction}", self.instructions[aspect])
            .replace("{answer}", answer).replace("{question}", question))
    out = [{"role": "system", "content": self.system}] if self.system else []
    return out + [{"role": "user", "content": user}]

  def fixed_text(self, aspect: str) -> str:
    """The prompt's own words for `aspect` (no question, no answer)."""
    user = self.user.replace("{instruction}", self.instructions[aspect])
    for field in ("{question}", "{answer}"):
      user = user.replace(field, "\n")
    return self.system + "\n" + user


def make_template(system: str = "", user: str = "",
                  instructions: Mapping[str, str] | None = None) -> Template:
  """The built-in template with any non-empty override.

  An overridden template is versioned `mqr-v1+<hash of its texts>` so
  records made with different texts are told apart.

  Args:
    system: system message; "" keeps the built-in one.
    user: user message; "" keeps the built-in one.
    instructions: aspect -> instruction; empty values keep the built-in.

  Returns:
    The `Template`.
  """
  merged = dict(INSTRUCTIONS)
  merged.update({k: v for k, v in (instructions or {}).items() if v})
  t = Template(system=system or SYSTEM, user=user or USER,
               instructions=merged)
  if (t.system, t.user, t.instructions) == (SYSTEM, USER, INSTRUCTIONS):
    return t
  text = json.dumps([t.system, t.user, sorted(merged.items())])
  digest = hashlib.sha256(text.encode()).hexdigest()[:8]
  return dataclasses.replace(t, version=f"{TEMPLATE_VERSION}+{digest}")


def check_aspects(aspects: Sequence[str]) -> tuple[str, ...]:
  """`aspects` as a tuple, each one of ASPECTS, no repeats."""
  bad = [a for a in aspects if a not in ASPECTS]
  if bad or not aspects or len(set(aspects)) != len(aspects):
    raise ValueError(
        f"MQR aspects {list(aspects)} must be distinct names from {ASPECTS}")
  return tuple(aspects)


# --- parsing and filters ------------------------------------------------------


def parse_rewrite(text: str, *, require_tags: bool = False
                  ) -> tuple[str | None, str]:
  """The rewritten question in a generator's reply, and a verdict.

  A reply with `<problem>...</problem>` gives the text between the first
  pair; an opening tag without its closing one (a truncated reply) is
  malformed. Without tags (weak models often drop them) the whole reply is
  taken, less `<think>` blocks, a code fence and a leading "Rewritten
  problem:" label, unless `require_tags`.

  Args:
    text: the reply.
    require_tags: reject replies without the tags as malformed.

  Returns:
    (question or None, "ok" | "empty" | "malformed").
  """
  text = _THINK_RE.sub("", text or "").strip()
  if not text:
    return None, "empty"
  start = text.find(_OPEN)
  if start >= 0:
    end = text.find(_CLOSE, start)
    if end < 0:
      return None, "malformed"
    text = text[start + len(_OPEN):end]
  elif require_tags or _CLOSE in text:
    return None, "malformed"
  text = _LABEL_RE.sub("", _FENCE_RE.sub("", text.strip())).strip()
  if not text:
    return None, "empty"
  if "{question}" in text or "{instruction}" in text or _OPEN in text:
    return None, "malformed"
  return text, "ok"


def _words(text: str) -> str:
  return _WORD_RE.sub(" ", text.lower()).strip()


def is_copy(original: str, rewrite: str, threshold: float = 0.95) -> bool:
  """Whether `rewrite` is (nearly) the original: word-level similarity.

  similarity = difflib ratio of the lower-cased alphanumeric word streams;
  a copy is similarity >= `threshold` (1.0 only rejects exact copies).
  """
  a, b = _words(original), _words(rewrite)
  if a == b:
    return True
  return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= (
      threshold)


def _mentions(text: str, answer: str) -> int:
  pattern = (r"(?<![0-9A-Za-z.\\])" + re.escape(answer)
             + r"(?![0-9A-Za-z])(?!\.\d)")
  return len(re.findall(pattern, text))


def leaks_answer(original: str, rewrite: str, gold: str) -> bool:
  """Whether `rewrite` gives away the gold answer.

  A leak is a `\\boxed{}` the original did not have, or more standalone
  occurrences of the gold answer's text (spaces and `$` removed) than in
  the original: the gold appearing as a stated value. This errs towards
  rejecting (a sub-problem may legitimately use the same number); the
  rejections are counted per aspect.
  """
  if "\\boxed" in rewrite and "\\boxed" not in original:
    return True
  answer = gold.replace("$", "").strip()
  if not answer:
    return False
  squeeze = lambda s: s.replace("$", "")
  return _mentions(squeeze(rewrite), answer) > _mentions(
      squeeze(original), answer)


def echoes(rewrite: str, prompt_text: str, n: int = 8) -> bool:
  """Whether `rewrite` repeats n consecutive words of the prompt's own text.

  `prompt_text` is the template's fixed text (system, user message and
  instruction, without the question); a reply that copies a run of it
  restates the request instead of a problem.
  """
  def grams(text):
    words = _words(text).split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}
  return bool(grams(rewrite) & grams(prompt_text))


def screen(original: str, gold: str, reply: str, *,
           max_length_ratio: float, copy_threshold: float,
           require_tags: bool = False, truncated: bool = False,
           prompt_text: str = "") -> tuple[str | None, str]:
  """Parses a reply and applies the text filters.

  Args:
    original: the original question.
    gold: its gold answer.
    reply: the generator's reply text.
    max_length_ratio: a rewrite longer than this many times the original
      (in characters, at least 2000 characters allowed) is malformed: a
      runaway reply.
    copy_threshold: see `is_copy`.
    require_tags: see `parse_rewrite`.
    truncated: the reply was cut by the length cap: malformed unless its
      `</problem>` tag came before the cut (an unfinished problem is
      incomplete).
    prompt_text: the template's fixed text; a rewrite that `echoes` it is
      malformed.

  Returns:
    (rewrite or None, verdict): verdict "kept" or one of REJECTIONS
    ("not_preserved" is decided later, by the solver).
  """
  rewrite, verdict = parse_rewrite(reply, require_tags=require_tags)
  if rewrite is None:
    return None, verdict
  cut = truncated and _CLOSE not in reply  # closed tags: the problem ended
  if cut or len(rewrite) > max(max_length_ratio * len(original), 2000):
    return rewrite, "malformed"
  if prompt_text and echoes(rewrite, prompt_text):
    return rewrite, "malformed"
  if is_copy(original, rewrite, copy_threshold):
    return rewrite, "copy"
  if leaks_answer(original, rewrite, gold):
    return rewrite, "leak"
  return rewrite, "kept"


def majority_preserves(completions: Sequence[str], gold: str,
                       equal: Callable[[str, str], bool]) -> bool:
  """Whether the majority answer of a solver's completions equals the gold.

  Answers are extracted with `rewards.extract_answer` and voted as in
  `evaluation.maj_at_k` (largest cluster wins, ties go to the earliest,
  unanswered completions abstain); `equal(completion, gold)` is the
  correctness check (`rewards.math_equal`).
  """
  from mathrl import evaluation  # pylint: disable=g-import-not-at-top
  from mathrl import rewards  # pylint: disable=g-import-not-at-top
  if not completions:
    return False
  answers = [rewards.extract_answer(c) for c in completions]
  correct = [a is not None and bool(equal(a, gold)) for a in answers]
  return evaluation.maj_at_k(answers, correct, len(completions)) == 1.0


# --- statistics ---------------------------------------------------------------


class Stats:
  """Per-aspect counts of verdicts and of the generator's and solver's cost.

  `counts[aspect][name]`: `requested` (generator requests), `kept`, each
  of REJECTIONS, `solved` (solver requests, n=k replies each), the tokens
  `gen_prompt_tokens`, `gen_completion_tokens`, `solve_prompt_tokens`,
  `solve_completion_tokens`, and `gen_sent` / `solve_sent`: the requests
  that were not cache hits (what this run paid for).
  """

  def __init__(self, aspects: Sequence[str]):
    self.counts = {a: collections.Counter() for a in aspects}
    self.skipped_sources: collections.Counter = collections.Counter()

  def add(self, aspect: str, name: str, value: int = 1) -> None:
    self.counts[aspect][name] += value

  def as_dict(self) -> dict[str, Any]:
    out = {a: dict(c) for a, c in self.counts.items()}
    out["skipped_sources"] = dict(self.skipped_sources)
    return out

  def table(self) -> str:
    """A fixed-width table: one row per aspect, one column per verdict."""
    cols = ("requested", "kept") + REJECTIONS
    lines = [f"{'aspect':<12}" + "".join(f"{c:>14}" for c in cols)]
    for aspect, c in self.counts.items():
      lines.append(f"{aspect:<12}" + "".join(f"{c[k]:>14}" for k in cols))
    if self.skipped_sources:
      lines.append(f"skipped source questions: {dict(self.skipped_sources)}")
    return "\n".join(lines)


# --- records ------------------------------------------------------------------

_CARRIED = ("difficulty", "source")
_RECORD_FIELDS = ("id", "source_id", "aspect", "question", "answer",
                  "original_question", "generator", "template_version")


def make_record(source: Mapping[str, Any], aspect: str, rewrite: str, *,
                generator: str, template_version: str,
                verdict: str = "kept", **extra: Any) -> dict[str, Any]:
  """An output record: the rewrite with its source's id and gold answer.

  The source's `difficulty` and `source` (benchmark name) are carried
  over when present; its worked `solution` is not (it does not solve the
  rewrite).
  """
  carried = {k: source[k] for k in _CARRIED if k in source}
  return {
      **carried,
      "id": f"{source['id']}/mqr/{aspect}",
      "source_id": str(source["id"]),
      "aspect": aspect,
      "question": rewrite,
      "answer": str(source["answer"]),
      "original_question": str(source["question"]),
      "generator": generator,
      "template_version": template_version,
      "verdict": verdict,
      **extra,
  }


def load(path: str | os.PathLike[str],
         aspects: Sequence[str] = ASPECTS) -> list[dict[str, Any]]:
  """The kept rewrites of the chosen aspects in an MQR records file.

  Args:
    path: a JSON Lines file written by `mqr_augment` (`mqr.jsonl`).
    aspects: keep records of these aspects only.

  Returns:
    Records (dicts with question, answer, id, source_id, aspect, ...): a
    random-access source for `pipeline.prompt_dataset`.

  Raises:
    RecordError: a line lacks a field (naming file, line and field).
    ValueError: no record of the chosen aspects is in the file.
  """
  aspects = check_aspects(aspects)
  out = []
  for line in records_lib.read_jsonl(path):
    for field in _RECORD_FIELDS:
      line.get(field, str)
    if line.data["aspect"] in aspects:
      out.append(line.data)
  if not out:
    raise ValueError(
        f"{path} holds no MQR record of aspects {list(aspects)}; run "
        "--mode=augment with those aspects or change data.mqr.aspects")
  return out


def report(records: Iterable[Mapping[str, Any]], per_aspect: int = 3) -> str:
  """Markdown: the first `per_aspect` rewrites of each aspect, by eye."""
  by_aspect = collections.defaultdict(list)
  for r in records:
    if len(by_aspect[r["aspect"]]) < per_aspect:
      by_aspect[r["aspect"]].append(r)
  parts = ["# MQR rewrites: original vs rewrite\n"]
  if not by_aspect:
    parts.append("(none)\n")
  for aspect in sorted(by_aspect, key=lambda a: (a not in ASPECTS, a)):
    parts.append(f"## {aspect}\n")
    for r in by_aspect[aspect]:
      parts.append(
          f"### {r['source_id']} (gold: {r['answer']}; "
          f"{r.get('verdict', 'kept')})\n\n"
          f"**Original.** {r['original_question']}\n\n"
          f"**Rewrite.** {r['question']}\n")
  return "\n".join(parts)


def main(argv: Sequence[str]) -> None:
  if len(argv) not in (2, 3):
    sys.exit("usage: python -m mathrl.data.mqr RECORDS.jsonl [N_PER_ASPECT]")
  lines = records_lib.read_jsonl(argv[1])
  n = int(argv[2]) if len(argv) == 3 else 3
  print(report((line.data for line in lines), per_aspect=n))


if __name__ == "__main__":
  main(sys.argv)
