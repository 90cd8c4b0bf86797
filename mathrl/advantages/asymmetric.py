"""Group advantages reweighted by how certain or how hard a prompt is.

* `a_grae` — A-GRAE (github.com/Yu7-code/A-GRAE): asymmetric, difficulty
  driven reweighting of the group advantage, steered by the batch accuracy;
* `mapo` — MAPO (github.com/WenkeHuang/MAPO): a certainty-weighted mix of
  the z-score and the "advantage percent deviation".

Both expect outcome rewards in [0, 1] (accuracy-like); see each docstring.
"""

from typing import Optional, Sequence

import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import outcome
from mathrl.advantages import stats


def a_grae(
    alpha: float = 1.0,
    eps: float = 1e-6,
    scale_by_std: bool = True,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A' = (1 − m̄)·A/(2(1 − √μ_p + ε)) + m̄·A/(2(√μ_p + ε)), A-GRAE.

  Then positive advantages are damped while the model is weak:
  A' ← A'·min(1, m̄/α) where A' > 0. A is the GRPO z-score (or the
  Dr. GRPO centring with `scale_by_std=False`), μ_p the group mean reward
  and m̄ the mean of μ_p over the batch's prompts (every prompt with at least
  one valid sample, degenerate groups included). As m̄ rises during training
  the emphasis moves from easy prompts (first term) to hard ones (second).
  Asymmetric Group Relative Advantage Estimation (arXiv 2602.05548),
  github.com/Yu7-code/A-GRAE.

  Code vs paper: the released trainer only enters this branch when its
  `grpo_weight == 2.0` exactly, which never happens after step 0, so the
  released scripts train plain GRPO. mathrl implements the formula (the
  paper's intent); the plain-GRPO behaviour of the scripts is `grpo`.
  μ_p is clipped to [0, 1] before the square roots, so rewards are expected
  to be accuracies (0/1 or in [0, 1]).

  Example: rewards [[1, 0, 0, 0], [1, 1, 1, 0]] (m̄ = 0.5) →
  [[0.75, −0.5, −0.5, −0.5], [0.5387, 0.5387, 0.5387, −3.2320]].

  Args:
    alpha: the accuracy at which positive advantages stop being damped
      (authors: 1 for math, 0.5 for geo3k and medical).
    eps: added to the std and to both square-root denominators.
    scale_by_std: GRPO z-score base (True) or Dr. GRPO centring (False).
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """
  if alpha <= 0:
    raise ValueError(f"a_grae: alpha must be > 0, got {alpha}.")

  def fn(rewards, *, mask, **extra):
    del extra
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    adv_PG = outcome.group_zscore(
        rewards_PG, mask, eps=eps, scale_by_std=scale_by_std
    )
    mean_P1 = jnp.clip(stats.masked_mean(rewards_PG, mask), 0.0, 1.0)
    group_valid_P1 = (jnp.sum(mask, axis=-1, keepdims=True) > 0).astype(
        jnp.float32
    )
    batch_mean = stats.masked_mean(
        mean_P1, group_valid_P1, axis=(0, 1), keepdims=False
    )
    root_P1 = jnp.sqrt(mean_P1)
    hard_PG = 0.5 * adv_PG / (root_P1 + eps)
    easy_PG = 0.5 * adv_PG / (1.0 - root_P1 + eps)
    mixed_PG = (1.0 - batch_mean) * easy_PG + batch_mean * hard_PG
    damp = jnp.minimum(1.0, batch_mean / alpha)
    mixed_PG = jnp.where(mixed_PG > 0, mixed_PG * damp, mixed_PG)
    return jnp.where(mask > 0, mixed_PG, 0.0)

  return base.stateless(fn)


def mapo(
    eps: float = 1e-6,
    success_value: float = 1.0,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A = w·(r − μ)/(σ + ε) + (1 − w)·(r − μ)/(μ + ε), w = 4p(1 − p), MAPO.

  p is the fraction of a group's valid samples whose reward equals
  `success_value` (MAPO counts exact 1.0: binary rewards), μ and σ the group
  mean and unbiased std. Near-certain groups (p near 0 or 1) lean on the
  "advantage percent deviation" (r − μ)/μ instead of the z-score.
  Mixed Advantage Policy Optimization (arXiv 2509.18849),
  github.com/WenkeHuang/MAPO (estimator `grpomixpro`).

  Code note: the released `core_algos.py` does not parse as shipped (two
  `assert cond,` lines end in a trailing comma); this is the formula it
  computes once repaired. With rewards that can make μ negative the percent
  deviation is ill-defined; use 0/1 rewards.

  Example: rewards [[1, 0, 0, 0], [1, 1, 1, 0]] → w = 0.75 for both groups,
  A = [[1.875, −0.625, −0.625, −0.625], [0.4583, 0.4583, 0.4583, −1.375]].

  Args:
    eps: added to σ and to μ.
    success_value: the reward that counts as a success for p.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """

  def fn(rewards, *, mask, **extra):
    del extra
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    mean_P1 = stats.masked_mean(rewards_PG, mask)
    success_PG = (rewards_PG == success_value).astype(jnp.float32)
    p_P1 = stats.masked_mean(success_PG, mask)
    weight_P1 = 4.0 * p_P1 * (1.0 - p_P1)
    zscore_PG = outcome.group_zscore(rewards_PG, mask, eps=eps)
    percent_PG = (rewards_PG - mean_P1) / (mean_P1 + eps)
    adv_PG = weight_P1 * zscore_PG + (1.0 - weight_P1) * percent_PG
    return jnp.where(mask > 0, adv_PG, 0.0)

  return base.stateless(fn)

