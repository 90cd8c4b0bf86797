"""Hugging Face checkpoint import/export: one name/layout table, both ways.

  model = from_pretrained(path, dtype=jnp.bfloat16, mesh=mesh,
                          rules=sharding.TRAIN_RULES)
  save_pretrained(model, path)

`from_pretrained` reads `config.json` and `model.safetensors` (or
`model.safetensors.index.json` and its shards) from a local folder. It
checks every expected tensor exists with the shape config.json implies
before building anything, then computes the abstract model with
`nnx.eval_shape` and creates each parameter with
`jax.make_array_from_callback` straight into its `NamedSharding`: each
device's block is read lazily (memory-mapped safetensors slices), so no
device ever holds a full copy unless the rules replicate that parameter.

Command line (a GGUF file -> a Hugging Face folder, see `gguf_import`):

  python -m mathrl.models.convert --gguf FILE --out DIR

`save_pretrained` writes `config.json` and a single `model.safetensors`
(torch-free, `safetensors.numpy`) that `transformers` loads, optionally
copying tokenizer files from another folder. Tokenizers themselves come
from `transformers.AutoTokenizer.from_pretrained` on the same folder.
"""

import contextlib
import dataclasses
import json
import logging
import os
import pathlib
import shutil
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np
import safetensors
import safetensors.numpy
from flax import nnx

from mathrl import sharding
from mathrl.models import config as config_lib
from mathrl.models import transformer

_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json",
    "chat_template.jinja", "added_tokens.json",
)
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class _Entry:
  """One parameter: our state path, its HF name, and the layout change.

  layouts (ours <-> HF, per layer):
    same      identical arrays (norm scales, the embedding table)
    transpose ours [A, B] <-> HF [B, A]          (MLP kernels, lm_head)
    in_proj   ours [D, N, H] <-> HF [N*H, D]      (q/k/v weights)
    bias      ours [N, H] <-> HF [N*H]            (q/k/v biases)
    out_proj  ours [N, H, D] <-> HF [D, N*H]      (o_proj weight)
  """

  path: tuple[str, ...]
  hf_name: str
  layout: str
  stacked: bool = True
  when: Callable[[config_lib.ModelConfig], bool] = lambda c: True


_LAYER = "model.layers.{i}."
TABLE = (
    _Entry(("embed",), "model.embed_tokens.weight", "same", stacked=False),
    _Entry(("final_norm", "scale"), "model.norm.weight", "same",
           stacked=False),
    _Entry(("lm_head",), "lm_head.weight", "transpose", stacked=False,
           when=lambda c: not c.tie_word_embeddings),
    _Entry(("layers", "input_norm", "scale"),
           _LAYER + "input_layernorm.weight", "same"),
    _Entry(("layers", "post_attn_norm", "scale"),
           _LAYER + "post_attention_layernorm.weight", "same"),
    _Entry(("layers", "attn", "q_kernel"), _LAYER + "self_attn.q_proj.weight",
           "in_proj"),
    _Entry(("layers", "attn", "k_kernel"), _LAYER + "self_attn.k_proj.weight",
           "in_proj"),
    _Entry(("layers", "attn", "v_kernel"), _LAYER + "self_attn.v_proj.weight",
           "in_proj"),
    _Entry(("layers", "attn", "o_kernel"), _LAYER + "self_attn.o_proj.weight",
           "out_proj"),
    _Entry(("layers", "attn", "q_bias"), _LAYER + "self_attn.q_proj.bias",
           "bias", when=lambda c: c.qkv_bias),
    _Entry(("layers", "attn", "k_bias"), _LAYER + "self_attn.k_proj.bias",
           "bias", when=lambda c: c.qkv_bias),
    _Entry(("layers", "attn", "v_bias"), _LAYER + "self_attn.v_proj.bias",
           "bias", when=lambda c: c.qkv_bias),
    _Entry(("layers", "attn", "q_norm", "scale"),
           _LAYER + "self_attn.q_norm.weight", "same",
           when=lambda c: c.qk_norm),
    _Entry(("layers", "attn", "k_norm", "scale"),
           _LAYER + "self_attn.k_norm.weight", "same",
           when=lambda c: c.qk_norm),
    _Entry(("layers", "mlp", "gate_kernel"), _LAYER + "mlp.gate_proj.weight",
           "transpose"),
    _Entry(("layers", "mlp", "up_kernel"), _LAYER + "mlp.up_proj.weight",
           "transpose"),
    _Entry(("layers", "mlp", "down_kernel"), _LAYER + "mlp.down_proj.weight",
           "transpose"),
)


def _entries(config: config_lib.ModelConfig) -> list[_Entry]:
  return [e for e in TABLE if e.when(config)]


def _hf_names(entry: _Entry, config: config_lib.ModelConfig) -> list[str]:
  if not entry.stacked:
    return [entry.hf_name]
  return [entry.hf_name.format(i=i) for i in range(config.num_layers)]


def _hf_shape(layout: str, ours: tuple[int, ...]) -> tuple[int, ...]:
  """The HF shape of one (per-layer) tensor whose shape is `ours` here."""
  if layout == "same":
    return ours
  if layout == "transpose":
    return ours[::-1]
  if layout == "in_proj":
    return (ours[1] * ours[2], ours[0])
  if layout == "bias":
    return (ours[0] * ours[1],)
  if layout == "out_proj":
    return (ours[2], ours[0] * ours[1])
  raise ValueError(f"Unknown layout {layout!r}.")


def _to_hf(layout: str, x: np.ndarray) -> np.ndarray:
  """One per-layer array in our layout -> the HF tensor."""
  if layout == "same":
    return x
  if layout == "transpose":
    return x.T
  if layout == "in_proj":
    return x.reshape(x.shape[0], -1).T
  if layout == "bias":
    return x.reshape(-1)
  if layout == "out_proj":
    return x.reshape(-1, x.shape[-1]).T
  raise ValueError(f"Unknown layout {layout!r}.")


def _read_block(layout, hf_slice, index, ours_shape):
  """Our-layout block `index` of one per-layer tensor, read lazily from HF.

  Args:
    layout: the entry layout.
    hf_slice: a safetensors `get_slice` handle (reads only what is indexed).
    index: tuple of slices into our per-layer shape.
    ours_shape: our per-layer shape.

  Returns:
    The numpy block.
  """
  index = tuple(slice(*s.indices(n)) for s, n in zip(index, ours_shape))
  if layout == "same":
    return hf_slice[index] if index else hf_slice[:]
  if layout == "transpose":
    return hf_slice[index[1], index[0]].T
  if layout == "in_proj":
    s_d, s_n, s_h = index
    h = ours_shape[2]
    rows = slice(s_n.start * h, s_n.stop * h)
    block = hf_slice[rows, s_d].T
    return block.reshape(block.shape[0], -1, h)[:, :, s_h]
  if layout == "bias":
    s_n, s_h = index
    h = ours_shape[1]
    block = hf_slice[slice(s_n.start * h, s_n.stop * h)]
    return block.reshape(-1, h)[:, s_h]
  if layout == "out_proj":
    s_n, s_h, s_d = index
    h = ours_shape[1]
    block = hf_slice[s_d, slice(s_n.start * h, s_n.stop * h)].T
    return block.reshape(-1, h, block.shape[-1])[:, s_h, :]
  raise ValueError(f"Unknown layout {layout!r}.")


def _tensor_files(folder: pathlib.Path) -> dict[str, pathlib.Path]:
  """Tensor name -> safetensors file, from the index or the single file."""
  index_path = folder / "model.safetensors.index.json"
  single = folder / "model.safetensors"
  if index_path.exists():
    weight_map = json.loads(index_path.read_text())["weight_map"]
    files = {f: folder / f for f in sorted(set(weight_map.values()))}
    missing = [f for f, p in files.items() if not p.exists()]
    if missing:
      raise FileNotFoundError(
          f"Checkpoint shard(s) {missing} listed in {index_path} are missing "
          f"from {folder}; download every shard."
      )
    return {name: files[f] for name, f in weight_map.items()}
  if single.exists():
    with safetensors.safe_open(single, framework="numpy") as f:
      return {name: single for name in f.keys()}
  found = sorted(p.name for p in folder.glob("*.safetensors"))
  raise FileNotFoundError(
      f"No model.safetensors or model.safetensors.index.json in {folder} "
      f"(found safetensors files: {found or 'none'})."
  )


def read_config(path: str | os.PathLike[str]) -> config_lib.ModelConfig:
  """The ModelConfig of a Hugging Face model folder (its config.json)."""
  folder = pathlib.Path(path)
  config_path = folder / "config.json"
  if not folder.is_dir() or not config_path.exists():
    raise FileNotFoundError(
        f"{folder} is not a model folder: expected a directory with "
        f"config.json and *.safetensors (a Hugging Face checkpoint)."
    )
  return config_lib.from_hf_config(json.loads(config_path.read_text()))


def _shape(tensor) -> tuple[int, ...]:
  """Shape of a safetensors slice handle or of an array-like."""
  if hasattr(tensor, "get_shape"):
    return tuple(tensor.get_shape())
  return tuple(tensor.shape)


def _check_tensors(config, tensors, per_layer_shapes):
  """Every expected tensor present with the expected shape, else an error."""
  expected = set()
  for entry in _entries(config):
    want = _hf_shape(entry.layout, per_layer_shapes[entry.path])
    for name in _hf_names(entry, config):
      expected.add(name)
      if name not in tensors:
        raise KeyError(
            f"Tensor {name!r} is missing from the checkpoint (needed for "
            f"{config.architecture} with this config)."
        )
      got = _shape(tensors[name])
      if got != want:
        raise ValueError(
            f"Tensor {name!r} has shape {got} but the config implies "
            f"{want}."
        )
  extra = [n for n in tensors if n not in expected
           and not n.endswith(_IGNORED_SUFFIXES)
           and not (n == "lm_head.weight" and config.tie_word_embeddings)]
  if extra:
    logging.warning("Ignoring %d unexpected tensors, e.g. %s", len(extra),
                    extra[:3])


def from_pretrained(
    path: str | os.PathLike[str], dtype: Any = jnp.float32, **options: Any
) -> transformer.Transformer:
  """Loads a Hugging Face Qwen2/Qwen2.5/Qwen3/Llama-3 folder into a Transformer.

  Args:
    path: local folder with config.json and *.safetensors.
    dtype: compute dtype (matmuls and activations).
    **options: keyword-only `from_tensors` options (param_dtype, remat,
      scan_layers, decode_attention, mesh, rules), documented there.

  Returns:
    The model, every parameter in its sharding.

  Raises:
    FileNotFoundError: not a model folder, or a missing shard (named).
    KeyError: a missing tensor (named).
    ValueError: unsupported architecture, or a shape that disagrees with
      config.json (tensor named, both shapes given).
  """
  check_load_options(options, "from_pretrained")
  folder = pathlib.Path(path)
  config = read_config(folder)
  files = _tensor_files(folder)
  with contextlib.ExitStack() as stack:
    handles = {f: stack.enter_context(safetensors.safe_open(
        f, framework="numpy")) for f in sorted(set(files.values()))}
    tensors = {n: handles[f].get_slice(n) for n, f in files.items()}
    return from_tensors(config, tensors, dtype, **options)


# The keyword-only options of `from_tensors`, which the public loaders
# (`from_pretrained`, `from_gguf`, `checkpoints.load`) pass on.
LOAD_OPTIONS = ("param_dtype", "remat", "scan_layers", "decode_attention",
                "mesh",
                "rules")


def check_load_options(options: dict[str, Any], loader: str) -> None:
  """A TypeError naming `loader` for an unknown option, before any I/O."""
  unknown = sorted(set(options) - set(LOAD_OPTIONS))
  if unknown:
    raise TypeError(
        f"{loader}() got unexpected keyword argument(s) {unknown}; the load"
        f" options are {list(LOAD_OPTIONS)}")


def from_tensors(
    config: config_lib.ModelConfig,
    tensors: dict[str, Any],
    dtype: Any = jnp.float32,
    *,
    param_dtype: Any = None,
    remat: bool = False,
    scan_layers: bool = True,
    decode_attention: str = "xla",
    mesh: jax.sharding.Mesh | None = None,
    rules: sharding.Rules | None = None,
) -> transformer.Transformer:
  """A Transformer from Hugging Face-named tensors (any source).

  Args:
    config: the model config.
    tensors: HF tensor name -> a safetensors slice handle or an array-like
      (numpy indexing and `.shape`); only the blocks each device needs are
      indexed.
    dtype: compute dtype (matmuls and activations).
    param_dtype: storage dtype of the parameters (tensors are cast on
      load); None: `dtype`.
    remat: rematerialise decoder layers in the backward pass.
    scan_layers: loop over the layers in the cache-free forwards (False:
      unrolled; see `Transformer`).
    decode_attention: attention of a sampler decode step ('xla' or
      'pallas', see `mathrl.models.decode_attention`).
    mesh: place parameters on this mesh (default: the first device).
    rules: logical-to-mesh rules with `mesh` (default TRAIN_RULES).

  Returns:
    The model, every parameter in its sharding.
  """
  param_dtype = dtype if param_dtype is None else param_dtype
  abstract = nnx.eval_shape(lambda: transformer.Transformer(
      config, dtype=dtype, param_dtype=param_dtype, remat=remat,
      scan_layers=scan_layers, decode_attention=decode_attention,
      rngs=nnx.Rngs(0)))
  graphdef, abstract_state = nnx.split(abstract)
  variables = dict(nnx.to_flat_state(abstract_state))
  entries = {e.path: e for e in _entries(config)}
  if set(entries) != set(variables):
    raise RuntimeError(  # An internal inconsistency, not bad input.
        f"Conversion table {sorted(entries)} does not match the model "
        f"parameters {sorted(variables)}."
    )
  per_layer = {p: tuple(v.shape[1:] if entries[p].stacked else v.shape)
               for p, v in variables.items()}
  rules = sharding.TRAIN_RULES if rules is None else rules
  _check_tensors(config, tensors, per_layer)
  arrays = {}
  for p, variable in variables.items():
    entry = entries[p]
    shape = tuple(variable.shape)
    if mesh is None:
      target = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    else:
      axes = variable.get_metadata().get("out_sharding")
      target = jax.sharding.NamedSharding(
          mesh, sharding.logical_to_spec(axes, shape, mesh, rules))
    slices = [tensors[n] for n in _hf_names(entry, config)]
    arrays[p] = _make_array(entry, slices, shape, target, param_dtype)
  state = nnx.from_flat_state(
      [(p, variables[p].replace(arrays[p])) for p in variables])
  return nnx.merge(graphdef, state)


def _make_array(entry, slices, shape, target, dtype):
  """One global array, each addressable shard read lazily from `slices`."""
  np_dtype = np.dtype(dtype)

  def callback(index):
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    if not entry.stacked:
      return _read_block(entry.layout, slices[0], index, shape).astype(
          np_dtype)
    layers = range(*index[0].indices(shape[0]))
    return np.stack([
        _read_block(entry.layout, slices[i], index[1:], shape[1:])
        for i in layers]).astype(np_dtype)

  return jax.make_array_from_callback(shape, target, callback)


def _host_array(x: jax.Array) -> np.ndarray:
  if not x.is_fully_addressable:
    x = multihost_utils.process_allgather(x, tiled=True)
  return np.asarray(jax.device_get(x))


def save_pretrained(
    model: transformer.Transformer,
    path: str | os.PathLike[str],
    *,
    tokenizer_dir: str | os.PathLike[str] | None = None,
) -> pathlib.Path:
  """Writes `model` as a Hugging Face folder that `transformers` loads.

  Args:
    model: the Transformer (any sharding; gathered to host one tensor at a
      time).
    path: output folder (created).
    tokenizer_dir: a folder whose tokenizer files to copy alongside.

  Returns:
    The output folder.
  """
  config = model.config
  folder = pathlib.Path(path)
  flat = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  tensors = {}
  for entry in _entries(config):
    value = _host_array(flat[entry.path].get_value())
    per_layer = [value] if not entry.stacked else list(value)
    for name, x in zip(_hf_names(entry, config), per_layer):
      tensors[name] = np.ascontiguousarray(_to_hf(entry.layout, x))
  if jax.process_index() != 0:
    return folder
  folder.mkdir(parents=True, exist_ok=True)
  hf = config_lib.to_hf_config(config)
  hf["torch_dtype"] = hf["dtype"] = str(np.dtype(model.param_dtype))
  (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
  safetensors.numpy.save_file(tensors, str(folder / "model.safetensors"),
                              metadata={"format": "pt"})
  if tokenizer_dir is not None:
    for name in _TOKENIZER_FILES:
      source = pathlib.Path(tokenizer_dir) / name
      if source.exists():
        shutil.copy(source, folder / name)
  return folder


def main(argv: list[str] | None = None) -> None:
  """`python -m mathrl.models.convert --gguf FILE --out DIR`."""
  import argparse  # pylint: disable=g-import-not-at-top
  from mathrl.models import checkpoints  # pylint: disable=g-import-not-at-top
  from mathrl.models import gguf_import  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog="python -m mathrl.models.convert",
      description="Write a GGUF model (or a named one, e.g. "
      "smollm2-135m-instruct) as a Hugging Face folder.")
  parser.add_argument("--gguf", required=True,
                      help="a .gguf file or a named checkpoint")
  parser.add_argument("--out", required=True, help="output folder")
  args = parser.parse_args(argv)
  folder = gguf_import.write_hf_folder(
      checkpoints.checkpoint_path(args.gguf), args.out)
  print(f"wrote {folder}")


if __name__ == "__main__":
  main()
