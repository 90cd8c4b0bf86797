"""Benchmarks: raw-file parsing, normalisation, TFDS builders, bad input."""

import dataclasses
import functools
import http.server
import json
import sys
import threading

from mathrl.rewards import extract
from mathrl.data import benchmarks
from mathrl.data import records
from mathrl.data import tfds_builders
import pytest
import tensorflow_datasets as tfds

# Record counts as listed in shared/data/README.md.
README_COUNTS = (
    ("gsm8k", "train", 7473),
    ("gsm8k", "test", 1319),
    ("math500", "test", 500),
    ("math", "test", 5000),
    ("aime24", "test", 30),
    ("aime25", "test", 30),
    ("amc23", "test", 40),
    ("minerva_math", "test", 272),
    ("olympiadbench", "test", 675),
)


@pytest.fixture(autouse=True)
def _no_data_dir_env(monkeypatch):
  monkeypatch.delenv(benchmarks.DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="session")
def data_root(shared_dir):
  return shared_dir / "data"


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def prepared(data_root, tfds_dir):
  """Every benchmark split prepared once through its TFDS builder."""
  return {
      (name, split): tfds_builders.load(
          name, split, data_dir=tfds_dir, local_dir=data_root
      )
      for name, split, _ in README_COUNTS
  }


@pytest.mark.parametrize("name,split,count", README_COUNTS)
def test_builder_loads_readme_counts(prepared, data_root, name, split, count):
  source = prepared[name, split]
  assert len(source) == count
  assert benchmarks.get(name).splits[split].num_records == count
  # Equivalence: the TFDS array_record copy == a direct read of the file,
  # record for record and in file order.
  direct = benchmarks.read_local(name, split, data_root)
  assert [source[i] for i in range(len(source))] == direct
  for record in direct:
    assert set(record) == set(records.FIELDS)
    assert record["source"] == name
    assert record["question"].strip() and record["answer"].strip()
  assert len({r["id"] for r in direct}) == count


def test_builders_need_no_tensorflow(prepared):
  del prepared
  assert "tensorflow" not in sys.modules


def test_gsm8k_answers(prepared):
  test = prepared["gsm8k", "test"]
  # Janet's ducks: (16 - 3 - 4) * 2 = 18.
  assert test[0]["answer"] == "18"
  assert test[0]["solution"].endswith("#### 18")
  assert test[0]["id"] == "test-0"
  # "#### 2,125" loses its thousands separator; negatives keep their sign.
  assert test[146]["answer"] == "2125"
  assert test[489]["answer"] == "-10"
  assert prepared["gsm8k", "train"][0]["id"] == "train-0"


def test_math_boxed_answers_match_math500(prepared):
  # MATH has no answer field: ours comes from the last \boxed{} of the
  # solution. MATH-500 ships PRM800K's extracted answers for 500 of the same
  # problems, and all 500 must agree.
  by_question = {
      r["question"]: r["answer"]
      for r in map(prepared["math", "test"].__getitem__, range(5000))
  }
  math500 = prepared["math500", "test"]
  pairs = [(math500[i]["answer"], by_question[math500[i]["question"]])
           for i in range(len(math500))]
  assert len(pairs) == 500
  assert all(a == b for a, b in pairs)
  assert prepared["math", "test"][4999]["answer"] == (
      "\\begin{pmatrix} 1 \\\\ -2 \\\\ -1 \\end{pmatrix}"
  )


def test_quirks_normalised(prepared):
  aime25 = [prepared["aime25", "test"][i] for i in range(30)]
  assert not any("\x0c" in r["question"] for r in aime25)
  fixed = {r["id"]: r["question"] for r in aime25}
  assert "\\frac{\\log_4 (5^{15})}" in fixed["18"]
  assert "x_1=\\frac{25}{11}" in fixed["27"]
  assert prepared["amc23", "test"][0]["answer"] == "27"  # JSON 27.0
  assert prepared["aime24", "test"][0]["answer"] == "204"
  olympiad = prepared["olympiadbench", "test"]
  assert olympiad[0]["answer"] == "2"  # "$2$" unwrapped
  assert olympiad[1]["answer"] == "\\frac{1}{2 n+2}"
  assert not any("$" in olympiad[i]["answer"] for i in range(len(olympiad)))
  # Multi-answer records lose the inner delimiters too: "$69$,$84$".
  assert "69,84" in {olympiad[i]["answer"] for i in range(len(olympiad))}
  assert prepared["minerva_math", "test"][1]["answer"] == "4.5e33"


def test_tfds_registry_and_data_source(tfds_dir, data_root, prepared):
  del prepared
  builder = tfds.builder(
      "mathrl_aime24", data_dir=str(tfds_dir), local_dir=data_root
  )
  source = builder.as_data_source(split="test")
  assert len(source) == 30
  assert source[0]["answer"] == b"204"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{ {a}+b }", "{a}+b"),
        ("\\fbox{7}", "7"),
        ("is $\\boxed 5$.", "5"),
        ("no box here", None),
        ("\\boxed{unclosed {", None),
    ],
)
def test_last_boxed(text, expected):
  assert extract.last_boxed(text) == expected


def _write(path, lines):
  path.write_text("\n".join(lines) + "\n", encoding="utf-8")
  return path


def test_bad_json_names_file_and_line(tmp_path):
  path = _write(tmp_path / "test.jsonl", [
      json.dumps({"problem": "1+1?", "answer": "2", "id": 0}),
      "",
      '{"problem": "2+2?", "answer": ',
  ])
  with pytest.raises(records.RecordError, match=rf"{path}:3: not valid JSON"):
    list(benchmarks.read("aime25", path))


def test_missing_field_names_file_line_and_field(tmp_path):
  path = _write(tmp_path / "test.jsonl", [
      json.dumps({"problem": "1+1?", "answer": 2, "id": "0"}),
      json.dumps({"problem": "2+2?", "id": "1"}),
  ])
  with pytest.raises(
      records.RecordError, match=rf"{path}:2, field 'answer': missing field"
  ):
    list(benchmarks.read("aime25", path))


def test_wrong_type_and_no_box_name_the_field(tmp_path):
  path = _write(tmp_path / "test.jsonl", [
      json.dumps({"problem": "p", "solution": "no box", "idx": 0}),
  ])
  with pytest.raises(records.RecordError, match=r":1, field 'solution': no"):
    list(benchmarks.read("math", path))
  path = _write(tmp_path / "bad.jsonl", [
      json.dumps({"problem": "p", "solution": "\\boxed{1}", "idx": "zero"}),
  ])
  with pytest.raises(
      records.RecordError, match=r"bad.jsonl:1, field 'idx': expected int"
  ):
    list(benchmarks.read("math", path))


def test_missing_dataset_path_says_what_to_pass(tmp_path, monkeypatch):
  missing = tmp_path / "nowhere"
  with pytest.raises(FileNotFoundError, match="Pass local_dir=") as info:
    tfds_builders.load("math500", "test", data_dir=tmp_path,
                       local_dir=missing)
  assert "math500/test.jsonl" in str(info.value)
  assert "MATHRL_DATA_DIR" in str(info.value)
  monkeypatch.setenv(benchmarks.DATA_DIR_ENV, str(missing))
  with pytest.raises(FileNotFoundError, match=r"\$MATHRL_DATA_DIR="):
    benchmarks.local_file("aime24", "test")
  monkeypatch.delenv(benchmarks.DATA_DIR_ENV)
  with pytest.raises(ValueError, match="pass local_dir="):
    benchmarks.read_local("aime24", "test")
  with pytest.raises(KeyError, match="no split 'train'"):
    tfds_builders.load("aime24", "train", data_dir=tmp_path)
  with pytest.raises(KeyError, match="unknown benchmark 'gsm9k'"):
    tfds_builders.load("gsm9k", "test", data_dir=tmp_path)


@pytest.fixture
def http_server(data_root):
  """Serves shared/data over HTTP on localhost (no outside network)."""
  handler = functools.partial(
      http.server.SimpleHTTPRequestHandler, directory=str(data_root)
  )
  handler.log_message = lambda *args: None
  server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield f"http://127.0.0.1:{server.server_address[1]}"
  server.shutdown()
  server.server_close()


def _point_at(monkeypatch, name, url, sha256=None):
  bench = benchmarks.get(name)
  split = bench.splits["test"]
  split = dataclasses.replace(split, url=url, sha256=sha256 or split.sha256)
  monkeypatch.setitem(
      benchmarks.BENCHMARKS, name,
      dataclasses.replace(bench, splits={"test": split}),
  )


def test_download_path_verifies_sha256(http_server, tmp_path, monkeypatch):
  _point_at(monkeypatch, "amc23", f"{http_server}/amc23/test.jsonl")
  source = tfds_builders.load("amc23", "test", data_dir=tmp_path / "ok")
  assert len(source) == 40 and source[0]["answer"] == "27"

  _point_at(monkeypatch, "aime24", f"{http_server}/aime24/test.jsonl",
            sha256="0" * 64)
  with pytest.raises(RuntimeError, match="has sha256 af2b8bd2"):
    tfds_builders.load("aime24", "test", data_dir=tmp_path / "bad_sha")


def test_failed_download_says_what_to_pass(http_server, tmp_path,
                                           monkeypatch):
  _point_at(monkeypatch, "aime25", f"{http_server}/no/such/file.jsonl")
  with pytest.raises(RuntimeError, match="could not download aime25") as info:
    tfds_builders.load("aime25", "test", data_dir=tmp_path)
  assert "Pass local_dir=" in str(info.value)
