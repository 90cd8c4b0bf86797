"""Training sources without the problems of an evaluation set.

  train = splits.Excluding(math_test, math500_test)   # 4,500 of 5,000

MATH-500 is a subset of the MATH test split; training on the MATH test
problems outside it and evaluating on MATH-500 is the PRM800K split
(Lightman et al. 2023) that MathForge and most RLVR papers use.
"""

import re
from typing import Any, Sequence


def question_key(question: str) -> str:
  """The question with runs of whitespace collapsed, for matching."""
  return re.sub(r"\s+", " ", question).strip()


class Excluding:
  """A random-access source without the records whose question is in
  `exclude` (matched after collapsing whitespace)."""

  def __init__(self, source: Sequence[dict[str, Any]],
               exclude: Sequence[dict[str, Any]]):
    held_out = {question_key(exclude[i]["question"])
                for i in range(len(exclude))}
    self._source = source
    self._index = [i for i in range(len(source))
                   if question_key(source[i]["question"]) not in held_out]
    self.num_excluded = len(source) - len(self._index)
    """How many records of `source` were dropped."""

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._source[self._index[index]]

  def __repr__(self) -> str:
    return (f"Excluding({self._source!r}, {len(self)} kept,"
            f" {self.num_excluded} excluded)")
