"""CAPO: a two-phase curriculum on the sign of the advantage (arXiv 2512.02580).

Phase 1 ("imitation", training progress < `switch_progress`) learns only
from positive-advantage samples; phase 2 ("discrimination") from all of
them. The paper wraps any estimator (GRPO, PPO, RLOO, REINFORCE++); a hard
switch at about 20-30 % of training worked best, gradual mixing worse.
Paper-only: no author code was found.

Two ways to drop a sample exist and the paper summaries do not say which it
uses: zero its advantage (it stays in a token-mean denominator) or remove it
from the loss mask. The transforms here zero the advantage (an advantage
transform cannot change the loss mask); `capo_sample_mask` gives the mask
for the loss-mask reading, for a train step that wants it. The state is a
checkpointed update count, used for the phase when the trainer passes no
`progress` (with `switch_step`).
"""

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import outcome


def _phase_one(progress, switch_progress: float) -> jax.Array:
  progress = jnp.asarray(progress, jnp.float32)
  if progress.shape:
    raise ValueError(
        f"progress must be a scalar in [0, 1], got shape {progress.shape}."
    )
  return progress < switch_progress


def capo_sample_mask(
    adv_PG: jax.Array,
    mask_PG: jax.Array,
    progress: jax.Array,
    switch_progress: float = 0.25,
) -> jax.Array:
  """m'_pg = m_pg·1[A_pg > 0] if progress < s else m_pg (arXiv 2512.02580).

  The loss-mask reading of CAPO's phase 1: samples with A ≤ 0 leave the
  loss (and its token-mean denominator) entirely.

  Args:
    adv_PG: [P, G] advantages of the wrapped estimator.
    mask_PG: [P, G] float 0/1 validity mask.
    progress: scalar training progress in [0, 1].
    switch_progress: s, the progress at which phase 2 starts.

  Returns:
    [P, G] float32 mask.
  """
  keep_PG = jnp.where(
      _phase_one(progress, switch_progress), adv_PG > 0, True
  )
  return jnp.asarray(mask_PG, jnp.float32) * keep_PG


class CAPOState(NamedTuple):
  """State of `capo` / `keep_positive_until`, checkpointed by the trainer."""

  count: jax.Array
  """int32[] number of updates seen that had a valid sample."""


def _in_phase_one(state: CAPOState, extra: dict, switch_progress: float,
                  switch_step: Optional[int]) -> jax.Array:
  """Phase 1 from the `progress` extra, else from the update count."""
  progress = extra.get("progress")
  if progress is not None:
    return _phase_one(progress, switch_progress)
  if switch_step is None:
    raise ValueError(
        "capo needs the extra input `progress` (training progress in [0, 1]):"
        " call tx.update(rewards, state, mask=mask, progress=...), or build"
        " the transform with switch_step=N to count updates instead."
    )
  return state.count < switch_step


def keep_positive_until(
    switch_progress: float = 0.25,
    switch_step: Optional[int] = None,
) -> base.AdvantageTransform:
  """A ← A·1[A > 0] while progress < s, else A (CAPO, arXiv 2512.02580).

  The CAPO gate as a building block to chain after any estimator, e.g.
  `chain(rloo(), keep_positive_until(0.25))`. Works on [P, G] and
  token-level [P, G, T] advantages. The phase comes from the extra
  `progress` (a scalar in [0, 1]); without it, from the number of updates
  so far compared with `switch_step` (kept in the checkpointed state).

  Args:
    switch_progress: s, the training progress at which phase 2 starts.
    switch_step: used only when no `progress` is passed: phase 2 starts at
      this update count. None requires `progress`.

  Returns:
    An AdvantageTransform on advantages, with CAPOState.
  """

  def init_fn(values) -> CAPOState:
    del values
    return CAPOState(count=jnp.zeros((), jnp.int32))

  def update_fn(adv, state: CAPOState, *, mask=None, **extra):
    mask = base.default_mask(adv, mask)
    adv = jnp.asarray(adv, jnp.float32)
    phase_one = _in_phase_one(state, extra, switch_progress, switch_step)
    gated = jnp.where(phase_one, jnp.maximum(adv, 0.0), adv)
    valid = jnp.reshape(mask, mask.shape + (1,) * (adv.ndim - 2))
    any_valid = (jnp.sum(mask) > 0).astype(jnp.int32)
    new_state = CAPOState(count=state.count + any_valid)
    return jnp.where(valid > 0, gated, 0.0), new_state

  return base.AdvantageTransform(init_fn, update_fn,
                                 base.Needs(shaping="advantages"))


def capo(
    switch_progress: float = 0.25,
    eps: float = 1e-6,
    scale_by_std: bool = True,
    reward_weights: Optional[Sequence[float]] = None,
    switch_step: Optional[int] = None,
    loss_mask: bool = False,
) -> base.AdvantageTransform:
  """A = GRPO(r)·1[A > 0] while progress < s, else GRPO(r); arXiv 2512.02580.

  CAPO (Curriculum Advantage Policy Optimization) on the GRPO z-score (or
  the Dr. GRPO centring with `scale_by_std=False`); for another base
  estimator chain it with `keep_positive_until`. The phase comes from the
  extra `progress` (a scalar in [0, 1], e.g. step / total_steps), or, when
  none is passed and `switch_step` is set, from the update count in the
  state.

  Example: phase 1, A = [1.5, −0.5, −0.5, −0.5] → [1.5, 0, 0, 0]; phase 2
  leaves all four.

  Args:
    switch_progress: s, when phase 2 starts (paper: 20-30 % of training
      worked best; 0.25 here, unverified against author code).
    eps: added to the group std.
    scale_by_std: GRPO (True) or Dr. GRPO (False) base advantage.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.
    switch_step: the update count at which phase 2 starts when no
      `progress` is passed; None requires `progress`.
    loss_mask: also declare `capo_sample_mask` as the loss sample mask, so
      phase-1 samples with A ≤ 0 leave the loss and its token-mean
      denominator (the paper's loss-mask reading) instead of counting
      there with advantage 0.

  Returns:
    An AdvantageTransform with CAPOState: rewards [P, G] or [P, G, K] →
    [P, G].
  """
  gate = keep_positive_until(switch_progress, switch_step)

  def update_fn(rewards, state: CAPOState, *, mask=None, **extra):
    mask = base.default_mask(rewards, mask)
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    adv_PG = outcome.group_zscore(
        rewards_PG, mask, eps=eps, scale_by_std=scale_by_std
    )
    return gate.update(adv_PG, state, mask=mask, **extra)

  tx = base.AdvantageTransform(gate.init, update_fn)
  if not loss_mask:
    return tx
  # The loss-mask reading: phase-1 samples with A <= 0 leave the loss and
  # its normalisers instead of entering it with advantage 0.
  return base.declare(tx, loss_sample_mask=lambda rewards, mask, *,
                      advantages, progress: capo_sample_mask(
                          advantages, mask, progress, switch_progress))
