"""Decoder building blocks: RMSNorm, RoPE (with llama3 scaling), GQA, SwiGLU.

Every parameter is an `nnx.Param` whose `out_sharding` metadata holds its
logical axis names (see `mathrl.sharding`). Blocks are created with a
leading stacked-layer axis (`num_stacked`, logical name 'layers') so the
decoder scans over them; inside the scan each module sees one layer's slice.

Numerics: parameters and matmuls in the module dtype; RMSNorm statistics,
RoPE angles and softmax in float32.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mathrl import sharding
from mathrl.models import config as config_lib

WEIGHT_INIT = nnx.initializers.normal(stddev=0.02)


def _param(rngs, shape, axes, dtype, num_stacked, init=WEIGHT_INIT):
  """A Param with a leading stacked-layer axis and logical axis metadata."""
  shape = (num_stacked, *shape)
  axes = ("layers", *axes)
  return nnx.Param(
      init(rngs.params(), shape, dtype),
      out_sharding=axes,
      eager_sharding=False,
  )


def _ones(key, shape, dtype):
  del key
  return jnp.ones(shape, dtype)


def _zeros(key, shape, dtype):
  del key
  return jnp.zeros(shape, dtype)


def rms_norm(
    x: jax.Array, scale: jax.Array, eps: float
) -> jax.Array:
  """y = scale * x / sqrt(mean(x^2) + eps); Zhang & Sennrich 2019.

  https://arxiv.org/abs/1910.07467. Statistics in float32; the normalised
  value is cast back to x.dtype before the scale (as Hugging Face does).

  Args:
    x: [..., D] input.
    scale: [D] learned scale.
    eps: added to the mean square.

  Returns:
    [..., D] normalised input, dtype of x (promoted with scale).
  """
  x32 = x.astype(jnp.float32)
  var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
  normed = (x32 * jax.lax.rsqrt(var + eps)).astype(x.dtype)
  scale = scale.astype(x.dtype).reshape((1,) * (x.ndim - 1) + scale.shape)
  return scale * normed


class RMSNorm(nnx.Module):
  """RMSNorm over the last axis with a learned scale."""

  def __init__(self, dim: int, axis_name: str, *, eps: float,
               dtype, num_stacked: int | None, rngs: nnx.Rngs):
    if num_stacked is None:
      self.scale = nnx.Param(jnp.ones((dim,), dtype), out_sharding=(
          axis_name,), eager_sharding=False)
    else:
      self.scale = _param(rngs, (dim,), (axis_name,), dtype, num_stacked,
                          init=_ones)
    self.eps = eps

  def __call__(self, x: jax.Array) -> jax.Array:
    return rms_norm(x, self.scale[...], self.eps)


def rope_inv_freq(
    head_dim: int, theta: float, scaling: config_lib.RopeScaling | None
) -> np.ndarray:
  """inv_freq_i = theta^(-2i/H), then llama3 scaling; Su et al. 2021.

  RoFormer: https://arxiv.org/abs/2104.09864; llama3 scaling (low
  frequencies divided by `factor`, a smooth ramp between the low and high
  wavelength cut-offs): Llama 3 report https://arxiv.org/abs/2407.21783.

  Args:
    head_dim: H.
    theta: RoPE base.
    scaling: llama3 parameters or None.

  Returns:
    [H/2] float32 inverse frequencies (computed as Hugging Face does).
  """
  exponent = np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32)
  inv_freq = (1.0 / (theta ** (exponent / head_dim))).astype(np.float32)
  if scaling is None:
    return inv_freq
  old_len = scaling.original_max_position_embeddings
  low_wavelen = old_len / scaling.low_freq_factor
  high_wavelen = old_len / scaling.high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
  smooth = (old_len / wavelen - scaling.low_freq_factor) / (
      scaling.high_freq_factor - scaling.low_freq_factor)
  smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
  medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_cos_sin(
    positions_BS: jax.Array, inv_freq: np.ndarray
) -> tuple[jax.Array, jax.Array]:
  """cos(pθ), sin(pθ) for every position; RoFormer arXiv:2104.09864.

  Computed once per forward and shared by every layer (all layers have the
  same head_dim and RoPE base).

  Args:
    positions_BS: [B, S] int positions.
    inv_freq: [H/2] inverse frequencies (`rope_inv_freq`).

  Returns:
    (cos_BSH, sin_BSH) float32 [B, S, H], the half-split layout repeated.
  """
  angles_BSh = positions_BS.astype(jnp.float32)[..., None] * jnp.asarray(
      inv_freq)[None, None, :]
  angles_BSH = jnp.concatenate([angles_BSh, angles_BSh], axis=-1)
  return jnp.cos(angles_BSH), jnp.sin(angles_BSH)


def rotate(
    x_BSNH: jax.Array, cos_BSH: jax.Array, sin_BSH: jax.Array
) -> jax.Array:
  """x·cos(pθ) + rotate_half(x)·sin(pθ); RoFormer arXiv:2104.09864.

  Half-split (not interleaved) layout, as Hugging Face Llama/Qwen.

  Args:
    x_BSNH: [B, S, N, H] queries or keys.
    cos_BSH: [B, S, H] from `rope_cos_sin`.
    sin_BSH: [B, S, H] from `rope_cos_sin`.

  Returns:
    [B, S, N, H] rotated, dtype of x.
  """
  cos_BS1H = cos_BSH[:, :, None, :].astype(x_BSNH.dtype)
  sin_BS1H = sin_BSH[:, :, None, :].astype(x_BSNH.dtype)
  half = x_BSNH.shape[-1] // 2
  rotated_BSNH = jnp.concatenate(
      [-x_BSNH[..., half:], x_BSNH[..., :half]], axis=-1)
  return x_BSNH * cos_BS1H + rotated_BSNH * sin_BS1H


def apply_rope(
    x_BSNH: jax.Array, positions_BS: jax.Array, inv_freq: np.ndarray
) -> jax.Array:
  """x·cos(pθ) + rotate_half(x)·sin(pθ); RoFormer arXiv:2104.09864.

  `rotate` with the angles of `positions_BS` (see `rope_cos_sin`).

  Args:
    x_BSNH: [B, S, N, H] queries or keys.
    positions_BS: [B, S] int positions.
    inv_freq: [H/2] inverse frequencies.

  Returns:
    [B, S, N, H] rotated, dtype of x.
  """
  return rotate(x_BSNH, *rope_cos_sin(positions_BS, inv_freq))


def attend(
    q_BSNH: jax.Array,
    k_BKHT: jax.Array,
    v_BKTH: jax.Array,
    mask_BST: jax.Array,
) -> jax.Array:
  """softmax(q·kᵀ/√H + mask)·v with grouped KV heads; arXiv:1706.03762.

  Grouped-query attention (arXiv:2305.13245): query head n uses kv head
  n // (N/K). Keys are laid out [B, K, H, T] and values [B, K, T, H] (the
  KV cache's layouts), so both contractions are plain (not transposed)
  batched matmuls over (B, K): on CPU a decode step's q·kᵀ against a
  [B, K, T, H] key cache costs 2.4x as much (measured at B=64, T=80).
  Logits and softmax in float32; masked entries get a large negative finite
  value so fully masked rows (left padding) give finite output rather than
  NaN.

  Args:
    q_BSNH: [B, S, N, H] queries (RoPE applied).
    k_BKHT: [B, K, H, T] keys (T = key positions or cache slots).
    v_BKTH: [B, K, T, H] values.
    mask_BST: [B, S, T] bool, True where query s may attend key t.

  Returns:
    [B, S, N, H] attention output, dtype of q.
  """
  b, s, n, h = q_BSNH.shape
  k = k_BKHT.shape[1]
  q_BKGSH = jnp.transpose(q_BSNH.reshape(b, s, k, n // k, h), (0, 2, 3, 1, 4))
  logits_BKGST = jnp.einsum(
      "BKGSH,BKHT->BKGST", q_BKGSH, k_BKHT,
      preferred_element_type=jnp.float32) / math.sqrt(h)
  logits_BKGST = jnp.where(mask_BST[:, None, None, :, :], logits_BKGST,
                           jnp.finfo(jnp.float32).min)
  probs_BKGST = jax.nn.softmax(logits_BKGST, axis=-1).astype(v_BKTH.dtype)
  out_BKGSH = jnp.einsum("BKGST,BKTH->BKGSH", probs_BKGST, v_BKTH)
  return jnp.transpose(out_BKGSH, (0, 3, 1, 2, 4)).reshape(b, s, n, h)


class Attention(nnx.Module):
  """GQA self-attention with optional q/k/v bias (Qwen2) and q/k norm (Qwen3).

  Parameters (per layer): q [D, N, H], k/v [D, K, H], o [N, H, D],
  biases [N, H] / [K, H], q/k norm scales [H].
  """

  def __init__(self, config: config_lib.ModelConfig, *, dtype,
               num_stacked: int, rngs: nnx.Rngs):
    d, n, k, h = (config.hidden_size, config.num_heads, config.num_kv_heads,
                  config.head_dim)
    p = lambda shape, axes, init=WEIGHT_INIT: _param(  # noqa: E731
        rngs, shape, axes, dtype, num_stacked, init)
    self.q_kernel = p((d, n, h), ("embed", "heads", "head_dim"))
    self.k_kernel = p((d, k, h), ("embed", "kv_heads", "head_dim"))
    self.v_kernel = p((d, k, h), ("embed", "kv_heads", "head_dim"))
    self.o_kernel = p((n, h, d), ("heads", "head_dim", "embed"))
    if config.qkv_bias:
      self.q_bias = p((n, h), ("heads", "head_dim"), _zeros)
      self.k_bias = p((k, h), ("kv_heads", "head_dim"), _zeros)
      self.v_bias = p((k, h), ("kv_heads", "head_dim"), _zeros)
    else:
      self.q_bias = self.k_bias = self.v_bias = None
    if config.qk_norm:
      self.q_norm = RMSNorm(h, "head_dim", eps=config.rms_norm_eps,
                            dtype=dtype, num_stacked=num_stacked, rngs=rngs)
      self.k_norm = RMSNorm(h, "head_dim", eps=config.rms_norm_eps,
                            dtype=dtype, num_stacked=num_stacked, rngs=rngs)
    else:
      self.q_norm = self.k_norm = None

  def project_qkv(
      self, x_BSD: jax.Array, rope_BSH: tuple[jax.Array, jax.Array]
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Queries, keys and values with bias, q/k norm and RoPE applied.

    Args:
      x_BSD: [B, S, D] normalised hidden states.
      rope_BSH: (cos_BSH, sin_BSH) from `rope_cos_sin` at the positions.

    Returns:
      q_BSNH [B, S, N, H], k_BSKH and v_BSKH [B, S, K, H].
    """
    # One matmul for q, k and v: the weights stacked per kv head as
    # [D, K, G + 2, H] (G = N / K query heads, then k, then v), so the
    # stacked kernel keeps the kv_heads sharding of its parts. Inside a
    # decode loop XLA hoists the stacking out of the loop.
    d, n, h = self.q_kernel.shape[-3:]
    k = self.k_kernel.shape[-2]
    qkv_DKEH = jnp.concatenate(
        [self.q_kernel[...].reshape(d, k, n // k, h),
         self.k_kernel[...][:, :, None], self.v_kernel[...][:, :, None]],
        axis=2)
    qkv_BSKEH = jnp.einsum("BSD,DKEH->BSKEH", x_BSD, qkv_DKEH)
    b, s = x_BSD.shape[:2]
    q_BSNH = qkv_BSKEH[:, :, :, :-2].reshape(b, s, n, h)
    k_BSKH = qkv_BSKEH[:, :, :, -2]
    v_BSKH = qkv_BSKEH[:, :, :, -1]
    if self.q_bias is not None:
      q_BSNH = q_BSNH + self.q_bias[...][None, None]
      k_BSKH = k_BSKH + self.k_bias[...][None, None]
      v_BSKH = v_BSKH + self.v_bias[...][None, None]
    if self.q_norm is not None:
      q_BSNH = self.q_norm(q_BSNH)
      k_BSKH = self.k_norm(k_BSKH)
    q_BSNH = rotate(q_BSNH, *rope_BSH)
    k_BSKH = rotate(k_BSKH, *rope_BSH)
    q_BSNH = sharding.shard(q_BSNH, "batch", "length", "heads", "head_dim")
    return q_BSNH, k_BSKH, v_BSKH

  def output(self, attn_BSNH: jax.Array) -> jax.Array:
    """[B, S, N, H] attention output -> [B, S, D] via o_proj."""
    return jnp.einsum("BSNH,NHD->BSD", attn_BSNH, self.o_kernel[...])


class MLP(nnx.Module):
  """SwiGLU: down(silu(x·gate) * (x·up)); Shazeer 2020, arXiv:2002.05202."""

  def __init__(self, config: config_lib.ModelConfig, *, dtype,
               num_stacked: int, rngs: nnx.Rngs):
    d, f = config.hidden_size, config.intermediate_size
    self.gate_kernel = _param(rngs, (d, f), ("embed", "mlp"), dtype,
                              num_stacked)
    self.up_kernel = _param(rngs, (d, f), ("embed", "mlp"), dtype,
                            num_stacked)
    self.down_kernel = _param(rngs, (f, d), ("mlp", "embed"), dtype,
                              num_stacked)

  def __call__(self, x_BSD: jax.Array) -> jax.Array:
    # gate and up in one matmul (their kernels stacked as [D, 2, F]).
    gate_up_D2F = jnp.stack([self.gate_kernel[...], self.up_kernel[...]], 1)
    gate_up_BS2F = jnp.einsum("BSD,DEF->BSEF", x_BSD, gate_up_D2F)
    gate_BSF, up_BSF = gate_up_BS2F[:, :, 0], gate_up_BS2F[:, :, 1]
    hidden_BSF = sharding.shard(jax.nn.silu(gate_BSF) * up_BSF,
                                "batch", "length", "mlp")
    return jnp.einsum("BSF,FD->BSD", hidden_BSF, self.down_kernel[...])
