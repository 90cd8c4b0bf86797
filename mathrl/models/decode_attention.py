"""Decode-step attention over the KV cache: plain XLA, or a fused Pallas kernel.

A decode step attends one new query per row to the M slots of the row's
KV cache. `layers.attend` writes it as XLA ops: the scores q·kᵀ and their
softmax, float32 [B, K, G, 1, M] per layer, are separate fusions, and on
some TPU chips XLA keeps them in HBM between those fusions (at 64 rows per
chip and a 1,536-slot cache, 5.5 MB per layer written and read about four
times). `flash_decode` computes the same attention in one Pallas kernel
per layer (flash-decoding: Dao et al. 2022, arXiv:2205.14135, with the
online softmax of Milakov & Gimelshein 2018, arXiv:1805.02867): for each
block of rows and kv head it streams the cache in blocks of slots through
on-chip memory and keeps a running maximum, normaliser and weighted sum,
so the scores never reach HBM and the cache is read once.

Selected by `Transformer(decode_attention=...)` (config field
`model.decode_attention`), a name in `IMPLEMENTATIONS`:

  xla     `layers.attend`, the default;
  pallas  `flash_decode`: the Mosaic kernel when the program is lowered
          for TPU (also ahead of time, `mathrl.aot`), the same kernel in
          Pallas's interpreter on other backends (correct but slow there:
          for tests).

Only the decode step (one query per row, a cache) uses it; prefill and
the training forward use `layers.attend`.

Layouts: the KV cache as `transformer.KVCache` holds it, keys [B, K, H, M]
and values [B, K, M, H]. With head_dim 64 XLA keeps the value cache with
the slots minor (so head_dim is not padded to the 128-lane tile) and the
kernel reads the values as [B, K, H, M], a transpose that costs no copy;
with head_dim 128 the cache is row-major and the kernel reads [B, K, M,
H] as it is (reading it transposed there made XLA copy it). Rows are
split over the mesh as the cache is (`shard_map` over the current mesh
with the current sharding rules); each chip runs the kernel on its rows.
The cache operands are pinned to HBM, so XLA writes the new token into
each cache buffer in place rather than staging the buffer in VMEM and
copying it back whole. Measured HBM traffic per decode step:
benchmarks/RESULTS.md ("Decode attention kernel").
"""

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from mathrl import sharding
from mathrl.models import layers

# Masked scores, as in `layers.attend`: finite, so a row with no valid slot
# averages all values instead of giving NaN.
_MASKED = float(jnp.finfo(jnp.float32).min)
# Rows and cache slots per grid step (upper bounds; see `_blocks`). With
# 8 rows and 2,048 slots of a bf16 cache at head_dim 128 one step holds 4
# MiB of keys and values (8 MiB double-buffered).
BLOCK_ROWS = 8
BLOCK_SLOTS = 2048
# Most VMEM the double-buffered key and value blocks of one grid step may
# take: within the default scoped VMEM of every TPU generation (16 MiB on
# v5e, 32 MiB on v5p and v6e), leaving room for the scores.
VMEM_BUDGET = 10 * 2**20


def _blocks(rows: int, slots: int, slot_bytes: int, block_rows: int,
            block_slots: int) -> tuple[int, int]:
  """Rows and slots per grid step: divisors of `rows` and `slots`.

  Slots come in multiples of 128 (the lane width) that divide `slots`, or
  all of them when no such block exists; rows are then reduced until the
  step's keys and values (`slot_bytes` per row and slot) fit
  VMEM_BUDGET.
  """
  fitting = [t for t in range(128, min(slots, block_slots) + 1, 128)
             if slots % t == 0]
  bt = max(fitting) if fitting else slots
  for bb in range(min(rows, block_rows), 0, -1):
    if rows % bb == 0 and 4 * bb * bt * slot_bytes <= VMEM_BUDGET:
      return bb, bt
  raise ValueError(
      f"a KV cache of {slots} slots has no block of slots that fits in"
      " VMEM (no multiple of 128 divides it): make the prompt bucket plus"
      " max_new_tokens a multiple of 128, or use decode_attention='xla'")


def _kernel(q_ref, k_ref, v_ref, mask_ref, o_ref, max_ref, norm_ref, acc_ref,
            *, values_slots_last):
  """One (row block, kv head, slot block) step of the online softmax."""
  step = pl.program_id(2)

  @pl.when(step == 0)
  def _init():
    max_ref[...] = jnp.full(max_ref.shape, _MASKED, jnp.float32)
    norm_ref[...] = jnp.zeros(norm_ref.shape, jnp.float32)
    acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

  q_bGH = q_ref[:, 0]
  head_dim = q_bGH.shape[-1]
  scores_bGT = jnp.einsum(
      "bgh,bht->bgt", q_bGH, k_ref[:, 0],
      preferred_element_type=jnp.float32) / math.sqrt(head_dim)
  valid_b1T = mask_ref[...] > 0
  scores_bGT = jnp.where(valid_b1T, scores_bGT, _MASKED)
  max_bG1 = max_ref[...]
  new_max_bG1 = jnp.maximum(max_bG1,
                            jnp.max(scores_bGT, axis=-1, keepdims=True))
  rescale_bG1 = jnp.exp(max_bG1 - new_max_bG1)
  weights_bGT = jnp.exp(scores_bGT - new_max_bG1)
  norm_ref[...] = rescale_bG1 * norm_ref[...] + jnp.sum(
      weights_bGT, axis=-1, keepdims=True)
  values = v_ref[:, 0]  # [b, H, T] (slots last) or [b, T, H]
  spec = "bgt,bht->bgh" if values_slots_last else "bgt,bth->bgh"
  acc_ref[...] = rescale_bG1 * acc_ref[...] + jnp.einsum(
      spec, weights_bGT.astype(values.dtype), values,
      preferred_element_type=jnp.float32)
  max_ref[...] = new_max_bG1

  @pl.when(step == pl.num_programs(2) - 1)
  def _write():
    o_ref[:, 0] = (acc_ref[...] / norm_ref[...]).astype(o_ref.dtype)


def flash_decode_kernel(
    q_BKGH: jax.Array,
    k_BKHM: jax.Array,
    v_BKXY: jax.Array,
    mask_B1M: jax.Array,
    *,
    values_slots_last: bool = True,
    block_rows: int = BLOCK_ROWS,
    block_slots: int = BLOCK_SLOTS,
    interpret: bool = False,
) -> jax.Array:
  """o = softmax(q·kᵀ/√H + mask)·v, online over slot blocks; arXiv:2205.14135.

  One query per row and query head; query head (k, g) reads kv head k
  (grouped-query attention, arXiv:2305.13245). Per (row block, kv head)
  the grid walks the slot blocks in order, keeping the running maximum m,
  normaliser ℓ and weighted sum a of the online softmax (arXiv:1805.02867):
  m' = max(m, max_t s_t), ℓ' = e^{m−m'}ℓ + Σ_t e^{s_t−m'},
  a' = e^{m−m'}a + Σ_t e^{s_t−m'} v_t, and o = a / ℓ after the last block.
  Scores in float32; the weights are cast to the values' dtype for the
  product with v (as `layers.attend` casts its probabilities).

  Args:
    q_BKGH: [B, K, G, H] queries (RoPE applied), G = N / K per kv head.
    k_BKHM: [B, K, H, M] keys of the M cache slots.
    v_BKXY: values, [B, K, H, M] (`values_slots_last`) or [B, K, M, H]
      (the cache's layout); the kernel reads them as they are given.
    mask_B1M: [B, 1, M] int, nonzero where the row may attend the slot.
    values_slots_last: whether `v_BKXY` is [B, K, H, M].
    block_rows: rows per grid step, at most (a divisor of B is used).
    block_slots: slots per grid step, at most (see `_blocks`).
    interpret: run in Pallas's interpreter (any backend) instead of
      compiling the Mosaic TPU kernel.

  Returns:
    [B, K, G, H] attention output, dtype of q.
  """
  b, k, g, h = q_BKGH.shape
  m = k_BKHM.shape[-1]
  bb, bt = _blocks(b, m, h * k_BKHM.dtype.itemsize, block_rows, block_slots)
  q_spec = pl.BlockSpec((bb, 1, g, h), lambda i, j, t: (i, j, 0, 0))
  kv_spec = pl.BlockSpec((bb, 1, h, bt), lambda i, j, t: (i, j, 0, t))
  v_spec = kv_spec if values_slots_last else pl.BlockSpec(
      (bb, 1, bt, h), lambda i, j, t: (i, j, t, 0))
  mask_spec = pl.BlockSpec((bb, 1, bt), lambda i, j, t: (i, 0, t))
  if not interpret:
    # The cache stays in HBM for the kernel. Left free, XLA may place the
    # updated cache buffer in VMEM, write the new token there and copy the
    # whole buffer back to HBM (v6e: all 48 buffers of Qwen2.5-0.5B, 0.38
    # of a decode step's ideal traffic); in HBM the write is in place.
    k_BKHM = pltpu.with_memory_space_constraint(k_BKHM, pltpu.HBM)
    v_BKXY = pltpu.with_memory_space_constraint(v_BKXY, pltpu.HBM)
  return pl.pallas_call(
      functools.partial(_kernel, values_slots_last=values_slots_last),
      out_shape=jax.ShapeDtypeStruct(q_BKGH.shape, q_BKGH.dtype),
      grid=(b // bb, k, m // bt),
      in_specs=[q_spec, kv_spec, v_spec, mask_spec],
      out_specs=q_spec,
      scratch_shapes=[pltpu.VMEM((bb, g, 1), jnp.float32),
                      pltpu.VMEM((bb, g, 1), jnp.float32),
                      pltpu.VMEM((bb, g, h), jnp.float32)],
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "arbitrary")),
      interpret=interpret,
  )(q_BKGH, k_BKHM, v_BKXY, mask_B1M.astype(jnp.int32))


def _per_chip(fn: Callable[..., jax.Array],
              values_slots_last: bool) -> Callable[..., jax.Array]:
  """`fn` on each chip's rows and kv heads (shard_map over the current
  mesh with the current rules); `fn` itself without a multi-device mesh."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or math.prod(mesh.axis_sizes) == 1:
    return fn

  def wrapped(q_BKGH, k_BKHM, v_BKXY, mask_B1M):
    rules = sharding.current_rules()
    spec = lambda x, *axes: sharding.logical_to_spec(  # noqa: E731
        axes, x.shape, mesh, rules)
    q_spec = spec(q_BKGH, "batch", "kv_heads", None, "head_dim")
    k_spec = spec(k_BKHM, "batch", "kv_heads", "head_dim", "length")
    v_spec = spec(v_BKXY, "batch", "kv_heads", *(
        ("head_dim", "length") if values_slots_last else (
            "length", "head_dim")))
    mask_spec = spec(mask_B1M, "batch", None, "length")
    return jax.shard_map(
        fn, in_specs=(q_spec, k_spec, v_spec, mask_spec),
        out_specs=q_spec, check_vma=False)(q_BKGH, k_BKHM, v_BKXY, mask_B1M)

  return wrapped


def _on_platform(q_BKGH, k_BKHM, v_BKXY, mask_B1M, *, values_slots_last):
  """The Mosaic kernel when lowered for TPU, else the interpreted one."""
  kernel = functools.partial(flash_decode_kernel,
                             values_slots_last=values_slots_last)
  return jax.lax.platform_dependent(
      q_BKGH, k_BKHM, v_BKXY, mask_B1M, tpu=kernel,
      default=functools.partial(kernel, interpret=True))


def flash_decode(
    q_BSNH: jax.Array,
    k_BKHT: jax.Array,
    v_BKTH: jax.Array,
    mask_BST: jax.Array,
) -> jax.Array:
  """softmax(q·kᵀ/√H + mask)·v in one kernel per layer; arXiv:2205.14135.

  `layers.attend`'s contract for one query per row (S = 1), computed by
  `flash_decode_kernel` on each chip's rows (see the module docstring).

  Args:
    q_BSNH: [B, 1, N, H] queries (RoPE applied).
    k_BKHT: [B, K, H, T] keys (the cache's layout, T = M slots).
    v_BKTH: [B, K, T, H] values (the cache's layout).
    mask_BST: [B, 1, T] bool, True where the query may attend slot t.

  Returns:
    [B, 1, N, H] attention output, dtype of q.
  """
  b, s, n, h = q_BSNH.shape
  if s != 1:
    raise ValueError(
        f"flash_decode attends one query per row, got {s}; use"
        " layers.attend for prefill")
  k = k_BKHT.shape[1]
  q_BKGH = q_BSNH.reshape(b, k, n // k, h)
  # XLA lays out a [.., T, H] value cache with the slots minor when H is
  # not a multiple of the 128-lane tile (so H = 64 is not padded to 128):
  # the kernel then reads it transposed, which costs no copy. With H a
  # multiple of 128 the layout is row-major and the kernel reads it so.
  slots_last = bool(h % 128)
  if slots_last:
    v_BKTH = jnp.swapaxes(v_BKTH, 2, 3)
  kernel = functools.partial(_on_platform, values_slots_last=slots_last)
  out_BKGH = _per_chip(kernel, slots_last)(q_BKGH, k_BKHT, v_BKTH,
                                           mask_BST)
  return out_BKGH.reshape(b, 1, n, h)


# The decode-step attention of each `model.decode_attention` name.
IMPLEMENTATIONS: dict[str, Callable[..., jax.Array]] = {
    "xla": layers.attend,
    "pallas": flash_decode,
}


def get(name: str) -> Callable[..., jax.Array]:
  """The decode attention called `name`, or a ValueError listing them."""
  if name not in IMPLEMENTATIONS:
    raise ValueError(
        f"decode_attention={name!r}; use one of {sorted(IMPLEMENTATIONS)}")
  return IMPLEMENTATIONS[name]
