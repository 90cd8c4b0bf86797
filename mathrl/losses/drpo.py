"""DRPO: decoupled reward policy optimisation (arXiv:2510.04474).

A length-aware discriminative objective per prompt instead of advantages:
raise the length-normalised likelihood of correct responses (weighted toward
short ones) against a soft-max over the incorrect ones, with an adaptive
KL-constraint penalty as trust region. No PPO clip, no KL to a reference.
"""

import jax
import jax.numpy as jnp

from mathrl.losses import base
from mathrl.types import Needs


def _correctness_PG(inputs, num_seq, group_size):
  """The `correctness` extra as [P, G] (given so, or as [B] + group_size)."""
  value = inputs.extra.get("correctness")
  if value is None:
    raise ValueError(
        "drpo needs the extra input `correctness` ([P, G], or [B] with the"
        " hyperparameter group_size; rows of a prompt contiguous); pass it to"
        " the loss call."
    )
  value = jnp.asarray(value, jnp.float32)
  if value.ndim == 1 and group_size is not None:
    if value.shape[0] != num_seq or num_seq % group_size:
      raise ValueError(
          f"drpo: correctness has shape {value.shape}; with group_size="
          f"{group_size} it must be [B]={num_seq}, a multiple of group_size."
      )
    return value.reshape(num_seq // group_size, group_size)
  if value.ndim != 2 or value.shape[0] * value.shape[1] != num_seq:
    raise ValueError(
        f"drpo: correctness must be [P, G] with P·G = B = {num_seq} (or [B]"
        f" with group_size set), got shape {value.shape}."
    )
  return value


def _masked_logsumexp(x_PG, where_PG):
  """(log Σ_where exp x, softmax) per row; 0 for rows with no entry."""
  x_PG = jnp.where(where_PG, x_PG, 0.0)
  top_P = jnp.max(jnp.where(where_PG, x_PG, -jnp.inf), axis=-1, keepdims=True)
  top_P = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top_P), top_P, 0.0))
  e_PG = jnp.where(where_PG, jnp.exp(x_PG - top_P), 0.0)
  total_P = jnp.sum(e_PG, axis=-1, keepdims=True)
  safe_P = jnp.where(total_P > 0, total_P, 1.0)
  lse_P = jnp.where(total_P > 0, jnp.log(safe_P) + top_P, 0.0)[:, 0]
  return lse_P, e_PG / safe_P


def _drpo(
    inputs, *, tau, length_temp, beta, delta, max_length, group_size
):
  mask_BT, logp_BT = inputs.mask_BT, inputs.logp_BT
  num_seq, width = mask_BT.shape
  correct_PG = _correctness_PG(inputs, num_seq, group_size)
  shape_PG = correct_PG.shape
  len_B = jnp.sum(mask_BT, axis=-1)
  lengths = inputs.extra.get("lengths")
  if lengths is None:
    lengths_PG = len_B.reshape(shape_PG)
  elif jnp.size(lengths) == num_seq:
    lengths_PG = jnp.asarray(lengths, jnp.float32).reshape(shape_PG)
  else:
    raise ValueError(
        f"drpo: extra `lengths` must have B = {num_seq} entries ([B] or"
        f" [P, G]), got shape {jnp.shape(lengths)}."
    )
  t_max = width if max_length is None else max_length

  valid_PG = (len_B > 0).reshape(shape_PG)
  pos_PG = valid_PG & (correct_PG > 0.5)
  neg_PG = valid_PG & ~(correct_PG > 0.5)
  active_P = jnp.any(pos_PG, axis=-1) & jnp.any(neg_PG, axis=-1)
  num_prompts = jnp.maximum(jnp.sum(jnp.any(valid_PG, axis=-1)), 1)

  s_PG = base.seq_mean(logp_BT, mask_BT).reshape(shape_PG)
  # w_i = exp((1 − ℓ_i)/λ) normalised over the correct responses.
  _, pos_w_PG = _masked_logsumexp(
      (1.0 - lengths_PG / t_max) / length_temp, pos_PG
  )
  lse_P, neg_soft_PG = _masked_logsumexp(s_PG / tau, neg_PG)
  objective_P = jnp.sum(pos_w_PG * s_PG, axis=-1) - tau * lse_P
  objective_P = jnp.where(active_P, objective_P, 0.0)
  loss_j = -jnp.sum(objective_P) / num_prompts

  # Per-token form for `token_mean`: the gradient of loss_j through s_i is
  # g_i·∇s_i with constant g_i; the value is corrected to loss_j exactly.
  g_PG = jnp.where(active_P[:, None], neg_soft_PG - pos_w_PG, 0.0)
  g_B = jax.lax.stop_gradient(g_PG.reshape(-1) / num_prompts)
  linear_B = g_B * base.seq_mean(logp_BT, mask_BT)
  offset = jax.lax.stop_gradient(loss_j - jnp.sum(linear_B))
  num_tokens = jnp.maximum(jnp.sum(mask_BT), 1.0)
  j_BT = num_tokens * (
      g_B[:, None] * logp_BT / jnp.maximum(len_B, 1.0)[:, None]
      + offset / num_tokens
  )

  kl_old_BT = inputs.old_logp_BT - logp_BT
  kl_old = base.masked_mean(kl_old_BT, mask_BT)
  kl_coef = jax.lax.stop_gradient(jnp.maximum(beta * (kl_old - delta), 0.0))
  return j_BT + kl_coef * kl_old_BT, {
      "drpo_objective": jax.lax.stop_gradient(
          jnp.sum(objective_P) / jnp.maximum(jnp.sum(active_P), 1)
      ),
      "active_prompt_frac": jnp.sum(active_P) / num_prompts,
      "kl_old": kl_old,
      "kl_coef": kl_coef,
  }


def drpo(
    tau: float = 10.0,
    length_temp: float = 0.1,
    beta: float = 1e3,
    delta: float = 1e-4,
    max_length: int | None = None,
    group_size: int | None = None,
) -> base.PolicyLoss:
  """L = −(1/P) Σ_q J_q + sg(max(β(KL_old − δ), 0))·KL_old.

  DRPO (arXiv:2510.04474; Optimization-AI/DRPO `compute_policy_loss_drpo`).
  s_i = mean_t log π_θ (per response), ℓ_i = |o_i|/T_max,
  w_i = exp((1 − ℓ_i)/λ) over correct responses,
  J_q = Σ_pos w_i s_i / Σ_pos w_i − τ·log Σ_neg exp(s_j/τ) for prompts with
  ≥1 correct and ≥1 incorrect response (others contribute 0 but count in
  P, the number of prompts with a valid response), KL_old = mean_valid
  (log π_old − log π_θ). ∂J/∂s_i = w_i/Σw (pos), −softmax_j(s/τ) (neg).

  Extras: `correctness` [P, G] (1 correct / 0 not; rows of a prompt are
  contiguous, B = P·G), or [B] with `group_size`; optional `lengths` [B] or
  [P, G] in tokens (default: mask sums).
  Aggregate with `token_mean` over the same arrays: the per-token values are
  scaled so that it returns L exactly, with the exact gradient. The authors'
  code uses a surrogate whose VALUE is τ instead of the log-sum-exp (same
  gradient); mathrl reports the true objective (the paper's). They gather
  groups across data-parallel ranks: under jit on global arrays the same
  holds here.

  Args:
    tau: τ, temperature of the negatives' log-sum-exp (10).
    length_temp: λ, temperature of the length weights (0.1).
    beta: β of the adaptive KL-constraint penalty (1e3).
    delta: δ, the KL budget (1e-4).
    max_length: T_max for ℓ (None: the padded width T, the authors'
      `use_max_seq_len`).
    group_size: G, needed only when `correctness` is given as [B].

  Returns:
    A PolicyLoss; metrics add `drpo_objective`, `active_prompt_frac`,
    `kl_old`, `kl_coef`.
  """
  base.check_positive(
      "drpo",
      tau=tau,
      length_temp=length_temp,
      max_length=max_length,
      group_size=group_size,
  )
  if beta < 0 or delta < 0:
    raise ValueError(
        f"drpo: beta and delta must be >= 0, got {beta}, {delta}."
    )
  return base.make(
      "drpo",
      _drpo,
      needs=Needs(extras=("correctness",)),
      tau=tau,
      length_temp=length_temp,
      beta=beta,
      delta=delta,
      max_length=max_length,
      group_size=group_size,
  )
