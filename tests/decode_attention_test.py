"""The fused decode-attention kernel against `layers.attend`.

On CPU the Pallas kernel runs in Pallas's interpreter (`interpret=True`,
which `flash_decode` picks on any backend but TPU); the Mosaic TPU build
of the same kernel is compiled ahead of time in tests/aot_test.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mathrl import sampling
from mathrl import sharding
from mathrl.models import decode_attention
from mathrl.models import layers
from mathrl.models import presets
from mathrl.models import transformer


def _inputs(b, k, g, h, m, dtype, seed=0):
  """Random q [B, 1, N, H], cache keys/values and a ragged slot mask."""
  r = np.random.RandomState(seed)
  q_BSNH = jnp.asarray(r.randn(b, 1, k * g, h), dtype)
  k_BKHM = jnp.asarray(r.randn(b, k, h, m), dtype)
  v_BKMH = jnp.asarray(r.randn(b, k, m, h), dtype)
  mask_BSM = np.ones((b, 1, m), bool)
  # Row 0: left padding over the first slot block and into the second;
  # row 1: slots past the current one are empty; row 2: no valid slot
  # (attend gives the mean of all values, not NaN); row 3: holes (a row
  # marked done writes masked slots).
  mask_BSM[0, :, :m // 2 + 3] = False
  mask_BSM[1, :, m - 40:] = False
  mask_BSM[2] = False
  mask_BSM[3, :, 5:m:7] = False
  return q_BSNH, k_BKHM, v_BKMH, jnp.asarray(mask_BSM)


@pytest.mark.parametrize("b, k, g, h, m, block_slots", [
    (4, 2, 3, 32, 256, 128),   # GQA, two slot blocks (online rescaling)
    (6, 1, 1, 16, 40, 2048),   # MHA, slots not a multiple of 128: one block
    (4, 2, 2, 128, 256, 128),  # head_dim 128: values read as [B, K, M, H]
])
def test_kernel_equals_attend_float32(b, k, g, h, m, block_slots):
  q, keys, values, mask = _inputs(b, k, g, h, m, jnp.float32)
  want = layers.attend(q, keys, values, mask)
  slots_last = bool(h % 128)  # as flash_decode chooses
  got_BKGH = decode_attention.flash_decode_kernel(
      q.reshape(b, k, g, h), keys,
      jnp.swapaxes(values, 2, 3) if slots_last else values,
      mask.astype(jnp.int32), values_slots_last=slots_last, block_rows=4,
      block_slots=block_slots, interpret=True)
  np.testing.assert_allclose(got_BKGH.reshape(b, 1, k * g, h), want,
                             rtol=1e-5, atol=1e-5)


def test_kernel_is_close_to_attend_bfloat16():
  # bf16 inputs: both round the attention weights to bf16 before the
  # product with v (attend its probabilities, the kernel its unnormalised
  # weights), so they differ by bf16 rounding, ~2^-8 relative.
  q, keys, values, mask = _inputs(4, 2, 7, 64, 256, jnp.bfloat16, seed=1)
  want = layers.attend(q, keys, values, mask).astype(jnp.float32)
  got = decode_attention.flash_decode(q, keys, values, mask)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, atol=2e-2)


def test_blocks_divide_rows_and_slots_and_fit_vmem():
  blocks = decode_attention._blocks  # pylint: disable=protected-access
  # bf16, head_dim 64 (128 bytes per row and slot): 8 rows of 1,536 slots
  # take 4 (k, v, double-buffered) · 8 · 1,536 · 128 = 6 MiB.
  assert blocks(64, 1536, 128, 8, 2048) == (8, 1536)
  assert blocks(12, 2560, 128, 8, 2048) == (6, 1280)
  assert blocks(3, 88, 64, 8, 2048) == (3, 88)
  # 4,100 slots (no multiple of 128 divides it) in one block: 4 · 4,100 ·
  # 128 = 2,099,200 bytes per row, so 4 rows (8.0 MiB) fit 10 MiB, 8 not.
  assert blocks(8, 4100, 128, 8, 2048) == (4, 4100)
  with pytest.raises(ValueError, match="multiple of 128"):
    blocks(8, 40_004, 128, 8, 2048)


def test_unknown_implementation_is_a_clear_error():
  with pytest.raises(ValueError, match=r"decode_attention='flash'.*pallas"):
    transformer.Transformer(presets.TINY, decode_attention="flash",
                            rngs=nnx.Rngs(0))
  q, keys, values, _ = _inputs(4, 1, 1, 8, 8, jnp.float32)
  with pytest.raises(ValueError, match="one query per row"):
    decode_attention.flash_decode(jnp.concatenate([q, q], axis=1), keys,
                                  values, jnp.ones((4, 2, 8), bool))


def test_sharded_sampler_with_the_kernel_equals_xla():
  # The tiny model's greedy decode on a mesh of 8 CPU devices (one row
  # each, so flash_decode runs per device under shard_map), left-padded
  # prompts: the same tokens and log-probabilities with either attention.
  prompts_BL = np.array([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5], [0, 9, 8, 7, 6],
                         [0, 0, 0, 3, 4]] * 2, np.int32)
  mask_BL = (prompts_BL > 0).astype(np.int32)
  mesh = sharding.make_mesh(data=-1)
  out = {}
  for name in ("xla", "pallas"):
    model = transformer.Transformer(presets.TINY, decode_attention=name,
                                    rngs=nnx.Rngs(0))
    out[name] = sampling.generate(
        model, prompts_BL, mask_BL, rng=jax.random.key(0), max_new_tokens=4,
        eos_ids=(255,), mesh=mesh, compact=False)
  np.testing.assert_array_equal(out["pallas"].tokens_BT, out["xla"].tokens_BT)
  np.testing.assert_allclose(out["pallas"].logprobs_BT,
                             out["xla"].logprobs_BT, rtol=1e-5, atol=1e-5)
