"""Ready-made ModelConfigs: a tiny CPU test model and real checkpoint shapes.

The real shapes match the public Hugging Face config.json of each model, so
a randomly initialised `Transformer(presets.QWEN2_5_0_5B, ...)` has the
same parameter tree as `from_pretrained` on the downloaded checkpoint.
"""

from mathrl.models import config as config_lib

# Divisible by 2/4/8 where the test meshes need it (D=64, F=128, V=256).
TINY = config_lib.ModelConfig(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_layers=2,
    num_heads=4, num_kv_heads=2, head_dim=16, rope_theta=10000.0,
    rms_norm_eps=1e-6, tie_word_embeddings=True, qkv_bias=True,
    max_position_embeddings=512, family="qwen2",
)

QWEN2_5_0_5B = config_lib.ModelConfig(
    vocab_size=151936, hidden_size=896, intermediate_size=4864,
    num_layers=24, num_heads=14, num_kv_heads=2, head_dim=64,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    qkv_bias=True, max_position_embeddings=32768, family="qwen2",
)

QWEN2_5_1_5B = config_lib.ModelConfig(
    vocab_size=151936, hidden_size=1536, intermediate_size=8960,
    num_layers=28, num_heads=12, num_kv_heads=2, head_dim=128,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    qkv_bias=True, max_position_embeddings=32768, family="qwen2",
)

QWEN2_5_7B = config_lib.ModelConfig(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944,
    num_layers=28, num_heads=28, num_kv_heads=4, head_dim=128,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=False,
    qkv_bias=True, max_position_embeddings=32768, family="qwen2",
)

QWEN3_0_6B = config_lib.ModelConfig(
    vocab_size=151936, hidden_size=1024, intermediate_size=3072,
    num_layers=28, num_heads=16, num_kv_heads=8, head_dim=128,
    rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    qk_norm=True, max_position_embeddings=40960, family="qwen3",
)

LLAMA_3_2_1B = config_lib.ModelConfig(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192,
    num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64,
    rope_theta=500000.0,
    rope_scaling=config_lib.RopeScaling(
        factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192),
    rms_norm_eps=1e-5, tie_word_embeddings=True,
    max_position_embeddings=131072, family="llama",
)

LLAMA_3_1_8B = config_lib.ModelConfig(
    vocab_size=128256, hidden_size=4096, intermediate_size=14336,
    num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128,
    rope_theta=500000.0,
    rope_scaling=config_lib.RopeScaling(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
        original_max_position_embeddings=8192),
    rms_norm_eps=1e-5, tie_word_embeddings=False,
    max_position_embeddings=131072, family="llama",
)

PRESETS = {
    "tiny": TINY,
    "qwen2.5-0.5b": QWEN2_5_0_5B,
    "qwen2.5-1.5b": QWEN2_5_1_5B,
    "qwen2.5-7b": QWEN2_5_7B,
    "qwen3-0.6b": QWEN3_0_6B,
    "llama-3.2-1b": LLAMA_3_2_1B,
    "llama-3.1-8b": LLAMA_3_1_8B,
}


def get(name: str) -> config_lib.ModelConfig:
  """The preset called `name` (one of PRESETS)."""
  if name not in PRESETS:
    raise ValueError(
        f"Unknown model preset {name!r}; known: {sorted(PRESETS)}.")
  return PRESETS[name]

