"""Flax NNX decoder family (Qwen2/2.5, Qwen3, Llama 3.x) and HF import/export.

  model = mathrl.models.from_pretrained(path, dtype=jnp.float32)
  logits_BSV = model(tokens_BS, attention_mask_BS=mask_BS)
  mathrl.models.save_pretrained(model, path)
  model = mathrl.models.from_gguf(path)          # llama.cpp GGUF file
  model = mathrl.models.load("smollm2-135m-instruct")  # name, .gguf or folder

See `transformer` for the forward and KV-cache contract, `convert` for the
Hugging Face mapping, `gguf_import` for GGUF files, `checkpoints` for
named checkpoints, `presets` for ready-made shapes.
"""

from mathrl.models import checkpoints
from mathrl.models import presets
from mathrl.models.checkpoints import load
from mathrl.models.config import ModelConfig
from mathrl.models.config import SUPPORTED
from mathrl.models.convert import from_pretrained
from mathrl.models.convert import save_pretrained
from mathrl.models.gguf_import import from_gguf
from mathrl.models.transformer import KVCache
from mathrl.models.transformer import Transformer

__all__ = [
    "KVCache",
    "ModelConfig",
    "SUPPORTED",
    "Transformer",
    "checkpoints",
    "from_gguf",
    "from_pretrained",
    "load",
    "presets",
    "save_pretrained",
]
