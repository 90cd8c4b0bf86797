"""GGUF import on tiny files written with gguf.GGUFWriter, per family.

Each test model is a random tiny Transformer saved as a Hugging Face folder
and as a GGUF file laid out as llama.cpp's converter writes it (Llama q/k
rows permuted for its interleaved RoPE, `output.weight` absent when the
head is tied, Q8_0-quantized embedding for the untied one). Loading the
GGUF must give the folder's logits. The tokenizer of a metadata-only GGUF
must equal transformers' own GGUF tokenizer loading.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mathrl import models
from mathrl.data import tokenizer as tokenizer_lib
from mathrl.models import convert
from mathrl.models import gguf_import

_HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_LAYER = {v: k for k, v in gguf_import._LAYER_NAMES.items()}  # pylint: disable=protected-access


def _llama_cpp_permute(w, num_heads):
  """convert_hf_to_gguf.py's `permute`: half-split rows -> interleaved."""
  return (w.reshape(num_heads, 2, w.shape[0] // num_heads // 2,
                    *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


def _gguf_name(hf_name):
  if hf_name in _HF_TO_GGUF:
    return _HF_TO_GGUF[hf_name]
  _, _, i, rest = hf_name.split(".", 3)
  return f"blk.{i}.{_LAYER[rest]}"


def _write(folder, path, config, quantize_embedding=False):
  """The HF folder's tensors as a llama.cpp-style GGUF at `path`."""
  import gguf  # pylint: disable=g-import-not-at-top
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  tensors = safetensors.numpy.load_file(str(folder / "model.safetensors"))
  arch = config.family
  w = gguf.GGUFWriter(str(path), arch)
  w.add_block_count(config.num_layers)
  w.add_context_length(config.max_position_embeddings)
  w.add_embedding_length(config.hidden_size)
  w.add_feed_forward_length(config.intermediate_size)
  w.add_head_count(config.num_heads)
  w.add_head_count_kv(config.num_kv_heads)
  w.add_key_length(config.head_dim)
  w.add_rope_freq_base(config.rope_theta)
  w.add_layer_norm_rms_eps(config.rms_norm_eps)
  for name, x in tensors.items():
    if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
      x = _llama_cpp_permute(x, config.num_heads if "q_proj" in name
                             else config.num_kv_heads)
    if quantize_embedding and name == "model.embed_tokens.weight":
      q = gguf.quants.quantize(x, gguf.GGMLQuantizationType.Q8_0)
      w.add_tensor(_gguf_name(name), q,
                   raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    else:
      w.add_tensor(_gguf_name(name), np.ascontiguousarray(x, np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  return tensors


@pytest.mark.parametrize("family,tied", [("llama", True), ("llama", False),
                                         ("qwen2", True), ("qwen3", False)])
def test_from_gguf_equals_the_hf_folder(family, tied, tmp_path):
  config = dataclasses.replace(
      models.presets.TINY, family=family, tie_word_embeddings=tied,
      qkv_bias=family == "qwen2", qk_norm=family == "qwen3",
      rope_theta=100000.0, rms_norm_eps=1e-5)
  model = models.Transformer(config, rngs=nnx.Rngs(1))
  if family == "qwen2":  # non-zero biases, so a mix-up would show
    attn = model.layers.attn
    attn.q_bias[...] = jax.random.normal(jax.random.key(2),
                                         attn.q_bias.shape) * 0.1
  folder = convert.save_pretrained(model, tmp_path / "hf")
  path = tmp_path / "model.gguf"
  hf_tensors = _write(folder, path, config, quantize_embedding=not tied)
  read_config, tensors = gguf_import.read_gguf(path)
  assert read_config == config
  for name, x in hf_tensors.items():
    if name == "model.embed_tokens.weight" and not tied:
      # Q8_0: 8-bit blocks of 32 with one scale, error <= scale / 2.
      np.testing.assert_allclose(np.asarray(tensors[name]), x, atol=2e-3)
    else:
      np.testing.assert_array_equal(np.asarray(tensors[name]), x,
                                    err_msg=name)
  tokens_BS = jnp.array([[5, 9, 33, 2, 7, 100], [0, 0, 4, 8, 15, 16]])
  mask_BS = jnp.array([[1] * 6, [0, 0, 1, 1, 1, 1]])
  want = models.from_pretrained(folder)(tokens_BS, attention_mask_BS=mask_BS)
  got = models.from_gguf(path)(tokens_BS, attention_mask_BS=mask_BS)
  np.testing.assert_allclose(got, want, atol=1e-5 if tied else 2e-2)


def test_unsupported_architecture_is_named(tmp_path):
  import gguf  # pylint: disable=g-import-not-at-top
  path = tmp_path / "gpt2.gguf"
  w = gguf.GGUFWriter(str(path), "gpt2")
  w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  with pytest.raises(ValueError, match="'gpt2' is not supported"):
    models.from_gguf(path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    models.from_gguf(tmp_path / "missing.gguf")


def test_special_token_keys_are_the_gguf_spec_names():
  import gguf  # pylint: disable=g-import-not-at-top
  keys = gguf.Keys.Tokenizer
  assert tokenizer_lib.GGUF_SPECIAL_TOKEN_KEYS == {
      "bos_token": keys.BOS_ID, "eos_token": keys.EOS_ID,
      "unk_token": keys.UNK_ID, "pad_token": keys.PAD_ID}


def test_tokenizer_without_unk_and_pad_ids_equals_transformers(tmp_path):
  """A GGUF naming only bos and eos: unk and pad stay None, as in
  transformers' own GGUF tokenizer loading (metadata only, no tensors)."""
  import gguf  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  path = tmp_path / "tokenizer_only.gguf"
  w = gguf.GGUFWriter(str(path), "llama")
  w.add_block_count(1)
  w.add_context_length(64)
  w.add_embedding_length(8)
  w.add_feed_forward_length(16)
  w.add_head_count(2)
  w.add_head_count_kv(1)
  w.add_tokenizer_model("gpt2")
  w.add_tokenizer_pre("default")
  w.add_token_list(["<s>", "</s>", "a", "b", "ab", "Ġ", "Ġa"])
  w.add_token_types([3, 3, 1, 1, 1, 1, 1])  # 3: control
  w.add_token_merges(["a b", "Ġ a"])
  w.add_bos_token_id(0)
  w.add_eos_token_id(1)
  w.write_header_to_file()
  w.write_kv_data_to_file()
  w.write_tensors_to_file()
  w.close()
  ours = tokenizer_lib.from_gguf(path)
  reference = transformers.AutoTokenizer.from_pretrained(
      str(tmp_path), gguf_file=path.name)
  names = tuple(tokenizer_lib.GGUF_SPECIAL_TOKEN_KEYS)
  assert [getattr(ours, n) for n in names] == ["<s>", "</s>", None, None]
  assert [getattr(reference, n) for n in names] == ["<s>", "</s>", None, None]
  # "ab a" -> "ab" (4), "Ġa" (6) with both merges.
  assert ours("ab a").input_ids == reference("ab a").input_ids == [4, 6]
