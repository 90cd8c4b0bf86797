"""Reading raw JSON Lines benchmark files with errors that point at the line.

Every benchmark ships as JSON Lines with its own field names. This module
reads such a file and hands out typed fields; when a line is not JSON, or a
field is missing or of the wrong type, the error names the file, the line
number (1-based, as an editor shows it) and the field, so a corrupt download
or a hand-edited copy is found in seconds.
"""

from collections.abc import Iterator
import dataclasses
import json
import os
from typing import Any

# Canonical record fields, in order; every benchmark is normalised to these.
# `difficulty` is the benchmark's own level as text ("1".."5" for MATH and
# MATH-500), "" when it has none.
FIELDS = ("question", "answer", "solution", "source", "id", "difficulty")


class RecordError(ValueError):
  """A raw record is malformed; the message names file, line and field."""


@dataclasses.dataclass(frozen=True)
class RawLine:
  """One decoded JSON Lines record and where it came from.

  Attributes:
    path: the file it was read from.
    line: 1-based line number in that file.
    data: the decoded JSON object.
  """

  path: str
  line: int
  data: dict[str, Any]

  def where(self, field: str | None = None) -> str:
    """`file:line` (and `field 'x'`) for error messages."""
    loc = f"{self.path}:{self.line}"
    return f"{loc}, field {field!r}" if field else loc

  def get(self, field: str, types: type | tuple[type, ...]) -> Any:
    """The value of a required field, checked against `types`.

    Args:
      field: the JSON key.
      types: accepted Python type(s) of the value (bool is not an int here).

    Returns:
      The value.

    Raises:
      RecordError: naming file, line and field, when the field is missing or
        has the wrong type.
    """
    if field not in self.data:
      raise RecordError(
          f"{self.where(field)}: missing field {field!r} (the record has "
          f"{sorted(self.data)}); the file is malformed or is not the "
          "expected benchmark file"
      )
    value = self.data[field]
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
      ok = False
    else:
      ok = isinstance(value, types)
    if not ok:
      names = " or ".join(t.__name__ for t in types)
      raise RecordError(
          f"{self.where(field)}: expected {names}, got "
          f"{type(value).__name__} {value!r:.80}"
      )
    return value


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[RawLine]:
  """Yields each non-blank line of a JSON Lines file as a `RawLine`.

  Args:
    path: the .jsonl file.

  Yields:
    RawLine(path, line, data) per record; blank lines are skipped.

  Raises:
    FileNotFoundError: when the file does not exist.
    RecordError: when a line is not valid JSON or not a JSON object, naming
      the file and line.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such file")
  with open(path, encoding="utf-8") as f:
    for line_no, text in enumerate(f, start=1):
      if not text.strip():
        continue
      try:
        data = json.loads(text)
      except json.JSONDecodeError as e:
        raise RecordError(
            f"{path}:{line_no}: not valid JSON ({e.msg} at column "
            f"{e.colno}): {text.strip()[:80]!r}"
        ) from e
      if not isinstance(data, dict):
        raise RecordError(
            f"{path}:{line_no}: expected a JSON object per line, got "
            f"{type(data).__name__}"
        )
      yield RawLine(path=path, line=line_no, data=data)
