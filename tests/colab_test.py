"""The notebooks in colab/ run top to bottom against the installed mathrl."""

import json
import pathlib

import pytest

NOTEBOOKS = sorted(
    (pathlib.Path(__file__).resolve().parents[1] / "colab").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run(path):
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
  assert "per_token_BT" in namespace
