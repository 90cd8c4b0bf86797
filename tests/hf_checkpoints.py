"""Tiny random Hugging Face checkpoints for tests, and the PyTorch reference.

  path = write_tiny_checkpoint("qwen2", tmp_path / "qwen2")
  logits_BSV = torch_logits(path, tokens_BS, mask_BS)

Each family's checkpoint is written by `transformers` itself (random init,
seeded), so loading it tests the real Hugging Face layout. Shapes are tiny
and divisible by 2/4/8 (the test meshes): hidden 64, 2 layers, 4 query
heads, 2 kv heads, vocab 256, MLP 128.
"""

import pathlib

import numpy as np

FAMILIES = ("qwen2", "qwen3", "llama")

# Default embedding tying per family: Qwen2 tied (as Qwen2.5-0.5B), Qwen3
# and Llama untied, so both head layouts are covered.
_DEFAULT_TIE = {"qwen2": True, "qwen3": False, "llama": False}

_COMMON = dict(
    vocab_size=256,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
)


def _torch():
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)
  return torch


def hf_config(family: str, *, tie_word_embeddings: bool | None = None):
  """The transformers config object of the tiny `family` model."""
  import transformers  # pylint: disable=g-import-not-at-top
  tie = _DEFAULT_TIE[family] if tie_word_embeddings is None else (
      tie_word_embeddings)
  if family == "qwen2":
    return transformers.Qwen2Config(
        **_COMMON, rope_theta=10000.0, tie_word_embeddings=tie)
  if family == "qwen3":
    # head_dim 32 != hidden 64 / 4 heads: Qwen3 decouples them.
    return transformers.Qwen3Config(
        **_COMMON, head_dim=32, rope_theta=1000000.0,
        tie_word_embeddings=tie)
  if family == "llama":
    # original_max_position_embeddings 32 makes the llama3 ramp touch the
    # tiny head_dim's frequencies (all three branches are exercised).
    return transformers.LlamaConfig(
        **_COMMON, rope_theta=500000.0, tie_word_embeddings=tie,
        rope_scaling={"rope_type": "llama3", "factor": 8.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 32})
  raise ValueError(f"Unknown family {family!r}; use one of {FAMILIES}.")


def write_tiny_checkpoint(
    family: str,
    path,
    *,
    tie_word_embeddings: bool | None = None,
    seed: int = 0,
    max_shard_size: str | None = None,
) -> pathlib.Path:
  """Writes a random tiny `family` checkpoint with `transformers`.

  Args:
    family: 'qwen2', 'qwen3' or 'llama'.
    path: output folder.
    tie_word_embeddings: override the family default.
    seed: torch seed of the random init.
    max_shard_size: e.g. '100KB' to get several shards plus the index.

  Returns:
    The folder.
  """
  torch = _torch()
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  config = hf_config(family, tie_word_embeddings=tie_word_embeddings)
  model = transformers.AutoModelForCausalLM.from_config(
      config, dtype=torch.float32)
  with torch.no_grad():
    # Random (not unit/zero) norms and biases so parity tests see them.
    for name, p in model.named_parameters():
      if name.endswith("norm.weight") or name.endswith(".bias"):
        p.copy_(1.0 + 0.1 * torch.randn_like(p) if name.endswith(
            "norm.weight") else 0.1 * torch.randn_like(p))
  path = pathlib.Path(path)
  kwargs = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
  model.save_pretrained(path, **kwargs)
  return path


def positions(mask_BS: np.ndarray) -> np.ndarray:
  """cumsum(mask) - 1 clipped at 0: positions of a left-padded batch."""
  return np.maximum(np.cumsum(mask_BS, axis=1) - 1, 0)


def torch_logits(path, tokens_BS, mask_BS=None) -> np.ndarray:
  """transformers' float32 PyTorch logits [B, S, V] for the folder `path`."""
  torch = _torch()
  import transformers  # pylint: disable=g-import-not-at-top
  model = transformers.AutoModelForCausalLM.from_pretrained(
      path, dtype=torch.float32, attn_implementation="eager")
  model.eval()
  tokens_BS = np.asarray(tokens_BS)
  mask_BS = np.ones_like(tokens_BS) if mask_BS is None else np.asarray(
      mask_BS)
  with torch.no_grad():
    out = model(
        input_ids=torch.from_numpy(tokens_BS).long(),
        attention_mask=torch.from_numpy(mask_BS).long(),
        position_ids=torch.from_numpy(positions(mask_BS)).long(),
    )
  return out.logits.float().numpy()
