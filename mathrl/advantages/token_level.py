"""Token-level sign correction of a sequence advantage: FSPO.

Factuality-aware Step-wise Policy Optimization (arXiv 2505.24630),
github.com/turboLJY/FSPO. The verifier that
judges each reasoning step against evidence, and the alignment of steps to
tokens, are data-pipeline work; this transform takes their per-token
verdicts and flips the sign of the GRPO advantage token by token.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group


def flip_by_verdict(adv_PG: jax.Array, verdicts_PGT: jax.Array) -> jax.Array:
  """A_pgt = A_pg if v_pgt·A_pg ≥ 0 else −A_pg (arXiv 2505.24630, eq. 11).

  Equivalently sign(v)·|A| where v ≠ 0 and A where v = 0: supported steps
  are reinforced, unsupported ones penalised, whatever the outcome.

  Args:
    adv_PG: [P, G] sequence advantages.
    verdicts_PGT: [P, G, T] per-token step verdicts (+1, −1 or 0).

  Returns:
    [P, G, T] float32 token advantages.
  """
  adv_PGT = jnp.broadcast_to(adv_PG[..., None], verdicts_PGT.shape)
  return jnp.where(jnp.sign(verdicts_PGT) * adv_PGT < 0, -adv_PGT, adv_PGT)


def fspo(
    eps: float = 1e-6,
    outside_span_value: float = 0.0,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pgt = sign(v_pgt)·|A_pg| (v ≠ 0), A_pg (v = 0), FSPO (2505.24630).

  A is verl's GRPO advantage of the answer reward (eps 1e-6), v the extra
  `step_verdicts` [P, G, T]: +1 on the tokens of a step the verifier
  supports, −1 on an unsupported step, 0 elsewhere (rows without
  verification, e.g. math data, are all 0 and keep A on every token).

  Code vs paper: the authors' code writes the verdicts from response token 0
  and leaves every later token at +1, so for a wrong answer the answer
  tokens get +|A|. The default (the paper's intent) leaves tokens outside
  the verified span at their sequence advantage (verdict 0);
  `outside_span_value=1.0` reproduces the code: in every row with at least
  one non-zero verdict, the 0 verdicts become +1. The paper's {−1, 0, +1}
  reward mixing is not in the code either; add it to the rewards upstream.

  Example: rewards [1, 0, 0.5, 0] → A = [1.305580, −0.783348,
  0.261116, −0.783348]; verdicts [+1, +1, +1, −1, −1, +1] on response 1
  give [0.783348] * 3 + [−0.783348] * 2 + [0.783348].

  Args:
    eps: added to the group std of the GRPO advantage.
    outside_span_value: the verdict given to 0-verdict tokens of verified
      rows (0: paper, 1: the code).
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] with extra
    `step_verdicts` → [P, G, T] (times `token_mask` when given).
  """

  def fn(rewards, *, mask, **extra):
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    verdicts = extra.get("step_verdicts")
    if verdicts is None:
      raise ValueError(
          "fspo needs the extra input `step_verdicts` [P, G, T] (+1 / −1 per"
          " token of a supported / unsupported step, 0 elsewhere): call"
          " tx.update(rewards, state, mask=mask, step_verdicts=...)."
      )
    verdicts_PGT = jnp.asarray(verdicts, jnp.float32)
    if verdicts_PGT.ndim != 3 or verdicts_PGT.shape[:2] != rewards_PG.shape:
      raise ValueError(
          f"step_verdicts has shape {verdicts_PGT.shape}, expected"
          f" {rewards_PG.shape} + (T,)."
      )
    token_mask = extra.get("token_mask")
    if token_mask is None:
      token_mask_PGT = jnp.ones_like(verdicts_PGT)
    else:
      token_mask_PGT = group.require_token_mask(
          extra, rewards_PG.shape, "fspo"
      )
    verdicts_PGT = jnp.where(token_mask_PGT > 0, verdicts_PGT, 0.0)
    if outside_span_value != 0:
      verified_PG1 = jnp.any(verdicts_PGT != 0, axis=-1, keepdims=True)
      verdicts_PGT = jnp.where(
          verified_PG1 & (verdicts_PGT == 0), outside_span_value, verdicts_PGT
      )
    centred_PG = rewards_PG - group.group_mean(rewards_PG, mask)
    adv_PG = centred_PG / (group.group_std(rewards_PG, mask) + eps)
    adv_PG = jnp.where(mask > 0, adv_PG, 0.0)
    return flip_by_verdict(adv_PG, verdicts_PGT) * token_mask_PGT

  # Step verdicts come from a process verifier, not from the rollout.
  return base.declare(base.stateless(fn), extras=("step_verdicts",))
