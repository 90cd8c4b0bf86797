"""Building blocks: group baselines, group scales, batch whitening, combiners.

Each factory returns an `AdvantageTransform`; the algorithms are chains of
these (`grpo = chain(sum_rewards(), center_by_group_mean(),
scale_by_group_std())`). The pure array functions beside them (`group_mean`,
`group_median`, ...) are the statistics the factories use and are public so
that other transforms can share them.

Shapes. Values are `[P, G]`, or `[P, G, K]` where the trailing axis holds
independent components (reward components): the group statistics run over
the G axis for every component separately, so `chain(center_by_group_mean(),
scale_by_group_std(), sum_rewards())` normalises each reward on its own
(GDPO). `whiten_over_batch` also accepts token-level `[P, G, T]` values.

Conventions (docs/algorithms.md): std is Bessel-corrected (ddof=1)
over the valid samples, eps is added to the scale, invalid samples (mask 0)
never enter a statistic and come out as exactly 0, and a group whose valid
values are all equal comes out as 0.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import stats

_MAD_STATISTICS = ("mean", "median")


def broadcast_mask(mask_PG: jax.Array, values: jax.Array) -> jax.Array:
  """The [P, G] mask broadcast to the shape of `values` ([P, G, ...])."""
  extra_dims = values.ndim - mask_PG.ndim
  mask = jnp.reshape(mask_PG, mask_PG.shape + (1,) * extra_dims)
  return jnp.broadcast_to(mask, values.shape).astype(jnp.float32)


def _as_values(values) -> jax.Array:
  values = jnp.asarray(values, jnp.float32)
  if values.ndim < 2:
    raise ValueError(
        "advantage transforms take [P, G] (or [P, G, K]) values, got shape"
        f" {values.shape}; reshape flat [B] rewards to [P, G] first."
    )
  return values


def group_mean(values: jax.Array, mask_PG: jax.Array) -> jax.Array:
  """mean_p = Σ_g m_pg·x_pg / Σ_g m_pg over the valid samples of each group.

  Args:
    values: [P, G] or [P, G, K] values.
    mask_PG: [P, G] float 0/1 validity mask.

  Returns:
    [P, 1] (or [P, 1, K]) float32 group means, 0 for an empty group.
  """
  return stats.masked_mean(values, broadcast_mask(mask_PG, values), axis=1)


def group_std(
    values: jax.Array, mask_PG: jax.Array, ddof: int = 1
) -> jax.Array:
  """std_p = sqrt(Σ_g m·(x − mean_p)² / (n_p − ddof)), 0 when n_p ≤ ddof.

  Args:
    values: [P, G] or [P, G, K] values.
    mask_PG: [P, G] float 0/1 validity mask.
    ddof: delta degrees of freedom (1: the unbiased std of verl/TRL).

  Returns:
    [P, 1] (or [P, 1, K]) float32 group standard deviations.
  """
  return stats.masked_std(
      values, broadcast_mask(mask_PG, values), axis=1, ddof=ddof
  )


def group_median(values: jax.Array, mask_PG: jax.Array) -> jax.Array:
  """med_p = x_(⌊(n_p − 1)/2⌋), the lower median of the valid samples.

  The lower median is what `torch.median(dim)` returns (MC-GRPO, arXiv
  2601.22582); for an odd number of valid samples it is the exact median.

  Args:
    values: [P, G] or [P, G, K] values.
    mask_PG: [P, G] float 0/1 validity mask.

  Returns:
    [P, 1] (or [P, 1, K]) float32 group medians, 0 for an empty group.
  """
  mask = broadcast_mask(mask_PG, values)
  sorted_values = jnp.sort(jnp.where(mask > 0, values, jnp.inf), axis=1)
  count = jnp.sum(mask, axis=1, keepdims=True)
  index = jnp.maximum(count - 1.0, 0.0) // 2
  median = jnp.take_along_axis(sorted_values, index.astype(jnp.int32), axis=1)
  return jnp.where(count > 0, median, 0.0)


def group_mad(
    values: jax.Array, mask_PG: jax.Array, statistic: str = "mean"
) -> jax.Array:
  """MAD_p = mean_g |x_pg − mean_p| ("mean") or median_g |x_pg − med_p|.

  "mean" is the mean absolute deviation of DGPO (arXiv 2601.20614), "median"
  the median absolute deviation (lower median, as torch) of MC-GRPO (arXiv
  2601.22582). Only valid samples count.

  Args:
    values: [P, G] or [P, G, K] values.
    mask_PG: [P, G] float 0/1 validity mask.
    statistic: "mean" or "median".

  Returns:
    [P, 1] (or [P, 1, K]) float32 deviations, 0 for an empty group.
  """
  if statistic == "mean":
    deviation = jnp.abs(values - group_mean(values, mask_PG))
    return group_mean(deviation, mask_PG)
  if statistic == "median":
    deviation = jnp.abs(values - group_median(values, mask_PG))
    return group_median(deviation, mask_PG)
  raise ValueError(
      f"statistic must be one of {_MAD_STATISTICS}, got {statistic!r}."
  )


def is_nondegenerate(
    values_PG: jax.Array, mask_PG: jax.Array, atol: float = 1e-8
) -> jax.Array:
  """v_p = not isclose(std_p, 0): the group's valid rewards are not all equal.

  TRL's test (`torch.isclose(std, 0)`, atol 1e-8), used by DGPO's valid set
  and DAPO's dynamic-sampling filter; groups with < 2 valid samples are
  degenerate.

  Args:
    values_PG: [P, G] rewards.
    mask_PG: [P, G] float 0/1 validity mask.
    atol: the std at or below which a group counts as degenerate.

  Returns:
    [P, 1] bool.
  """
  return group_std(values_PG, mask_PG, ddof=1) > atol


def _masked_output(values: jax.Array, mask_PG: jax.Array) -> jax.Array:
  return jnp.where(broadcast_mask(mask_PG, values) > 0, values, 0.0)


def sum_rewards(
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """r_pg = Σ_k w_k·R_pgk: multi-reward [P, G, K] → one reward [P, G].

  The weighted sum that GRPO-style trainers (TRL `reward_weights`) apply
  before the group statistics. [P, G] values pass through (times w_0 if one
  weight is given). Invalid samples come out as 0, so padding garbage (even
  NaN) cannot leak into later statistics.

  Args:
    reward_weights: K weights; None gives weight 1 to every component.

  Returns:
    A stateless AdvantageTransform: [P, G] or [P, G, K] → [P, G].
  """

  def fn(values, *, mask, **extra):
    del extra
    return combine_rewards(values, mask, reward_weights)

  return base.stateless(fn)


def combine_rewards(
    rewards,
    mask_PG: jax.Array,
    reward_weights: Optional[Sequence[float]] = None,
) -> jax.Array:
  """r_pg = Σ_k w_k·R_pgk (or w_0·R_pg), zeroed where mask_pg = 0.

  Args:
    rewards: [P, G] or [P, G, K] rewards.
    mask_PG: [P, G] float 0/1 validity mask.
    reward_weights: K weights (None: all 1).

  Returns:
    [P, G] float32 rewards, exactly 0 at invalid samples.
  """
  rewards = _as_values(rewards)
  valid = broadcast_mask(mask_PG, rewards) > 0
  rewards = jnp.where(valid, rewards, 0.0)
  if rewards.ndim == 2:
    if reward_weights is None:
      return rewards
    if len(reward_weights) != 1:
      raise ValueError(
          f"reward_weights has {len(reward_weights)} entries but the rewards"
          f" have shape {rewards.shape} (one reward per sample); pass"
          " [P, G, K] rewards or drop reward_weights."
      )
    return rewards * float(reward_weights[0])
  if rewards.ndim != 3:
    raise ValueError(
        f"rewards must be [P, G] or [P, G, K], got shape {rewards.shape}."
    )
  num_rewards = rewards.shape[-1]
  if reward_weights is None:
    weights_K = jnp.ones((num_rewards,), jnp.float32)
  else:
    if len(reward_weights) != num_rewards:
      raise ValueError(
          f"reward_weights has {len(reward_weights)} entries, expected"
          f" {num_rewards} (the K axis of rewards {rewards.shape})."
      )
    weights_K = jnp.asarray(reward_weights, jnp.float32)
  return jnp.einsum("pgk,k->pg", rewards, weights_K)


def _center_by(statistic) -> base.AdvantageTransform:
  """A_pg = x_pg − statistic(x_p) over each group's valid samples."""

  def fn(values, *, mask, **extra):
    del extra
    values = _as_values(values)
    return _masked_output(values - statistic(values, mask), mask)

  return base.stateless(fn)


def center_by_group_mean() -> base.AdvantageTransform:
  """A_pg = x_pg − mean_g x_pg, Dr. GRPO (arXiv 2503.20783).

  The mean runs over the valid samples of each group (per component for
  [P, G, K] values).

  Returns:
    A stateless AdvantageTransform: [P, G(, K)] → same shape.
  """
  return _center_by(group_mean)


def center_by_group_median() -> base.AdvantageTransform:
  """A_pg = x_pg − median_g x_pg (lower median), MC-GRPO (arXiv 2601.22582).

  Returns:
    A stateless AdvantageTransform: [P, G(, K)] → same shape.
  """
  return _center_by(group_median)


def leave_one_out_baseline() -> base.AdvantageTransform:
  """A_pi = x_pi − Σ_{j≠i} x_pj / (n_p − 1) = n_p/(n_p − 1)·(x_pi − mean_p).

  RLOO (Ahmadian et al., arXiv 2402.14740; verl
  `compute_rloo_outcome_advantage`). Only valid samples count, n_p is their
  number. A group with a single valid sample has no baseline and gets 0
  (as tunix; verl returns the raw reward there).

  Returns:
    A stateless AdvantageTransform: [P, G(, K)] → same shape.
  """

  def fn(values, *, mask, **extra):
    del extra
    values = _as_values(values)
    count = jnp.sum(broadcast_mask(mask, values), axis=1, keepdims=True)
    # The centred form keeps all-equal groups at exactly 0.
    centred = values - group_mean(values, mask)
    adv = jnp.where(
        count > 1, centred * count / jnp.maximum(count - 1.0, 1.0), 0.0
    )
    return _masked_output(adv, mask)

  return base.stateless(fn)


def _scale_by(scale, eps) -> base.AdvantageTransform:
  """A_pg = x_pg / (scale(x_p) + eps) over each group's valid samples."""

  def fn(values, *, mask, **extra):
    del extra
    values = _as_values(values)
    return _masked_output(values / (scale(values, mask) + eps), mask)

  return base.stateless(fn)


def scale_by_group_std(
    eps: float = 1e-6, ddof: int = 1
) -> base.AdvantageTransform:
  """A_pg = x_pg / (std_g x_pg + eps), the GRPO scale (arXiv 2402.03300).

  std is over the valid samples of the group (ddof=1 as torch in verl/TRL);
  a group with one valid sample has std 0. Apply after a centring block:
  the std of centred values equals the std of the rewards.

  Args:
    eps: added to the std (verl 1e-6, TRL 1e-4).
    ddof: delta degrees of freedom of the std.

  Returns:
    A stateless AdvantageTransform: [P, G(, K)] → same shape.
  """
  return _scale_by(lambda values, mask: group_std(values, mask, ddof=ddof), eps)


def scale_by_group_mad(
    eps: float = 1e-6, statistic: str = "mean"
) -> base.AdvantageTransform:
  """A_pg = x_pg / (MAD_p + eps), MAD from `group_mad`.

  statistic="mean": mean absolute deviation from the group mean, DGPO's DGAE
  (arXiv 2601.20614; DGPO's own eps, 1e-4 on the *sum* of deviations, is
  eps = 1e-4/G here). statistic="median": median absolute deviation from the
  group median, MC-GRPO (arXiv 2601.22582, eps 1e-3).

  Args:
    eps: added to the MAD.
    statistic: "mean" or "median".

  Returns:
    A stateless AdvantageTransform: [P, G(, K)] → same shape.
  """
  if statistic not in _MAD_STATISTICS:
    raise ValueError(
        f"scale_by_group_mad: statistic must be one of {_MAD_STATISTICS},"
        f" got {statistic!r}."
    )
  return _scale_by(
      lambda values, mask: group_mad(values, mask, statistic), eps)


def _token_weights(values, mask_PG, extra, weight_by_length):
  """The weight of every entry of `values` in batch statistics."""
  if values.ndim == 3 and "token_mask" in extra and weight_by_length is None:
    token_mask = jnp.asarray(extra["token_mask"], jnp.float32)
    if token_mask.shape == values.shape:
      return token_mask * broadcast_mask(mask_PG, values)
  weights = broadcast_mask(mask_PG, values)
  if weight_by_length:
    lengths_PG = sequence_lengths(extra, values.shape[:2])
    weights = weights * broadcast_mask(lengths_PG, values)
  return weights


def sequence_lengths(extra: dict, shape_PG: tuple[int, ...]) -> jax.Array:
  """[P, G] float32 completion lengths from `lengths` or `token_mask` extras.

  Args:
    extra: the keyword extras of `update`.
    shape_PG: the expected (P, G).

  Returns:
    [P, G] float32 lengths in tokens.
  """
  if extra.get("lengths") is not None:
    lengths_PG = jnp.asarray(extra["lengths"], jnp.float32)
  elif extra.get("token_mask") is not None:
    lengths_PG = jnp.sum(jnp.asarray(extra["token_mask"], jnp.float32), -1)
  else:
    raise ValueError(
        "this transform needs completion lengths: pass lengths=[P, G] (or"
        " token_mask=[P, G, T]) to tx.update."
    )
  if lengths_PG.shape != tuple(shape_PG):
    raise ValueError(
        f"lengths has shape {lengths_PG.shape}, expected {tuple(shape_PG)}."
    )
  return lengths_PG


def whiten(
    values: jax.Array,
    weights: jax.Array,
    *,
    eps: float,
    eps_in_sqrt: bool = True,
    shift_mean: bool = True,
) -> jax.Array:
  """A = (x − μ)/sqrt(σ² + eps) (or /(σ + eps)), μ, σ² weighted over the batch.

  μ = Σ w·x / Σ w and σ² = Σ w·(x − μ)² / (Σ w − 1): with 0/1 token weights
  this is verl's `masked_whiten` (unbiased variance over the masked entries,
  eps inside the rsqrt); with per-sample token counts as weights it is the
  same statistic written per sequence. Fewer than two units of weight give
  σ² = 0.

  Args:
    values: values of any shape.
    weights: non-negative weights of the same shape (0 = ignored).
    eps: added to the variance (eps_in_sqrt) or to the std.
    eps_in_sqrt: verl style sqrt(var + eps) (True) or TRL style std + eps.
    shift_mean: subtract the mean (False: only rescale, as verl's
      `shift_mean=False`).

  Returns:
    The whitened values, 0 where weights are 0.
  """
  total = jnp.sum(weights)
  weighted = jnp.where(weights > 0, weights * values, 0.0)
  mean = jnp.sum(weighted) / jnp.maximum(total, 1.0)
  centred = jnp.where(weights > 0, values - mean, 0.0)
  var = jnp.sum(weights * centred**2) / jnp.maximum(total - 1.0, 1.0)
  var = jnp.where(total > 1.0, var, 0.0)
  if eps_in_sqrt:
    inv_scale = jax.lax.rsqrt(var + eps)
  else:
    inv_scale = 1.0 / (jnp.sqrt(var) + eps)
  out = (centred if shift_mean else values) * inv_scale
  return jnp.where(weights > 0, out, 0.0)


def whiten_over_batch(
    eps: float = 1e-8,
    eps_in_sqrt: bool = True,
    shift_mean: bool = True,
    weight_by_length: Optional[bool] = None,
) -> base.AdvantageTransform:
  """A = (x − μ_batch)/sqrt(σ²_batch + eps), REINFORCE++ (arXiv 2501.03262).

  μ and the unbiased σ² run over the whole batch of valid entries (verl
  `masked_whiten`). Which entries count:
  * [P, G, T] token values with the `token_mask` extra (the default when
    both are there): every valid token, as REINFORCE++ in verl;
  * [P, G] values, weight_by_length=True: every sample weighted by its
    token count (`lengths` or `token_mask` extra), which is the same
    token-weighted statistic written per sequence (GDPO's verl variant);
  * otherwise every valid sample once (TRL `scale_rewards="batch"`, GDPO's
    TRL variant with eps_in_sqrt=False, eps=1e-4).

  Args:
    eps: added to the variance (eps_in_sqrt) or to the std.
    eps_in_sqrt: sqrt(var + eps) (verl) or std + eps (TRL).
    shift_mean: subtract the batch mean.
    weight_by_length: see above; None picks token weights for [P, G, T]
      values with a token_mask of their shape and per-entry weights
      otherwise (so [P, G, K] values with K == T are read as tokens: pass
      False to weigh each entry once).

  Returns:
    A stateless AdvantageTransform: [P, G], [P, G, K] or [P, G, T] → same.
  """

  def fn(values, *, mask, **extra):
    values = _as_values(values)
    weights = _token_weights(values, mask, extra, weight_by_length)
    return whiten(
        values,
        weights,
        eps=eps,
        eps_in_sqrt=eps_in_sqrt,
        shift_mean=shift_mean,
    )

  return base.stateless(fn)


def broadcast_to_tokens() -> base.AdvantageTransform:
  """A_pgt = A_pg · token_mask_pgt: a sequence advantage on every token.

  Needs the `token_mask` extra ([P, G, T]).

  Returns:
    A stateless AdvantageTransform: [P, G] → [P, G, T].
  """

  def fn(values, *, mask, **extra):
    values = _as_values(values)
    if values.ndim != 2:
      raise ValueError(
          f"broadcast_to_tokens takes [P, G] values, got {values.shape}; put"
          " sum_rewards() before it for [P, G, K] rewards."
      )
    token_mask = require_token_mask(extra, values.shape[:2], "a token-level")
    return to_tokens(_masked_output(values, mask), token_mask)

  return base.stateless(fn)


def require_token_mask(
    extra: dict, shape_PG: tuple[int, ...], method: str
) -> jax.Array:
  """The [P, G, T] float32 `token_mask` extra, or a clear error."""
  token_mask = extra.get("token_mask")
  if token_mask is None:
    raise ValueError(
        f"{method} transform needs token_mask=[P, G, T] (1 on completion"
        " tokens): pass it to tx.update."
    )
  token_mask = jnp.asarray(token_mask, jnp.float32)
  if token_mask.ndim != 3 or token_mask.shape[:2] != tuple(shape_PG):
    raise ValueError(
        f"token_mask has shape {token_mask.shape}, expected"
        f" {tuple(shape_PG)} + (T,)."
    )
  return token_mask


def to_tokens(values_PG: jax.Array, token_mask_PGT: jax.Array) -> jax.Array:
  """A_pgt = A_pg · m_pgt ([P, G] → [P, G, T])."""
  return values_PG[..., None] * token_mask_PGT
