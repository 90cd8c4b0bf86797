"""Losses that select tokens: 80/20 forking tokens, Clip-Cov and KL-Cov.

Selection scope: every batch-wide statistic here (top-k, covariance means,
the random pick) is computed over the valid tokens of the arrays passed to
the loss, never over padding. In the authors' code that is one micro-batch.
Under data-parallel sharding, when the loss runs inside `jax.jit` on global
(sharded) arrays, the statistics are global over the whole batch; to get
the authors' per-micro-batch scope, call the loss on each micro-batch.
"""

import jax
import jax.numpy as jnp

from mathrl.losses import base
from mathrl.types import Needs
from mathrl.losses import clipping


def descending_rank(score_BT: jax.Array, valid_BT: jax.Array) -> jax.Array:
  """[B, T] int32 rank of each valid entry by descending score (0 = largest).

  Ties are broken by flat index (stable sort); invalid entries rank after all
  valid ones.

  Args:
    score_BT: scores.
    valid_BT: bool mask of entries that take part.

  Returns:
    Ranks, same shape as score_BT.
  """
  flat = jnp.where(valid_BT, score_BT, -jnp.inf).reshape(-1)
  order = jnp.argsort(-flat, stable=True)
  ranks = jnp.zeros(flat.shape, jnp.int32).at[order].set(
      jnp.arange(flat.size, dtype=jnp.int32)
  )
  return ranks.reshape(score_BT.shape)


def top_fraction_mask(
    score_BT: jax.Array, mask_BT: jax.Array, fraction: float
) -> jax.Array:
  """Top-k valid entries by score, k = max(1, ⌊N·ρ + 0.9999⌋), N = #valid.

  The count rule is the 80/20 authors' (`int(N·ρ + 0.9999)`, i.e. ceil up to
  1e-4); ties are broken by position.

  Args:
    score_BT: scores (e.g. entropies).
    mask_BT: 0/1 validity.
    fraction: ρ in (0, 1].

  Returns:
    bool [B, T] selection (empty when there are no valid entries).
  """
  valid_BT = mask_BT > 0
  num_valid = jnp.sum(valid_BT)
  k = jnp.maximum(jnp.floor(num_valid * fraction + 0.9999), 1.0)
  rank_BT = descending_rank(jax.lax.stop_gradient(score_BT), valid_BT)
  return valid_BT & (rank_BT < k)


def token_covariance(
    adv_BT: jax.Array, logp_BT: jax.Array, mask_BT: jax.Array
) -> jax.Array:
  """cov_t = (A_t − mean_valid A)·(log π_t − mean_valid log π), stop-gradient.

  The token-level covariance of "The Entropy Mechanism of RL for Reasoning
  LMs" (arXiv:2505.22617), means over the valid tokens passed in.

  Args:
    adv_BT: advantages.
    logp_BT: current-policy log-probs (detached here).
    mask_BT: 0/1 validity.

  Returns:
    [B, T] covariance terms (arbitrary on padding).
  """
  logp_BT = jax.lax.stop_gradient(logp_BT)
  adv_BT = jax.lax.stop_gradient(adv_BT)
  return (adv_BT - base.masked_mean(adv_BT, mask_BT)) * (
      logp_BT - base.masked_mean(logp_BT, mask_BT)
  )


def _check_fraction(name: str, key: str, value: float) -> None:
  if not 0.0 < value <= 1.0:
    raise ValueError(f"{name}: {key} must be in (0, 1], got {value}.")


def _forking_tokens(
    inputs, *, top_fraction, clip_low, clip_high, dual_clip, normalize_by_kept
):
  entropy_BT = base.extra_BT(
      inputs, "entropy", "[B, T] entropy of the current policy"
  )
  mask_BT = inputs.mask_BT
  kept_BT = top_fraction_mask(entropy_BT, mask_BT, top_fraction)
  ratio_BT = jnp.exp(base.log_ratio(inputs))
  res = clipping.clipped_surrogate(
      ratio_BT,
      inputs.adv_BT,
      clip_low=clip_low,
      clip_high=clip_high,
      dual_clip=dual_clip,
  )
  num_valid = jnp.sum(mask_BT)
  num_kept = jnp.sum(kept_BT)
  loss_BT = jnp.where(kept_BT, res.loss_BT, 0.0)
  if normalize_by_kept:
    loss_BT = loss_BT * (num_valid / jnp.maximum(num_kept, 1.0))
  metrics = clipping.clip_metrics(res.low_BT, res.high_BT, kept_BT)
  metrics["kept_frac"] = num_kept / jnp.maximum(num_valid, 1.0)
  return loss_BT, metrics


def forking_tokens(
    top_fraction: float = 0.2,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 10.0,
    normalize_by_kept: bool = True,
) -> base.PolicyLoss:
  """ℓ_t = 1[H_t in the top-ρ of valid entropies]·ℓ^PPO_t (× N/k).

  "Beyond the 80/20 Rule" (arXiv:2506.01939): policy gradient only on the
  high-entropy "forking" tokens, k = max(1, ⌈ρ·N⌉) of the N valid tokens by
  the current policy's entropy (extra `entropy` [B, T]); everything else is
  DAPO (clip 0.2/0.28, dual-clip 10). The authors' verl code divides by the
  kept count (token-mean over kept tokens): with `normalize_by_kept` (default)
  the kept losses are scaled by N/k so that `token_mean(per_token, mask)` is
  that value. `normalize_by_kept=False` is TRL's `top_entropy_quantile` (mask
  only, denominator unchanged). Selection is over the arrays passed (see the
  module docstring for the sharding scope).

  Args:
    top_fraction: ρ (0.2).
    clip_low: ε_low (0.2).
    clip_high: ε_high (0.28).
    dual_clip: c (10.0) or None.
    normalize_by_kept: rescale so token_mean averages over kept tokens.

  Returns:
    A PolicyLoss; metrics add `kept_frac` and clip fractions over kept tokens.
  """
  _check_fraction("forking_tokens", "top_fraction", top_fraction)
  clipping.check_clip("forking_tokens", clip_low, clip_high, dual_clip)
  # The paper selects by the entropy of the policy being optimised.
  return base.make(
      "forking_tokens",
      _forking_tokens,
      needs=Needs(entropy="current"),
      top_fraction=top_fraction,
      clip_low=clip_low,
      clip_high=clip_high,
      dual_clip=dual_clip,
      normalize_by_kept=normalize_by_kept,
  )


def _clip_cov(
    inputs, *, clip_cov_ratio, clip_cov_lb, clip_cov_ub, clip_low, clip_high
):
  rng = inputs.extra.get("rng")
  if rng is None:
    raise ValueError(
        "clip_cov needs the extra input `rng` (a jax.random key for its"
        " random pick of covariance tokens); pass rng=key to the loss call."
    )
  mask_BT = inputs.mask_BT
  valid_BT = mask_BT > 0
  ratio_BT = jnp.exp(base.log_ratio(inputs))
  res = clipping.clipped_surrogate(
      ratio_BT, inputs.adv_BT, clip_low=clip_low, clip_high=clip_high
  )
  cov_BT = token_covariance(inputs.adv_BT, inputs.logp_BT, mask_BT)
  candidate_BT = (
      valid_BT
      & ~(res.low_BT | res.high_BT)
      & (cov_BT > clip_cov_lb)
      & (cov_BT < clip_cov_ub)
  )
  num_valid = jnp.sum(mask_BT)
  num_pick = jnp.maximum(jnp.floor(clip_cov_ratio * num_valid), 1.0)
  # A uniformly random subset of size min(n, #candidates): rank by noise.
  noise_BT = jax.random.uniform(rng, mask_BT.shape)
  picked_BT = candidate_BT & (
      descending_rank(noise_BT, candidate_BT) < num_pick
  )
  loss_BT = jnp.where(picked_BT, 0.0, res.loss_BT)
  metrics = clipping.clip_metrics(res.low_BT, res.high_BT, mask_BT)
  metrics["cov_clip_frac"] = base.masked_mean(picked_BT, mask_BT)
  metrics["kept_frac"] = 1.0 - metrics["cov_clip_frac"]
  return loss_BT, metrics


def clip_cov(
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    clip_low: float = 1.0,
    clip_high: float = 1.0,
) -> base.PolicyLoss:
  """ℓ_t = 0 for n random tokens with ω_lb < cov_t < ω_ub, else ℓ^PPO_t.

  Clip-Cov (arXiv:2505.22617; verl `compute_policy_loss_clip_cov`): among
  valid tokens that PPO did not clip and whose covariance
  cov_t = (A_t − Ā)(log π_t − mean log π) lies in (ω_lb, ω_ub), pick
  n = max(⌊r_c·N⌋, 1) uniformly at random (extra `rng`, a PRNG key) and drop
  their loss (no gradient). No dual clip. The authors' recipe sets
  clip_low = clip_high = 1 (PPO range [0, 2]); verl's yaml would give 0.2.
  Selection scope: see the module docstring.

  Args:
    clip_cov_ratio: r_c, fraction of valid tokens to detach (2e-4).
    clip_cov_lb: ω_lb (1.0).
    clip_cov_ub: ω_ub (5.0).
    clip_low: PPO ε_low (1.0).
    clip_high: PPO ε_high (1.0).

  Returns:
    A PolicyLoss; metrics add `cov_clip_frac`, `kept_frac`, clip fractions.
  """
  _check_fraction("clip_cov", "clip_cov_ratio", clip_cov_ratio)
  clipping.check_clip("clip_cov", clip_low, clip_high)
  if not clip_cov_lb < clip_cov_ub:
    raise ValueError(
        f"clip_cov: need clip_cov_lb < clip_cov_ub, got {clip_cov_lb} and"
        f" {clip_cov_ub}."
    )
  return base.make(
      "clip_cov",
      _clip_cov,
      clip_cov_ratio=clip_cov_ratio,
      clip_cov_lb=clip_cov_lb,
      clip_cov_ub=clip_cov_ub,
      clip_low=clip_low,
      clip_high=clip_high,
  )


def _kl_cov(inputs, *, kl_cov_ratio, ppo_kl_coef):
  mask_BT = inputs.mask_BT
  valid_BT = mask_BT > 0
  d_BT = base.log_ratio(inputs)
  loss_BT = -inputs.adv_BT * jnp.exp(d_BT)
  cov_BT = token_covariance(inputs.adv_BT, inputs.logp_BT, mask_BT)
  num_pick = jnp.maximum(jnp.floor(jnp.sum(mask_BT) * kl_cov_ratio), 1.0)
  picked_BT = valid_BT & (descending_rank(cov_BT, valid_BT) < num_pick)
  # |d| with the gradient sign(d), 0 at d = 0 (PyTorch's abs, as in the
  # authors' code): at ratio 1 the penalty does not push the token.
  abs_d_BT = d_BT * jax.lax.stop_gradient(jnp.sign(d_BT))
  loss_BT = loss_BT + jnp.where(picked_BT, ppo_kl_coef * abs_d_BT, 0.0)
  picked_frac = base.masked_mean(picked_BT, mask_BT)
  return loss_BT, {
      "selected_frac": picked_frac,
      "kept_frac": 1.0 - picked_frac,
      "abs_kl": base.masked_mean(jnp.abs(d_BT), mask_BT),
  }


def kl_cov(
    kl_cov_ratio: float = 2e-3, ppo_kl_coef: float = 1.0
) -> base.PolicyLoss:
  """ℓ_t = −A·r_t + β·|log π_θ − log π_old| on the top-k cov tokens, else −A·r.

  KL-Cov (arXiv:2505.22617; verl `compute_policy_loss_kl_cov`): unclipped
  surrogate everywhere, plus an |log-ratio| penalty on the k = max(1,
  ⌊N·r_k⌋) valid tokens with the largest covariance (ties by position).
  ∂|d|/∂d = sign(d), which is 0 at d = 0 as in PyTorch: on-policy (ratio 1)
  the penalty leaves the gradient −A·∂r unchanged.
  `kl_cov_ratio` is a fraction (verl); the authors' `k_percent` is a
  percentage (0.2 there = 2e-3 here, their 7B value; 2e-4 for 32B). β = 1 is
  the authors' value (verl's yaml has 0.1). Selection scope: see the module
  docstring. `kept_frac` = tokens left with the plain surrogate.

  Args:
    kl_cov_ratio: r_k, fraction of valid tokens penalised (2e-3).
    ppo_kl_coef: β (1.0).

  Returns:
    A PolicyLoss; metrics add `selected_frac`, `kept_frac`, `abs_kl`.
  """
  _check_fraction("kl_cov", "kl_cov_ratio", kl_cov_ratio)
  return base.make(
      "kl_cov", _kl_cov, kl_cov_ratio=kl_cov_ratio, ppo_kl_coef=ppo_kl_coef
  )

