"""Difficulty-aware group advantages: DGPO, NGRPO and MC-GRPO.

* `dgpo`: mean-absolute-deviation scale (DGAE) and a softmax weight per
  question favouring hard ones (DQW), github.com/AMAP-ML/MathForge;
* `ngrpo`: a virtual max-reward sample in the group statistics, so that
  all-wrong groups still learn, github.com/nangongrui-ngr/NGRPO;
* `mc_grpo`: median baseline and median-absolute-deviation scale over G + 1
  rollouts, the median "pivot" carrying no gradient,
  github.com/lotusroot-kim/MC-GRPO.

Formulas, defaults and worked examples: each function's docstring and
docs/algorithms.md.
"""

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group

_MC_SCALES = ("mad", "none", "std")


def dgae(
    rewards_PG: jax.Array, mask_PG: jax.Array, mad_eps: float = 1e-4
) -> jax.Array:
  """Â_pi = n_p·(r_pi − μ_p) / (Σ_j |r_pj − μ_p| + ε), DGAE (arXiv 2601.20614).

  The group-mean-centred reward over the mean absolute deviation, with ε on
  the *sum* of deviations as in the MathForge code (ε/n on the MAD), so
  Σ_i |Â_pi| = n_p for every non-degenerate group. n_p counts valid samples.

  Args:
    rewards_PG: [P, G] rewards.
    mask_PG: [P, G] float 0/1 validity mask.
    mad_eps: ε, added to Σ_j |r_pj − μ_p|.

  Returns:
    [P, G] float32 advantages, 0 at invalid samples.
  """
  centred_PG = rewards_PG - group.group_mean(rewards_PG, mask_PG)
  abs_PG = jnp.where(mask_PG > 0, jnp.abs(centred_PG), 0.0)
  total_P1 = jnp.sum(abs_PG, axis=-1, keepdims=True)
  count_P1 = jnp.sum(mask_PG, axis=-1, keepdims=True)
  adv_PG = count_P1 * centred_PG / (total_P1 + mad_eps)
  return jnp.where(mask_PG > 0, adv_PG, 0.0)


def dqw_weights(
    difficulty_P1: jax.Array, valid_P1: jax.Array, temperature: float
) -> jax.Array:
  """λ_s = B_v·softmax_{s∈V}(D_s/T) for s ∈ V, 1 otherwise (arXiv 2601.20614).

  DQW, difficulty-aware question weighting: the weights of the B_v valid
  questions sum to B_v.

  Args:
    difficulty_P1: [P, 1] difficulties D_s (higher = harder).
    valid_P1: [P, 1] bool, the valid set V.
    temperature: the softmax temperature T.

  Returns:
    [P, 1] float32 weights.
  """
  logits_P1 = jnp.where(valid_P1, difficulty_P1 / temperature, -jnp.inf)
  num_valid = jnp.sum(valid_P1.astype(jnp.float32))
  top = jnp.max(jnp.where(valid_P1, logits_P1, -1e30))
  exp_P1 = jnp.where(valid_P1, jnp.exp(logits_P1 - top), 0.0)
  softmax_P1 = exp_P1 / jnp.maximum(jnp.sum(exp_P1), 1e-30)
  return jnp.where(valid_P1, num_valid * softmax_P1, 1.0)


def dgpo(
    dqw_temp: float = 2.0,
    enable_dqw: bool = True,
    reward_weights: Optional[Sequence[float]] = None,
    mad_eps: float = 1e-4,
    zero_accuracy_quirk: bool = False,
) -> base.AdvantageTransform:
  """A_si = λ_s·Â_si: DGAE scaled by DQW, DGPO (arXiv 2601.20614).

  Â is `dgae` of the total reward r (the weighted sum of the K components),
  λ the `dqw_weights` of D_s = −mean_i r_main,si with r_main the first
  reward component (accuracy; r itself when K = 1), over the valid set
  V = {s : std_s(r) not ≈ 0} (TRL's isclose, atol 1e-8).

  Code vs paper: MathForge sets the mean of an all-wrong main reward to 1
  (D = −1, the lowest weight); this only matters when another component
  makes such a group valid. The default follows the paper (D = −mean);
  `zero_accuracy_quirk=True` reproduces the code. The loss side of DGPO
  (token mean over valid groups only, paper eq. 3) belongs to the loss
  aggregation; `valid_group_mask` gives its mask. The code's token-count
  factors are not folded into the advantages: the loss normaliser is
  applied where the paper writes it.

  Example (the DGPO worked example): rewards [[1,0,0,0],[1,1,1,0],[0,0,0,0],[1,1,0,0]] →
  λ = [1.127270, 0.877918, 1, 0.994812] and
  A[0] = [2.254389, −0.751463, −0.751463, −0.751463].

  Args:
    dqw_temp: T, the DQW softmax temperature (MathForge 2.0).
    enable_dqw: apply DQW (False: DGAE only).
    reward_weights: K weights for the total reward of [P, G, K] rewards.
    mad_eps: ε added to the group's sum of absolute deviations (1e-4).
    zero_accuracy_quirk: reproduce the code's D = −1 for all-wrong groups.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """
  if dqw_temp <= 0:
    raise ValueError(f"dgpo: dqw_temp must be > 0, got {dqw_temp}.")

  def fn(rewards, *, mask, **extra):
    del extra
    rewards = jnp.asarray(rewards, jnp.float32)
    total_PG = group.combine_rewards(rewards, mask, reward_weights)
    adv_PG = dgae(total_PG, mask, mad_eps)
    if not enable_dqw:
      return adv_PG
    main_PG = rewards[..., 0] if rewards.ndim == 3 else rewards
    main_PG = jnp.where(mask > 0, main_PG, 0.0)
    accuracy_P1 = group.group_mean(main_PG, mask)
    if zero_accuracy_quirk:
      accuracy_P1 = jnp.where(accuracy_P1 == 0, 1.0, accuracy_P1)
    valid_P1 = group.is_nondegenerate(total_PG, mask)
    weights_P1 = dqw_weights(-accuracy_P1, valid_P1, dqw_temp)
    return weights_P1 * adv_PG

  # Paper eq. 3: the loss's token mean runs over the valid groups only.
  return base.declare(
      base.stateless(fn), multi_reward=True,
      loss_sample_mask=_from_rewards(functools.partial(
          valid_group_mask, reward_weights=_hashable(reward_weights))))


def _hashable(weights):
  return None if weights is None else tuple(weights)


def _from_rewards(mask_fn):
  """A loss sample mask that reads only the rewards and the mask."""
  return lambda rewards, mask, **_: mask_fn(rewards, mask)


def valid_group_mask(
    rewards,
    mask_PG: Optional[jax.Array] = None,
    reward_weights: Optional[Sequence[float]] = None,
) -> jax.Array:
  """m_pi = 1 where group p's total reward is not constant (DGPO's V).

  The sample mask of DGPO's loss normaliser (paper eq. 3: the token mean
  runs over the groups in V only).

  Args:
    rewards: [P, G] or [P, G, K] rewards.
    mask_PG: [P, G] float 0/1 validity mask (None: all valid).
    reward_weights: K weights for the total reward.

  Returns:
    [P, G] float32 0/1.
  """
  mask_PG = base.default_mask(jnp.asarray(rewards), mask_PG)
  total_PG = group.combine_rewards(rewards, mask_PG, reward_weights)
  valid_P1 = group.is_nondegenerate(total_PG, mask_PG)
  return jnp.where(valid_P1, mask_PG, 0.0)


def ngrpo(
    max_reward: float = 1.0,
    add_max_reward_num: int = 1,
    eps: float = 1e-6,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pi = (r_pi − μ⁺_p)/(σ⁺_p + eps) over R⁺ = {r_p·} ∪ {r_max × n_v}.

  NGRPO advantage calibration (arXiv 2509.18851): n_v virtual samples with
  the maximum reward join each group's mean and unbiased std, never the
  loss, so all-wrong groups get a uniform negative advantage
  (−0.447213 for G = 4) and all-correct groups 0. Groups with fewer than
  two valid samples get 0 (verl's NGRPO gives them the raw reward). The
  method's asymmetric clip (0.16 / 0.24) is the loss's `ppo_clip`, and its
  all-correct group filter is a host-side batch filter.

  Args:
    max_reward: r_max, the virtual sample's reward (1.0).
    add_max_reward_num: n_v, the number of virtual samples (1).
    eps: added to σ⁺ (1e-6).
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """
  if add_max_reward_num < 0:
    raise ValueError(
        f"ngrpo: add_max_reward_num must be >= 0, got {add_max_reward_num}."
    )

  def fn(rewards, *, mask, **extra):
    del extra
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    count_P1 = jnp.sum(mask, axis=-1, keepdims=True)
    total_count_P1 = count_P1 + add_max_reward_num
    virtual_sum = add_max_reward_num * max_reward
    mean_P1 = (jnp.sum(rewards_PG, -1, keepdims=True) + virtual_sum) / (
        jnp.maximum(total_count_P1, 1.0)
    )
    sq_PG = jnp.where(mask > 0, (rewards_PG - mean_P1) ** 2, 0.0)
    sq_P1 = jnp.sum(sq_PG, -1, keepdims=True) + add_max_reward_num * (
        max_reward - mean_P1
    ) ** 2
    var_P1 = sq_P1 / jnp.maximum(total_count_P1 - 1.0, 1.0)
    std_P1 = jnp.sqrt(jnp.where(total_count_P1 > 1, var_P1, 0.0))
    adv_PG = (rewards_PG - mean_P1) / (std_P1 + eps)
    return jnp.where((mask > 0) & (count_P1 > 1), adv_PG, 0.0)

  return base.stateless(fn)


def median_pivot(rewards_PG: jax.Array, mask_PG: jax.Array) -> jax.Array:
  """piv_p = argsort_stable(r_p·)[⌊(n_p − 1)/2⌋], MC-GRPO's pivot sample.

  The sample holding the (lower) median reward; with ties the mathrl rule
  of the authors' code (a stable argsort over the valid
  samples) picks one deterministically.

  Args:
    rewards_PG: [P, G] rewards.
    mask_PG: [P, G] float 0/1 validity mask.

  Returns:
    [P] int32 pivot indices (0 for an empty group).
  """
  keys_PG = jnp.where(mask_PG > 0, rewards_PG, jnp.inf)
  order_PG = jnp.argsort(keys_PG, axis=-1, stable=True)
  count_P = jnp.sum(mask_PG, axis=-1)
  position_P = (jnp.maximum(count_P - 1.0, 0.0) // 2).astype(jnp.int32)
  return jnp.take_along_axis(order_PG, position_P[:, None], axis=-1)[:, 0]


def mc_grpo_keep_mask(
    rewards,
    mask_PG: Optional[jax.Array] = None,
    reward_weights: Optional[Sequence[float]] = None,
) -> jax.Array:
  """m_pi = mask_pi·[i ≠ piv_p]: MC-GRPO's samples that enter the loss.

  Use it as the loss mask with the [P, G + 1] output of `mc_grpo`, or to
  drop the pivots on the host.

  Args:
    rewards: [P, G + 1] or [P, G + 1, K] rewards.
    mask_PG: [P, G + 1] float 0/1 validity mask (None: all valid).
    reward_weights: K weights to sum [P, G + 1, K] rewards.

  Returns:
    [P, G + 1] float32 0/1.
  """
  mask_PG = base.default_mask(jnp.asarray(rewards), mask_PG)
  rewards_PG = group.combine_rewards(rewards, mask_PG, reward_weights)
  pivot_P = median_pivot(rewards_PG, mask_PG)
  index_G = jnp.arange(rewards_PG.shape[1])
  is_pivot_PG = index_G[None, :] == pivot_P[:, None]
  return jnp.where(is_pivot_PG, 0.0, mask_PG)


def mc_grpo(
    mad_eps: float = 1e-3,
    scale: str = "mad",
    drop_pivot: bool = False,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pi = (r_pi − med_p)/(median_j |r_pj − med_p| + eps), MC-GRPO.

  Median-Centered GRPO (arXiv 2601.22582): G + 1 rollouts per prompt, the
  lower median (torch) as the baseline and the median absolute deviation
  plus `mad_eps` as the scale; the pivot (the median sample, A = 0) is
  removed from the loss so backprop sees G rollouts per prompt.

  Output convention: by default the transform keeps the static shape and
  returns [P, G + 1] with the pivot's advantage 0; pair it with
  `mc_grpo_keep_mask` as the loss mask (the pivot then drops out of every
  loss and normaliser). `drop_pivot=True` instead returns [P, G], the pivot
  removed from each row (the other samples keep their order), for callers
  that gather the kept samples themselves.

  With binary or two-level rewards the raw MAD is 0, so the scale is
  `mad_eps` and minority samples get ±gap/1e-3 (e.g. ±2000 for 0/2
  rewards) as in the authors' code; `scale="none"` (r − med) or "std"
  ((r − med)/(std + mad_eps)) are the robust alternatives.

  Example: [0.2, 0.9, 0.5, 0.7, 0.1] → median 0.5, MAD + eps
  0.301, A = [−0.996678, 1.328904, 0, 0.664452, −1.328904], pivot 2.

  Args:
    mad_eps: added to the MAD (authors 1e-3).
    scale: "mad" (default), "none" or "std".
    drop_pivot: return [P, G] without the pivots instead of [P, G + 1].
    reward_weights: K weights to sum [P, G + 1, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G + 1] (or [P, G + 1, K])
    → [P, G + 1] (or [P, G] with drop_pivot).
  """
  if scale not in _MC_SCALES:
    raise ValueError(
        f"mc_grpo: scale must be one of {_MC_SCALES}, got {scale!r}."
    )

  def fn(rewards, *, mask, **extra):
    del extra
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    centred_PG = rewards_PG - group.group_median(rewards_PG, mask)
    if scale == "mad":
      mad_P1 = group.group_mad(rewards_PG, mask, "median")
      centred_PG = centred_PG / (mad_P1 + mad_eps)
    elif scale == "std":
      centred_PG = centred_PG / (group.group_std(rewards_PG, mask) + mad_eps)
    pivot_P = median_pivot(rewards_PG, mask)
    index_G = jnp.arange(rewards_PG.shape[1])
    is_pivot_PG = index_G[None, :] == pivot_P[:, None]
    adv_PG = jnp.where((mask > 0) & ~is_pivot_PG, centred_PG, 0.0)
    if not drop_pivot:
      return adv_PG
    # Keep order: sort the pivot to the end with a stable argsort, then cut.
    order_PG = jnp.argsort(
        is_pivot_PG.astype(jnp.int32), axis=-1, stable=True
    )
    kept_PG = jnp.take_along_axis(adv_PG, order_PG, axis=-1)
    return kept_PG[:, :-1]

  if drop_pivot:
    return base.stateless(fn)
  # The pivot leaves the loss and its normalisers.
  return base.declare(
      base.stateless(fn), loss_sample_mask=_from_rewards(functools.partial(
          mc_grpo_keep_mask, reward_weights=_hashable(reward_weights))))
