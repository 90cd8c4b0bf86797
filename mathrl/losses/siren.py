"""SIREN: selective entropy regularisation (arXiv:2509.25133).

Entropy is measured inside each next-token distribution's nucleus (top-p),
only on each response's peak-entropy tokens, and penalised quadratically
around a self-anchored reference H0 instead of being maximised:

  loss = PG loss + c·(H_sel − H0)²

H0 is computed once, at the first training step, from the rollout batch
with the same masking (`selected_entropy`), and then held constant by the
trainer (Linn3a/siren `ray_trainer.py`). Pass it as the extra
`entropy_anchor`.
"""

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from mathrl import logprobs
from mathrl.losses import base
from mathrl.losses import clipping
from mathrl.types import Needs


def row_quantile(
    x_BT: jax.Array, mask_BT: jax.Array, q: float
) -> jax.Array:
  """[B] linear-interpolation q-quantile of each row's valid entries.

  numpy `quantile(method="linear")` / torch `nanquantile` per row, over the
  entries where mask > 0; rows with no valid entry get 0.

  Args:
    x_BT: values.
    mask_BT: 0/1 validity.
    q: quantile in [0, 1].

  Returns:
    [B] float32.
  """
  valid_BT = mask_BT > 0
  sorted_BT = jnp.sort(jnp.where(valid_BT, x_BT, jnp.inf), axis=-1)
  n_B = jnp.sum(valid_BT, axis=-1)
  pos_B = q * jnp.maximum(n_B - 1, 0).astype(jnp.float32)
  lo_B = jnp.floor(pos_B).astype(jnp.int32)
  hi_B = jnp.minimum(lo_B + 1, jnp.maximum(n_B - 1, 0))
  lo_val_B = jnp.take_along_axis(sorted_BT, lo_B[:, None], axis=-1)[:, 0]
  hi_val_B = jnp.take_along_axis(sorted_BT, hi_B[:, None], axis=-1)[:, 0]
  frac_B = pos_B - lo_B
  # Where lo == hi the difference is inf − inf; pick the endpoint directly.
  value_B = jnp.where(
      hi_B > lo_B, lo_val_B + frac_B * (hi_val_B - lo_val_B), lo_val_B
  )
  return jnp.where(n_B > 0, value_B, 0.0)


def peak_entropy_mask(
    entropy_BT: jax.Array, mask_BT: jax.Array, top_fraction: float = 0.2
) -> jax.Array:
  """keep_t = H_t > quantile_{valid t of the row}(H, 1 − ρ) (strict).

  SIREN's per-response peak mask (Linn3a/siren `mask_by_quantile`): about the
  top ρ of each response's tokens. A row whose values are all equal keeps
  nothing.

  Args:
    entropy_BT: [B, T] (nucleus) entropies.
    mask_BT: [B, T] 0/1.
    top_fraction: ρ (0.2).

  Returns:
    bool [B, T].
  """
  entropy_BT = jax.lax.stop_gradient(jnp.asarray(entropy_BT, jnp.float32))
  thr_B = row_quantile(entropy_BT, mask_BT, 1.0 - top_fraction)
  return (mask_BT > 0) & (entropy_BT > thr_B[:, None])


def selected_entropy(
    entropy_BT: jax.Array, mask_BT: jax.Array, top_fraction: float = 0.2
) -> jax.Array:
  """H_sel = seq-mean-token-mean of H over each row's peak tokens.

  SIREN's regularised entropy; rows that keep no token are left out (the
  authors' code would divide 0/0). Use it at the first step to compute the
  anchor H0 from the rollout batch.

  Args:
    entropy_BT: [B, T] nucleus entropies (with gradient if wanted).
    mask_BT: [B, T] 0/1.
    top_fraction: ρ (0.2).

  Returns:
    Scalar float32 (0 when no row keeps a token).
  """
  entropy_BT = jnp.asarray(entropy_BT, jnp.float32)
  keep_BT = peak_entropy_mask(entropy_BT, mask_BT, top_fraction)
  n_B = jnp.sum(keep_BT, axis=-1)
  per_row_B = jnp.sum(jnp.where(keep_BT, entropy_BT, 0.0), axis=-1) / (
      jnp.maximum(n_B, 1)
  )
  rows = jnp.sum(n_B > 0)
  return jnp.sum(jnp.where(n_B > 0, per_row_B, 0.0)) / jnp.maximum(rows, 1)


def _nucleus_entropy(inputs, top_p):
  if inputs.extra.get("entropy_nucleus") is not None:
    return base.extra_BT(inputs, "entropy_nucleus", "[B, T] top-p entropy")
  if inputs.extra.get("logits") is not None:
    logits_BTV = jnp.asarray(inputs.extra["logits"])
    if logits_BTV.shape[:2] != inputs.mask_BT.shape:
      raise ValueError(
          f"siren: extra `logits` has shape {logits_BTV.shape}, expected"
          f" [B, T, V] with [B, T]={inputs.mask_BT.shape}."
      )
    return base.clean(logprobs.top_p_entropy(logits_BTV, top_p),
                      inputs.mask_BT > 0)
  raise ValueError(
      "siren needs the extra input `entropy_nucleus` ([B, T] top-p entropy"
      " from mathrl.logprobs.top_p_entropy, carrying the gradient) or `logits`"
      " ([B, T, V]); pass one of them to the loss call."
  )


def _siren(
    inputs, *, top_p, entropy_top_fraction, coef, clip_low, clip_high,
    dual_clip
):
  entropy_BT = _nucleus_entropy(inputs, top_p)
  if inputs.extra.get("entropy_anchor") is None:
    raise ValueError(
        "siren needs the extra input `entropy_anchor` (H0: the value of"
        " mathrl.losses.selected_entropy on the first step's rollout batch,"
        " then held constant); pass entropy_anchor=... to the loss call."
    )
  anchor = jax.lax.stop_gradient(
      jnp.asarray(inputs.extra["entropy_anchor"], jnp.float32)
  )
  mask_BT = inputs.mask_BT
  h_sel = selected_entropy(entropy_BT, mask_BT, entropy_top_fraction)
  penalty = coef * jnp.square(h_sel - anchor)
  res = clipping.clipped_surrogate(
      jnp.exp(base.log_ratio(inputs)),
      inputs.adv_BT,
      clip_low=clip_low,
      clip_high=clip_high,
      dual_clip=dual_clip,
  )
  dual_BT = None if dual_clip is None else res.dual_BT
  metrics = clipping.clip_metrics(res.low_BT, res.high_BT, mask_BT, dual_BT)
  keep_BT = peak_entropy_mask(entropy_BT, mask_BT, entropy_top_fraction)
  metrics.update(
      kept_frac=base.masked_mean(keep_BT, mask_BT),
      entropy_selected=h_sel,
      entropy_penalty=penalty,
  )
  return res.loss_BT + penalty, metrics


def siren(
    top_p: float = 0.8,
    entropy_top_fraction: float = 0.2,
    coef: float = 0.005,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = 3.0,
) -> base.PolicyLoss:
  """ℓ_t = ℓ^PPO_t + c·(H_sel − H0)², H_sel over peak nucleus entropies.

  SIREN (arXiv:2509.25133; Linn3a/siren `dp_actor.update_policy`). Extras:
  `entropy_nucleus` [B, T] (`logprobs.top_p_entropy` of the current logits, with
  gradient) or `logits` [B, T, V]; `entropy_anchor` H0 (scalar, constant).
  The penalty is a scalar added to every valid token, so `token_mean` and
  `seq_mean_token_mean` return PG + penalty exactly; under
  `seq_mean_token_sum_norm` (the recipe's PG aggregation) it is scaled by
  N/C — for the recipe's exact loss use coef=0 here and add
  coef·(selected_entropy(...) − H0)² to the aggregated loss yourself.
  The effective clip range of the authors' runs is [0.8, 1.2] with dual-clip
  3 (their yaml's 0.2/0.2 shadows the script's 0.28).

  Args:
    top_p: nucleus mass (0.8).
    entropy_top_fraction: ρ of peak tokens per response (0.2).
    coef: c (0.005).
    clip_low: ε_low (0.2).
    clip_high: ε_high (0.2).
    dual_clip: c_dual (3.0) or None.

  Returns:
    A PolicyLoss; metrics add `kept_frac`, `entropy_selected`,
    `entropy_penalty`.
  """
  if not 0.0 < top_p <= 1.0 or not 0.0 < entropy_top_fraction <= 1.0:
    raise ValueError(
        "siren: top_p and entropy_top_fraction must be in (0, 1], got"
        f" {top_p} and {entropy_top_fraction}."
    )
  if coef < 0:
    raise ValueError(f"siren: coef must be >= 0, got {coef}.")
  clipping.check_clip("siren", clip_low, clip_high, dual_clip)
  hparams = dict(top_p=top_p, entropy_top_fraction=entropy_top_fraction,
                 clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip)
  # In the train step the penalty is added once to the aggregated loss
  # (exact under every aggregation); the per-token part runs with c = 0.
  anchor = EntropyAnchor(
      top_p=top_p, entropy_top_fraction=entropy_top_fraction, coef=coef,
      surrogate=base.make("siren", _siren, coef=0.0, **hparams))
  return base.make("siren", _siren,
                   needs=Needs(regulariser=anchor, nucleus_top_p=top_p),
                   coef=coef, **hparams)


@dataclasses.dataclass(frozen=True)
class EntropyAnchor:
  """SIREN's stateful regulariser: c·(H_sel − H0)² added to the loss.

  H0 (`entropy_anchor`) is NaN until the first train step sets it to
  `selected_entropy` of that step's rollout batch under the current policy;
  it is then held (Linn3a/siren `ray_trainer.py`). The train step calls
  `begin` once per step, `penalty` per micro-batch (weighted by the
  micro-batch's share of the minibatch's sequences, the authors'
  per-micro-batch penalty averaged), and uses `surrogate` as the per-token
  loss.

  Attributes:
    top_p: nucleus mass of the entropies it reads (the train step computes
      them from the current logits).
    entropy_top_fraction: ρ, peak tokens per response.
    coef: c.
    surrogate: the per-token policy loss without the penalty.
  """

  top_p: float
  entropy_top_fraction: float
  coef: float
  surrogate: base.PolicyLoss

  def init(self) -> dict[str, jax.Array]:
    return {"entropy_anchor": jnp.full((), jnp.nan, jnp.float32)}

  def begin(self, state: Any, nucleus_fn: Callable[[], jax.Array],
            mask_BT: jax.Array) -> dict[str, jax.Array]:
    """H0 ← selected_entropy(nucleus_fn(), mask) if H0 is NaN, else H0."""
    anchor = state["entropy_anchor"]
    first = lambda: selected_entropy(
        jax.lax.stop_gradient(nucleus_fn()), mask_BT,
        self.entropy_top_fraction)
    return {"entropy_anchor": jax.lax.cond(
        jnp.isnan(anchor), first, lambda: anchor)}

  def extras(self, state: Any, nucleus_BT: jax.Array) -> dict[str, Any]:
    """The surrogate's extra inputs."""
    return dict(entropy_nucleus=nucleus_BT,
                entropy_anchor=state["entropy_anchor"])

  def penalty(self, state: Any, nucleus_BT: jax.Array, mask_BT: jax.Array
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(c·(H_sel − H0)², metrics) of one micro-batch."""
    h_sel = selected_entropy(nucleus_BT, mask_BT, self.entropy_top_fraction)
    penalty = self.coef * jnp.square(h_sel - state["entropy_anchor"])
    return penalty, {"entropy_selected": h_sel, "entropy_penalty": penalty}
