"""ModelConfig: the shape and numerics of one decoder, and HF config I/O.

One config covers the supported Hugging Face families:

  Qwen2ForCausalLM   (Qwen2, Qwen2.5): q/k/v bias, tied or untied embeddings
  Qwen3ForCausalLM   (Qwen3): q/k RMSNorm, head_dim independent of hidden size
  LlamaForCausalLM   (Llama 3.x): llama3 RoPE scaling, untied head

`from_hf_config(dict)` reads a `config.json` dict (both the transformers 4
spelling `rope_theta`/`rope_scaling` and the transformers 5 spelling
`rope_parameters`), `to_hf_config()` writes one that `transformers` loads.
"""

import dataclasses
from typing import Any

SUPPORTED = ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM")

_FAMILY_OF_ARCH = {
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "LlamaForCausalLM": "llama",
}
_ARCH_OF_FAMILY = {v: k for k, v in _FAMILY_OF_ARCH.items()}


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama 3 RoPE frequency scaling (the `rope_type: llama3` parameters)."""

  factor: float
  low_freq_factor: float
  high_freq_factor: float
  original_max_position_embeddings: int


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Shapes and numerics of one decoder-only transformer.

  Attributes:
    vocab_size: V, rows of the embedding table.
    hidden_size: D, the model dimension.
    intermediate_size: F, the SwiGLU hidden dimension.
    num_layers: number of decoder blocks.
    num_heads: N, query heads.
    num_kv_heads: K, key/value heads (N % K == 0; GQA when K < N).
    head_dim: H, per-head dimension (need not equal D / N, as in Qwen3).
    rope_theta: RoPE base frequency.
    rope_scaling: llama3 frequency scaling, or None.
    rms_norm_eps: epsilon of every RMSNorm.
    tie_word_embeddings: the output head reuses the embedding table.
    qkv_bias: q/k/v projections have biases (Qwen2).
    qk_norm: RMSNorm over head_dim on queries and keys (Qwen3).
    max_position_embeddings: longest context the checkpoint was made for.
    family: 'qwen2', 'qwen3' or 'llama' (selects the HF architecture).
  """

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  rope_theta: float = 10000.0
  rope_scaling: RopeScaling | None = None
  rms_norm_eps: float = 1e-6
  tie_word_embeddings: bool = False
  qkv_bias: bool = False
  qk_norm: bool = False
  max_position_embeddings: int = 32768
  family: str = "qwen2"

  def __post_init__(self):
    if self.family not in _ARCH_OF_FAMILY:
      raise ValueError(
          f"Unknown family {self.family!r}; use one of "
          f"{sorted(_ARCH_OF_FAMILY)}."
      )
    if self.num_heads % self.num_kv_heads:
      raise ValueError(
          f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads "
          f"({self.num_kv_heads})."
      )
    if self.head_dim % 2:
      raise ValueError(f"head_dim must be even for RoPE, got {self.head_dim}.")

  @property
  def architecture(self) -> str:
    """The Hugging Face `architectures[0]` of this family."""
    return _ARCH_OF_FAMILY[self.family]


def _architecture(hf: dict[str, Any]) -> str:
  archs = hf.get("architectures") or []
  known = [a for a in archs if a in SUPPORTED]
  if known:
    return known[0]
  by_type = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
             "llama": "LlamaForCausalLM"}
  if not archs and hf.get("model_type") in by_type:
    return by_type[hf["model_type"]]
  raise ValueError(
      f"Unsupported architecture {archs or hf.get('model_type')!r}; "
      f"supported: {', '.join(SUPPORTED)}."
  )


def _rope(hf: dict[str, Any]) -> tuple[float, RopeScaling | None]:
  params = dict(hf.get("rope_parameters") or {})
  scaling = dict(hf.get("rope_scaling") or {})
  theta = hf.get("rope_theta", params.get("rope_theta", 10000.0))
  source = params if params.get("rope_type", "default") != "default" else (
      scaling)
  kind = source.get("rope_type", source.get("type", "default"))
  if kind == "default" or not source:
    return float(theta), None
  if kind != "llama3":
    raise ValueError(
        f"Unsupported RoPE scaling {kind!r}; supported: default, llama3."
    )
  return float(theta), RopeScaling(
      factor=float(source["factor"]),
      low_freq_factor=float(source["low_freq_factor"]),
      high_freq_factor=float(source["high_freq_factor"]),
      original_max_position_embeddings=int(
          source["original_max_position_embeddings"]),
  )


def from_hf_config(hf: dict[str, Any]) -> ModelConfig:
  """A ModelConfig from a Hugging Face `config.json` dict.

  Args:
    hf: the parsed config.json.

  Returns:
    The equivalent ModelConfig.

  Raises:
    ValueError: unsupported architecture (naming the supported ones), or a
      feature this decoder does not implement (sliding windows, o_proj or
      MLP biases, non-SiLU activations, non-llama3 RoPE scaling).
  """
  arch = _architecture(hf)
  family = _FAMILY_OF_ARCH[arch]
  if hf.get("use_sliding_window"):
    raise ValueError("use_sliding_window=true is not supported.")
  if hf.get("hidden_act", "silu") != "silu":
    raise ValueError(f"hidden_act {hf['hidden_act']!r} unsupported (silu).")
  if hf.get("mlp_bias"):
    raise ValueError("mlp_bias=true is not supported.")
  if family != "qwen2" and hf.get("attention_bias"):
    raise ValueError(f"attention_bias=true is not supported for {arch}.")
  theta, scaling = _rope(hf)
  heads = int(hf["num_attention_heads"])
  head_dim = hf.get("head_dim") or hf["hidden_size"] // heads
  return ModelConfig(
      vocab_size=int(hf["vocab_size"]),
      hidden_size=int(hf["hidden_size"]),
      intermediate_size=int(hf["intermediate_size"]),
      num_layers=int(hf["num_hidden_layers"]),
      num_heads=heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or heads),
      head_dim=int(head_dim),
      rope_theta=theta,
      rope_scaling=scaling,
      rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      qkv_bias=family == "qwen2",
      qk_norm=family == "qwen3",
      max_position_embeddings=int(hf.get("max_position_embeddings", 32768)),
      family=family,
  )


def to_hf_config(config: ModelConfig) -> dict[str, Any]:
  """The Hugging Face config.json dict for `config` (transformers loads it).

  Args:
    config: the model config.

  Returns:
    A JSON-serialisable dict with `architectures`, `model_type`, shapes,
    and RoPE parameters in both the transformers 4 and 5 spellings.
  """
  rope_parameters: dict[str, Any] = {"rope_type": "default",
                                     "rope_theta": config.rope_theta}
  rope_scaling = None
  if config.rope_scaling is not None:
    rope_scaling = {"rope_type": "llama3",
                    **dataclasses.asdict(config.rope_scaling)}
    rope_parameters = {**rope_scaling, "rope_theta": config.rope_theta}
  hf = {
      "architectures": [config.architecture],
      "model_type": config.family,
      "vocab_size": config.vocab_size,
      "hidden_size": config.hidden_size,
      "intermediate_size": config.intermediate_size,
      "num_hidden_layers": config.num_layers,
      "num_attention_heads": config.num_heads,
      "num_key_value_heads": config.num_kv_heads,
      "head_dim": config.head_dim,
      "hidden_act": "silu",
      "max_position_embeddings": config.max_position_embeddings,
      "rms_norm_eps": config.rms_norm_eps,
      "rope_theta": config.rope_theta,
      "rope_scaling": rope_scaling,
      "rope_parameters": rope_parameters,
      "tie_word_embeddings": config.tie_word_embeddings,
      "attention_bias": False,
      "use_sliding_window": False,
  }
  if config.family == "llama":
    hf["mlp_bias"] = False
  return hf
