"""TPU chip figures, analytic FLOP counts of the model, and roofline bounds.

Per-chip peak dense bf16 compute, HBM bandwidth and HBM capacity, as the
vendor publishes them (Google Cloud TPU documentation, "System
architecture" table of each page):

  v4   275 TFLOP/s, 1200 GB/s, 32 GiB
       https://cloud.google.com/tpu/docs/v4  ("TPU v4")
  v5e  197 TFLOP/s,  819 GB/s, 16 GB
       https://cloud.google.com/tpu/docs/v5e ("TPU v5e")
  v5p  459 TFLOP/s, 2765 GB/s, 95 GB
       https://cloud.google.com/tpu/docs/v5p ("TPU v5p")
  v6e  918 TFLOP/s, 1638 GB/s, 32 GB
       https://cloud.google.com/tpu/docs/v6e ("TPU v6e", Trillium)

HBM capacities are read as binary (the pages write "GB"; HBM stacks come in
GiB, and XLA's own limit for a v5e, 15.75 GiB usable, confirms 16 GiB);
bandwidths as decimal (10^9 bytes/s). A roofline bound uses only these numbers:
a step that performs F FLOPs and moves Q bytes of HBM traffic on one chip
cannot take less than max(F / peak, Q / bandwidth) (Williams et al. 2009,
"Roofline: an insightful visual performance model", CACM 52(4)).

The analytic counts follow the model code (`mathrl.models`) and the train
step's passes (`mathrl.train_step`); the arithmetic is in each docstring.
"""

import dataclasses
import math
import re

from mathrl.models import config as config_lib


@dataclasses.dataclass(frozen=True)
class Chip:
  """Published per-chip figures of one TPU generation."""

  name: str
  peak_flops: float
  """Dense bf16 FLOP/s."""
  hbm_bandwidth: float
  """HBM bytes/s."""
  hbm_bytes: int
  """HBM capacity in bytes."""
  source: str
  """Where the figures are published."""


CHIPS = {
    "v4": Chip("v4", 275e12, 1200e9, 32 * 2**30,
               "https://cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("v5e", 197e12, 819e9, 16 * 2**30,
                "https://cloud.google.com/tpu/docs/v5e"),
    "v5p": Chip("v5p", 459e12, 2765e9, 95 * 2**30,
                "https://cloud.google.com/tpu/docs/v5p"),
    "v6e": Chip("v6e", 918e12, 1638e9, 32 * 2**30,
                "https://cloud.google.com/tpu/docs/v6e"),
}

_TOPOLOGY = re.compile(r"^(v\d+[a-z]?):(\d+(?:x\d+)*)$")


def parse_topology(topology: str) -> tuple[Chip, tuple[int, ...]]:
  """'v5e:2x4' -> (CHIPS['v5e'], (2, 4)), with a clear error otherwise."""
  m = _TOPOLOGY.match(topology)
  if not m or m.group(1) not in CHIPS:
    raise ValueError(
        f"topology {topology!r} is not CHIP:AxB[xC] with CHIP one of"
        f" {sorted(CHIPS)} (e.g. v5e:2x4, v5p:2x2x1, v6e:4x4)")
  return CHIPS[m.group(1)], tuple(int(x) for x in m.group(2).split("x"))


def num_chips(topology: str) -> int:
  return math.prod(parse_topology(topology)[1])


def matmul_params_per_layer(cfg: config_lib.ModelConfig) -> int:
  """Weights one token multiplies in one block: D·H·(2N + 2K) + 3·D·F.

  q [D, N, H], k and v [D, K, H], o [N, H, D]; SwiGLU gate and up [D, F],
  down [F, D]. Biases and norm scales are not matmul weights.
  """
  d, h = cfg.hidden_size, cfg.head_dim
  attn = d * h * (2 * cfg.num_heads + 2 * cfg.num_kv_heads)
  return attn + 3 * d * cfg.intermediate_size


def param_count(cfg: config_lib.ModelConfig) -> int:
  """Every parameter: embeddings, head, blocks' weights, biases and norms."""
  d, h = cfg.hidden_size, cfg.head_dim
  per_layer = matmul_params_per_layer(cfg) + 2 * d
  if cfg.qkv_bias:
    per_layer += h * (cfg.num_heads + 2 * cfg.num_kv_heads)
  if cfg.qk_norm:
    per_layer += 2 * h
  head = 0 if cfg.tie_word_embeddings else d * cfg.vocab_size
  return cfg.vocab_size * d + head + cfg.num_layers * per_layer + d


def forward_flops(cfg: config_lib.ModelConfig, *, tokens: int,
                  logit_positions: int, attention_pairs: int) -> float:
  """F = 2·W·tokens + 2·D·V·logit_positions + 4·layers·N·H·pairs.

  W = layers × matmul_params_per_layer (2 FLOPs per weight per token);
  the output head costs 2·D·V per position whose logits are computed;
  attention costs 2·N·H for q·kᵀ and 2·N·H for probs·v per (query, key)
  pair and layer (the model attends to every cache slot, masked, so
  `attention_pairs` counts slots, not only causal ones).
  """
  c = cfg
  dense = 2.0 * c.num_layers * matmul_params_per_layer(c) * tokens
  head = 2.0 * c.hidden_size * c.vocab_size * logit_positions
  attn = 4.0 * c.num_layers * c.num_heads * c.head_dim * attention_pairs
  return dense + head + attn


def policy_forward_flops(cfg: config_lib.ModelConfig, *, num_prompts: int,
                         group_size: int, prompt_len: int,
                         completion_len: int, share_prompts: bool) -> float:
  """One scoring pass of the policy over a GRPO batch (`mathrl.logprobs`).

  P prompts × G samples, B = P·G rows, prompt L, completion T.
  Shared prompts: the P prompts fill a cache of M = L + T − 1 slots
  (P·L tokens, P·L·M pairs, P logit positions), then the first T − 1
  completion tokens of all B rows run against it (B·(T − 1) tokens,
  B·(T − 1)·M pairs and logit positions).
  Unshared: each row runs S = L + T − 1 tokens with S² pairs, logits at
  the last T positions.
  """
  p, b = num_prompts, num_prompts * group_size
  l, t = prompt_len, completion_len
  if share_prompts and group_size > 1:
    m = l + t - 1
    return forward_flops(
        cfg, tokens=p * l + b * (t - 1), logit_positions=p + b * (t - 1),
        attention_pairs=(p * l + b * (t - 1)) * m)
  s = l + t - 1
  return forward_flops(cfg, tokens=b * s, logit_positions=b * t,
                       attention_pairs=b * s * s)


def train_step_flops(cfg: config_lib.ModelConfig, *, num_prompts: int,
                     group_size: int, prompt_len: int, completion_len: int,
                     share_prompts: bool, ppo_epochs: int = 1,
                     recompute_old_logp: bool = False,
                     reference: bool = False, remat: bool = False) -> float:
  """FLOPs of one RL step: ((3 + remat)·epochs + old + ref) × one forward.

  Every epoch runs a forward and a backward pass (backward ≈ 2 × forward:
  one matmul for the input gradient and one for the weight gradient per
  forward matmul; Kaplan et al. 2020, arXiv:2001.08361, §2.1, the "6N"
  rule), over the whole batch split in minibatches; rematerialised layers
  run their forward once more in the backward pass (counted as one more
  forward of the whole model). Recomputing the behaviour policy's
  log-probs and scoring under a reference policy add one forward each.
  MFU counts the model FLOPs, i.e. this with remat=False.
  """
  one = policy_forward_flops(
      cfg, num_prompts=num_prompts, group_size=group_size,
      prompt_len=prompt_len, completion_len=completion_len,
      share_prompts=share_prompts)
  return one * ((3 + int(remat)) * ppo_epochs + int(recompute_old_logp)
                + int(reference))


def decode_step_flops(cfg: config_lib.ModelConfig, *, batch: int,
                      cache_len: int) -> float:
  """One sampler decode step: B tokens, B logit rows, B·M attention pairs."""
  return forward_flops(cfg, tokens=batch, logit_positions=batch,
                       attention_pairs=batch * cache_len)


def roofline_seconds(flops: float, bytes_accessed: float, chip: Chip
                     ) -> float:
  """t ≥ max(F / peak, Q / bandwidth) on one chip (Williams et al. 2009)."""
  return max(flops / chip.peak_flops, bytes_accessed / chip.hbm_bandwidth)
