"""Per-token KL estimators and the entropy bonus.

KL estimators are called `(logp_BT, ref_logp_BT) -> [B, T]` and estimate
KL(π_θ ‖ π_ref) from tokens sampled from π_θ, with d = log π_θ − log π_ref
(Schulman, "Approximating KL divergence",
http://joschu.net/blog/kl-approx.html).
Aggregate them with the policy loss's aggregation and add β·agg(kl) to the
loss (GRPO's "KL loss", arXiv:2402.03300), or subtract β·k1 from token
rewards (PPO's "KL in reward"). None of them masks: aggregate with the mask.
"""

import jax
import jax.numpy as jnp

LOG_RATIO_CLIP = 20.0


def _d(logp_BT, ref_logp_BT):
  return jnp.asarray(logp_BT, jnp.float32) - jnp.asarray(
      ref_logp_BT, jnp.float32
  )


def kl_k1(logp_BT: jax.Array, ref_logp_BT: jax.Array) -> jax.Array:
  """k1 = d = log π_θ − log π_ref (unbiased, high variance, can be < 0).

  Schulman 2020 (http://joschu.net/blog/kl-approx.html); verl `kl`/`k1`,
  tunix `kl` (tunix GRPO's default).

  Args:
    logp_BT: [B, T] log π_θ of the sampled tokens.
    ref_logp_BT: [B, T] log π_ref of the same tokens.

  Returns:
    [B, T] float32.
  """
  return _d(logp_BT, ref_logp_BT)


def kl_abs(logp_BT: jax.Array, ref_logp_BT: jax.Array) -> jax.Array:
  """|d| = |log π_θ − log π_ref| (verl `abs`).

  Args:
    logp_BT: [B, T] log π_θ.
    ref_logp_BT: [B, T] log π_ref.

  Returns:
    [B, T] float32.
  """
  return jnp.abs(_d(logp_BT, ref_logp_BT))


def kl_k2(logp_BT: jax.Array, ref_logp_BT: jax.Array) -> jax.Array:
  """k2 = ½·d² (biased, low variance; its gradient is the KL's gradient).

  Schulman 2020 (http://joschu.net/blog/kl-approx.html); verl `mse`/`k2`.

  Args:
    logp_BT: [B, T] log π_θ.
    ref_logp_BT: [B, T] log π_ref.

  Returns:
    [B, T] float32.
  """
  return 0.5 * jnp.square(_d(logp_BT, ref_logp_BT))


def kl_k3(
    logp_BT: jax.Array,
    ref_logp_BT: jax.Array,
    *,
    log_ratio_clip: float | None = LOG_RATIO_CLIP,
    value_clip: float | None = None,
) -> jax.Array:
  """k3 = e^{−d} + d − 1 = (π_ref/π_θ − 1) − log(π_ref/π_θ) ≥ 0.

  Schulman 2020 (http://joschu.net/blog/kl-approx.html), the GRPO paper's
  estimator (arXiv:2402.03300); verl `low_var_kl`/`k3`. Computed as
  expm1(−d) + d for accuracy near 0. verl clamps −d to [−20, 20] (kept here
  by default, so float32 stays finite) and the result to [−10, 10]
  (`value_clip=10.0` reproduces it); TRL clamps neither.

  Args:
    logp_BT: [B, T] log π_θ.
    ref_logp_BT: [B, T] log π_ref.
    log_ratio_clip: clamp of log(π_ref/π_θ) before exp, or None.
    value_clip: clamp of the result to [−v, v], or None.

  Returns:
    [B, T] float32.
  """
  neg_d_BT = -_d(logp_BT, ref_logp_BT)
  if log_ratio_clip is not None:
    neg_d_BT = jnp.clip(neg_d_BT, -log_ratio_clip, log_ratio_clip)
  k3_BT = jnp.expm1(neg_d_BT) - neg_d_BT
  if value_clip is not None:
    k3_BT = jnp.clip(k3_BT, -value_clip, value_clip)
  return k3_BT


def _straight_through_k2(value_BT, logp_BT, ref_logp_BT):
  k2_BT = kl_k2(logp_BT, ref_logp_BT)
  return k2_BT - jax.lax.stop_gradient(k2_BT) + jax.lax.stop_gradient(value_BT)


def kl_k1_plus(logp_BT: jax.Array, ref_logp_BT: jax.Array) -> jax.Array:
  """k1+ = k2 − sg(k2) + sg(k1): the value of k1, the gradient of k2.

  verl `k1+` (straight-through; the expected gradient of k1 is not the KL's
  gradient, k2's is: Schulman 2020, http://joschu.net/blog/kl-approx.html).

  Args:
    logp_BT: [B, T] log π_θ.
    ref_logp_BT: [B, T] log π_ref.

  Returns:
    [B, T] float32.
  """
  return _straight_through_k2(
      kl_k1(logp_BT, ref_logp_BT), logp_BT, ref_logp_BT
  )


def kl_k3_plus(logp_BT: jax.Array, ref_logp_BT: jax.Array) -> jax.Array:
  """k3+ = k2 − sg(k2) + sg(k3): the value of k3, the gradient of k2.

  verl `k3+` (straight-through; Schulman 2020,
  http://joschu.net/blog/kl-approx.html).

  Args:
    logp_BT: [B, T] log π_θ.
    ref_logp_BT: [B, T] log π_ref.

  Returns:
    [B, T] float32.
  """
  return _straight_through_k2(
      kl_k3(logp_BT, ref_logp_BT), logp_BT, ref_logp_BT
  )


def entropy_bonus(
    entropy_BT: jax.Array, mask_BT: jax.Array | None = None, *, coef: float
) -> jax.Array:
  """b_t = −c·H_t: the per-token entropy term of the loss (sign: a loss).

  The entropy bonus of PPO (arXiv:1707.06347) / verl `entropy_coeff`
  (default 0; NGRPO's script leaves 0.001 on): the loss gets −c·agg(H), so
  minimising it raises entropy. Add the result to the per-token policy loss
  before aggregating (or aggregate it with the same mode and add). H must
  carry the gradient (compute it from the logits inside the loss function).

  Args:
    entropy_BT: [B, T] entropy of π_θ's next-token distribution (nats).
    mask_BT: optional [B, T] 0/1; padding gets 0.
    coef: c ≥ 0.

  Returns:
    [B, T] float32.
  """
  if coef < 0:
    raise ValueError(
        f"entropy_bonus: coef must be >= 0 (the sign is built in), got {coef}."
    )
  bonus_BT = -coef * jnp.asarray(entropy_BT, jnp.float32)
  if mask_BT is not None:
    bonus_BT = jnp.where(jnp.asarray(mask_BT) > 0, bonus_BT, 0.0)
  return bonus_BT
