"""HA-DW: history-aware adaptive difficulty weighting (arXiv 2601.08521).

"Your Group-Relative Advantage Is Biased": conditioned on non-degenerate
groups, the group-relative advantage under-estimates hard prompts and
over-estimates easy ones. HA-DW keeps a cross-batch difficulty anchor C
(a Kalman-style running estimate of the model's accuracy) and multiplies
each response's advantage by Φ = λ_scale · exp(D · |p̂ − C|), amplifying
positive advantages on prompts harder than the anchor and negative ones on
prompts easier than it, and damping the opposite.

No author code was found; the formulas follow the paper's summaries and a
closed third-party TRL pull request (huggingface/trl #4863/#4872, η = 0.1,
λ_scale = 1). The anchor's initial value and the length of the history
window are not published; both are hyperparameters here.
"""

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import outcome
from mathrl.advantages import stats

_SIGMA_SOURCES = ("accuracy", "anchor")


class HADWState(NamedTuple):
  """State of `ha_dw`, checkpointed by the trainer."""

  anchor: jax.Array
  """f32[] the difficulty anchor C_t^- that the next update weights with."""
  history: jax.Array
  """f32[M] the last M values of the σ signal, oldest first."""
  history_len: jax.Array
  """int32[] how many trailing entries of `history` are filled."""
  count: jax.Array
  """int32[] number of updates that changed the state (had valid samples)."""


def window_std(history_M: jax.Array, history_len: jax.Array) -> jax.Array:
  """σ = sqrt(mean((h − mean h)²)) over the filled window; HA-DW 2601.08521.

  The population std of the training-stability signal (HA-DW, arXiv 2601.03001 §3).

  Args:
    history_M: [M] values, oldest first; the last `history_len` are filled.
    history_len: int32[] number of filled entries (0 gives σ = 0).

  Returns:
    f32[] the population standard deviation.
  """
  size = history_M.shape[0]
  filled_M = (jnp.arange(size) >= size - history_len).astype(jnp.float32)
  mean = stats.masked_mean(history_M, filled_M, axis=0, keepdims=False)
  var = stats.masked_mean(
      (history_M - mean) ** 2, filled_M, axis=0, keepdims=False
  )
  return jnp.sqrt(var)


def update_anchor(
    anchor: jax.Array, accuracy: jax.Array, step_size: jax.Array
) -> jax.Array:
  """C_t^+ = (1 − η_t)·C_t^- + η_t·y_t, with η_t = η·σ_t (arXiv 2601.08521).

  Args:
    anchor: f32[] the prior anchor C_t^-.
    accuracy: f32[] y_t, the batch accuracy (fraction of correct responses).
    step_size: f32[] η_t.

  Returns:
    f32[] the posterior anchor C_t^+ (the next step's C_{t+1}^-).
  """
  return (1.0 - step_size) * anchor + step_size * accuracy


def difficulty_weights(
    adv_PG: jax.Array,
    accuracy_P1: jax.Array,
    anchor: jax.Array,
    lambda_scale: float,
) -> jax.Array:
  """Φ_pi = λ_scale·exp(D_pi·M_p), D = −sgn(Â)·sgn(p̂ − C), M = |p̂ − C|.

  HA-DW (arXiv 2601.08521): on a prompt harder than the anchor (p̂ < C)
  positive advantages are amplified and negative ones damped; on an easier
  prompt the reverse.

  Args:
    adv_PG: [P, G] group-relative advantages Â.
    accuracy_P1: [P, 1] group accuracies p̂.
    anchor: f32[] the anchor C_t^-.
    lambda_scale: λ_scale.

  Returns:
    [P, G] weights Φ.
  """
  diff_P1 = accuracy_P1 - anchor
  direction_PG = -jnp.sign(adv_PG) * jnp.sign(diff_P1)
  return lambda_scale * jnp.exp(direction_PG * jnp.abs(diff_P1))


def _initial_state(history_size, sigma_source, anchor_init) -> HADWState:
  """HA-DW's state before any batch: the anchor, an empty history."""
  history = jnp.zeros((history_size,), jnp.float32)
  if sigma_source == "anchor":
    history = history.at[-1].set(anchor_init)
  return HADWState(
      anchor=jnp.asarray(anchor_init, jnp.float32),
      history=history,
      history_len=jnp.asarray(int(sigma_source == "anchor"), jnp.int32),
      count=jnp.zeros((), jnp.int32),
  )


def _next_state(state, correct_PG, mask, eta, sigma_source, history_size):
  """HA-DW's anchor and accuracy history after one batch (kept if empty)."""
  batch_accuracy = stats.masked_mean(
      correct_PG, mask, axis=(0, 1), keepdims=False
  )
  anchor = jnp.asarray(state.anchor, jnp.float32)
  sigma = window_std(state.history, state.history_len)
  posterior = update_anchor(anchor, batch_accuracy, eta * sigma)
  pushed = posterior if sigma_source == "anchor" else batch_accuracy
  new_state = HADWState(
      anchor=posterior,
      history=jnp.roll(state.history, -1).at[-1].set(pushed),
      history_len=jnp.minimum(state.history_len + 1, history_size),
      count=state.count + 1,
  )
  any_valid = jnp.sum(mask) > 0
  return jax.tree.map(
      lambda new, old: jnp.where(any_valid, new, old), new_state, state
  )


def ha_dw(
    eta: float = 0.1,
    lambda_scale: float = 1.0,
    anchor_init: float = 0.5,
    history_size: int = 10,
    sigma_source: str = "accuracy",
    correct_threshold: float = 0.0,
    eps: float = 1e-6,
    scale_by_std: bool = True,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pi = Φ_pi·Â_pi, Φ = λ_scale·exp(−sgn(Â)·sgn(p̂ − C)·|p̂ − C|).

  HA-DW, arXiv 2601.08521. Â is the GRPO z-score (Dr. GRPO centring with
  `scale_by_std=False`), p̂ the group's fraction of correct responses
  (reward > `correct_threshold`), C the anchor before this step. After
  weighting, the anchor moves towards the batch accuracy y_t:
  C ← (1 − η_t)·C + η_t·y_t with η_t = η·σ_t, σ_t the population std of a
  window of the last `history_size` values of the σ signal.

  The σ signal ("training-stability signal"): the paper's summaries call it
  the std of the anchor over the previous steps (`sigma_source="anchor"`,
  the window holds C_t^- and the earlier posteriors). Started from a single
  anchor value that std is 0, so η_t = 0 and the anchor can never move; the
  default therefore takes σ over the previous batch accuracies
  (`sigma_source="accuracy"`), which is 0 only until two batches are seen.
  Both are unverified against author code (none is public).

  State is updated only from valid samples; a batch with no valid sample
  leaves it unchanged.

  Args:
    eta: η, the base step size (TRL PR: 0.1).
    lambda_scale: λ_scale (TRL PR: 1.0).
    anchor_init: the anchor's initial value C_0 (unpublished; 0.5).
    history_size: the σ window length M (unpublished; 10).
    sigma_source: "accuracy" (default) or "anchor", see above.
    correct_threshold: a response is correct when its reward exceeds this.
    eps: added to the group std.
    scale_by_std: GRPO (True) or Dr. GRPO (False) base advantage.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    An AdvantageTransform with HADWState: rewards [P, G] or [P, G, K] →
    [P, G].
  """
  if sigma_source not in _SIGMA_SOURCES:
    raise ValueError(
        f"ha_dw: sigma_source must be one of {_SIGMA_SOURCES}, got"
        f" {sigma_source!r}."
    )
  if history_size < 1:
    raise ValueError(f"ha_dw: history_size must be >= 1, got {history_size}.")

  def init_fn(rewards) -> HADWState:
    del rewards
    return _initial_state(history_size, sigma_source, anchor_init)

  def update_fn(rewards, state: HADWState, *, mask=None, **extra):
    del extra
    mask = base.default_mask(rewards, mask)
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    adv_PG = outcome.group_zscore(
        rewards_PG, mask, eps=eps, scale_by_std=scale_by_std
    )
    correct_PG = (rewards_PG > correct_threshold).astype(jnp.float32)
    accuracy_P1 = stats.masked_mean(correct_PG, mask)
    anchor = jnp.asarray(state.anchor, jnp.float32)
    weights_PG = difficulty_weights(adv_PG, accuracy_P1, anchor, lambda_scale)
    out_PG = jnp.where(mask > 0, weights_PG * adv_PG, 0.0)

    new_state = _next_state(state, correct_PG, mask, eta, sigma_source,
                            history_size)
    return out_PG, new_state

  return base.AdvantageTransform(init_fn, update_fn)
