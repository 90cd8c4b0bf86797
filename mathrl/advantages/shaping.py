"""Reward shaping on device: DAPO's soft overlong penalty.

DAPO (arXiv 2503.14476), verl `DAPORewardManager`; lengths are counted in
tokens (DAPO, arXiv 2503.14476 §3.4; verl `DAPORewardManager`).
"""

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group


def overlong_penalty(
    lengths,
    *,
    max_length: int,
    buffer_length: int,
    penalty_factor: float = 1.0,
) -> jax.Array:
  """R_len(L) = clip(−(L − (L_max − L_buf))/L_buf·f, −f, 0), DAPO (2503.14476).

  0 up to L_max − L_buf tokens, then linear down to −f at L_max. Beyond L_max
  (impossible when generation stops at L_max) the penalty stays −f, the
  paper's value; verl's formula would keep decreasing.

  Example: (L_max, L_buf, f) = (20480, 4096, 1): L = 16384 → 0,
  17408 → −0.25, 18432 → −0.5, 20480 → −1.

  Args:
    lengths: [P, G] (any shape) completion lengths in tokens.
    max_length: L_max, the maximum completion length.
    buffer_length: L_buf, the soft-penalty buffer (DAPO's L_cache).
    penalty_factor: f, the penalty at L_max.

  Returns:
    float32 penalties of the shape of `lengths`, in [−f, 0].
  """
  if not 0 < buffer_length <= max_length:
    raise ValueError(
        f"overlong_penalty: need 0 < buffer_length ({buffer_length}) <="
        f" max_length ({max_length})."
    )
  lengths = jnp.asarray(lengths, jnp.float32)
  exceed = lengths - (max_length - buffer_length)
  penalty = -exceed / buffer_length * penalty_factor
  # + 0.0 turns the −0.0 of lengths at the threshold into 0.0.
  return jnp.clip(penalty, -abs(penalty_factor), 0.0) + 0.0


def dapo_overlong(
    max_length: int = 20480,
    buffer_length: int = 4096,
    penalty_factor: float = 1.0,
) -> base.AdvantageTransform:
  """r ← r + R_len(L), DAPO's soft overlong punishment (arXiv 2503.14476).

  A reward-shaping transform for the head of a chain, e.g.
  `chain(dapo_overlong(), grpo())`; L is the `lengths` extra (or the
  `token_mask` row sums). [P, G] rewards get the penalty added; [P, G, K]
  rewards get it appended as a new component [P, G, K + 1], so multi-reward
  methods normalise it on its own and summing methods add it. Invalid
  samples come out as 0. Defaults are the DAPO recipe's (L_max 20480 =
  16384 + 4096, L_buf 4096, f 1.0).

  Args:
    max_length: L_max in tokens.
    buffer_length: L_buf in tokens.
    penalty_factor: f.

  Returns:
    A stateless AdvantageTransform: [P, G] → [P, G] or [P, G, K] →
    [P, G, K + 1].
  """
  if not 0 < buffer_length <= max_length:
    raise ValueError(
        f"dapo_overlong: need 0 < buffer_length ({buffer_length}) <="
        f" max_length ({max_length})."
    )

  def fn(rewards, *, mask, **extra):
    rewards = jnp.asarray(rewards, jnp.float32)
    lengths_PG = group.sequence_lengths(extra, rewards.shape[:2])
    penalty_PG = overlong_penalty(
        lengths_PG,
        max_length=max_length,
        buffer_length=buffer_length,
        penalty_factor=penalty_factor,
    )
    if rewards.ndim == 3:
      shaped = jnp.concatenate([rewards, penalty_PG[..., None]], axis=-1)
    else:
      shaped = rewards + penalty_PG
    return jnp.where(group.broadcast_mask(mask, shaped) > 0, shaped, 0.0)

  return base.declare(base.stateless(fn), shaping="rewards")
