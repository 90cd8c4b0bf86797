"""The GRPO group score that the 2025/26 advantage variants start from.

`qae`, `ha_dw`, `a_grae`, `mapo`, `ktae`, `aapo` and `capo` first sum
multi-reward [P, G, K] rewards (`group.combine_rewards`, which also zeroes
invalid samples so that padding garbage, even NaN, cannot leak), then start
from `group_zscore`: the GRPO score (r − mean) / (std + eps) with the
unbiased (ddof=1) std over the valid samples of each prompt, or the
Dr. GRPO centring when `scale_by_std=False`. `require_extra` and
`check_shape` give their extra inputs clear errors.

Conventions (docs/algorithms.md): std is Bessel-corrected, eps is
added to the scale, a group with fewer than two valid samples has std 0 and
so scores 0 (exactly 0 for identical rewards); invalid samples score 0.
"""

import jax
import jax.numpy as jnp

from mathrl.advantages import group


def group_zscore(
    rewards_PG: jax.Array,
    mask_PG: jax.Array,
    *,
    eps: float,
    scale_by_std: bool = True,
) -> jax.Array:
  """A_pg = (r_pg − mean_p) / (std_p + eps), GRPO (arXiv 2402.03300).

  With `scale_by_std=False` this is the Dr. GRPO centring r_pg − mean_p
  (arXiv 2503.20783). Statistics use only valid samples; std has ddof=1.

  Args:
    rewards_PG: [P, G] float32 rewards.
    mask_PG: [P, G] float 0/1 validity mask.
    eps: added to the std.
    scale_by_std: divide by the group std (GRPO) or not (Dr. GRPO).

  Returns:
    [P, G] float32 advantages, 0 at invalid samples.
  """
  adv_PG = rewards_PG - group.group_mean(rewards_PG, mask_PG)
  if scale_by_std:
    adv_PG = adv_PG / (group.group_std(rewards_PG, mask_PG, ddof=1) + eps)
  return jnp.where(mask_PG > 0, adv_PG, 0.0)


def require_extra(extra: dict, name: str, method: str) -> jax.Array:
  """Returns `extra[name]`, or raises a clear error naming the method.

  Args:
    extra: the keyword extras given to `update`.
    name: the extra's name, e.g. "entropy".
    method: the transform's name, for the message.

  Returns:
    The extra, as given.
  """
  value = extra.get(name)
  if value is None:
    raise ValueError(
        f"{method} needs the extra input `{name}`: call"
        f" tx.update(rewards, state, mask=mask, {name}=...)."
    )
  return value


def check_shape(x: jax.Array, shape: tuple[int, ...], what: str) -> jax.Array:
  """Returns `x` as an array after checking its shape, with a clear error."""
  x = jnp.asarray(x)
  if x.shape != tuple(shape):
    raise ValueError(f"{what} has shape {x.shape}, expected {tuple(shape)}.")
  return x
