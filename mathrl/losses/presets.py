"""Token-weighting methods on their papers' surrogates, as policy losses.

`mathrl.losses.steer(...)` is `weighted(ppo_clip(...),
token_weighting.steer(...))` with the STEER authors' settings, and so on
for 80/20 forking tokens, Clip-Cov and KL-Cov. A config reaches the same
loss with `rl.loss="ppo_clip"` and `rl.token_weighting="steer"`, and any
other surrogate with another `rl.loss`.
"""

from mathrl.losses import base
from mathrl.losses import clipping
from mathrl.losses import surrogates
from mathrl.losses import token_weighting as tw


def _ppo_clip(name, clip_low, clip_high, dual_clip=None):
  """`surrogates.ppo_clip`, a bad clip reported under the preset's `name`."""
  clipping.check_clip(name, clip_low, clip_high, dual_clip)
  return surrogates.ppo_clip(clip_low, clip_high, dual_clip)


def forking_tokens(
    top_fraction: float = 0.2,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 10.0,
    normalize_by_kept: bool = True,
) -> base.PolicyLoss:
  """ℓ_t = 1[H_t in the top-ρ of valid entropies]·ℓ^PPO_t (× N/k).

  "Beyond the 80/20 Rule" (arXiv:2506.01939): `token_weighting.
  forking_tokens` on DAPO's clipped surrogate (clip 0.2/0.28, dual-clip
  10), selected by the current policy's entropy (extra `entropy` [B, T]).

  Args:
    top_fraction: ρ (0.2).
    clip_low: ε_low (0.2).
    clip_high: ε_high (0.28).
    dual_clip: c (10.0) or None.
    normalize_by_kept: rescale so token_mean averages over kept tokens.

  Returns:
    A PolicyLoss; metrics add `kept_frac` and the clip fractions.
  """
  return tw.weighted(
      _ppo_clip("forking_tokens", clip_low, clip_high, dual_clip),
      tw.forking_tokens(top_fraction, normalize_by_kept),
      name="forking_tokens")


def clip_cov(
    clip_cov_ratio: float = 2e-4,
    clip_cov_lb: float = 1.0,
    clip_cov_ub: float = 5.0,
    clip_low: float = 1.0,
    clip_high: float = 1.0,
) -> base.PolicyLoss:
  """ℓ_t = 0 for n random tokens with ω_lb < cov_t < ω_ub, else ℓ^PPO_t.

  Clip-Cov (arXiv:2505.22617): `token_weighting.clip_cov` on PPO-clip
  without dual clip. The authors' recipe sets clip_low = clip_high = 1
  (PPO range [0, 2]); verl's yaml would give 0.2. Needs extra `rng`.

  Args:
    clip_cov_ratio: r_c, fraction of valid tokens to detach (2e-4).
    clip_cov_lb: ω_lb (1.0).
    clip_cov_ub: ω_ub (5.0).
    clip_low: PPO ε_low (1.0).
    clip_high: PPO ε_high (1.0).

  Returns:
    A PolicyLoss; metrics add `cov_clip_frac`, `kept_frac`, clip fractions.
  """
  return tw.weighted(
      _ppo_clip("clip_cov", clip_low, clip_high),
      tw.clip_cov(clip_cov_ratio, clip_cov_lb, clip_cov_ub), name="clip_cov")


def kl_cov(
    kl_cov_ratio: float = 2e-3, ppo_kl_coef: float = 1.0
) -> base.PolicyLoss:
  """ℓ_t = −A·r_t + β·|log π_θ − log π_old| on the top-k cov tokens, else −A·r.

  KL-Cov (arXiv:2505.22617): `token_weighting.kl_cov` on the unclipped
  surrogate `ppo_unclipped`, as the authors' code.

  Args:
    kl_cov_ratio: r_k, fraction of valid tokens penalised (2e-3).
    ppo_kl_coef: β (1.0).

  Returns:
    A PolicyLoss; metrics add `selected_frac`, `kept_frac`, `abs_kl`.
  """
  return tw.weighted(surrogates.ppo_unclipped(),
                     tw.kl_cov(kl_cov_ratio, ppo_kl_coef), name="kl_cov")


def steer(
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 10.0,
    lambda_min: float = 0.8,
    lambda_max: float = 1.2,
    linear: bool = False,
) -> base.PolicyLoss:
  """ℓ_t = sg(w_t)·ℓ^PPO_t with w_t = `steer_weights` (∈ [λmin, λmax]).

  STEER (arXiv:2510.10150): `token_weighting.steer` on the authors'
  dual-clip PPO (`run_exp.sh`: clip 0.2/0.28, dual clip 10, exp map,
  λmin 0.8). Needs extra `entropy` [B, T] of the OLD policy.

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
  return tw.weighted(
      _ppo_clip("steer", clip_low, clip_high, dual_clip),
      tw.steer(lambda_min, lambda_max, linear), name="steer")
