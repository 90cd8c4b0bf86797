"""Token weighting: per-token weights, masks and penalties on any surrogate.

A token weighting changes a surrogate's per-token loss ℓ_t (the output of
any `mathrl.losses` policy loss) into w_t·ℓ_t + c_t, with w_t and c_t
computed from the batch; `weighted(surrogate, weighting)` is the policy
loss that applies it:

  loss = losses.weighted(losses.cispo(), token_weighting.forking_tokens())
  per_token_BT, metrics = loss(logp=..., old_logp=..., advantages=...,
                               mask=..., entropy=entropy_BT)

From a config: `rl.loss` names the surrogate, `rl.token_weighting` the
weighting (`TOKEN_WEIGHTINGS`). The methods here:

  steer           w_t ∈ [λ_min, λ_max] from the entropy change (STEER)
  forking_tokens  w_t = 1 on the top-ρ entropy tokens, 0 elsewhere (80/20)
  clip_cov        w_t = 0 on a random pick of high-covariance tokens
  kl_cov          c_t = β·|log r_t| on the top covariance tokens

Selection scope: every batch-wide statistic (top-k, covariance means, the
random pick, STEER's min/max) is computed over the valid tokens of the
arrays passed, never over padding. In the authors' code that is one
micro-batch; the train step passes one micro-batch. Inside `jax.jit` on
global (sharded) arrays, the statistics are global over the whole batch.
"""

import dataclasses
import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from mathrl.losses import base
from mathrl.types import Needs


@dataclasses.dataclass(frozen=True)
class TokenWeighting:
  """A configured token weighting; frozen and hashable like a PolicyLoss.

  Attributes:
    name: the public factory name (`token_weighting.<name>`).
    fn: `fn(inputs: LossInputs, out: PerToken, **hparams) -> (loss_BT,
      metrics)`: the surrogate's per-token result, weighted.
    hparams: the hyperparameters as sorted (name, value) pairs.
    needs: what it needs from the train step (`types.Needs`).
  """

  name: str
  fn: Callable[..., tuple[jax.Array, base.Metrics]]
  hparams: tuple[tuple[str, Any], ...] = ()
  needs: Needs = Needs()

  def __call__(self, inputs: base.LossInputs,
               out: base.PerToken) -> tuple[jax.Array, base.Metrics]:
    return self.fn(inputs, out, **dict(self.hparams))


def _make(name: str, fn, *, needs: Needs = Needs(),
          **hparams: Any) -> TokenWeighting:
  return TokenWeighting(name, fn, tuple(sorted(hparams.items())), needs)


def _weighted(inputs, *, surrogate, weighting):
  out = surrogate.evaluate(inputs)
  loss_BT, metrics = weighting(inputs, out)
  return loss_BT, {**out.metrics, **metrics}, out.clipped_BT


def weighted(surrogate: base.PolicyLoss, weighting: TokenWeighting,
             name: Optional[str] = None) -> base.PolicyLoss:
  """ℓ'_t = w_t·ℓ_t + c_t: `surrogate`'s per-token loss under `weighting`.

  The result needs what both declare. A surrogate with a stateful
  regulariser (SIREN) keeps it, with the weighting applied to the
  regulariser's per-token surrogate too.

  Args:
    surrogate: any policy loss (`mathrl.losses.ppo_clip()`, ...).
    weighting: a `TokenWeighting`.
    name: the loss's name (default "weighting(surrogate)").

  Returns:
    A PolicyLoss; metrics are the surrogate's plus the weighting's.
  """
  if surrogate.fn is _weighted:
    raise ValueError(
        f"{surrogate.name} is already a token-weighted loss; give"
        f" {weighting.name} a plain surrogate (e.g. ppo_clip)")
  needs = surrogate.needs.merge(weighting.needs)
  reg = surrogate.needs.regulariser
  if reg is not None:
    needs = dataclasses.replace(needs, regulariser=dataclasses.replace(
        reg, surrogate=weighted(reg.surrogate, weighting)))
  return base.make(name or f"{weighting.name}({surrogate.name})", _weighted,
                   needs=needs, surrogate=surrogate, weighting=weighting)


# --- selection helpers ------------------------------------------------------


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


def column_uniform(rng: jax.Array, shape_BT: tuple[int, int]) -> jax.Array:
  """u_bt ~ U[0, 1) drawn from fold_in(rng, t): the same u_bt at any width T.

  Column t's draws depend on the key, t and B only, so a batch whose
  completion axis is cut to its longest completion (`mathrl.trim`) picks
  the same tokens as the padded batch.

  Args:
    rng: a jax.random key.
    shape_BT: (B, T).

  Returns:
    [B, T] float32 uniforms.
  """
  num_rows, width = shape_BT
  column = lambda t: jax.random.uniform(jax.random.fold_in(rng, t),
                                        (num_rows,))
  return jax.vmap(column, out_axes=1)(jnp.arange(width))


def check_fraction(name: str, key: str, value: float) -> None:
  if not 0.0 < value <= 1.0:
    raise ValueError(f"{name}: {key} must be in (0, 1], got {value}.")


# --- 80/20 forking tokens ---------------------------------------------------


def _forking_tokens(inputs, out, *, top_fraction, normalize_by_kept):
  entropy_BT = base.extra_BT(
      inputs, "entropy", "[B, T] entropy of the current policy"
  )
  mask_BT = inputs.mask_BT
  kept_BT = top_fraction_mask(entropy_BT, mask_BT, top_fraction)
  num_valid, num_kept = jnp.sum(mask_BT), jnp.sum(kept_BT)
  loss_BT = jnp.where(kept_BT, out.loss_BT, 0.0)
  if normalize_by_kept:
    loss_BT = loss_BT * (num_valid / jnp.maximum(num_kept, 1.0))
  return loss_BT, {"kept_frac": num_kept / jnp.maximum(num_valid, 1.0)}


def forking_tokens(top_fraction: float = 0.2,
                   normalize_by_kept: bool = True) -> TokenWeighting:
  """w_t = 1[H_t in the top-ρ of valid entropies] (× N/k).

  "Beyond the 80/20 Rule" (arXiv:2506.01939): policy gradient only on the
  high-entropy "forking" tokens, k = max(1, ⌊ρ·N + 0.9999⌋) of the N valid
  tokens by the current policy's entropy (extra `entropy` [B, T]; the train
  step passes the current micro-batch's). The authors' verl code divides by
  the kept count: with `normalize_by_kept` (default) the kept losses are
  scaled by N/k so that `token_mean(per_token, mask)` is the mean over kept
  tokens. `normalize_by_kept=False` is TRL's `top_entropy_quantile` (mask
  only, denominator unchanged).

  Args:
    top_fraction: ρ (0.2).
    normalize_by_kept: rescale so token_mean averages over kept tokens.

  Returns:
    A TokenWeighting; metrics add `kept_frac`.
  """
  check_fraction("forking_tokens", "top_fraction", top_fraction)
  return _make("forking_tokens", _forking_tokens,
               needs=Needs(entropy="current"), top_fraction=top_fraction,
               normalize_by_kept=normalize_by_kept)


# --- Clip-Cov ---------------------------------------------------------------


def _clip_cov(inputs, out, *, clip_cov_ratio, clip_cov_lb, clip_cov_ub):
  rng = inputs.extra.get("rng")
  if rng is None:
    raise ValueError(
        f"{inputs.name} needs the extra input `rng` (a jax.random key for"
        " Clip-Cov's random pick of covariance tokens); pass rng=key to the"
        " loss call.")
  mask_BT = inputs.mask_BT
  cov_BT = token_covariance(inputs.adv_BT, inputs.logp_BT, mask_BT)
  candidate_BT = ((mask_BT > 0) & ~out.clipped_BT & (cov_BT > clip_cov_lb)
                  & (cov_BT < clip_cov_ub))
  num_pick = jnp.maximum(jnp.floor(clip_cov_ratio * jnp.sum(mask_BT)), 1.0)
  # A uniformly random subset of size min(n, #candidates): rank by noise.
  noise_BT = column_uniform(rng, mask_BT.shape)
  picked_BT = candidate_BT & (
      descending_rank(noise_BT, candidate_BT) < num_pick)
  picked_frac = base.masked_mean(picked_BT, mask_BT)
  return jnp.where(picked_BT, 0.0, out.loss_BT), {
      "cov_clip_frac": picked_frac, "kept_frac": 1.0 - picked_frac}


def clip_cov(clip_cov_ratio: float = 2e-4, clip_cov_lb: float = 1.0,
             clip_cov_ub: float = 5.0) -> TokenWeighting:
  """w_t = 0 for n random unclipped tokens with ω_lb < cov_t < ω_ub, else 1.

  Clip-Cov (arXiv:2505.22617; verl `compute_policy_loss_clip_cov`): among
  valid tokens the surrogate did not clip and whose covariance
  cov_t = (A_t − Ā)(log π_t − mean log π) lies in (ω_lb, ω_ub), pick
  n = max(⌊r_c·N⌋, 1) uniformly at random (extra `rng`, a PRNG key) and
  drop their loss (no gradient).

  Args:
    clip_cov_ratio: r_c, fraction of valid tokens to detach (2e-4).
    clip_cov_lb: ω_lb (1.0).
    clip_cov_ub: ω_ub (5.0).

  Returns:
    A TokenWeighting; metrics add `cov_clip_frac` and `kept_frac`.
  """
  check_fraction("clip_cov", "clip_cov_ratio", clip_cov_ratio)
  if not clip_cov_lb < clip_cov_ub:
    raise ValueError(
        f"clip_cov: need clip_cov_lb < clip_cov_ub, got {clip_cov_lb} and"
        f" {clip_cov_ub}.")
  return _make("clip_cov", _clip_cov, clip_cov_ratio=clip_cov_ratio,
               clip_cov_lb=clip_cov_lb, clip_cov_ub=clip_cov_ub)


# --- KL-Cov -----------------------------------------------------------------


def _kl_cov(inputs, out, *, kl_cov_ratio, ppo_kl_coef):
  mask_BT = inputs.mask_BT
  valid_BT = mask_BT > 0
  d_BT = base.log_ratio(inputs)
  cov_BT = token_covariance(inputs.adv_BT, inputs.logp_BT, mask_BT)
  num_pick = jnp.maximum(jnp.floor(jnp.sum(mask_BT) * kl_cov_ratio), 1.0)
  picked_BT = valid_BT & (descending_rank(cov_BT, valid_BT) < num_pick)
  # |d| with the gradient sign(d), 0 at d = 0 (PyTorch's abs, as in the
  # authors' code): at ratio 1 the penalty does not push the token.
  abs_d_BT = d_BT * jax.lax.stop_gradient(jnp.sign(d_BT))
  loss_BT = out.loss_BT + jnp.where(picked_BT, ppo_kl_coef * abs_d_BT, 0.0)
  picked_frac = base.masked_mean(picked_BT, mask_BT)
  return loss_BT, {
      "selected_frac": picked_frac,
      "kept_frac": 1.0 - picked_frac,
      "abs_kl": base.masked_mean(jnp.abs(d_BT), mask_BT),
  }


def kl_cov(kl_cov_ratio: float = 2e-3,
           ppo_kl_coef: float = 1.0) -> TokenWeighting:
  """c_t = β·|log π_θ,t − log π_old,t| on the top-k covariance tokens.

  KL-Cov (arXiv:2505.22617; verl `compute_policy_loss_kl_cov`): an
  |log-ratio| penalty on the k = max(1, ⌊N·r_k⌋) valid tokens with the
  largest covariance cov_t = (A_t − Ā)(log π_t − mean log π) (ties by
  position). ∂|d|/∂d = sign(d), 0 at d = 0 as in PyTorch: on-policy
  (ratio 1) the penalty leaves the surrogate's gradient unchanged. The
  authors add it to the unclipped −A·r (`ppo_unclipped`). `kl_cov_ratio`
  is a fraction (verl); the authors' `k_percent` is a percentage (0.2 there
  = 2e-3 here, their 7B value; 2e-4 for 32B). β = 1 is the authors' value
  (verl's yaml has 0.1).

  Args:
    kl_cov_ratio: r_k, fraction of valid tokens penalised (2e-3).
    ppo_kl_coef: β (1.0).

  Returns:
    A TokenWeighting; metrics add `selected_frac`, `kept_frac` (tokens left
    without the penalty), `abs_kl`.
  """
  check_fraction("kl_cov", "kl_cov_ratio", kl_cov_ratio)
  return _make("kl_cov", _kl_cov, kl_cov_ratio=kl_cov_ratio,
               ppo_kl_coef=ppo_kl_coef)


# --- STEER ------------------------------------------------------------------


def steer_weights(
    logp_BT: jax.Array,
    old_logp_BT: jax.Array,
    adv_BT: jax.Array,
    entropy_BT: jax.Array,
    mask_BT: jax.Array,
    *,
    lambda_min: float,
    lambda_max: float,
    linear: bool,
) -> jax.Array:
  """w_t = map(Ω_t), Ω_t = |A_t/π_old,t · x_t(1 − x_t)(ln x_t + H_t)|, x=π_θ,t.

  STEER (arXiv:2510.10150; zz-haooo/STEER `compute_token_weights`), computed
  in float32 under stop-gradient. x = clip(π_θ, 1e-8, 1 − 1e-8),
  π_old = clip(π_old, 1e-8, 1), non-finite Ω → 0. Over the valid tokens:
  linear: w = clip(λmax − (Ω − Ωmin)(λmax − λmin)/(Ωmax − Ωmin), λmin, λmax)
  ((λmin + λmax)/2 when Ωmax = Ωmin); exp: k = −ln λmin / max(Ωmax, 0.02),
  w = clip(exp(−kΩ), λmin, 1) (λmax unused). Padding gets 0.

  Args:
    logp_BT: current-policy log-probs of the sampled tokens.
    old_logp_BT: old-policy log-probs.
    adv_BT: advantages.
    entropy_BT: old-policy entropy H_t.
    mask_BT: 0/1 validity.
    lambda_min: λ_min.
    lambda_max: λ_max.
    linear: linear map if True, exponential map if False.

  Returns:
    [B, T] float32 weights, constants for the gradient.
  """
  f32 = lambda x: jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
  valid_BT = mask_BT > 0
  x_BT = jnp.clip(jnp.exp(f32(logp_BT)), 1e-8, 1.0 - 1e-8)
  old_p_BT = jnp.clip(jnp.exp(f32(old_logp_BT)), 1e-8, 1.0)
  f_BT = x_BT * (1.0 - x_BT) * (jnp.log(x_BT) + f32(entropy_BT))
  omega_BT = jnp.abs(f32(adv_BT) / old_p_BT * f_BT)
  omega_BT = jnp.where(valid_BT & jnp.isfinite(omega_BT), omega_BT, 0.0)
  omega_min = jnp.min(jnp.where(valid_BT, omega_BT, jnp.inf))
  omega_max = jnp.max(jnp.where(valid_BT, omega_BT, -jnp.inf))
  if linear:
    span = omega_max - omega_min
    safe_span = jnp.where(span > 0, span, 1.0)
    w_BT = jnp.clip(
        lambda_max
        - (omega_BT - omega_min) * (lambda_max - lambda_min) / safe_span,
        lambda_min,
        lambda_max,
    )
    w_BT = jnp.where(span > 0, w_BT, 0.5 * (lambda_min + lambda_max))
  else:
    k = -math.log(lambda_min) / jnp.maximum(omega_max, 0.02)
    w_BT = jnp.clip(jnp.exp(-k * omega_BT), lambda_min, 1.0)
  return jnp.where(valid_BT, w_BT, 0.0)


def _steer(inputs, out, *, lambda_min, lambda_max, linear):
  entropy_BT = base.extra_BT(
      inputs, "entropy", "[B, T] entropy of the old (rollout) policy"
  )
  w_BT = steer_weights(
      inputs.logp_BT, inputs.old_logp_BT, inputs.adv_BT, entropy_BT,
      inputs.mask_BT, lambda_min=lambda_min, lambda_max=lambda_max,
      linear=linear)
  return w_BT * out.loss_BT, {
      "weight_mean": base.masked_mean(w_BT, inputs.mask_BT)}


def steer(lambda_min: float = 0.8, lambda_max: float = 1.2,
          linear: bool = False) -> TokenWeighting:
  """w_t = `steer_weights` ∈ [λmin, λmax], a constant in the gradient.

  STEER (arXiv:2510.10150): down-weights tokens whose estimated first-order
  entropy change Ω_t is large, keeping the per-step entropy change
  moderate. Needs extra `entropy` [B, T], the OLD (behaviour) policy's
  entropy. Defaults: the authors' `run_exp.sh` (exp map, λmin = 0.8);
  `run_linear.sh` is linear=True with [0.8, 1.2] (λmax is unused by the exp
  map). The actor code's fallback when a config omits them is linear with
  [0.95, 1.05].

  Args:
    lambda_min: λ_min (0.8), in (0, 1] for the exp map.
    lambda_max: λ_max (1.2), used by the linear map.
    linear: linear (True) or exponential (False, default) map.

  Returns:
    A TokenWeighting; metrics add `weight_mean`.
  """
  if not 0.0 < lambda_min <= lambda_max:
    raise ValueError(
        f"steer: need 0 < lambda_min <= lambda_max, got {lambda_min},"
        f" {lambda_max}.")
  if not linear and lambda_min > 1.0:
    raise ValueError(
        f"steer: the exp map needs lambda_min <= 1, got {lambda_min}.")
  return _make("steer", _steer, needs=Needs(entropy="behaviour"),
               lambda_min=lambda_min, lambda_max=lambda_max, linear=linear)
