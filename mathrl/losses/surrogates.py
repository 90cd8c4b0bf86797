"""Per-token policy-gradient surrogates: PPO-clip and its relatives.

Each factory returns a `base.PolicyLoss`; call it with
`(logp=, old_logp=, advantages=, mask=, **extra)` to get
`(per_token_BT, metrics)`. Notation: d = log π_θ − log π_old (clamped to
[−20, 20]), r = exp(d), A the advantage, sg the stop-gradient, and
g = ∂ℓ/∂log π_θ the per-token gradient the docstrings quote.
"""

import jax
import jax.numpy as jnp

from mathrl.losses import base
from mathrl.losses import clipping


def _clipped(name, fn, clip_low, clip_high, **hparams):
  """`base.make` of a clipped surrogate whose bounds (and any `dual_clip`)
  are checked first, errors naming the loss."""
  clipping.check_clip(name, clip_low, clip_high, hparams.get("dual_clip"))
  return base.make(name, fn, clip_low=clip_low, clip_high=clip_high,
                   **hparams)


def _ppo_clip(inputs, *, clip_low, clip_high, dual_clip):
  ratio_BT = jnp.exp(base.log_ratio(inputs))
  res = clipping.clipped_surrogate(
      ratio_BT,
      inputs.adv_BT,
      clip_low=clip_low,
      clip_high=clip_high,
      dual_clip=dual_clip,
  )
  dual_BT = None if dual_clip is None else res.dual_BT
  return res.loss_BT, clipping.clip_metrics(
      res.low_BT, res.high_BT, inputs.mask_BT, dual_BT
  ), res.low_BT | res.high_BT | res.dual_BT


def ppo_clip(
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
) -> base.PolicyLoss:
  """ℓ = max(−A·r, −A·clip(r, 1−ε_low, 1+ε_high)), capped at −A·c when A<0.

  PPO-clip (arXiv:1707.06347) as used by GRPO (arXiv:2402.03300); asymmetric
  bounds = DAPO clip-higher (arXiv:2503.14476, 0.2/0.28) or NGRPO
  (arXiv:2509.18851, 0.16/0.24); dual-clip c (arXiv:1912.09729; verl always
  applies c=3, DAPO recipes 10). g = −A·r unclipped, 0 when a bound binds.

  Args:
    clip_low: ε_low (0.2).
    clip_high: ε_high (0.2).
    dual_clip: c > 1, or None (default) for no dual clip.

  Returns:
    A PolicyLoss; metrics add clip_frac_low/high, clip_frac, dual_clip_frac.
  """
  return _clipped("ppo_clip", _ppo_clip, clip_low, clip_high,
                  dual_clip=dual_clip)


def _ppo_unclipped(inputs):
  loss_BT = -inputs.adv_BT * jnp.exp(base.log_ratio(inputs))
  zero = jnp.zeros_like(loss_BT, dtype=bool)
  return loss_BT, clipping.clip_metrics(zero, zero, inputs.mask_BT)


def ppo_unclipped() -> base.PolicyLoss:
  """ℓ = −A·r, r = π_θ/π_old;  g = −A·r (no clip).

  The importance-weighted policy gradient that PPO clips (arXiv:1707.06347,
  eq. 6, L^CPI); KL-Cov (arXiv:2505.22617, verl
  `compute_policy_loss_kl_cov`) adds its penalty to it instead of clipping.
  Nothing is clipped, so clip fractions are 0.

  Returns:
    A PolicyLoss.
  """
  return base.make("ppo_unclipped", _ppo_unclipped)


def _gppo(inputs, *, clip_low, clip_high, dual_clip, beta1, beta2):
  adv_BT = inputs.adv_BT
  ratio_BT = jnp.exp(base.log_ratio(inputs))
  # r/sg(r) has value 1 and gradient 1: the bound keeps a gradient.
  unit_BT = ratio_BT / jax.lax.stop_gradient(ratio_BT)
  low_BT = (adv_BT < 0) & (ratio_BT < 1.0 - clip_low)
  high_BT = (adv_BT > 0) & (ratio_BT > 1.0 + clip_high)
  loss_BT = jnp.where(
      low_BT,
      -adv_BT * beta1 * (1.0 - clip_low) * unit_BT,
      jnp.where(
          high_BT,
          -adv_BT * beta2 * (1.0 + clip_high) * unit_BT,
          -adv_BT * ratio_BT,
      ),
  )
  dual_BT = None
  if dual_clip is not None:
    cap_BT = -adv_BT * dual_clip
    dual_BT = (adv_BT < 0) & (loss_BT > cap_BT)
    loss_BT = jnp.where(dual_BT, cap_BT, loss_BT)
  clipped_BT = low_BT | high_BT
  if dual_BT is not None:
    clipped_BT = clipped_BT | dual_BT
  return loss_BT, clipping.clip_metrics(
      low_BT, high_BT, inputs.mask_BT, dual_BT
  ), clipped_BT


def gppo(
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 10.0,
    beta1: float = 1.0,
    beta2: float = 1.0,
) -> base.PolicyLoss:
  """PPO value; clipped tokens keep g = −β1(1−ε_low)A (low) or −β2(1+ε_high)A.

  GPPO, Klear-Reasoner (arXiv:2508.07629): the clip bound is written
  bound·r/sg(r), so a token outside [1−ε_low, 1+ε_high] keeps a bounded
  gradient. With A<0, r<1−ε_low: ℓ = −β1(1−ε_low)A; with A>0, r>1+ε_high:
  ℓ = −β2(1+ε_high)A; else ℓ = −A·r; then dual-clip for A<0.

  Defaults follow the authors' recipe (`loss_func=gppo`, i.e. β1=β2=1, clip
  0.2/0.28, c=10). Their `gppo_general` config default is β1=0.25, β2=1.
  The released `compute_gppo_loss` raises NameError (`only_higher`) when
  called; the math here is what that function was written to compute.

  Args:
    clip_low: ε_low (0.2).
    clip_high: ε_high (0.28).
    dual_clip: c (10), or None.
    beta1: gradient scale of low-clipped tokens with A<0 (1.0).
    beta2: gradient scale of high-clipped tokens with A>0 (1.0).

  Returns:
    A PolicyLoss.
  """
  return _clipped("gppo", _gppo, clip_low, clip_high, dual_clip=dual_clip,
                  beta1=beta1, beta2=beta2)


def _gspo(inputs, *, clip_low, clip_high):
  mask_BT = inputs.mask_BT
  seq_log_ratio_B = base.seq_mean(inputs.logp_BT - inputs.old_logp_BT, mask_BT)
  logp_BT = inputs.logp_BT
  log_s_BT = (
      jax.lax.stop_gradient(seq_log_ratio_B)[:, None]
      + logp_BT
      - jax.lax.stop_gradient(logp_BT)
  )
  s_BT = jnp.exp(jnp.clip(log_s_BT, -base.LOG_RATIO_CLIP, 10.0))
  res = clipping.clipped_surrogate(
      s_BT, inputs.adv_BT, clip_low=clip_low, clip_high=clip_high
  )
  metrics = clipping.clip_metrics(res.low_BT, res.high_BT, mask_BT)
  nonempty_B = jnp.sum(mask_BT, axis=-1) > 0
  metrics["seq_ratio_mean"] = base.masked_mean(
      jnp.exp(jnp.minimum(seq_log_ratio_B, 10.0)), nonempty_B
  )
  return res.loss_BT, metrics, res.low_BT | res.high_BT


def gspo(clip_low: float = 3e-4, clip_high: float = 4e-4) -> base.PolicyLoss:
  """ℓ_t = max(−A·s_t, −A·clip(s_t, 1−ε_low, 1+ε_high)), s = sequence ratio.

  GSPO (arXiv:2507.18071), token form (verl `compute_policy_loss_gspo`):
  log s_t = sg((1/|o|) Σ_t' d_t') + log π_θ,t − sg(log π_θ,t), clamped ≤ 10
  (and ≥ −20 here, keeping float32 finite), so s_t has the value of the
  length-normalised sequence ratio s and gradient s·∇log π_t. Aggregate
  with `seq_mean_token_mean` (verl forces it): the per-token gradient of
  the sequence-averaged loss is −A·s/|o| unclipped, 0 clipped.

  Args:
    clip_low: ε_low (3e-4, paper §5.1).
    clip_high: ε_high (4e-4).

  Returns:
    A PolicyLoss; metrics add clip fractions and `seq_ratio_mean`.
  """
  return _clipped("gspo", _gspo, clip_low, clip_high)


def _cispo(inputs, *, clip_low, clip_high):
  ratio_BT = jnp.exp(base.log_ratio(inputs))
  lower = 0.0 if clip_low is None else 1.0 - clip_low
  upper = 1.0 + clip_high
  weight_BT = jax.lax.stop_gradient(jnp.clip(ratio_BT, lower, upper))
  loss_BT = -weight_BT * inputs.adv_BT * inputs.logp_BT
  low_BT, high_BT = ratio_BT < lower, ratio_BT > upper
  return loss_BT, clipping.clip_metrics(
      low_BT, high_BT, inputs.mask_BT), low_BT | high_BT


def cispo(
    clip_low: float | None = None, clip_high: float = 0.2
) -> base.PolicyLoss:
  """ℓ = −sg(clip(r, 1−ε_low, 1+ε_high))·A·log π_θ;  g = −w·A.

  CISPO, MiniMax-M1 (arXiv:2506.13585): REINFORCE weighted by a clipped,
  stop-gradient importance weight, so every token keeps a gradient. The paper
  sets no lower bound (verl's example passes clip_ratio_low=10, same effect)
  and tunes the upper one; verl's example uses ε_high=0.2. TRL's `cispo`
  caps the weight at an absolute `epsilon_high` (e.g. 5.0): use
  clip_high = cap − 1. Aggregate with `token_mean`.

  Args:
    clip_low: ε_low, or None (default) for no lower bound.
    clip_high: ε_high (0.2).

  Returns:
    A PolicyLoss; clip fractions count weights that were clipped.
  """
  return _clipped("cispo", _cispo, clip_low, clip_high)


def _geo_mean(inputs, *, clip_low, clip_high):
  mask_BT, adv_BT = inputs.mask_BT, inputs.adv_BT
  d_BT = base.log_ratio(inputs)
  clipped_d_BT = jnp.clip(d_BT, -clip_low, clip_high)
  sign_BT = jnp.sign(adv_BT)
  # Token-level pessimistic choice in log space: min(d, clip(d)) for A > 0,
  # max(d, clip(d)) for A < 0; a token with A = 0 contributes 0 (as verl).
  pessimistic_BT = jnp.where(
      sign_BT * d_BT <= sign_BT * clipped_d_BT, d_BT, clipped_d_BT
  )
  pessimistic_BT = jnp.where(sign_BT == 0, 0.0, pessimistic_BT)
  seq_ratio_B = jnp.exp(base.seq_mean(pessimistic_BT, mask_BT))
  seq_adv_B = base.seq_mean(adv_BT, mask_BT)
  loss_BT = jnp.broadcast_to(
      (-seq_adv_B * seq_ratio_B)[:, None], mask_BT.shape
  )
  outside_BT = d_BT != clipped_d_BT
  metrics = clipping.clip_metrics(
      outside_BT & (adv_BT < 0), outside_BT & (adv_BT > 0), mask_BT
  )
  metrics["seq_ratio_mean"] = base.masked_mean(
      seq_ratio_B, jnp.sum(mask_BT, axis=-1) > 0
  )
  return loss_BT, metrics, outside_BT


def geo_mean(clip_low: float = 0.4, clip_high: float = 0.4) -> base.PolicyLoss:
  """ℓ_i = −A_i·exp((1/|o_i|) Σ_t sgn(A)·min(sgn(A)·d_t, sgn(A)·clip(d_t))).

  GMPO, geometric-mean policy optimisation (arXiv:2507.20673; verl
  `compute_policy_loss_geo_mean`): the sequence objective is A times the
  geometric mean of the token ratios, each clipped in log space to
  [−ε_low, ε_high] pessimistically per token. A_i is the mean advantage over
  the sequence's valid tokens. The sequence loss is written on every valid
  token, so `seq_mean_token_mean` returns mean_i ℓ_i (verl averages over
  all rows including empty ones; mathrl excludes empty rows).

  Args:
    clip_low: ε_low in log space (0.4, the authors' setting).
    clip_high: ε_high in log space (0.4).

  Returns:
    A PolicyLoss; clip fractions count tokens whose d left the range.
  """
  return _clipped("geo_mean", _geo_mean, clip_low, clip_high)


def _sapo(inputs, *, tau_pos, tau_neg):
  ratio_BT = jnp.exp(base.log_ratio(inputs))
  tau_BT = jnp.where(inputs.adv_BT > 0, tau_pos, tau_neg)
  gate_BT = jax.nn.sigmoid(tau_BT * (ratio_BT - 1.0)) * (4.0 / tau_BT)
  loss_BT = -gate_BT * inputs.adv_BT
  zero = jnp.zeros_like(ratio_BT, dtype=bool)
  metrics = clipping.clip_metrics(zero, zero, inputs.mask_BT)
  metrics["gate_mean"] = base.masked_mean(gate_BT, inputs.mask_BT)
  return loss_BT, metrics


def sapo(tau_pos: float = 1.0, tau_neg: float = 1.05) -> base.PolicyLoss:
  """ℓ = −A·f(r), f(r) = σ(τ(r − 1))·4/τ, τ = τ_pos if A > 0 else τ_neg.

  SAPO, soft adaptive policy optimisation (arXiv:2511.20347; verl
  `compute_policy_loss_sapo`): a smooth temperature-controlled gate instead
  of a hard clip. g = −A·4σ(1−σ)·r, equal to −A at r = 1 and decaying away
  from it. Aggregate with `seq_mean_token_mean` (verl forces it). Nothing is
  clipped, so clip fractions are 0.

  Args:
    tau_pos: temperature for A > 0 (1.0, paper / verl default).
    tau_neg: temperature for A ≤ 0 (1.05).

  Returns:
    A PolicyLoss; metrics add `gate_mean`.
  """
  base.check_positive("sapo", tau_pos=tau_pos, tau_neg=tau_neg)
  return base.make("sapo", _sapo, tau_pos=tau_pos, tau_neg=tau_neg)


def _log_likelihood(inputs):
  loss_BT = -inputs.adv_BT * inputs.logp_BT
  zero = jnp.zeros_like(loss_BT, dtype=bool)
  return loss_BT, clipping.clip_metrics(zero, zero, inputs.mask_BT)


def reinforce() -> base.PolicyLoss:
  """ℓ = −A·log π_θ;  g = −A.

  REINFORCE (Williams 1992, doi:10.1007/BF00992696), verl
  `compute_policy_loss_reinforce` without importance weights; `old_logp` is
  used only for the ratio metrics. verl aggregates it with
  `seq_mean_token_sum` by default.

  Returns:
    A PolicyLoss.
  """
  return base.make("reinforce", _log_likelihood)


def gpg() -> base.PolicyLoss:
  """ℓ = −A·log π_θ;  g = −A (no ratio, no clip).

  GPG, group policy gradient (arXiv:2504.02546; verl
  `compute_policy_loss_gpg`): the loss is plain REINFORCE; GPG's changes live
  in its advantage (`mathrl.advantages.gpg`). Aggregate with `token_mean`.

  Returns:
    A PolicyLoss.
  """
  return base.make("gpg", _log_likelihood)
