"""Step verdicts for FSPO: every reasoning step of a completion checked alone.

FSPO (Li & Ng, arXiv:2505.24630) flips the sign of the advantage on the
tokens of each step by that step's verdict: +1 (the step is supported), −1
(it is not), 0 (not checked). The authors check sentences of retrieval-QA
reasoning against given evidence with a hallucination classifier; on math
data their verifier has nothing to check and every verdict is 0. Here the
check is arithmetic: a sentence holding equations `expr = number` (the
worked steps of the synthetic task, "46 + 20 = 66.") is +1 when every one
of them holds and −1 when one does not; other sentences are 0. Expressions
are parsed with `ast` and only + − × ÷ and parentheses on numbers are
evaluated; nothing is executed.

Token alignment: each token is decoded on its own and the pieces are
concatenated, so a character offset maps to exactly one token; the
sentences are found in that text (byte-level tokens that split a
multi-byte character decode to replacement characters, which moves no
sentence boundary made of ASCII punctuation).
"""

import ast
import operator
import re
from typing import Callable

import numpy as np

_SENTENCE_END = re.compile(r"[.!?](?!\d)|\n")
_EQUATION = re.compile(
    r"(?P<lhs>[\d(][\d\s.+\-*/×÷()]*?)\s*=\s*(?P<rhs>-?\d+(?:\.\d+)?)")
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub,
        ast.Mult: operator.mul, ast.Div: operator.truediv}
_MAX_EXPRESSION = 200


def sentence_spans(text: str) -> list[tuple[int, int]]:
  """[start, end) character spans of the sentences of `text`.

  A sentence ends after '.', '!' or '?' not followed by a digit (so "2.5"
  stays whole), or at a newline; blank spans are left out.
  """
  spans, start = [], 0
  for match in _SENTENCE_END.finditer(text):
    if text[start:match.end()].strip():
      spans.append((start, match.end()))
    start = match.end()
  if text[start:].strip():
    spans.append((start, len(text)))
  return spans


def _evaluate(node: ast.AST) -> float:
  if isinstance(node, ast.Expression):
    return _evaluate(node.body)
  if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
    return float(node.value)
  if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub,
                                                            ast.UAdd)):
    value = _evaluate(node.operand)
    return -value if isinstance(node.op, ast.USub) else value
  if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
    return _OPS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
  raise ValueError("not an arithmetic expression")


def equation_holds(lhs: str, rhs: str) -> bool | None:
  """|eval(lhs) − rhs| ≤ 1e-6·max(1, |rhs|); None when lhs is no expression.

  A division by zero is a false step.
  """
  lhs = lhs.replace("×", "*").replace("÷", "/").strip()
  if len(lhs) > _MAX_EXPRESSION or not re.search(r"\d\s*[-+*/]", lhs):
    return None
  try:
    value = _evaluate(ast.parse(lhs, mode="eval"))
  except ZeroDivisionError:
    return False
  except (SyntaxError, ValueError, TypeError):
    return None
  target = float(rhs)
  return abs(value - target) <= 1e-6 * max(1.0, abs(target))


def arithmetic_verdict(sentence: str) -> int:
  """+1 if every equation of `sentence` holds, −1 if one fails, 0 if none."""
  results = [equation_holds(m["lhs"], m["rhs"])
             for m in _EQUATION.finditer(sentence)]
  results = [r for r in results if r is not None]
  if not results:
    return 0
  return 1 if all(results) else -1


def token_verdicts(pieces: list[str],
                   verdict: Callable[[str], int] = arithmetic_verdict
                   ) -> np.ndarray:
  """[T] float32: each token gets the verdict of the sentence it starts in.

  Args:
    pieces: the decoded text of each completion token, in order.
    verdict: a sentence's verdict (+1, −1 or 0).

  Returns:
    Verdicts per token (0 for tokens in no sentence, e.g. whitespace).
  """
  if not pieces:
    return np.zeros(0, np.float32)
  text = "".join(pieces)
  starts = np.cumsum([0] + [len(p) for p in pieces[:-1]])
  out = np.zeros(len(pieces), np.float32)
  for start, end in sentence_spans(text):
    value = verdict(text[start:end])
    if value:
      out[(starts >= start) & (starts < end)] = value
  return out


def step_verdicts(tokenizer, tokens_BT: np.ndarray,
                  mask_BT: np.ndarray) -> np.ndarray:
  """[B, T] float32 arithmetic step verdicts of sampled completions.

  FSPO's extra `step_verdicts` (arXiv:2505.24630; see the module
  docstring): +1 on the tokens of a sentence whose equations hold, −1 on
  one with a false equation, 0 elsewhere and on padding.

  Args:
    tokenizer: the run's tokenizer (`decode`).
    tokens_BT: completion ids.
    mask_BT: 1 on generated tokens.

  Returns:
    Verdicts, float32 [B, T].
  """
  cache: dict[int, str] = {}

  def piece(token: int) -> str:
    if token not in cache:
      cache[token] = tokenizer.decode([token])
    return cache[token]

  out = np.zeros(tokens_BT.shape, np.float32)
  for b, (tokens, mask) in enumerate(zip(tokens_BT, mask_BT)):
    n = int(np.sum(mask > 0))
    if n:
      out[b, :n] = token_verdicts([piece(int(t)) for t in tokens[:n]])
  return out
