"""`grading_report`: audit the grading of a file of (completion, gold) pairs.

The command line is `python -m mathrl.rewards.audit FILE`. The file is JSON
Lines, one pair per line: the completion under "completion"
(or "response", "output", "prediction") and the gold under "gold" (or
"answer"). `mathrl.evaluation.write_samples` (`--mode=eval` samples) writes
exactly this. The report gives, for the whole file:

  * how often each step decided (`fast_path`, `same_text`, `worker:box`,
    `worker:prose`, ..., see `verify.MathVerifier.grade`), and which
    extraction step found each completion's answer;
  * the gold answers that could not be extracted (those pairs scored 0),
    worker timeouts and errors;
  * the agreement with plain math-verify (its own extraction of the whole
    texts, `parse` + `verify`, run in the same bounded worker pool) and a
    sample of the pairs where the two disagree.

Lines that are not JSON objects with both fields are counted and reported
(`skipped_lines`), never silently dropped.
"""

import collections
import json
import os
from typing import Any, Sequence

from mathrl.rewards import sympy_check
from mathrl.rewards import verify

_COMPLETION_KEYS = ("completion", "response", "output", "prediction")
_GOLD_KEYS = ("gold", "answer")
_SHOWN_CHARS = 300


def _field(record: dict[str, Any], keys: Sequence[str]) -> str | None:
  for key in keys:
    value = record.get(key)
    if isinstance(value, str):
      return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return str(value)
  return None


def read_pairs(path: str | os.PathLike[str]) -> tuple[list, list]:
  """(completion, gold) pairs of a JSON Lines file, and the skipped lines.

  Returns:
    (pairs [(line number, completion, gold)], skipped [(line, reason)]).
  """
  pairs, skipped = [], []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        skipped.append((number, f"not JSON: {e.msg}"))
        continue
      if not isinstance(record, dict):
        skipped.append((number, "not a JSON object"))
        continue
      completion = _field(record, _COMPLETION_KEYS)
      gold = _field(record, _GOLD_KEYS)
      if completion is None or gold is None:
        skipped.append((number, f"needs one of {_COMPLETION_KEYS} and one "
                                f"of {_GOLD_KEYS} as strings"))
        continue
      pairs.append((number, completion, gold))
  return pairs, skipped


def _rates(counts: collections.Counter, total: int) -> dict[str, float]:
  return {k: v / max(total, 1) for k, v in counts.most_common()}


def _tail(text: str) -> str:
  return text if len(text) <= _SHOWN_CHARS else "…" + text[-_SHOWN_CHARS:]


def grading_report(
    samples_jsonl: str | os.PathLike[str],
    *,
    verifier: verify.MathVerifier | None = None,
    max_disagreements: int = 20,
    compare_plain: bool = True,
) -> dict[str, Any]:
  """The grading audit of a file of (completion, gold) pairs.

  Args:
    samples_jsonl: the JSON Lines file (module docstring).
    verifier: the MathVerifier to audit (default: the process-wide one).
    max_disagreements: how many disagreements with plain math-verify to
      show (the first ones in file order).
    compare_plain: also grade every pair with plain math-verify.

  Returns:
    A dict: num_pairs, skipped_lines ([(line, reason)]), accuracy,
    decided_by ({step: rate}), extracted_by ({extraction step: rate}),
    gold_unextractable / timeouts / grader_errors (counts),
    unextractable_golds (the first `max_disagreements`: {line, gold}), and
    with `compare_plain`: math_verify_accuracy, agreement (rate),
    num_disagreements, disagreements ([{line, completion (tail), gold,
    mathrl, math_verify, decided_by}]).
  """
  verifier = verifier or verify.default_verifier()
  pairs, skipped = read_pairs(samples_jsonl)
  completions = [c for _, c, _ in pairs]
  golds = [g for _, _, g in pairs]
  graded = verifier.grade_batch(completions, golds) if pairs else []
  steps = collections.Counter(step for _, step in graded)
  extracted = collections.Counter(verifier.plan(c).step for c in completions)
  counts = verify.grading_metrics(steps, prefix="")
  report: dict[str, Any] = {
      "num_pairs": len(pairs),
      "skipped_lines": skipped,
      "accuracy": sum(v for v, _ in graded) / max(len(pairs), 1),
      "decided_by": _rates(steps, len(pairs)),
      "extracted_by": _rates(extracted, len(pairs)),
      "gold_unextractable": int(counts["gold_unextractable"]),
      "unextractable_golds": [
          {"line": line, "gold": _tail(gold)}
          for (line, _, gold), (_, step) in zip(pairs, graded)
          if step == verify.GOLD_UNEXTRACTABLE][:max_disagreements],
      "timeouts": int(counts["timeouts"]),
      "grader_errors": int(counts["grader_errors"]),
  }
  if compare_plain and pairs:
    report.update(_compare_with_plain(
        verifier, pairs, graded, max_disagreements))
  return report


def _compare_with_plain(verifier, pairs, graded, max_disagreements):
  tail = verifier.max_completion_chars
  results = verifier.worker_pool.map(
      sympy_check.plain_math_verify,
      [(c[-tail:], g[-tail:]) for _, c, g in pairs],
      timeout_s=verifier.timeout_s,
  )
  plain = [bool(r.value) if r.ok else None for r in results]
  differ = [i for i, p in enumerate(plain) if p is not None
            and p != graded[i][0]]
  decided = [p for p in plain if p is not None]
  return {
      "math_verify_accuracy": sum(decided) / max(len(decided), 1),
      "math_verify_failures": len(plain) - len(decided),
      "agreement": 1 - len(differ) / max(len(decided), 1),
      "num_disagreements": len(differ),
      "disagreements": [
          {"line": pairs[i][0], "completion": _tail(pairs[i][1]),
           "gold": _tail(pairs[i][2]), "mathrl": graded[i][0],
           "math_verify": plain[i], "decided_by": graded[i][1]}
          for i in differ[:max_disagreements]
      ],
  }


def format_report(report: dict[str, Any]) -> str:
  """A readable multi-line summary of `grading_report`'s dict."""
  lines = [
      f"pairs: {report['num_pairs']}  skipped lines: "
      f"{len(report['skipped_lines'])}  accuracy: {report['accuracy']:.4f}",
      f"gold answers not extractable: {report['gold_unextractable']}  "
      f"timeouts: {report['timeouts']}  grader errors: "
      f"{report['grader_errors']}",
  ]
  for line, reason in report["skipped_lines"][:10]:
    lines.append(f"  skipped line {line}: {reason}")
  for item in report["unextractable_golds"]:
    lines.append(f"  no answer in the gold of line {item['line']}: "
                 f"{item['gold']!r}")
  for title, key in (("decided by", "decided_by"),
                     ("answer found by", "extracted_by")):
    lines.append(title + ":")
    lines += [f"  {k:<24} {v:.4f}" for k, v in report[key].items()]
  if "agreement" in report:
    lines.append(
        f"plain math-verify: accuracy {report['math_verify_accuracy']:.4f},"
        f" agreement {report['agreement']:.4f}, "
        f"{report['num_disagreements']} disagreements, "
        f"{report['math_verify_failures']} not decided (timeout/error)")
    for d in report["disagreements"]:
      lines.append(
          f"  line {d['line']}: mathrl={d['mathrl']} math-verify="
          f"{d['math_verify']} ({d['decided_by']}) gold={d['gold']!r} "
          f"completion={d['completion']!r}")
  return "\n".join(lines)
