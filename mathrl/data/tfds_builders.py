"""TFDS builders for the math benchmarks, usable without TensorFlow.

One `GeneratorBasedBuilder` per benchmark in `benchmarks.BENCHMARKS`,
registered with TFDS as `mathrl_<name>` (so they never clash with TFDS's own
`gsm8k`, whose record shape differs). They write `array_record` files and
are read back through `builder.as_data_source()`, the TFDS path that needs
no TensorFlow:

  builder = tfds_builders.Gsm8k(data_dir="/tmp/tfds", local_dir="shared/data")
  builder.download_and_prepare()
  source = builder.as_data_source(split="test")   # random access, bytes

or, in one call, with the bytes decoded to `str`:

  source = tfds_builders.load("gsm8k", "test", local_dir="shared/data")
  source[0] -> {"question": ..., "answer": "18", "solution": ..., ...}

Where the raw file comes from, in order: `local_dir=` (a folder holding
`<name>/<file>`, like shared/data, or the benchmark's own folder), then
$MATHRL_DATA_DIR, then the canonical URL (checked against its sha256).
"""

import hashlib
import os

from absl import logging
from mathrl.data import benchmarks
from mathrl.data import records
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


class BenchmarkBuilder(
    tfds.core.GeneratorBasedBuilder, skip_registration=True
):
  """Builds one benchmark's canonical records as array_record files.

  Subclasses set `BENCHMARK` (a key of `benchmarks.BENCHMARKS`) and `name`.
  Records are written in file order (`disable_shuffling`), so index i of the
  data source is line i of the source file.
  """

  BENCHMARK = ""
  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Canonical record: question, answer, solution, "
                            "source, id.",
                   "1.1.0": "Adds difficulty (MATH levels)."}

  def __init__(
      self,
      *,
      local_dir: str | os.PathLike[str] | None = None,
      file_format: str = "array_record",
      **kwargs,
  ):
    """Creates the builder.

    Args:
      local_dir: folder with a local copy (`<name>/<file>` or `<file>`);
        None falls back to $MATHRL_DATA_DIR, then to downloading.
      file_format: TFDS file format; "array_record" (the default) is the one
        readable without TensorFlow.
      **kwargs: passed to `tfds.core.GeneratorBasedBuilder` (`data_dir`, ...).

    Raises:
      FileNotFoundError: `local_dir` (or $MATHRL_DATA_DIR) is set but holds
        no copy of this benchmark; the message says what to pass.
    """
    self._bench = benchmarks.get(self.BENCHMARK)
    # Resolve (and so validate) local files now, not deep inside prepare.
    self._local_files = {
        split: benchmarks.local_file(self.BENCHMARK, split, local_dir)
        for split in self._bench.splits
    }
    super().__init__(file_format=file_format, **kwargs)

  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> None:
    """No checksums.tsv next to the code: sha256s live in `benchmarks`.

    TFDS's default looks the module up with the `importlib_resources`
    backport, which is not a dependency here; the files are verified in
    `_source_path` instead.
    """
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    split = next(iter(self._bench.splits.values()))
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            f"{self.BENCHMARK} normalised to mathrl's record: question, "
            "answer (gold final answer), solution, source, id, difficulty."
        ),
        features=tfds.features.FeaturesDict(
            {field: tfds.features.Text() for field in records.FIELDS}
        ),
        homepage=split.url,
        citation=self._bench.citation,
        disable_shuffling=True,
    )

  def _source_path(self, dl_manager, split: str) -> str:
    """The raw file of `split`: the local copy, else a checked download."""
    spec = self._bench.splits[split]
    local = self._local_files[split]
    if local is not None:
      if _sha256(local) != spec.sha256:
        logging.warning(
            "%s differs from the canonical %s %s file (sha256 %s); using it "
            "as given", local, self.BENCHMARK, split, spec.sha256,
        )
      return local
    try:
      path = os.fspath(dl_manager.download(spec.url))
    except Exception as e:  # pylint: disable=broad-except
      raise RuntimeError(
          f"could not download {self.BENCHMARK} {split} from {spec.url} "
          f"({type(e).__name__}: {e}). Offline? Pass local_dir= (a folder "
          f"holding {self.BENCHMARK}/{spec.file}, e.g. shared/data) or set "
          f"${benchmarks.DATA_DIR_ENV}."
      ) from e
    got = _sha256(path)
    if got != spec.sha256:
      raise RuntimeError(
          f"{spec.url} downloaded to {path} has sha256 {got}, expected "
          f"{spec.sha256}; delete it and retry, or pass local_dir= to a "
          "verified copy"
      )
    return path

  def _split_generators(self, dl_manager):
    return {
        split: self._generate_examples(self._source_path(dl_manager, split))
        for split in self._bench.splits
    }

  def _generate_examples(self, path: str):
    for index, record in enumerate(benchmarks.read(self.BENCHMARK, path)):
      yield index, record


# One builder per benchmark: (benchmark key, class name, description).
_TABLE = (
    ("gsm8k", "Gsm8k", "GSM8K train (7,473) and test (1,319)."),
    ("math500", "Math500", "MATH-500 test (500; a subset of MATH test)."),
    ("math", "Math", "MATH test (5,000)."),
    ("aime24", "Aime24", "AIME 2024 (30)."),
    ("aime25", "Aime25", "AIME 2025 (30)."),
    ("amc23", "Amc23", "AMC 2023 (40)."),
    ("minerva_math", "MinervaMath", "Minerva Math (272)."),
    ("olympiadbench", "OlympiadBench",
     "OlympiadBench, English text-only math competition subset (675)."),
)


def _builder_class(benchmark: str, class_name: str,
                   doc: str) -> type[BenchmarkBuilder]:
  """A registered TFDS builder `mathrl_<benchmark>` for one benchmark."""
  return type(class_name, (BenchmarkBuilder,), {
      "__doc__": doc, "__module__": __name__,
      "name": f"mathrl_{benchmark}", "BENCHMARK": benchmark,
  })


BUILDERS: dict[str, type[BenchmarkBuilder]] = {
    benchmark: _builder_class(benchmark, class_name, doc)
    for benchmark, class_name, doc in _TABLE
}
Gsm8k = BUILDERS["gsm8k"]


class BenchmarkSource:
  """A grain-compatible random-access source of canonical records (`str`).

  Wraps a TFDS array_record data source and decodes its bytes.
  """

  def __init__(self, data_source, name: str, split: str):
    self._source = data_source
    self.name = name
    self.split = split

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, str]:
    raw = self._source[index]
    return {
        k: v.decode("utf-8") if isinstance(v, bytes) else str(v)
        for k, v in raw.items()
    }

  def __repr__(self) -> str:
    return f"BenchmarkSource({self.name!r}, {self.split!r}, n={len(self)})"


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    local_dir: str | os.PathLike[str] | None = None,
) -> BenchmarkSource:
  """Prepares (once) and opens one benchmark split as a random-access source.

  Args:
    name: benchmark name, a key of `BUILDERS` ("gsm8k", "math500", ...).
    split: split name ("test"; GSM8K also has "train").
    data_dir: TFDS data dir for the prepared array_record files; None uses
      TFDS's default (~/tensorflow_datasets).
    local_dir: folder with a local raw copy (see `BenchmarkBuilder`).

  Returns:
    A `BenchmarkSource` (len + __getitem__ -> dict of str).

  Raises:
    KeyError: unknown benchmark or split.
    FileNotFoundError: `local_dir` holds no copy (the message says what to
      pass).
    RuntimeError: offline with no local copy (says what to pass).
  """
  if name not in BUILDERS:
    raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BUILDERS)}")
  builder = BUILDERS[name](
      data_dir=None if data_dir is None else os.fspath(data_dir),
      local_dir=local_dir,
  )
  if split not in benchmarks.get(name).splits:
    raise KeyError(
        f"benchmark {name!r} has no split {split!r}; it has "
        f"{sorted(benchmarks.get(name).splits)}"
    )
  builder.download_and_prepare()
  return BenchmarkSource(builder.as_data_source(split=split), name, split)
