"""GGUF (llama.cpp) checkpoints: read, dequantize, load, or write as HF.

  model = mathrl.models.from_gguf(path, dtype=jnp.float32)
  config, tensors = read_gguf(path)     # HF-named, HF-layout float32 arrays
  write_hf_folder(path, out_dir)        # config.json + model.safetensors
                                        # + tokenizer files

The file is read with the `gguf` package's `GGUFReader` (memory-mapped);
quantized tensors (Q4_0, Q4_1, Q8_0, K-quants, ...) are dequantized to
float32 with `gguf.quants.dequantize`, one tensor at a time when the model
is built. Supported architectures: `llama`, `qwen2`, `qwen3` (the families
of `mathrl.models`), with shapes, RoPE base, RMSNorm epsilon and embedding
tying read from the metadata (a GGUF without `output.weight` ties the head
to the embedding).

llama.cpp's converter permutes the rows of every Llama q/k projection so
that its interleaved-pair RoPE equals Hugging Face's half-split RoPE
(`permute` in llama.cpp's convert_hf_to_gguf.py): per head, row 2i + j of
the GGUF tensor is row j·H/2 + i of the HF one (j ∈ {0, 1}). Reading undoes
it, so the loaded model uses the half-split RoPE of `layers.rotate` and its
logits match `transformers` on the converted folder. Qwen GGUFs are not
permuted.
"""

import json
import os
import pathlib
from typing import Any

import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from mathrl.models import config as config_lib
from mathrl.models import convert

_FAMILY_OF_ARCH = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
# GGUF tensor name (per layer: blk.{i}.) -> Hugging Face name.
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _reader(path: str | os.PathLike[str]):
  import gguf  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"GGUF file {path} does not exist.")
  return gguf.GGUFReader(str(path))


def _field(reader, key: str, default: Any = None) -> Any:
  field = reader.fields.get(key)
  if field is None:
    if default is None:
      raise KeyError(f"GGUF metadata {key!r} is missing; not a complete "
                     "llama.cpp model file.")
    return default
  return field.contents()


def _float32(x) -> float:
  """A float32 metadata value as the shortest decimal that rounds to it
  (9.999999747e-06 -> 1e-05, the value the original config.json holds)."""
  return float(str(np.float32(x)))


def read_config(reader) -> config_lib.ModelConfig:
  """The ModelConfig of an open GGUFReader (from its `{arch}.*` metadata).

  Raises:
    ValueError: an architecture other than llama/qwen2/qwen3, or RoPE
      scaling (not supported by this reader).
  """
  arch = _field(reader, "general.architecture")
  if arch not in _FAMILY_OF_ARCH:
    raise ValueError(
        f"GGUF architecture {arch!r} is not supported; supported: "
        f"{', '.join(sorted(_FAMILY_OF_ARCH))}.")
  scaling = _field(reader, f"{arch}.rope.scaling.type", "none")
  names = {t.name for t in reader.tensors}
  if scaling not in ("none", "") or "rope_freqs.weight" in names:
    raise ValueError(
        f"This GGUF uses RoPE scaling ({scaling!r}, or a rope_freqs "
        "tensor), which the GGUF reader does not support; convert the "
        "original Hugging Face checkpoint with from_pretrained instead.")
  heads = int(_field(reader, f"{arch}.attention.head_count"))
  hidden = int(_field(reader, f"{arch}.embedding_length"))
  embed = [t for t in reader.tensors if t.name == "token_embd.weight"]
  if not embed:
    raise KeyError("GGUF tensor 'token_embd.weight' is missing.")
  return config_lib.ModelConfig(
      vocab_size=int(embed[0].shape[-1]),
      hidden_size=hidden,
      intermediate_size=int(_field(reader, f"{arch}.feed_forward_length")),
      num_layers=int(_field(reader, f"{arch}.block_count")),
      num_heads=heads,
      num_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv",
                              heads)),
      head_dim=int(_field(reader, f"{arch}.attention.key_length",
                          hidden // heads)),
      rope_theta=_float32(_field(reader, f"{arch}.rope.freq_base", 1e4)),
      rms_norm_eps=_float32(_field(
          reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)),
      tie_word_embeddings="output.weight" not in names,
      qkv_bias=arch == "qwen2",
      qk_norm=arch == "qwen3",
      max_position_embeddings=int(_field(reader, f"{arch}.context_length",
                                         32768)),
      family=_FAMILY_OF_ARCH[arch],
  )


def _hf_name(gguf_name: str) -> str | None:
  if gguf_name in _GLOBAL_NAMES:
    return _GLOBAL_NAMES[gguf_name]
  parts = gguf_name.split(".", 2)
  if len(parts) == 3 and parts[0] == "blk" and parts[2] in _LAYER_NAMES:
    return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}"
  return None


def unpermute_qk(w_RD: np.ndarray, num_heads: int) -> np.ndarray:
  """Undoes llama.cpp's q/k row permutation (see the module docstring).

  w[n, 2i + j] (GGUF, per head n) -> w[n, j·H/2 + i] (Hugging Face), the
  inverse of convert_hf_to_gguf.py's `permute`.

  Args:
    w_RD: [num_heads·H, D] GGUF q or k weight (or [num_heads·H] bias).
    num_heads: heads of this projection (kv heads for k).

  Returns:
    The Hugging Face [num_heads·H, D] weight.
  """
  rest = w_RD.shape[1:]
  half = w_RD.shape[0] // num_heads // 2
  return (w_RD.reshape(num_heads, half, 2, *rest).swapaxes(1, 2)
          .reshape(w_RD.shape))


class _Dequantized:
  """One GGUF tensor as a lazily dequantized HF-layout float32 array.

  Indexing dequantizes the whole tensor (gguf blocks span a row) and
  returns the block, so nothing is kept once the model holds its copy.
  """

  def __init__(self, tensor, num_heads: int | None):
    self._tensor = tensor
    self._num_heads = num_heads
    self.shape = tuple(int(n) for n in reversed(tensor.shape))

  def __array__(self, dtype=None, copy=None):
    del copy
    from gguf import quants  # pylint: disable=g-import-not-at-top
    x = np.asarray(quants.dequantize(self._tensor.data,
                                     self._tensor.tensor_type), np.float32)
    x = x.reshape(self.shape)
    if self._num_heads is not None:
      x = unpermute_qk(x, self._num_heads)
    return x if dtype is None else x.astype(dtype)

  def __getitem__(self, index):
    return np.asarray(self)[index]


def read_gguf(
    path: str | os.PathLike[str],
) -> tuple[config_lib.ModelConfig, dict[str, _Dequantized]]:
  """(ModelConfig, HF tensor name -> lazily dequantized float32 array).

  Arrays are in the Hugging Face layout (q/k permutation undone);
  `np.asarray(t)` materialises one.

  Raises:
    FileNotFoundError: no such file.
    ValueError: unsupported architecture or RoPE scaling.
  """
  reader = _reader(path)
  config = read_config(reader)
  tensors = {}
  for tensor in reader.tensors:
    name = _hf_name(tensor.name)
    if name is None:
      raise ValueError(
          f"GGUF tensor {tensor.name!r} has no Hugging Face equivalent in "
          f"the {config.family} family; this file is not a plain "
          f"{config.family} decoder.")
    heads = None
    if config.family == "llama" and name.endswith(
        ("q_proj.weight", "k_proj.weight")):
      heads = (config.num_heads if "q_proj" in name
               else config.num_kv_heads)
    tensors[name] = _Dequantized(tensor, heads)
  return config, tensors


def from_gguf(
    path: str | os.PathLike[str], dtype: Any = jnp.float32, **options: Any
):
  """Loads a llama.cpp GGUF file (llama/qwen2/qwen3) into a Transformer.

  Quantized weights are dequantized to float32, then cast to
  `param_dtype`.

  Args:
    path: the .gguf file.
    dtype: compute dtype.
    **options: keyword-only `convert.from_tensors` options (param_dtype,
      remat, scan_layers, decode_attention, mesh, rules), documented there.

  Returns:
    The `mathrl.models.Transformer`.
  """
  convert.check_load_options(options, "from_gguf")
  config, tensors = read_gguf(path)
  return convert.from_tensors(config, tensors, dtype, **options)


def write_hf_folder(
    path: str | os.PathLike[str], out: str | os.PathLike[str]
) -> pathlib.Path:
  """Writes a GGUF file as a Hugging Face folder `transformers` loads.

  config.json, model.safetensors (float32, dequantized, HF layout),
  generation_config.json (bos/eos/pad ids) and the tokenizer files with
  the chat template (`mathrl.data.tokenizer.from_gguf`).

  Args:
    path: the .gguf file.
    out: the output folder (created).

  Returns:
    The output folder.
  """
  from mathrl.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  config, tensors = read_gguf(path)
  folder = pathlib.Path(out)
  folder.mkdir(parents=True, exist_ok=True)
  arrays = {name: np.ascontiguousarray(np.asarray(t))
            for name, t in tensors.items()}
  safetensors.numpy.save_file(arrays, str(folder / "model.safetensors"),
                              metadata={"format": "pt"})
  del arrays
  tok = tokenizer_lib.from_gguf(path)
  hf = config_lib.to_hf_config(config)
  hf["torch_dtype"] = hf["dtype"] = "float32"
  ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
         "pad_token_id": tok.pad_token_id}
  hf.update({k: v for k, v in ids.items() if v is not None})
  (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
  (folder / "generation_config.json").write_text(json.dumps(
      {k: v for k, v in ids.items() if v is not None}, indent=2) + "\n")
  tok.save_pretrained(str(folder))
  return folder
