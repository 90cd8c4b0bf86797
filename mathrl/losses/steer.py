"""STEER: token weights from the estimated entropy change (arXiv:2510.10150).

Each token's clipped PPO loss is multiplied by a constant weight in
[λ_min, λ_max] that decreases with Ω_t, the magnitude of the first-order
entropy change a policy-gradient step on that token would cause. Ω's min and
max run over the valid tokens of the arrays passed: in the authors' code one
micro-batch; under jit on global (sharded) arrays, the whole batch.
"""

import math

import jax
import jax.numpy as jnp

from mathrl.losses import base
from mathrl.types import Needs
from mathrl.losses import clipping


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


def _steer(
    inputs, *, clip_low, clip_high, dual_clip, lambda_min, lambda_max, linear
):
  entropy_BT = base.extra_BT(
      inputs, "entropy", "[B, T] entropy of the old (rollout) policy"
  )
  w_BT = steer_weights(
      inputs.logp_BT,
      inputs.old_logp_BT,
      inputs.adv_BT,
      entropy_BT,
      inputs.mask_BT,
      lambda_min=lambda_min,
      lambda_max=lambda_max,
      linear=linear,
  )
  res = clipping.clipped_surrogate(
      jnp.exp(base.log_ratio(inputs)),
      inputs.adv_BT,
      clip_low=clip_low,
      clip_high=clip_high,
      dual_clip=dual_clip,
  )
  dual_BT = None if dual_clip is None else res.dual_BT
  metrics = clipping.clip_metrics(
      res.low_BT, res.high_BT, inputs.mask_BT, dual_BT
  )
  metrics["weight_mean"] = base.masked_mean(w_BT, inputs.mask_BT)
  return w_BT * res.loss_BT, metrics


def steer(
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 10.0,
    lambda_min: float = 0.8,
    lambda_max: float = 1.2,
    linear: bool = False,
) -> base.PolicyLoss:
  """ℓ_t = sg(w_t)·ℓ^PPO_t with w_t = `steer_weights` (∈ [λmin, λmax]).

  STEER (arXiv:2510.10150): down-weights tokens whose estimated first-order
  entropy change Ω_t is large, keeping the per-step entropy change moderate.
  Needs extra `entropy` [B, T], the OLD policy's entropy stored with
  `old_logp`. Defaults: the authors' `run_exp.sh` (exp map, λmin = 0.8) with
  clip 0.2/0.28 and dual-clip 10; `run_linear.sh` is linear=True with
  [0.8, 1.2] (λmax is unused by the exp map). The actor code's fallback when
  a config omits them is linear with [0.95, 1.05]. min/max of Ω run over the
  arrays passed (see the module docstring).

  Args:
    clip_low: ε_low (0.2).
    clip_high: ε_high (0.28).
    dual_clip: c (10.0) or None.
    lambda_min: λ_min (0.8), in (0, 1] for the exp map.
    lambda_max: λ_max (1.2), used by the linear map.
    linear: linear (True) or exponential (False, default) map.

  Returns:
    A PolicyLoss; metrics add `weight_mean` and clip fractions.
  """
  clipping.check_clip("steer", clip_low, clip_high, dual_clip)
  if not 0.0 < lambda_min <= lambda_max:
    raise ValueError(
        f"steer: need 0 < lambda_min <= lambda_max, got {lambda_min},"
        f" {lambda_max}."
    )
  if not linear and lambda_min > 1.0:
    raise ValueError(
        f"steer: the exp map needs lambda_min <= 1, got {lambda_min}."
    )
  return base.make(
      "steer",
      _steer,
      needs=Needs(entropy="behaviour"),
      clip_low=clip_low,
      clip_high=clip_high,
      dual_clip=dual_clip,
      lambda_min=lambda_min,
      lambda_max=lambda_max,
      linear=linear,
  )
