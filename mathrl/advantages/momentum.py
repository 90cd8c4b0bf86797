"""AAPO: the group advantage plus a clipped "advantage momentum".

AAPO (arXiv 2505.14264, github.com/JianxXiong/AAPO) samples, for every
prompt, G responses from the current policy and G paired responses from the
frozen reference (initial) model, and adds the clipped reward improvement
r_j − r^ref_j of each pair to the group z-score. The "momentum" is this
improvement over the reference, not a running average: the method keeps no
state across steps (the frozen reference model that generates the paired
rollouts is the trainer's business), so the transform is stateless.
"""

from typing import Optional, Sequence

import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import outcome


def aapo(
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    eps: float = 1e-4,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_j = (r_j − μ)/(σ + ε) + clip(r_j − r^ref_j, −clip_low, clip_high).

  AAPO, Advantage-Augmented Policy Optimization (arXiv 2505.14264); μ, σ
  are the group mean and unbiased std (TRL-based trainer, ε = 1e-4). The
  authors optimise it with a plain cross-entropy policy gradient
  (`losses.reinforce`, token-mean), without ratio or clip.

  Needs the extra `ref_rewards` ([P, G] or [P, G, K], the rewards of the
  paired reference-model rollouts, same layout as `rewards`); an optional
  extra `ref_mask` [P, G] marks invalid reference rollouts, whose momentum
  is then 0.

  Example: r = [1, 0, 0, 0], r_ref = [0, 0, 1, 0] → z-score
  [1.4997, −0.4999, −0.4999, −0.4999] + momentum [0.28, 0, −0.2, 0]
  = [1.7797, −0.4999, −0.6999, −0.4999].

  Args:
    clip_low: the momentum's lower bound is −clip_low (authors: 0.2).
    clip_high: the momentum's upper bound (authors: 0.28).
    eps: added to the group std (authors, via TRL: 1e-4).
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """

  def fn(rewards, *, mask, **extra):
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    ref = jnp.asarray(outcome.require_extra(extra, "ref_rewards", "aapo"))
    if ref.shape[:2] != rewards_PG.shape:
      raise ValueError(
          f"aapo: ref_rewards has shape {ref.shape}, expected"
          f" {rewards_PG.shape} (or with a trailing K axis)."
      )
    ref_mask = extra.get("ref_mask")
    ref_mask_PG = (
        mask
        if ref_mask is None
        else mask * base.default_mask(rewards_PG, ref_mask)
    )
    ref_PG = group.combine_rewards(ref, ref_mask_PG, reward_weights)
    zscore_PG = outcome.group_zscore(rewards_PG, mask, eps=eps)
    momentum_PG = jnp.clip(rewards_PG - ref_PG, -clip_low, clip_high)
    momentum_PG = jnp.where(ref_mask_PG > 0, momentum_PG, 0.0)
    return jnp.where(mask > 0, zscore_PG + momentum_PG, 0.0)

  # The reference model's rewards on the same prompts.
  return base.declare(base.stateless(fn), extras=("ref_rewards",))
