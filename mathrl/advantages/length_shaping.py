"""GRPO-λ: a length penalty only on the groups the model already solves.

"Stable Reinforcement Learning for Efficient Reasoning" (arXiv 2505.18086):
length-penalty rewards destabilise GRPO, so GRPO-λ ranks the batch's prompt
groups by their correctness ratio and gives a length-penalised reward only
to the top-λ fraction; the others keep their plain reward. Paper-only: no
author code was found; the length reward below is the Kimi-1.5 style one
that we assume, and the tie rule of the ranking is ours.

This is reward shaping: its output is rewards, to be followed by an
advantage estimator, e.g. `chain(grpo_lambda(), grpo())`.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import stats


def length_reward(
    lengths_PG: jax.Array, correct_PG: jax.Array, mask_PG: jax.Array
) -> jax.Array:
  """u = 0.5 − (L − L_min)/(L_max − L_min); u if correct else min(0, u).

  Kimi k1.5's within-group length reward (arXiv 2501.12599), as assumed for
  GRPO-λ; L_min, L_max over the group's valid samples, u = 0 when they are
  equal.

  Args:
    lengths_PG: [P, G] completion lengths in tokens.
    correct_PG: [P, G] bool, whether each response is correct.
    mask_PG: [P, G] float 0/1 validity mask.

  Returns:
    [P, G] float32 length rewards, 0 at invalid samples.
  """
  lengths_PG = lengths_PG.astype(jnp.float32)
  valid_PG = mask_PG > 0
  shortest_P1 = jnp.min(
      jnp.where(valid_PG, lengths_PG, jnp.inf), axis=-1, keepdims=True
  )
  longest_P1 = jnp.max(
      jnp.where(valid_PG, lengths_PG, -jnp.inf), axis=-1, keepdims=True
  )
  spread_P1 = longest_P1 - shortest_P1
  has_spread_P1 = spread_P1 > 0
  u_PG = 0.5 - (lengths_PG - jnp.where(has_spread_P1, shortest_P1, 0.0)) / (
      jnp.where(has_spread_P1, spread_P1, 1.0)
  )
  u_PG = jnp.where(has_spread_P1, u_PG, 0.0)
  reward_PG = jnp.where(correct_PG, u_PG, jnp.minimum(u_PG, 0.0))
  return jnp.where(valid_PG, reward_PG, 0.0)


def top_groups(
    accuracy_P: jax.Array, group_valid_P: jax.Array, top_fraction: float
) -> jax.Array:
  """sel_p = rank_p < ⌈λ·P_valid⌉, by accuracy, descending (arXiv 2505.18086).

  Ties keep the prompt order (an earlier prompt ranks first); prompts with
  no valid sample are never selected and do not count in P_valid.

  Args:
    accuracy_P: [P] correctness ratio of each group.
    group_valid_P: [P] bool, whether the group has a valid sample.
    top_fraction: λ in [0, 1].

  Returns:
    [P] bool, the selected groups.
  """
  num = accuracy_P.shape[0]
  idx = jnp.arange(num)
  acc_i = accuracy_P[:, None]
  acc_j = accuracy_P[None, :]
  earlier_PP = idx[None, :] < idx[:, None]
  ahead_PP = (acc_j > acc_i) | ((acc_j == acc_i) & earlier_PP)
  rank_P = jnp.sum(ahead_PP & group_valid_P[None, :], axis=-1)
  num_valid = jnp.sum(group_valid_P.astype(jnp.float32))
  # The 1e-6 keeps float round-off (0.3·10 = 3.0000002) from adding a group.
  num_selected = jnp.ceil(top_fraction * num_valid - 1e-6)
  return group_valid_P & (rank_P < num_selected)


def grpo_lambda(
    top_fraction: float = 0.5,
    correct_threshold: float = 0.0,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """r'_i = r_i + len_reward_i on the top-λ groups by accuracy, else r_i.

  GRPO-λ (arXiv 2505.18086) reward shaping: groups are ranked by their
  correctness ratio (#correct / #valid, correct meaning reward >
  `correct_threshold`), the top ⌈λ·P⌉ receive the within-group length
  reward of `length_reward`. Needs the extra `lengths` [P, G] (or
  `token_mask` [P, G, T], whose row sums are the lengths).

  Example: accuracies [0.25, 0.75, 1.0, 0.5], λ = 0.5 → groups 2 and 1 are
  shaped; a shaped group with lengths [100, 200, 300, 400] and rewards
  [1, 1, 1, 0] becomes [1.5, 1.1667, 0.8333, −0.5].

  Args:
    top_fraction: λ, the fraction of groups that get the length reward
      (not published; 0.5 here).
    correct_threshold: a response is correct when its reward exceeds this.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → shaped
    rewards [P, G] (follow it with an advantage estimator).
  """
  if not 0.0 <= top_fraction <= 1.0:
    raise ValueError(
        f"grpo_lambda: top_fraction must be in [0, 1], got {top_fraction}."
    )

  def fn(rewards, *, mask, **extra):
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    lengths_PG = group.sequence_lengths(extra, rewards_PG.shape)
    correct_PG = rewards_PG > correct_threshold
    accuracy_P = stats.masked_mean(
        correct_PG.astype(jnp.float32), mask, keepdims=False
    )
    group_valid_P = jnp.sum(mask, axis=-1) > 0
    selected_P = top_groups(accuracy_P, group_valid_P, top_fraction)
    bonus_PG = length_reward(lengths_PG, correct_PG, mask)
    shaped_PG = rewards_PG + jnp.where(selected_P[:, None], bonus_PG, 0.0)
    return jnp.where(mask > 0, shaped_PG, 0.0)

  return base.declare(base.stateless(fn), shaping="rewards")
