"""The math benchmarks: where each file comes from and how it is normalised.

Each benchmark is a `Benchmark`: its splits, the canonical public URL and
sha256 of each split's JSON Lines file (the origin commits listed in
shared/data/*/SOURCE.md), the expected record count, and a `normalise`
function that turns one raw line into the one record shape used everywhere:

  {"question": str, "answer": str, "solution": str, "source": str,
   "id": str, "difficulty": str}

`answer` is the gold final answer as a string (GSM8K: the text after `####`
with thousands separators removed; MATH and Minerva: the last `\\boxed{}` of
the solution; OlympiadBench: `final_answer[0]` without its `$` delimiters),
`solution` is the reference worked solution or "" when the file has none, and
`id` is the file's own id where it has one (GSM8K: "<split>-<line index>"),
and `difficulty` the benchmark's level ("1".."5" for MATH and MATH-500; ""
for the others), which evaluation tables report accuracy by.

This module is pure Python (no TFDS); `tfds_builders` wraps it in TFDS
builders and `read_local` reads a local copy directly.
"""

from collections.abc import Callable, Iterator
import dataclasses
import os

from mathrl.data import records
from mathrl.rewards import extract

_QWEN = (
    "https://raw.githubusercontent.com/QwenLM/Qwen2.5-Math/"
    "a45202bd16f1ec06f433442dc1152d0074773465/evaluation/data"
)
_GSM8K = (
    "https://raw.githubusercontent.com/openai/grade-school-math/"
    "3101c7d5072418e28b9008a6636bde82a006892c/grade_school_math/data"
)

# Environment variable naming a folder that holds `<benchmark>/<file>`.
DATA_DIR_ENV = "MATHRL_DATA_DIR"


@dataclasses.dataclass(frozen=True)
class Split:
  """One split of a benchmark.

  Attributes:
    file: file name inside the benchmark's folder, e.g. "test.jsonl".
    url: canonical download URL (pinned to the origin commit).
    sha256: sha256 of the canonical file.
    num_records: number of records in the canonical file.
  """

  file: str
  url: str
  sha256: str
  num_records: int


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """A benchmark: splits, sources and its record normaliser.

  Attributes:
    name: short name, also the folder name under a local data dir.
    splits: split name -> Split.
    normalise: maps one `records.RawLine` to the canonical record dict.
    citation: where the data come from (paper / repository).
  """

  name: str
  splits: dict[str, Split]
  normalise: Callable[[records.RawLine], dict[str, str]]
  citation: str


# Reads one canonical field from a raw line.
Field = Callable[[records.RawLine], str]


def _text(key: str) -> Field:
  """The string field `key`."""
  return lambda raw: raw.get(key, str)


def _id(key: str = "id", types: type | tuple[type, ...] = int) -> Field:
  """The id field `key` (of `types`) as a string."""
  return lambda raw: str(raw.get(key, types))


def _empty(raw: records.RawLine) -> str:
  """A field the file does not have."""
  del raw
  return ""


def _normaliser(
    source: str,
    *,
    answer: Field,
    id: Field,  # pylint: disable=redefined-builtin
    question: Field = _text("problem"),
    solution: Field = _text("solution"),
    difficulty: Field = _empty,
) -> Callable[[records.RawLine], dict[str, str]]:
  """The normaliser of one benchmark: each canonical field by its reader.

  A record's `answer` must be non-empty; a bad line raises
  `records.RecordError` naming the file, line and field.
  """

  def normalise(raw: records.RawLine) -> dict[str, str]:
    fields = {"difficulty": difficulty(raw), "question": question(raw),
              "answer": answer(raw), "solution": solution(raw),
              "id": id(raw)}
    if not fields["answer"].strip():
      raise records.RecordError(f"{raw.where('answer')}: empty gold answer")
    return {"source": source, **fields}

  return normalise


def _math_level(raw: records.RawLine) -> str:
  """MATH's "Level 3" (or MATH-500's 3) as "3"; "" when absent or "Level ?"."""
  if "level" not in raw.data:
    return ""
  level = str(raw.data["level"]).replace("Level", "").strip()
  return level if level.isdigit() else ""


def _gsm8k_answer(raw: records.RawLine) -> str:
  """The text after the solution's `####`, thousands separators removed."""
  solution = raw.get("answer", str)
  if "####" not in solution:
    raise records.RecordError(
        f"{raw.where('answer')}: no '####' final-answer marker in the GSM8K "
        "solution"
    )
  return solution.rsplit("####", 1)[1].strip().replace(",", "")


def _gsm8k_id(raw: records.RawLine) -> str:
  """GSM8K has no ids: "<split>-<line index>"."""
  split = os.path.basename(raw.path).split(".")[0]
  return f"{split}-{raw.line - 1}"


def _boxed_answer(raw: records.RawLine) -> str:
  """The last \\boxed{} of the `solution` (MATH, Minerva Math)."""
  answer = extract.last_boxed(raw.get("solution", str))
  if answer is None:
    raise records.RecordError(
        f"{raw.where('solution')}: no complete \\boxed{{...}} to take the "
        "gold answer from"
    )
  return answer


def _aime25_question(raw: records.RawLine) -> str:
  # Two source records wrote `\frac` with one JSON backslash, which decodes
  # to a form feed + "rac"; restore the intended backslash-f.
  return raw.get("problem", str).replace("\x0c", "\\f")


def _number_text(value: int | float) -> str:
  """27.0 -> "27", 2.5 -> "2.5"."""
  if isinstance(value, float) and value.is_integer():
    return str(int(value))
  return str(value)


def _olympiadbench_answer(raw: records.RawLine) -> str:
  finals = raw.get("final_answer", list)
  if not finals or not isinstance(finals[0], str):
    raise records.RecordError(
        f"{raw.where('final_answer')}: expected a non-empty list of strings"
    )
  # Math-mode `$` only delimit: "$69$,$84$" -> "69,84" (Qwen2.5-Math's
  # `.strip("$")` would keep the inner ones of 21 multi-answer records).
  return finals[0].replace("$", "").strip()


def _olympiadbench_solution(raw: records.RawLine) -> str:
  """The solution's list of steps, one paragraph each."""
  return "\n\n".join(str(s) for s in raw.get("solution", list))


# sha256 and record count of each canonical file (shared/data/*/SOURCE.md).
_CHECKSUMS: dict[tuple[str, str], tuple[str, int]] = {
    ("gsm8k", "train"): (
        "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465",
        7473,
    ),
    ("gsm8k", "test"): (
        "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        1319,
    ),
    ("math500", "test"): (
        "35dc41080a3680858b27fa7e0533d2d547825316fc5dafe5d316f4ccc5a06132",
        500,
    ),
    ("math", "test"): (
        "3371949f33dd702d04b43fddd7d53a028de0aaca0e76abb1b875a050297b3aa4",
        5000,
    ),
    ("aime24", "test"): (
        "af2b8bd2aa911b6333ad0df32f3ca05c7ae8ed10f1731f4372c8ae26990bf7ac",
        30,
    ),
    ("aime25", "test"): (
        "b4e273c02d3e7fe1b74b59eae768fc8230bfb0f79539890cb56f4361caac0331",
        30,
    ),
    ("amc23", "test"): (
        "43707e1ca784602d8479de24ee8ce36609dbebc46dd152b0b12a46611aa898a4",
        40,
    ),
    ("minerva_math", "test"): (
        "0e656b430d3a0a1dab6aa853f453ba3805e28e2cabe4fc72486a897cc09d8ba2",
        272,
    ),
    ("olympiadbench", "test"): (
        "bb8c1e38a16ea9eacb77530315a674d883f267fbff79183effc53681b4fcc416",
        675,
    ),
}

# Canonical download URL of each file, pinned to the origin commit.
_URLS: dict[tuple[str, str], str] = {
    ("gsm8k", "train"): f"{_GSM8K}/train.jsonl",
    ("gsm8k", "test"): f"{_GSM8K}/test.jsonl",
    # The canonical openai/prm800k math_splits/test.jsonl is a Git LFS
    # object; this carrier holds the same bytes (same sha256).
    ("math500", "test"): (
        "https://raw.githubusercontent.com/hkust-nlp/simpleRL-reason/"
        "cf1c7858bfc145a27aa733e75d930d34f0d318a6/examples/"
        "simplelr_math_eval/data/math500/test.jsonl"
    ),
    ("math", "test"): (
        "https://raw.githubusercontent.com/ZubinGou/math-evaluation-harness/"
        "db77bc6bb2a17c90ed2d63e88ebd8c40a82858c5/data/math/test.jsonl"
    ),
    ("aime24", "test"): f"{_QWEN}/aime24/test.jsonl",
    ("aime25", "test"): (
        "https://raw.githubusercontent.com/inclusionAI/AReaL/"
        "1b0306631b01becc329af59df560efb754be34af/evaluation/data/aime25/"
        "test.jsonl"
    ),
    ("amc23", "test"): f"{_QWEN}/amc23/test.jsonl",
    ("minerva_math", "test"): f"{_QWEN}/minerva_math/test.jsonl",
    ("olympiadbench", "test"): f"{_QWEN}/olympiadbench/test.jsonl",
}


def _benchmark(
    name: str,
    citation: str,
    splits: tuple[str, ...] = ("test",),
    **fields: Field,
) -> Benchmark:
  """A benchmark whose records `_normaliser(name, **fields)` reads."""
  return Benchmark(
      name=name,
      splits={
          s: Split(f"{s}.jsonl", _URLS[name, s], *_CHECKSUMS[name, s])
          for s in splits
      },
      normalise=_normaliser(name, **fields),
      citation=citation,
  )


# Each benchmark's fields: the question and gold answer, the worked solution
# ("" when the file has none), the id and the difficulty level.
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        _benchmark(
            "gsm8k", "Cobbe et al. 2021, arXiv:2110.14168",
            splits=("train", "test"), question=_text("question"),
            answer=_gsm8k_answer, solution=_text("answer"), id=_gsm8k_id),
        _benchmark(
            "math500",
            "Lightman et al. 2023, arXiv:2305.20050 (a subset of MATH test)",
            answer=_text("answer"), id=_text("unique_id"),
            difficulty=_math_level),
        _benchmark(
            "math", "Hendrycks et al. 2021, arXiv:2103.03874",
            answer=_boxed_answer, id=_id("idx"), difficulty=_math_level),
        # Answers keep AIME zero padding ("025"): graders compare numerically.
        _benchmark(
            "aime24", "AIME 2024 I and II (MAA)",
            answer=lambda raw: raw.get("answer", str).strip(), id=_id()),
        _benchmark(
            "aime25", "AIME 2025 I and II (MAA)", question=_aime25_question,
            answer=lambda raw: str(raw.get("answer", (int, str))).strip(),
            solution=_empty, id=_id(types=(int, str))),
        _benchmark(
            "amc23", "AMC 12A and 12B 2023 (MAA)",
            answer=lambda raw: _number_text(raw.get("answer", (int, float))),
            solution=_empty, id=_id()),
        _benchmark(
            "minerva_math",
            "Lewkowycz et al. 2022, arXiv:2206.14858 (MIT OCW problems)",
            answer=_boxed_answer, id=_id("idx")),
        _benchmark(
            "olympiadbench",
            "He et al. 2024, arXiv:2402.14008 (OE_TO_maths_en_COMP)",
            question=_text("question"), answer=_olympiadbench_answer,
            solution=_olympiadbench_solution, id=_id()),
    )
}


def get(name: str) -> Benchmark:
  """The benchmark called `name`, with a clear error for unknown names."""
  if name not in BENCHMARKS:
    raise KeyError(
        f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)} (for a "
        "synthetic task use mathrl.data.synthetic)"
    )
  return BENCHMARKS[name]


def local_file(
    name: str, split: str, local_dir: str | os.PathLike[str] | None = None
) -> str | None:
  """Path of a local copy of `name`'s `split`, or None to download.

  Looks in `local_dir`, else in $MATHRL_DATA_DIR, for either
  `<dir>/<name>/<file>` (a folder of benchmarks, like shared/data) or
  `<dir>/<file>` (the benchmark's own folder).

  Args:
    name: benchmark name.
    split: split name, e.g. "test".
    local_dir: a folder, or None to use $MATHRL_DATA_DIR (if set).

  Returns:
    The file path, or None when neither `local_dir` nor the variable is set.

  Raises:
    KeyError: unknown benchmark or split.
    FileNotFoundError: a folder was given but holds no such file; the message
      says which paths were tried and what to pass instead.
  """
  bench = get(name)
  if split not in bench.splits:
    raise KeyError(
        f"benchmark {name!r} has no split {split!r}; it has "
        f"{sorted(bench.splits)}"
    )
  origin = "local_dir"
  if local_dir is None:
    local_dir = os.environ.get(DATA_DIR_ENV) or None
    origin = f"${DATA_DIR_ENV}"
  if local_dir is None:
    return None
  local_dir = os.fspath(local_dir)
  file = bench.splits[split].file
  tried = [os.path.join(local_dir, name, file), os.path.join(local_dir, file)]
  for path in tried:
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(
      f"{origin}={local_dir!r} has no {name} {split} file (tried "
      f"{tried[0]} and {tried[1]}). Pass local_dir= (or set "
      f"${DATA_DIR_ENV}) to a folder holding {name}/{file}, e.g. "
      f"shared/data, or leave both unset to download {name} from "
      f"{bench.splits[split].url}"
  )


def read(name: str, path: str | os.PathLike[str]) -> Iterator[dict[str, str]]:
  """Reads and normalises every record of one benchmark file.

  Args:
    name: benchmark name (chooses the normaliser).
    path: the JSON Lines file.

  Yields:
    Canonical records in file order.

  Raises:
    records.RecordError: a malformed line, naming file, line and field.
  """
  normalise = get(name).normalise
  for raw in records.read_jsonl(path):
    yield normalise(raw)


def read_local(
    name: str, split: str, local_dir: str | os.PathLike[str] | None = None
) -> list[dict[str, str]]:
  """All canonical records of a local copy (no TFDS involved).

  Args:
    name: benchmark name.
    split: split name.
    local_dir: folder as in `local_file`; None uses $MATHRL_DATA_DIR.

  Returns:
    The records, in file order.

  Raises:
    ValueError: when no folder is given and $MATHRL_DATA_DIR is unset.
  """
  path = local_file(name, split, local_dir)
  if path is None:
    raise ValueError(
        f"read_local({name!r}) needs a local copy: pass local_dir= (a folder "
        f"holding {name}/{get(name).splits[split].file}, e.g. shared/data) "
        f"or set ${DATA_DIR_ENV}; to download instead use "
        "mathrl.data.tfds_builders.load"
    )
  return list(read(name, path))
