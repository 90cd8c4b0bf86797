"""CANON: advantages conditioned on a metric split (arXiv 2509.23962).

Each group is split into two equal halves by a target metric (the mean
token entropy of each response, or its length); a response is scored
against the other half's mean reward (inter-group: which direction of the
metric pays off) and against its own half's mean (intra-group). Dr. GRPO is
the λ = 0.5 special case. Authors: github.com/biuboomc/CANON.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import outcome
from mathrl.advantages import stats

_METRICS = ("entropy", "length")


def stable_rank(metric_PG: jax.Array, mask_PG: jax.Array) -> jax.Array:
  """rank_pi = #{j valid: m_pj < m_pi, or m_pj = m_pi and j < i}.

  The position of each valid sample in a stable ascending sort of its
  group's valid samples: exact ties keep the sample order (the authors sort
  with Python's stable `sorted`). Invalid samples never count; their own
  rank is meaningless.

  Args:
    metric_PG: [P, G] the metric to sort by.
    mask_PG: [P, G] float 0/1 validity mask.

  Returns:
    [P, G] int32 ranks.
  """
  num = metric_PG.shape[1]
  m_i = metric_PG[:, :, None]
  m_j = metric_PG[:, None, :]
  idx = jnp.arange(num)
  earlier_GG = idx[None, :] < idx[:, None]
  before_PGG = (m_j < m_i) | ((m_j == m_i) & earlier_GG[None])
  before_PGG = before_PGG & (mask_PG[:, None, :] > 0)
  return jnp.sum(before_PGG, axis=-1).astype(jnp.int32)


def canon_advantage(rewards_PG, metric_PG, mask, higher_is_first: bool,
                    alpha: float, beta: float, lam: float) -> jax.Array:
  """A = λ·A_inter + (1 − λ)·A_intra over the two halves split by the metric.

  CANON (arXiv 2509.23962): the higher-metric half H and the lower half
  L of each group (stable rank; the middle goes to H). Inter-group terms
  compare a sample with the other half's mean (α, β as in `canon`; which
  half gets α follows the metric), intra-group terms with its own half's
  mean. Groups with fewer than 2 valid samples get 0.
  """
  rank_PG = stable_rank(metric_PG, mask)
  count_P1 = jnp.sum(mask, axis=-1, keepdims=True)
  mid_P1 = jnp.floor(count_P1 / 2.0)
  low_PG = mask * (rank_PG < mid_P1)
  high_PG = mask * (rank_PG >= mid_P1)
  mean_lo_P1 = stats.masked_mean(rewards_PG, low_PG)
  mean_hi_P1 = stats.masked_mean(rewards_PG, high_PG)
  if higher_is_first:
    inter_hi = rewards_PG - alpha * mean_lo_P1 + beta
    inter_lo = alpha * rewards_PG - mean_hi_P1 - beta
  else:
    inter_hi = alpha * rewards_PG - mean_lo_P1 + beta
    inter_lo = rewards_PG - alpha * mean_hi_P1 - beta
  adv_hi = lam * inter_hi + (1.0 - lam) * (rewards_PG - mean_hi_P1)
  adv_lo = lam * inter_lo + (1.0 - lam) * (rewards_PG - mean_lo_P1)
  adv_PG = jnp.where(high_PG > 0, adv_hi, adv_lo)
  return jnp.where((mask > 0) & (count_P1 >= 2), adv_PG, 0.0)


def canon(
    metric: str = "entropy",
    alpha: float = 1.0,
    beta: float = 0.0,
    lam: float = 1.0,
    max_length: Optional[int] = None,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """CANON, Conditional Advantage Estimation (arXiv 2509.23962).

  Sort each group's valid samples by the metric (stable, ascending); the
  low half is the first ⌊n/2⌋, the high half the rest; μ_lo, μ_hi are their
  mean rewards. For metric "entropy":

    high: A = [λ(r − α μ_lo + β) + (1 − λ)(r − μ_hi)] / L
    low:  A = [λ(α r − μ_hi − β) + (1 − λ)(r − μ_lo)] / L

  and for metric "length" α moves to the other term (λ(α r − μ_lo + β) and
  λ(r − α μ_hi − β)); the two agree for α = 1. L = `max_length` (the
  authors divide by the maximum response length and aggregate with
  seq-mean-token-sum), or 1 when `max_length` is None. With λ = 0.5,
  α = 1, β = 0 and an even number of valid samples this is Dr. GRPO,
  r − mean. λ = 1 is the paper's default (pure inter-group).

  Tie rule: exact metric ties keep the sample order. The authors' entropy
  metric is a masked mean whose denominator has +1e-8, so their ties break
  by response length instead; pass a metric that is already tie-free to
  reproduce that exactly. Groups with fewer than two valid samples get 0
  (the authors' code gives one-sample groups λ(αr + β) + (1 − λ)r).

  Example (L = 1): r = [1, 1, 0, 0], entropy = [0.3, 0.5, 0.9, 0.7] →
  μ_lo = 1, μ_hi = 0; λ = 1 → [1, 1, −1, −1]; λ = 0.5 → [.5, .5, −.5, −.5].

  Args:
    metric: "entropy" (extra `entropy` [P, G], the mean token entropy of
      each response under the rollout policy) or "length" (extra `lengths`
      [P, G], or `token_mask` [P, G, T]).
    alpha: weight of the inter-group comparison (authors: 1).
    beta: bias of the inter-group comparison (authors: 0).
    lam: λ, the inter-group share (the paper's μ in Eq. 5; authors: 1).
    max_length: L, divide advantages by it; None for 1.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] → [P, G].
  """
  if metric not in _METRICS:
    raise ValueError(
        f"canon: metric must be one of {_METRICS}, got {metric!r}."
    )
  if max_length is not None and max_length <= 0:
    raise ValueError(f"canon: max_length must be > 0, got {max_length}.")
  scale = 1.0 if max_length is None else 1.0 / float(max_length)

  def fn(rewards, *, mask, **extra):
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    if metric == "entropy":
      metric_PG = outcome.check_shape(
          outcome.require_extra(extra, "entropy", "canon"),
          rewards_PG.shape,
          "canon's `entropy`",
      ).astype(jnp.float32)
    else:
      metric_PG = group.sequence_lengths(extra, rewards_PG.shape)
    return canon_advantage(rewards_PG, metric_PG, mask, metric == "entropy",
                           alpha, beta, lam) * scale

  # The entropy metric reads the sampling policy's entropy per response.
  tx = base.stateless(fn)
  return base.declare(tx, entropy="behaviour") if metric == "entropy" else tx

