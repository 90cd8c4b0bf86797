"""Advantages built for several reward components: GDPO and BNPO.

* `gdpo`: each reward is normalised within its group on its own, the
  per-reward advantages are summed and the sum is whitened over the batch,
  github.com/NVlabs/GDPO;
* `bnpo`: the centred reward is divided by a Beta density whose parameters
  are fitted to the batch's group accuracies every step, with an optional
  per-reward decomposition, github.com/changyi7231/BNPO (§4).
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from jax.scipy import special

from mathrl.advantages import base
from mathrl.advantages import group

_DOMAINS = ("sample", "token")
# (group eps, batch eps, eps inside the sqrt) of each reference code.
_GDPO_EPS = {"sample": (1e-4, 1e-4, False), "token": (1e-6, 1e-8, True)}


def _group_zscore(values, mask_PG, eps):
  centred = values - group.group_mean(values, mask_PG)
  scaled = centred / (group.group_std(values, mask_PG) + eps)
  return jnp.where(group.broadcast_mask(mask_PG, values) > 0, scaled, 0.0)


def gdpo(
    reward_weights: Optional[Sequence[float]] = None,
    batch_norm_domain: str = "sample",
    group_eps: Optional[float] = None,
    batch_eps: Optional[float] = None,
) -> base.AdvantageTransform:
  """A = whiten_batch(Σ_k w_k·(r_k − μ_pk)/(σ_pk + ε_g)), GDPO (2601.05242).

  Group reward-Decoupled normalisation: every reward component k gets its
  own group z-score (unbiased std over the valid samples), the weighted sum
  of these is then standardised over all valid samples of the batch.
  batch_norm_domain:
  * "sample" (default; TRL variant, general K, weights): batch mean and
    unbiased std over samples, A = (S − μ)/(σ + 1e-4), group eps 1e-4;
  * "token" (verl variant): each sample weighted by its token count
    (`lengths` or `token_mask` extra), A = (S − μ_tok)/sqrt(σ²_tok + 1e-8),
    group eps 1e-6.
  With a single reward ([P, G] or K = 1) both codes fall back to GRPO on
  the reward, (r − μ)/(σ + ε_g), without batch whitening; so does this.
  NaN rewards of valid samples count as 0 (TRL `nan_to_num`).

  Example: correctness [[1,1,0,0],[0,0,0,1]] and format
  [[1,0,1,0],[1,1,1,1]] → [[1.527404, 0, 0, −1.527404],
  [−0.440912, −0.440912, −0.440912, 1.322735]].

  Args:
    reward_weights: K weights w_k (None: all 1).
    batch_norm_domain: "sample" or "token", see above.
    group_eps: ε_g added to each group std (None: the domain's default).
    batch_eps: the batch epsilon (None: the domain's default).

  Returns:
    A stateless AdvantageTransform: rewards [P, G, K] (or [P, G]) → [P, G].
  """
  if batch_norm_domain not in _DOMAINS:
    raise ValueError(
        f"gdpo: batch_norm_domain must be one of {_DOMAINS}, got"
        f" {batch_norm_domain!r}."
    )
  default_group_eps, default_batch_eps, eps_in_sqrt = _GDPO_EPS[
      batch_norm_domain
  ]
  group_eps = default_group_eps if group_eps is None else group_eps
  batch_eps = default_batch_eps if batch_eps is None else batch_eps

  def fn(rewards, *, mask, **extra):
    rewards = jnp.nan_to_num(jnp.asarray(rewards, jnp.float32))
    if rewards.ndim == 2 or rewards.shape[-1] == 1:
      rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
      return _group_zscore(rewards_PG, mask, group_eps)
    rewards = jnp.where(group.broadcast_mask(mask, rewards) > 0, rewards, 0.0)
    summed_PG = group.combine_rewards(
        _group_zscore(rewards, mask, group_eps), mask, reward_weights
    )
    weights_PG = mask
    if batch_norm_domain == "token":
      lengths_PG = group.sequence_lengths(extra, summed_PG.shape)
      weights_PG = mask * lengths_PG
    return group.whiten(
        summed_PG, weights_PG, eps=batch_eps, eps_in_sqrt=eps_in_sqrt
    )

  return base.declare(base.stateless(fn), multi_reward=True)


def beta_parameters(p_P1: jax.Array, group_valid_P1: jax.Array):
  """α = max(1 + c·m/3, 1), β = max(1 + c·(1 − m)/3, 1), c = m(1−m)/v − 1.

  BNPO (arXiv 2506.02864): the method of moments fit of Beta(a, b) to the
  group accuracies (m their mean, v their unbiased variance, over groups
  with at least one valid sample), then the variance-minimising normaliser
  parameters. The code's unguarded cases fall back to α = β = 1
  (REINFORCE with a group-mean baseline): one group (the code's m = 0,
  v = 1 gives the same), v = 0, or a non-finite c.

  Args:
    p_P1: [P, 1] group mean rewards in [0, 1].
    group_valid_P1: [P, 1] float 0/1, groups with a valid sample.

  Returns:
    (α, β), float32 scalars.
  """
  num_groups = jnp.sum(group_valid_P1)
  m = jnp.sum(group_valid_P1 * p_P1) / jnp.maximum(num_groups, 1.0)
  dev_P1 = jnp.where(group_valid_P1 > 0, p_P1 - m, 0.0)
  v = jnp.sum(dev_P1**2) / jnp.maximum(num_groups - 1.0, 1.0)
  ok = (num_groups > 1) & (v > 0)
  c = m * (1.0 - m) / jnp.where(ok, v, 1.0) - 1.0
  ok = ok & jnp.isfinite(c)
  alpha = jnp.where(ok, jnp.maximum(1.0 + c * m / 3.0, 1.0), 1.0)
  beta = jnp.where(ok, jnp.maximum(1.0 + c * (1.0 - m) / 3.0, 1.0), 1.0)
  return alpha, beta


def beta_log_density(p, alpha, beta):
  """log f(p; α, β) = (α−1)·log p + (β−1)·log(1−p) − log B(α, β).

  With xlogy, so 0·log 0 = 0 (torch's Beta), and p clipped to [0, 1].
  """
  p = jnp.clip(p, 0.0, 1.0)
  return (
      special.xlogy(alpha - 1.0, p)
      + special.xlogy(beta - 1.0, 1.0 - p)
      - special.betaln(alpha, beta)
  )


def bnpo_advantage(
    rewards_PG: jax.Array,
    mask_PG: jax.Array,
    min_value: float = 0.0,
    max_value: float = 1.0,
    max_weight: float = 1e6,
) -> jax.Array:
  """A_si = min(1/f(p_s; α, β), 10⁶)·(r̃_si − p_s), BNPO (arXiv 2506.02864).

  r̃ = (r − min_value)/(max_value − min_value), p_s the group mean of r̃ over
  valid samples, (α, β) from `beta_parameters`. A group whose valid
  rewards are all equal gets exactly 0 (its weight may be the 10⁶ clamp).
  A group with one valid sample has p = r̃ and so A = 0 (the code's mean 0
  for size-1 groups would give it up to 10⁶·r̃).

  Args:
    rewards_PG: [P, G] rewards in [min_value, max_value].
    mask_PG: [P, G] float 0/1 validity mask.
    min_value: the reward range's lower end.
    max_value: the reward range's upper end.
    max_weight: the weight clamp (code: 1e6).

  Returns:
    [P, G] float32 advantages, 0 at invalid samples.
  """
  scaled_PG = (rewards_PG - min_value) / (max_value - min_value)
  scaled_PG = jnp.where(mask_PG > 0, scaled_PG, 0.0)
  p_P1 = group.group_mean(scaled_PG, mask_PG)
  count_P1 = jnp.sum(mask_PG, axis=-1, keepdims=True)
  group_valid_P1 = (count_P1 > 0).astype(jnp.float32)
  alpha, beta = beta_parameters(p_P1, group_valid_P1)
  weight_P1 = jnp.minimum(
      jnp.exp(-beta_log_density(p_P1, alpha, beta)), max_weight
  )
  varied_P1 = group.group_std(scaled_PG, mask_PG) > 0
  adv_PG = jnp.where(varied_P1, weight_P1 * (scaled_PG - p_P1), 0.0)
  return jnp.where(mask_PG > 0, adv_PG, 0.0)


def bnpo(
    min_value: float = 0.0,
    max_value: float = 1.0,
    use_advantage_decomposition: bool = False,
) -> base.AdvantageTransform:
  """A = w(p)·(r̃ − p), w = 1/Beta_pdf(p; 1 + a/3, 1 + b/3), BNPO.

  Beta Normalization Policy Optimization (arXiv 2506.02864), see
  `bnpo_advantage`; (a, b) are re-fitted to every batch (no state, as the
  code). With `use_advantage_decomposition` and [P, G, K] rewards each
  component gets its own BNPO advantage (its own α_k, β_k) and the result
  is their mean over K. Without it, [P, G, K] rewards are summed over K
  first and must then lie in [min_value, max_value] (the code asserts it;
  here p is clipped into [0, 1] for the density).

  Example: rewards [[1,0,0,0],[1,1,1,0],[1,1,0,0],[0,0,0,0]] →
  α = 1.15625, β = 1.2604167, A[0] = [0.672980, −0.224327, −0.224327,
  −0.224327], the all-wrong group 0.

  Args:
    min_value: the reward range's lower end (0.0).
    max_value: the reward range's upper end (1.0).
    use_advantage_decomposition: per-component BNPO, then the mean.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """
  if max_value <= min_value:
    raise ValueError(
        f"bnpo: max_value ({max_value}) must exceed min_value ({min_value})."
    )

  def fn(rewards, *, mask, **extra):
    del extra
    rewards = jnp.asarray(rewards, jnp.float32)
    if use_advantage_decomposition and rewards.ndim == 3:
      rewards = jnp.where(group.broadcast_mask(mask, rewards) > 0, rewards, 0)
      per_reward = [
          bnpo_advantage(rewards[..., k], mask, min_value, max_value)
          for k in range(rewards.shape[-1])
      ]
      return sum(per_reward) / len(per_reward)
    rewards_PG = group.combine_rewards(rewards, mask)
    return bnpo_advantage(rewards_PG, mask, min_value, max_value)

  return base.declare(base.stateless(fn), multi_reward=True)
