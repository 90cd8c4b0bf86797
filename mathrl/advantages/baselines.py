"""The baseline advantage estimators of verl, TRL and tunix.

`grpo`, `dr_grpo`, `rloo`, `reinforce_pp`, `reinforce_pp_baseline`, `opo` and
`gpg`, written as chains of the blocks in `group.py` where they are one.
Multi-reward [P, G, K] rewards are first summed over K (with
`reward_weights` when given); invalid samples (mask 0) get advantage 0.

One deliberate difference from verl: a group with a single valid sample has
no baseline and gets advantage 0 everywhere here (verl gives it mean 0 and
std 1, i.e. the raw reward).
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group

_GPG_ALPHA_FROM = ("nonzero_rewards", "valid_groups", "none")


def grpo(
    eps: float = 1e-6, reward_weights: Optional[Sequence[float]] = None
) -> base.AdvantageTransform:
  """A_pi = (r_pi − mean_p) / (std_p + eps), GRPO (arXiv 2402.03300).

  std is the unbiased (ddof=1) std over the group's valid samples. verl's
  `compute_grpo_outcome_advantage` uses eps 1e-6 (the default), TRL 1e-4.
  An all-equal group gets exactly 0.

  Example: rewards [[1, 0, 0, 0], [1, 1, 1, 0]] →
  [[1.5, −0.5, −0.5, −0.5], [0.5, 0.5, 0.5, −1.5]] (up to eps).

  Args:
    eps: added to the group std.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    An AdvantageTransform (a chain): rewards [P, G] or [P, G, K] → [P, G].
  """
  return base.chain(
      group.sum_rewards(reward_weights),
      group.center_by_group_mean(),
      group.scale_by_group_std(eps=eps, ddof=1),
  )


def dr_grpo(
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pi = r_pi − mean_p, Dr. GRPO (arXiv 2503.20783).

  GRPO without the division by the group std (the other half of Dr. GRPO,
  the constant length normaliser, is the `seq_mean_token_sum_norm` loss
  aggregation).

  Args:
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    An AdvantageTransform (a chain): rewards [P, G] or [P, G, K] → [P, G].
  """
  return base.chain(
      group.sum_rewards(reward_weights), group.center_by_group_mean()
  )


def rloo(
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pi = r_pi − Σ_{j≠i} r_pj/(n_p − 1), RLOO (arXiv 2402.14740).

  Leave-one-out baseline over the valid samples (verl
  `compute_rloo_outcome_advantage`, tunix `compute_rloo_advantages`).

  Args:
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    An AdvantageTransform (a chain): rewards [P, G] or [P, G, K] → [P, G].
  """
  return base.chain(
      group.sum_rewards(reward_weights), group.leave_one_out_baseline()
  )


def discounted_outcome_returns(
    rewards_PG: jax.Array, token_mask_PGT: jax.Array, gamma: float
) -> jax.Array:
  """R_pgt = γ^(t_last − t)·r_pg for t ≤ t_last, else 0.

  The return R_t = r_t + γ·R_{t+1} of an outcome reward placed on the last
  valid token t_last of each completion (verl places it there), as in
  REINFORCE++ (arXiv 2501.03262). Tokens after t_last get 0.

  Args:
    rewards_PG: [P, G] outcome rewards.
    token_mask_PGT: [P, G, T] float 0/1 completion-token mask.
    gamma: the discount γ.

  Returns:
    [P, G, T] float32 returns.
  """
  num_tokens = token_mask_PGT.shape[-1]
  position_T = jnp.arange(num_tokens, dtype=jnp.float32)
  position_PGT = jnp.broadcast_to(position_T, token_mask_PGT.shape)
  last_PG = jnp.max(
      jnp.where(token_mask_PGT > 0, position_PGT, -1.0), axis=-1
  )
  steps_PGT = last_PG[..., None] - position_PGT
  discount_PGT = jnp.power(
      jnp.float32(gamma), jnp.maximum(steps_PGT, 0.0)
  )
  returns_PGT = rewards_PG[..., None] * discount_PGT
  return jnp.where(steps_PGT >= 0, returns_PGT, 0.0)


def reinforce_pp(
    gamma: float = 1.0,
    eps: float = 1e-8,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pgt = (R_pgt − μ_tok) / sqrt(σ²_tok + eps), REINFORCE++ (2501.03262).

  R is the discounted return of the outcome reward (see
  `discounted_outcome_returns`), μ_tok and the unbiased σ²_tok run over every
  valid token of the batch (verl `compute_reinforce_plus_plus_outcome_
  advantage` + `masked_whiten`), so long completions weigh more. Needs the
  `token_mask` extra. (A KL-in-reward penalty, when wanted, is added to the
  rewards before this transform.)

  Args:
    gamma: the discount γ (verl `algorithm.gamma`, default 1.0).
    eps: added to the variance inside the square root (verl 1e-8).
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] →
    [P, G, T] token advantages, 0 on padding and invalid samples.
  """

  def fn(rewards, *, mask, **extra):
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    token_mask_PGT = group.require_token_mask(
        extra, rewards_PG.shape, "reinforce_pp"
    )
    weights_PGT = token_mask_PGT * group.broadcast_mask(mask, token_mask_PGT)
    returns_PGT = discounted_outcome_returns(
        rewards_PG, token_mask_PGT, gamma
    )
    return group.whiten(returns_PGT, weights_PGT, eps=eps)

  return base.stateless(fn)


def reinforce_pp_baseline(
    eps: float = 1e-8, reward_weights: Optional[Sequence[float]] = None
) -> base.AdvantageTransform:
  """A_pgt = whiten_tok(r_pg − mean_p), REINFORCE++-baseline (2501.03262).

  The group-mean-centred reward on every token of its completion, then
  whitened over all valid tokens of the batch (verl
  `compute_reinforce_plus_plus_baseline_outcome_advantage`: unbiased
  variance, eps inside the rsqrt). Needs the `token_mask` extra.

  Args:
    eps: added to the variance inside the square root (verl 1e-8).
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    An AdvantageTransform (a chain): rewards [P, G] or [P, G, K] →
    [P, G, T].
  """
  return base.chain(
      group.sum_rewards(reward_weights),
      group.center_by_group_mean(),
      group.broadcast_to_tokens(),
      group.whiten_over_batch(eps=eps, eps_in_sqrt=True),
  )


def opo(
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pi = r_pi − Σ_j L_pj·r_pj / Σ_j L_pj, OPO (arXiv 2505.23585).

  On-Policy RL with Optimal reward baseline: the length-weighted group mean
  (L in tokens, `lengths` extra, or the `token_mask` row sums) is the
  baseline that minimises the gradient variance. Follows verl's
  `compute_opo_outcome_advantage`; only valid samples count.

  Args:
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """

  def fn(rewards, *, mask, **extra):
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    lengths_PG = group.sequence_lengths(extra, rewards_PG.shape)
    weights_PG = jnp.where(mask > 0, lengths_PG, 0.0)
    total_P1 = jnp.sum(weights_PG, axis=-1, keepdims=True)
    baseline_P1 = jnp.sum(weights_PG * rewards_PG, -1, keepdims=True) / (
        jnp.where(total_P1 > 0, total_P1, 1.0)
    )
    count_P1 = jnp.sum(mask, axis=-1, keepdims=True)
    adv_PG = jnp.where(count_P1 > 1, rewards_PG - baseline_P1, 0.0)
    return jnp.where(mask > 0, adv_PG, 0.0)

  return base.stateless(fn)


def gpg(
    f_norm: float = 1.0,
    alpha_from: str = "nonzero_rewards",
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pi = α·(r_pi − mean_p)/F_norm, GPG (arXiv 2504.02546).

  Group Policy Gradient: no std, no ratio clipping (its loss is the plain
  REINFORCE `gpg` loss); α rescales the batch to make up for the samples
  that carry no gradient. alpha_from:
  * "nonzero_rewards" (default, verl `compute_gpg_outcome_advantage`):
    α = B / max(#{valid i: r_i ≠ 0}, 1), B the number of valid samples;
  * "valid_groups" (the paper's description: α = B / (B − M), M the samples
    in groups whose rewards are all equal): unverified against the authors'
    code;
  * "none": α = 1.

  Args:
    f_norm: F_norm, a constant divisor (verl default 1.0).
    alpha_from: how α is computed, see above.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """
  if alpha_from not in _GPG_ALPHA_FROM:
    raise ValueError(
        f"gpg: alpha_from must be one of {_GPG_ALPHA_FROM}, got"
        f" {alpha_from!r}."
    )

  def fn(rewards, *, mask, **extra):
    del extra
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    count_P1 = jnp.sum(mask, axis=-1, keepdims=True)
    centred_PG = rewards_PG - group.group_mean(rewards_PG, mask)
    centred_PG = jnp.where(count_P1 > 1, centred_PG, 0.0)
    num_valid = jnp.sum(mask)
    if alpha_from == "nonzero_rewards":
      useful = jnp.sum(jnp.where(mask > 0, rewards_PG != 0, False))
      alpha = num_valid / jnp.maximum(useful, 1.0)
    elif alpha_from == "valid_groups":
      nondegenerate_P1 = group.is_nondegenerate(rewards_PG, mask)
      useful = jnp.sum(jnp.where(nondegenerate_P1, mask, 0.0))
      alpha = num_valid / jnp.maximum(useful, 1.0)
    else:
      alpha = 1.0
    return jnp.where(mask > 0, alpha * centred_PG / f_norm, 0.0)

  return base.stateless(fn)
