"""The PPO clipped surrogate and clip bookkeeping shared by many losses.

`clipped_surrogate` is the per-token PPO-clip / dual-clip term used by
`ppo_clip`, `forking_tokens`, `clip_cov`, `steer` and `siren`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mathrl.losses import base


class ClipResult(NamedTuple):
  """Output of `clipped_surrogate`.

  Attributes:
    loss_BT: per-token loss.
    low_BT: bool, the lower clip bound is active (A < 0, r < 1 − ε_low).
    high_BT: bool, the upper clip bound is active (A > 0, r > 1 + ε_high).
    dual_BT: bool, the dual-clip cap is active (A < 0, −A·r > −A·c).
  """

  loss_BT: jax.Array
  low_BT: jax.Array
  high_BT: jax.Array
  dual_BT: jax.Array


def clipped_surrogate(
    ratio_BT: jax.Array,
    adv_BT: jax.Array,
    *,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None = None,
) -> ClipResult:
  """ℓ = max(−A·r, −A·clip(r, 1−ε_low, 1+ε_high)); if A<0, ℓ ← min(ℓ, −A·c).

  PPO (arXiv:1707.06347) with decoupled bounds (DAPO, arXiv:2503.14476) and
  dual-clip (arXiv:1912.09729). The branch is chosen with `where`, so a
  clipped token has gradient exactly 0 (no tie-splitting as with `max`).

  Args:
    ratio_BT: [B, T] importance ratio r (carries the gradient).
    adv_BT: [B, T] advantages.
    clip_low: ε_low.
    clip_high: ε_high.
    dual_clip: c > 1, or None for no dual clip.

  Returns:
    ClipResult with the [B, T] loss and clip indicators.
  """
  unclipped_BT = -adv_BT * ratio_BT
  clipped_BT = -adv_BT * jnp.clip(ratio_BT, 1.0 - clip_low, 1.0 + clip_high)
  use_clipped_BT = clipped_BT > unclipped_BT
  loss_BT = jnp.where(use_clipped_BT, clipped_BT, unclipped_BT)
  dual_BT = jnp.zeros_like(use_clipped_BT)
  if dual_clip is not None:
    cap_BT = -adv_BT * dual_clip
    dual_BT = (adv_BT < 0) & (loss_BT > cap_BT)
    loss_BT = jnp.where(dual_BT, cap_BT, loss_BT)
  return ClipResult(
      loss_BT=loss_BT,
      low_BT=use_clipped_BT & (adv_BT < 0),
      high_BT=use_clipped_BT & (adv_BT > 0),
      dual_BT=dual_BT,
  )


def clip_metrics(
    low_BT: jax.Array,
    high_BT: jax.Array,
    mask_BT: jax.Array,
    dual_BT: jax.Array | None = None,
) -> base.Metrics:
  """clip_frac_x = Σ 1[x]·m / Σ m, x = low, high, either (and dual)."""
  metrics = {
      "clip_frac_low": base.masked_mean(low_BT, mask_BT),
      "clip_frac_high": base.masked_mean(high_BT, mask_BT),
      "clip_frac": base.masked_mean(low_BT | high_BT, mask_BT),
  }
  if dual_BT is not None:
    metrics["dual_clip_frac"] = base.masked_mean(dual_BT, mask_BT)
  return metrics


def check_clip(
    name: str,
    clip_low: float | None,
    clip_high: float | None,
    dual_clip: float | None = None,
) -> None:
  """Validates clip hyperparameters with an actionable message."""
  for key, value in (("clip_low", clip_low), ("clip_high", clip_high)):
    if value is not None and value < 0:
      raise ValueError(f"{name}: {key} must be >= 0, got {value}.")
  if dual_clip is not None and not dual_clip > 1.0:
    raise ValueError(
        f"{name}: dual_clip must be > 1 (it caps −A·r at −A·c for A < 0), got"
        f" {dual_clip}; use None to switch it off."
    )
