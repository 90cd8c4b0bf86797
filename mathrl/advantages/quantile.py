"""QAE: the group K-quantile as the baseline (arXiv 2509.22611, ICLR 2026).

With binary rewards the quantile baseline is a two-regime gate: on hard
prompts (success rate <= 1 − K) only the rare successes are reinforced, on
easy prompts only the remaining failures are penalised, and most samples get
advantage 0. Authors: github.com/junkangwu/QAE (a one-line change of verl's
GRPO estimator; the std normalisation is kept).
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import stats


def masked_quantile(
    x_PG: jax.Array, mask_PG: jax.Array, q: float
) -> jax.Array:
  """b_p = x_(⌊h⌋) + (h − ⌊h⌋)(x_(⌊h⌋+1) − x_(⌊h⌋)), h = q·(n_p − 1).

  The "linear" quantile of numpy and torch.quantile over the valid entries
  of each row (x_(i) is the i-th smallest valid value, n_p their number);
  rows with no valid entry get 0.

  Args:
    x_PG: [P, G] values.
    mask_PG: [P, G] float 0/1 validity mask.
    q: the quantile level in [0, 1].

  Returns:
    [P, 1] float32 quantiles.
  """
  sorted_PG = jnp.sort(jnp.where(mask_PG > 0, x_PG, jnp.inf), axis=-1)
  count_P1 = jnp.sum(mask_PG, axis=-1, keepdims=True)
  position_P1 = q * jnp.maximum(count_P1 - 1.0, 0.0)
  lower_P1 = jnp.floor(position_P1)
  frac_P1 = position_P1 - lower_P1
  lower_idx_P1 = lower_P1.astype(jnp.int32)
  upper_idx_P1 = jnp.minimum(
      lower_idx_P1 + 1, jnp.maximum(count_P1 - 1.0, 0.0).astype(jnp.int32)
  )
  below_P1 = jnp.take_along_axis(sorted_PG, lower_idx_P1, axis=-1)
  above_P1 = jnp.take_along_axis(sorted_PG, upper_idx_P1, axis=-1)
  # frac is exactly 0 when the upper index is clamped, so above − below is
  # finite whenever it is used; the `where` keeps inf out of empty rows.
  value_P1 = below_P1 + frac_P1 * jnp.where(
      frac_P1 > 0, above_P1 - below_P1, 0.0
  )
  return jnp.where(count_P1 > 0, value_P1, 0.0)


def qae(
    quantile_k: float = 0.4,
    eps: float = 1e-6,
    scale_by_std: bool = True,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pg = (r_pg − quantile_K(r_p·)) / (std_p + eps), arXiv 2509.22611.

  QAE (Quantile Advantage Estimation): the GRPO group mean baseline is
  replaced by the group's K-quantile (linear interpolation, as
  torch.quantile); std (ddof=1, valid samples only) is unchanged. A K
  outside (0, 1) falls back to the mean baseline, as in the authors' patch.

  Example: rewards [[1, 0, 0, 0], [1, 1, 1, 0]], K=0.4 → baselines [0, 1]
  and advantages [[2, 0, 0, 0], [0, 0, 0, −2]] (up to eps).

  Args:
    quantile_k: K, the quantile level (authors' default 0.4).
    eps: added to the std (verl 1e-6).
    scale_by_std: divide by the group std (the authors' recipe keeps it).
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """

  def fn(rewards, *, mask, **extra):
    del extra
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    if 0.0 < quantile_k < 1.0:
      baseline_P1 = masked_quantile(rewards_PG, mask, quantile_k)
    else:
      baseline_P1 = stats.masked_mean(rewards_PG, mask)
    adv_PG = rewards_PG - baseline_P1
    if scale_by_std:
      adv_PG = adv_PG / (stats.masked_std(rewards_PG, mask, ddof=1) + eps)
    return jnp.where(mask > 0, adv_PG, 0.0)

  return base.stateless(fn)
