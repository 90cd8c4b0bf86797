"""Tests for mathrl.models: HF parity, export, KV cache, bf16, bad input."""

import dataclasses
import functools
import inspect
import json
import shutil

import hf_checkpoints
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from mathrl import models
from mathrl.models import config as config_lib
from mathrl.models import layers
from mathrl.models import presets

# One token batch for every test (one compile per model): row 0 is
# left-padded by 2, row 1 is full.
TOKENS_BS = np.random.default_rng(0).integers(0, 256, (2, 7))
MASK_BS = np.array([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
REAL_BS = MASK_BS.astype(bool)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, tokens_BS, mask_BS):
  return nnx.merge(graphdef, state)(tokens_BS, attention_mask_BS=mask_BS)


def forward(model, tokens_BS, mask_BS=None):
  graphdef, state = nnx.split(model)
  return np.asarray(_forward(graphdef, state, tokens_BS, mask_BS))


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
  return {f: models.from_pretrained(p, dtype=jnp.float32)
          for f, p in tiny_checkpoints.items()}


@pytest.mark.parametrize("family", hf_checkpoints.FAMILIES)
def test_logits_match_transformers(family, tiny_checkpoints, loaded):
  path, model = tiny_checkpoints[family], loaded[family]
  plain_BSV = forward(model, TOKENS_BS)
  np.testing.assert_allclose(
      plain_BSV, hf_checkpoints.torch_logits(path, TOKENS_BS), atol=1e-4)
  padded_BSV = forward(model, TOKENS_BS, MASK_BS)
  assert np.isfinite(padded_BSV).all()  # Fully masked pad rows: no NaN.
  reference_BSV = hf_checkpoints.torch_logits(path, TOKENS_BS, MASK_BS)
  np.testing.assert_allclose(padded_BSV[REAL_BS], reference_BSV[REAL_BS],
                             atol=1e-4)


def test_padding_does_not_change_real_logits(loaded):
  # Row 0's 5 real tokens, unpadded, must give the same logits as padded.
  model = loaded["qwen3"]
  padded_BSV = forward(model, TOKENS_BS, MASK_BS)
  alone_BSV = forward(model, np.concatenate(
      [TOKENS_BS[:, 2:], TOKENS_BS[:, :2]], axis=1))
  np.testing.assert_allclose(padded_BSV[0, 2:], alone_BSV[0, :5], atol=1e-5)


def test_explicit_positions_equal_derived(loaded):
  model = loaded["llama"]
  positions_BS = jnp.asarray(hf_checkpoints.positions(MASK_BS))
  explicit_BSV = model(jnp.asarray(TOKENS_BS), jnp.asarray(MASK_BS),
                       positions_BS=positions_BS)
  np.testing.assert_allclose(np.asarray(explicit_BSV)[REAL_BS],
                             forward(model, TOKENS_BS, MASK_BS)[REAL_BS],
                             atol=1e-5)


@pytest.mark.parametrize("family", hf_checkpoints.FAMILIES)
def test_save_pretrained_round_trip(family, tiny_checkpoints, loaded,
                                    tmp_path):
  source, model = tiny_checkpoints[family], loaded[family]
  out = models.save_pretrained(model, tmp_path / family)
  # The exported tensors are exactly the ones transformers wrote.
  original = {}
  for f in sorted(source.glob("*.safetensors")):
    original.update(safetensors.numpy.load_file(f))
  saved = safetensors.numpy.load_file(out / "model.safetensors")
  assert sorted(saved) == sorted(original)
  for name, x in original.items():
    np.testing.assert_array_equal(saved[name], x, err_msg=name)
  # transformers loads the folder and computes the same logits.
  reference_BSV = hf_checkpoints.torch_logits(out, TOKENS_BS, MASK_BS)
  np.testing.assert_allclose(forward(model, TOKENS_BS, MASK_BS)[REAL_BS],
                             reference_BSV[REAL_BS], atol=1e-4)


def test_save_pretrained_copies_tokenizer(loaded, tmp_path):
  import tokenizers  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  vocab = {"<unk>": 0, "one": 1, "plus": 2, "two": 3}
  word_level = tokenizers.Tokenizer(
      tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
  word_level.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  transformers.PreTrainedTokenizerFast(
      tokenizer_object=word_level, unk_token="<unk>").save_pretrained(
          tmp_path / "tok")
  out = models.save_pretrained(loaded["qwen2"], tmp_path / "model",
                               tokenizer_dir=tmp_path / "tok")
  for name in ("tokenizer.json", "tokenizer_config.json"):
    assert (out / name).read_bytes() == (tmp_path / "tok" / name).read_bytes()
  # (AutoTokenizer would pick Qwen2Tokenizer from config.json's model_type;
  # a real Qwen folder's tokenizer files are made for exactly that.)
  tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(out)
  assert tokenizer("one plus two")["input_ids"] == [1, 2, 3]


def test_cached_decode_matches_full_forward(loaded):
  # Prefill the left-padded 5-token prompt, then decode 4 tokens one at a
  # time inside lax.fori_loop (cache traced, model via split/merge); each
  # step's logits must equal the full 9-token forward at that position.
  model = loaded["qwen2"]
  graphdef, state = nnx.split(model)
  prompt_BL, prompt_mask_BL = TOKENS_BS[:, :5], MASK_BS[:, :5]
  new_BT = np.array([[5, 17, 200, 3], [9, 9, 100, 42]])  # T = 4
  full_BSV = forward(
      model, np.concatenate([prompt_BL, new_BT], axis=1),
      np.concatenate([prompt_mask_BL, np.ones_like(new_BT)], axis=1))

  @jax.jit
  def prefill_and_decode(state, prompt_BL, prompt_mask_BL, new_BT):
    model = nnx.merge(graphdef, state)
    cache = model.init_cache(2, 12)
    prefill_BLV, cache = model(prompt_BL, prompt_mask_BL, cache=cache)

    def step(t, carry):
      cache, out_TBV = carry
      logits_B1V, cache = nnx.merge(graphdef, state)(
          jax.lax.dynamic_slice_in_dim(new_BT, t, 1, axis=1), cache=cache)
      return cache, out_TBV.at[t].set(logits_B1V[:, 0])

    out_TBV = jnp.zeros((4, 2, 256), jnp.float32)
    cache, out_TBV = jax.lax.fori_loop(0, 4, step, (cache, out_TBV))
    return prefill_BLV, out_TBV, cache

  prefill_BLV, decode_TBV, cache = prefill_and_decode(
      state, prompt_BL, prompt_mask_BL, new_BT)
  real_BL = prompt_mask_BL.astype(bool)
  np.testing.assert_allclose(np.asarray(prefill_BLV)[real_BL],
                             full_BSV[:, :5][real_BL], atol=1e-5)
  np.testing.assert_allclose(np.asarray(decode_TBV).transpose(1, 0, 2),
                             full_BSV[:, 5:], atol=1e-5)
  # index: 5 prompt + 4 decoded slots; positions: real tokens so far.
  assert int(cache.index) == 9
  np.testing.assert_array_equal(cache.next_position_B, [3 + 4, 5 + 4])
  np.testing.assert_array_equal(
      cache.mask_BM, [[0, 0] + [1] * 7 + [0] * 3, [1] * 9 + [0] * 3])
  assert len(cache.k) == len(cache.v) == 2  # one buffer per layer
  assert cache.k[0].shape == (2, 2, 16, 12)  # [B, K, H, M]
  assert cache.v[0].shape == (2, 2, 12, 16)  # [B, K, M, H]


def test_shared_prompt_forward_matches_full_forward(loaded):
  # 2 prompts (row 0 left-padded by 2) x G = 2 continuations of 3 tokens,
  # the last continuation right-padded by 1: the shared forward's logits
  # equal the full forward of each prompt + continuation at the prompt's
  # last position and at every real continuation position.
  model = loaded["qwen2"]
  prompt_PL, prompt_mask_PL = TOKENS_BS[:, :5], MASK_BS[:, :5]
  new_BS = np.array([[5, 17, 200], [9, 9, 100], [42, 7, 3], [11, 12, 0]])
  new_mask_BS = np.array([[1, 1, 1]] * 3 + [[1, 1, 0]])
  full_BSV = forward(
      model, np.concatenate([np.repeat(prompt_PL, 2, axis=0), new_BS], 1),
      np.concatenate([np.repeat(prompt_mask_PL, 2, axis=0), new_mask_BS], 1))

  @functools.partial(jax.jit, static_argnums=0)
  def shared(graphdef, state):
    return nnx.merge(graphdef, state).shared_prompt_forward(
        prompt_PL, prompt_mask_PL, new_BS, new_mask_BS)

  first_P1V, rest_BSV = shared(*nnx.split(model))
  np.testing.assert_allclose(first_P1V[:, 0], full_BSV[::2, 4], atol=1e-5)
  real_BS = new_mask_BS.astype(bool)
  np.testing.assert_allclose(np.asarray(rest_BSV)[real_BS],
                             full_BSV[:, 5:][real_BS], atol=1e-5)


def test_shared_prompt_forward_is_one_scan_whatever_the_depth():
  # Tracing (and so compiling) the shared-prompt forward and its gradient
  # does not grow with the number of layers: one scan over the stacked
  # layers holds every matmul.
  def matmuls(num_layers):
    cfg = dataclasses.replace(presets.TINY, num_layers=num_layers)
    graphdef, state = nnx.split(nnx.eval_shape(
        lambda: models.Transformer(cfg, rngs=nnx.Rngs(0))))
    ones = lambda *shape: jnp.ones(shape, jnp.int32)
    loss = lambda state: jnp.sum(nnx.merge(graphdef, state)
                                 .shared_prompt_forward(ones(2, 5), ones(2, 5),
                                                        ones(4, 3), ones(4, 3))[1])
    jaxpr = jax.make_jaxpr(jax.grad(loss))(state).jaxpr
    return _count(jaxpr, "dot_general"), _count(jaxpr, "scan")

  dots, scans = matmuls(2)
  assert (dots, scans) == matmuls(6)
  assert scans == 2  # the forward's scan and its transpose
  # Each of the two parts of a layer (prompts, continuations) has 9: q, k,
  # v, o, q·kᵀ, probs·v, gate, up, down; the backward more.
  assert dots >= 2 * 9


def _count(jaxpr, primitive):
  """Equations of `primitive` in a jaxpr and the jaxprs it calls."""
  n = 0
  for eqn in jaxpr.eqns:
    n += eqn.primitive.name == primitive
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      n += _count(sub, primitive)
  return n


def test_bfloat16_params_and_float32_logits(tiny_checkpoints, loaded,
                                           tmp_path):
  model = models.from_pretrained(tiny_checkpoints["qwen3"],
                                 dtype=jnp.bfloat16)
  dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
  assert dtypes == {jnp.dtype(jnp.bfloat16)}
  logits_BSV = forward(model, TOKENS_BS, MASK_BS)
  assert logits_BSV.dtype == np.float32
  assert np.isfinite(logits_BSV).all()
  # bf16 keeps ~3 significant digits; the logits here are O(1).
  np.testing.assert_allclose(
      logits_BSV[REAL_BS],
      forward(loaded["qwen3"], TOKENS_BS, MASK_BS)[REAL_BS], atol=5e-2)
  # A bf16 export (as real checkpoints are stored) loads back into float32
  # exactly (bf16 -> f32 is lossless).
  out = models.save_pretrained(model, tmp_path / "bf16")
  assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
  reloaded = models.from_pretrained(out, dtype=jnp.float32)
  for (path, a), (_, b) in zip(
      nnx.to_flat_state(nnx.state(model, nnx.Param)),
      nnx.to_flat_state(nnx.state(reloaded, nnx.Param))):
    assert b.get_value().dtype == jnp.float32, path
    np.testing.assert_array_equal(
        np.asarray(a.get_value()).astype(np.float32), b.get_value())


def test_public_api_matches_design():
  params = list(inspect.signature(models.from_pretrained).parameters.values())
  assert [p.name for p in params[:2]] == ["path", "dtype"]
  assert params[1].default is jnp.float32
  save_params = inspect.signature(models.save_pretrained).parameters
  assert list(save_params)[:2] == ["model", "path"]
  call = inspect.signature(models.Transformer.__call__).parameters
  assert {"attention_mask_BS", "positions_BS", "cache"} <= set(call)
  assert set(models.SUPPORTED) == {
      "Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM"}


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_hf_config_round_trip(name):
  config = presets.get(name)
  assert config_lib.from_hf_config(config_lib.to_hf_config(config)) == config


def _num_params(config):
  abstract = nnx.eval_shape(lambda: models.Transformer(config,
                                                       rngs=nnx.Rngs(0)))
  return sum(x.size for x in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_preset_parameter_counts():
  # Qwen2.5-0.5B: embed 151936*896 = 136,134,656; per layer q 896*896 + 896,
  # k, v 896*128 + 128 each, o 896*896, mlp 3*896*4864, 2 norms 896 each
  # = 14,912,384, x24 = 357,897,216; final norm 896. Total 494,032,768,
  # the count Hugging Face reports for the checkpoint.
  assert _num_params(presets.QWEN2_5_0_5B) == 494_032_768
  # Llama-3.2-1B: embed 128256*2048 = 262,668,288; per layer q, o 2048^2,
  # k, v 2048*512, mlp 3*2048*8192, norms 2*2048 = 60,821,504, x16 =
  # 973,144,064; final norm 2048. Total 1,235,814,400.
  assert _num_params(presets.LLAMA_3_2_1B) == 1_235_814_400


def test_transformers4_style_llama_config():
  # Llama-3.2-1B's config.json as published (rope_theta + rope_scaling).
  hf = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "tie_word_embeddings": True,
        "max_position_embeddings": 131072,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
                         "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192,
                         "rope_type": "llama3"}}
  assert config_lib.from_hf_config(hf) == presets.LLAMA_3_2_1B


def test_rope_inv_freq_golden():
  # H = 4, theta = 100: inv_freq_i = 100^(-2i/4) = [1, 0.1].
  np.testing.assert_allclose(layers.rope_inv_freq(4, 100.0, None),
                             [1.0, 0.1], rtol=1e-6)
  # llama3, factor 8, original length 32, low/high factors 1/4: wavelengths
  # 2π ≈ 6.28 (< 32/4 = 8: kept) and 2π/0.1 ≈ 62.8 (> 32/1: divided by 8).
  scaling = config_lib.RopeScaling(8.0, 1.0, 4.0, 32)
  np.testing.assert_allclose(layers.rope_inv_freq(4, 100.0, scaling),
                             [1.0, 0.1 / 8], rtol=1e-6)


def _copy(source, tmp_path, name="bad"):
  return shutil.copytree(source, tmp_path / name)


def _edit_config(path, **changes):
  config = json.loads((path / "config.json").read_text())
  config.update(changes)
  (path / "config.json").write_text(json.dumps(config))


def test_error_not_a_model_folder(tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a model folder"):
    models.from_pretrained(tmp_path)


def test_error_unsupported_architecture(tiny_checkpoints, tmp_path):
  path = _copy(tiny_checkpoints["qwen2"], tmp_path)
  _edit_config(path, architectures=["GPT2LMHeadModel"], model_type="gpt2")
  with pytest.raises(ValueError, match=r"GPT2LMHeadModel.*supported: "
                     "Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM"):
    models.from_pretrained(path)


def test_error_missing_shard(tiny_checkpoints, tmp_path):
  path = _copy(tiny_checkpoints["llama"], tmp_path)
  shard = sorted(path.glob("model-*.safetensors"))[1]
  shard.unlink()
  with pytest.raises(FileNotFoundError, match=shard.name):
    models.from_pretrained(path)


def test_error_missing_tensor(tiny_checkpoints, tmp_path):
  path = _copy(tiny_checkpoints["qwen2"], tmp_path)
  tensors = safetensors.numpy.load_file(path / "model.safetensors")
  del tensors["model.layers.1.mlp.up_proj.weight"]
  safetensors.numpy.save_file(tensors, path / "model.safetensors")
  with pytest.raises(KeyError, match=r"model\.layers\.1\.mlp\.up_proj"):
    models.from_pretrained(path)


def test_error_shape_disagrees_with_config(tiny_checkpoints, tmp_path):
  path = _copy(tiny_checkpoints["qwen3"], tmp_path)
  _edit_config(path, intermediate_size=96)
  with pytest.raises(ValueError, match=(
      r"model\.layers\.0\.mlp\.gate_proj\.weight.*\(128, 64\).*\(96, 64\)")):
    models.from_pretrained(path)


@pytest.mark.parametrize("loader", ["from_pretrained", "from_gguf", "load"])
def test_loaders_name_a_misspelt_option_before_reading_anything(loader):
  # The path does not exist: the option check runs before any I/O, and the
  # error names the function the user called.
  with pytest.raises(TypeError, match=rf"{loader}\(\).*\['param_dtyp'\]"):
    getattr(models, loader)("/nonexistent/model", param_dtyp="float32")
