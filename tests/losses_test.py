"""Golden values for mathrl.losses, from worked examples of each method.

Aggregation, KL, GSPO, CISPO, the PPO ratio table, GPPO, 80/20, Clip-Cov /
KL-Cov, SIREN, DRPO, STEER and NGRPO, each with its arithmetic in a
comment. The verl / TRL formulas used as baselines are written out by hand
here, never imported.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathrl import logprobs
from mathrl import losses

ATOL = 1e-5


def _call(loss, logp, old_logp, adv, mask, **extra):
  # One jit per call site: a single compile instead of op-by-op dispatch.
  fn = jax.jit(
      lambda lp, old, a, m, ex: loss(
          logp=lp, old_logp=old, advantages=a, mask=m, **ex
      )
  )
  return fn(logp, old_logp, adv, mask, extra)


def _value_and_token_grad(loss, agg, logp, old_logp, adv, mask, **extra):
  """(aggregated loss, ∂ loss/∂ logp) for a loss and an aggregation."""

  def f(lp):
    per_token, _ = _call(loss, lp, old_logp, adv, mask, **extra)
    return agg(per_token, mask)

  return jax.jit(jax.value_and_grad(f))(logp)


# ---------------------------------------------------------------- §1.10 table
# Tokens: A = [+1]*4 + [-1]*4, r = [0.7, 1.0, 1.25, 1.5, 0.5, 0.9, 1.3, 4.0].
TABLE_ADV = np.array([[1, 1, 1, 1, -1, -1, -1, -1]], np.float32)
TABLE_RATIO = np.array([[0.7, 1.0, 1.25, 1.5, 0.5, 0.9, 1.3, 4.0]], np.float32)
TABLE_PI = np.array([[0.3, 0.5, 0.2, 0.6, 0.4, 0.1, 0.7, 0.05]], np.float32)
TABLE_LOGP = np.log(TABLE_PI)
TABLE_OLD = TABLE_LOGP - np.log(TABLE_RATIO)
TABLE_MASK = np.ones_like(TABLE_ADV)


def _verl_vanilla(adv, ratio, clip_low, clip_high, clip_c):
  """verl compute_policy_loss_vanilla, by hand (numpy): value per token."""
  l1 = -adv * ratio
  l2 = -adv * np.clip(ratio, 1 - clip_low, 1 + clip_high)
  l12 = np.maximum(l1, l2)
  l3 = np.minimum(-adv * clip_c, l12)
  return np.where(adv < 0, l3, l12)


@pytest.mark.parametrize(
    "name, hparams, want_loss, want_grad, want_mean",
    [
        # PPO ε=0.2: clipped at 1.2 for A>0 (tokens 3, 4), at 0.8 for A<0
        # (token 5); Σ = −4.1 + 7.0 = 2.9 → 2.9/8 = 0.3625.
        ("ppo_clip", {},
         [-0.7, -1, -1.2, -1.2, 0.8, 0.9, 1.3, 4.0],
         [-0.7, -1, 0, 0, 0, 0.9, 1.3, 4.0], 0.3625),
        # + dual clip c=3 caps token 8 at −A·3 = 3: (2.9 − 1)/8 = 0.2375.
        ("ppo_clip", {"dual_clip": 3.0},
         [-0.7, -1, -1.2, -1.2, 0.8, 0.9, 1.3, 3.0],
         [-0.7, -1, 0, 0, 0, 0.9, 1.3, 0], 0.2375),
        # DAPO 0.2/0.28 (+ c=10): 1.25 < 1.28 unclipped, 1.5 → 1.28;
        # Σ = −4.23 + 7.0 = 2.77 → 0.34625.
        ("ppo_clip", {"clip_high": 0.28, "dual_clip": 10.0},
         [-0.7, -1, -1.25, -1.28, 0.8, 0.9, 1.3, 4.0],
         [-0.7, -1, -1.25, 0, 0, 0.9, 1.3, 4.0], 0.34625),
        # GPPO β1=β2=1: same values, clipped tokens keep g = −β(1±ε)A.
        ("gppo", {},
         [-0.7, -1, -1.25, -1.28, 0.8, 0.9, 1.3, 4.0],
         [-0.7, -1, -1.25, -1.28, 0.8, 0.9, 1.3, 4.0], 0.34625),
        # GPPO β1=0.25: token 5 → 0.25·0.8 = 0.2; Σ = −4.23 + 6.4 → 0.27125.
        ("gppo", {"beta1": 0.25},
         [-0.7, -1, -1.25, -1.28, 0.2, 0.9, 1.3, 4.0],
         [-0.7, -1, -1.25, -1.28, 0.2, 0.9, 1.3, 4.0], 0.27125),
    ],
)
def test_ratio_table(name, hparams, want_loss, want_grad, want_mean):
  loss = getattr(losses, name)(**hparams)
  per_token, _ = _call(loss, TABLE_LOGP, TABLE_OLD, TABLE_ADV, TABLE_MASK)
  np.testing.assert_allclose(per_token[0], want_loss, atol=ATOL)
  value, grad = _value_and_token_grad(
      loss, losses.token_mean, TABLE_LOGP, TABLE_OLD, TABLE_ADV, TABLE_MASK
  )
  np.testing.assert_allclose(value, want_mean, atol=ATOL)
  # token_mean divides by 8 tokens: ∂L/∂logp_t = g_t / 8.
  np.testing.assert_allclose(grad[0] * 8, want_grad, atol=ATOL)


@pytest.mark.parametrize(
    "clip_high, clip_c", [(0.2, 3.0), (0.28, 10.0)]
)
def test_ppo_clip_matches_verl_vanilla_formula(clip_high, clip_c):
  loss = losses.ppo_clip(clip_low=0.2, clip_high=clip_high, dual_clip=clip_c)
  per_token, metrics = _call(
      loss, TABLE_LOGP, TABLE_OLD, TABLE_ADV, TABLE_MASK
  )
  want = _verl_vanilla(TABLE_ADV, TABLE_RATIO, 0.2, clip_high, clip_c)
  np.testing.assert_allclose(per_token, want, atol=ATOL)
  # verl pg_clipfrac = mean(l2 > l1); pg_clipfrac_lower = mean(l12 > l3, A<0).
  l1 = -TABLE_ADV * TABLE_RATIO
  l2 = -TABLE_ADV * np.clip(TABLE_RATIO, 0.8, 1 + clip_high)
  np.testing.assert_allclose(metrics["clip_frac"], np.mean(l2 > l1), atol=ATOL)
  lower = (np.maximum(l1, l2) > -TABLE_ADV * clip_c) & (TABLE_ADV < 0)
  np.testing.assert_allclose(
      metrics["dual_clip_frac"], np.mean(lower), atol=ATOL
  )


def test_ngrpo_asymmetric_clip():
  # NGRPO (seed §7): ε_low=0.16, ε_high=0.24 → A<0 clipped at 0.84,
  # A>0 at 1.24. r=0.8, A=−1 → −(−1)·0.84 = 0.84; r=1.3, A=+1 → −1.24.
  loss = losses.ppo_clip(clip_low=0.16, clip_high=0.24)
  ratio = np.array([[0.8, 1.3, 1.2]], np.float32)
  adv = np.array([[-1.0, 1.0, 1.0]], np.float32)
  logp = np.log(np.full_like(ratio, 0.5))
  per_token, _ = _call(
      loss, logp, logp - np.log(ratio), adv, np.ones_like(ratio)
  )
  np.testing.assert_allclose(per_token[0], [0.84, -1.24, -1.2], atol=ATOL)


def test_cispo_verl_and_trl():
  # verl cap 1.2: w = [0.7,1,1.2,1.2,0.5,0.9,1.2,1.2]; ℓ = −w·A·log π, e.g.
  # token 1: −0.7·ln 0.3 = 0.842781; g = −w·A.
  per_token, _ = _call(
      losses.cispo(clip_high=0.2), TABLE_LOGP, TABLE_OLD, TABLE_ADV, TABLE_MASK
  )
  np.testing.assert_allclose(
      per_token[0],
      [0.842781, 0.693147, 1.931325, 0.612991,
       -0.458145, -2.072327, -0.428010, -3.594879],
      atol=ATOL,
  )
  _, grad = _value_and_token_grad(
      losses.cispo(clip_high=0.2), losses.token_mean,
      TABLE_LOGP, TABLE_OLD, TABLE_ADV, TABLE_MASK,
  )
  np.testing.assert_allclose(
      grad[0] * 8, [-0.7, -1, -1.2, -1.2, 0.5, 0.9, 1.2, 1.2], atol=ATOL
  )
  # TRL cispo: w = sg(min(r, 5.0)) (absolute cap) = clip_high 4.0 here.
  _, grad = _value_and_token_grad(
      losses.cispo(clip_high=4.0), losses.token_mean,
      TABLE_LOGP, TABLE_OLD, TABLE_ADV, TABLE_MASK,
  )
  trl_w = np.minimum(TABLE_RATIO, 5.0)
  np.testing.assert_allclose(grad * 8, -trl_w * TABLE_ADV, atol=ATOL)


# ---------------------------------------------------------------- §1.4 GSPO
GSPO_LOGP = np.log(np.array([[0.5, 0.4, 0.3, 0.2], [0.6, 0.7, 0.8, 0.9]],
                            np.float32))
GSPO_D = np.array([[0.01, -0.02, 0.03, 0.0], [0.002, 0.0, -0.001, 0.0]],
                  np.float32)
GSPO_MASK = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], np.float32)
GSPO_ADV = np.array([1.0, -1.0], np.float32)


def test_gspo_golden():
  # Seq 1: s = exp(0.02/4) = 1.005013 > 1.0004 → clipped: ℓ = −1.0004, g = 0.
  # Seq 2: s = exp(0.001/3) = 1.000333 inside → ℓ = 1.000333, and under
  # seq_mean_token_mean (B' = 2) ∂L/∂logp_t = (1/2)·(−A·s/3) = 0.333444/2.
  loss = losses.gspo()
  old = GSPO_LOGP - GSPO_D
  per_token, metrics = _call(loss, GSPO_LOGP, old, GSPO_ADV, GSPO_MASK)
  np.testing.assert_allclose(per_token[0], [-1.0004] * 4, atol=ATOL)
  np.testing.assert_allclose(per_token[1], [1.000333] * 3 + [0], atol=ATOL)
  np.testing.assert_allclose(metrics["clip_frac_high"], 4 / 7, atol=ATOL)
  _, grad = _value_and_token_grad(
      loss, losses.seq_mean_token_mean, GSPO_LOGP, old, GSPO_ADV, GSPO_MASK
  )
  np.testing.assert_allclose(grad[0], 0.0, atol=ATOL)
  np.testing.assert_allclose(grad[1] * 2, [0.333444] * 3 + [0], atol=ATOL)


def test_gspo_gradient_equals_trl_sequence_form():
  # TRL importance_sampling_level="sequence": s_i = exp(mean_t d) with the
  # gradient through the mean, ℓ_i = max(−A s_i, −A clip(s_i)), loss "grpo"
  # (seq-mean-token-mean) = mean_i ℓ_i. Same gradient as the token form.
  mask = jnp.asarray(GSPO_MASK)
  old = GSPO_LOGP - 2 * GSPO_D  # both sequences inside a wide clip range

  def trl(lp):
    d = (lp - old) * mask
    s = jnp.exp(jnp.sum(d, -1) / jnp.sum(mask, -1))
    adv = jnp.asarray(GSPO_ADV)
    per_seq = jnp.maximum(-adv * s, -adv * jnp.clip(s, 1 - 0.2, 1 + 0.2))
    return jnp.mean(per_seq)

  _, grad = _value_and_token_grad(
      losses.gspo(clip_low=0.2, clip_high=0.2), losses.seq_mean_token_mean,
      GSPO_LOGP, old, GSPO_ADV, GSPO_MASK,
  )
  np.testing.assert_allclose(grad, jax.grad(trl)(GSPO_LOGP), atol=ATOL)


# ---------------------------------------------------------------- GMPO, SAPO
def test_geo_mean_golden():
  # Seq 1: A=+1, d=[0.1, 0.6, −0.5]; clip ±0.4 → pessimistic min(d, clip d)
  # = [0.1, 0.4, −0.5], mean 0 → s = 1, ℓ = −1. Token 2 is clipped (g = 0);
  # tokens 1, 3: ∂ℓ/∂logp = −A·s/3.
  # Seq 2: A=−0.5, d=[−0.6, 0.2]; max(d, clip d) = [−0.4, 0.2], mean −0.1,
  # s = e^−0.1 = 0.904837, ℓ = 0.452419; token 2: −A·s/2 = 0.226209.
  # seq_mean_token_mean = (−1 + 0.452419)/2 = −0.273791, gradients ×1/2.
  logp = np.log(np.array([[0.3, 0.4, 0.5], [0.6, 0.7, 0.8]], np.float32))
  d = np.array([[0.1, 0.6, -0.5], [-0.6, 0.2, 0.0]], np.float32)
  mask = np.array([[1, 1, 1], [1, 1, 0]], np.float32)
  adv = np.array([1.0, -0.5], np.float32)
  loss = losses.geo_mean()
  per_token, metrics = _call(loss, logp, logp - d, adv, mask)
  np.testing.assert_allclose(
      per_token, [[-1, -1, -1], [0.452419, 0.452419, 0]], atol=ATOL
  )
  # d outside ±0.4: tokens (0,1), (0,2) with A>0; (1,0) with A<0.
  np.testing.assert_allclose(metrics["clip_frac_high"], 2 / 5, atol=ATOL)
  np.testing.assert_allclose(metrics["clip_frac_low"], 1 / 5, atol=ATOL)
  value, grad = _value_and_token_grad(
      loss, losses.seq_mean_token_mean, logp, logp - d, adv, mask
  )
  np.testing.assert_allclose(value, -0.273791, atol=ATOL)
  np.testing.assert_allclose(
      grad, [[-1 / 6, 0, -1 / 6], [0, 0.113105, 0]], atol=ATOL
  )


def test_sapo_golden():
  # f(r) = σ(τ(r−1))·4/τ, ℓ = −A·f, g = −A·4σ(1−σ)·r; τ_pos=1, τ_neg=1.05.
  # (A=+1, r=1): σ(0)=0.5 → ℓ = −2, g = −1.
  # (A=+1, r=1.5): σ(0.5)=0.622459 → ℓ = −2.489837, g = −1.410022.
  # (A=−1, r=0.5): σ(−0.525)=0.371686 → ℓ = 4·0.371686/1.05 = 1.415938,
  #   g = 4·0.371686·0.628314·0.5 = 0.467070.
  # (A=−1, r=1.2): σ(0.21)=0.552309 → ℓ = 2.104030, g = 1.186867.
  ratio = np.array([[1.0, 1.5, 0.5, 1.2]], np.float32)
  adv = np.array([[1.0, 1.0, -1.0, -1.0]], np.float32)
  logp = np.log(np.full_like(ratio, 0.4))
  mask = np.ones_like(ratio)
  loss = losses.sapo()
  per_token, _ = _call(loss, logp, logp - np.log(ratio), adv, mask)
  np.testing.assert_allclose(
      per_token[0], [-2.0, -2.489837, 1.415938, 2.104030], atol=ATOL
  )
  _, grad = _value_and_token_grad(
      loss, losses.token_mean, logp, logp - np.log(ratio), adv, mask
  )
  np.testing.assert_allclose(
      grad[0] * 4, [-1.0, -1.410022, 0.467070, 1.186867], atol=ATOL
  )


@pytest.mark.parametrize("name", ["reinforce", "gpg"])
def test_log_likelihood_losses(name):
  # ℓ = −A·log π; g = −A. A=[2, −1], π=[0.5, 0.25]:
  # ℓ = [−2·ln 0.5, ln 0.25] = [1.386294, −1.386294].
  logp = np.log(np.array([[0.5, 0.25]], np.float32))
  adv = np.array([[2.0, -1.0]], np.float32)
  mask = np.ones_like(adv)
  loss = getattr(losses, name)()
  per_token, _ = _call(loss, logp, logp + 0.3, adv, mask)
  np.testing.assert_allclose(per_token[0], [1.386294, -1.386294], atol=ATOL)
  _, grad = _value_and_token_grad(
      loss, losses.seq_mean_token_sum, logp, logp, adv, mask
  )
  np.testing.assert_allclose(grad[0], [-2.0, 1.0], atol=ATOL)


# ---------------------------------------------------------------- §2.6 80/20
FORK_ENTROPY = np.array(
    [[0.1, 2.3, 0.05, 0.8, 9.9], [1.5, 0.2, 0.3, 0.01, 0.9]], np.float32
)
FORK_MASK = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], np.float32)


@pytest.mark.parametrize("normalize_by_kept", [True, False])
def test_forking_tokens_golden(normalize_by_kept):
  # 9 valid tokens, ρ=0.2: k = int(9·0.2 + 0.9999) = 2 → keep {2.3, 1.5}
  # (the padded 9.9 is ignored). TRL's threshold quantile(valid H, 0.8)
  # = 1.14 keeps the same two. r = 1, A = [1, −1] → PPO ℓ = −A.
  logp = np.full(FORK_MASK.shape, -1.0, np.float32)
  adv = np.array([1.0, -1.0], np.float32)
  loss = losses.forking_tokens(normalize_by_kept=normalize_by_kept)
  per_token, metrics = _call(
      loss, logp, logp, adv, FORK_MASK, entropy=FORK_ENTROPY
  )
  scale = 9 / 2 if normalize_by_kept else 1.0
  want = np.zeros_like(logp)
  want[0, 1], want[1, 0] = -1.0 * scale, 1.0 * scale
  np.testing.assert_allclose(per_token, want, atol=ATOL)
  np.testing.assert_allclose(metrics["kept_frac"], 2 / 9, atol=ATOL)
  # verl authors: token-mean over kept tokens = (−1 + 1)/2 = 0; TRL: Σ/9.
  np.testing.assert_allclose(
      losses.token_mean(per_token, FORK_MASK), 0.0, atol=ATOL
  )
  kept_entropy = np.sort(FORK_ENTROPY[FORK_MASK > 0])
  assert np.quantile(kept_entropy, 0.8) == pytest.approx(1.14, abs=1e-6)


@pytest.mark.parametrize(
    "surrogate, want_kept, want_grad",
    [
        # PPO-clip 0.2/0.28: (0,1) has A = 1, r = 1.5 > 1.28 → ℓ = −1.28,
        # scaled by N/k = 9/2: −5.76, gradient 0 (clipped); (1,0) has
        # A = −1, r = 1 → ℓ = 1·4.5 = 4.5, g = −A·r·4.5/9 = +0.5.
        (losses.ppo_clip(clip_high=0.28), [-5.76, 4.5], [0.0, 0.5]),
        # CISPO ε_high 0.2, logp = −1: (0,1) w = clip(1.5, 0, 1.2) = 1.2,
        # ℓ = −1.2·1·(−1)·4.5 = 5.4, g = −w·A·4.5/9 = −0.6; (1,0) w = 1,
        # ℓ = −1·(−1)·(−1)·4.5 = −4.5, g = +0.5.
        (losses.cispo(clip_high=0.2), [5.4, -4.5], [-0.6, 0.5]),
    ],
)
def test_forking_tokens_weighting_composes_with_surrogates(
    surrogate, want_kept, want_grad):
  # The 80/20 example above keeps (0,1) and (1,0) of the 9 valid tokens;
  # every other token gets loss 0 and gradient 0 under either surrogate.
  loss = losses.weighted(surrogate,
                         losses.token_weighting.forking_tokens(0.2))
  logp = np.full(FORK_MASK.shape, -1.0, np.float32)
  old = logp.copy()
  old[0, 1] = -1.0 - np.log(1.5)  # r = 1.5 on the kept token of row 0
  adv = np.array([1.0, -1.0], np.float32)
  per_token, metrics = _call(loss, logp, old, adv, FORK_MASK,
                             entropy=FORK_ENTROPY)
  want = np.zeros_like(logp)
  want[0, 1], want[1, 0] = want_kept
  np.testing.assert_allclose(per_token, want, atol=ATOL)
  np.testing.assert_allclose(metrics["kept_frac"], 2 / 9, atol=ATOL)
  _, grad = _value_and_token_grad(loss, losses.token_mean, logp, old, adv,
                                  FORK_MASK, entropy=FORK_ENTROPY)
  want_g = np.zeros_like(logp)
  want_g[0, 1], want_g[1, 0] = want_grad
  np.testing.assert_allclose(grad, want_g, atol=ATOL)


def test_weighting_a_weighted_loss_is_an_error():
  with pytest.raises(ValueError, match="already a token-weighted"):
    losses.weighted(losses.steer(), losses.token_weighting.kl_cov())


# ---------------------------------------------------------------- §2.7 Cov
COV_ADV = np.array([[2, 2, 2, -0.5, -0.5], [-0.5] * 5], np.float32)
COV_LOGP = np.array(
    [[-0.05, -2.0, -0.9, -0.3, -1.0], [-0.5, -0.4, -1.9, -0.6, -0.2]],
    np.float32,
)
COV_RATIO = np.ones_like(COV_LOGP)
COV_RATIO[0, 0] = COV_RATIO[1, 2] = 1.1
COV_OLD = COV_LOGP - np.log(COV_RATIO)
COV_MASK = np.ones_like(COV_LOGP)


def test_token_covariance_golden():
  # mean A = 0.25, mean logp = −0.785: cov(0,0) = 1.75·0.735 = 1.286250.
  cov = losses.token_covariance(COV_ADV, COV_LOGP, COV_MASK)
  np.testing.assert_allclose(
      cov,
      [[1.2862, -2.1263, -0.2013, -0.3637, 0.1613],
       [-0.2137, -0.2887, 0.8362, -0.1387, -0.4387]],
      atol=1e-4,
  )


def test_clip_cov_golden():
  # r_c=2e-4 → n = max(int(2e-4·10), 1) = 1; only (0,0) has 1 < cov < 5 and
  # is not PPO-clipped (ε=1) → zeroed. Others: −A·r, (1,2): 0.5·1.1 = 0.55.
  # token-mean = (0 − 2 − 2 + 0.5 + 0.5 + 0.5·4 + 0.55)/10 = −0.045.
  loss = losses.clip_cov()
  per_token, metrics = _call(
      loss, COV_LOGP, COV_OLD, COV_ADV, COV_MASK, rng=jax.random.key(0)
  )
  np.testing.assert_allclose(
      per_token,
      [[0, -2, -2, 0.5, 0.5], [0.5, 0.5, 0.55, 0.5, 0.5]],
      atol=ATOL,
  )
  np.testing.assert_allclose(
      losses.token_mean(per_token, COV_MASK), -0.045, atol=ATOL
  )
  np.testing.assert_allclose(metrics["kept_frac"], 0.9, atol=ATOL)
  _, grad = _value_and_token_grad(
      loss, losses.token_mean, COV_LOGP, COV_OLD, COV_ADV, COV_MASK,
      rng=jax.random.key(0),
  )
  assert grad[0, 0] == 0.0 and grad[0, 1] != 0.0


def test_clip_cov_random_pick_is_uniform_subset():
  # Many candidates, n = 3 picks: exactly 3 tokens zeroed, and different
  # keys pick different subsets.
  adv = np.repeat(np.array([[3.0], [-3.0]], np.float32), 5, axis=1)
  logp = np.repeat(np.array([[-0.2], [-1.8]], np.float32), 5, axis=1)
  mask = np.ones_like(adv)
  # cov = (±3)·(±0.8) = 2.4 ∈ (1, 5) everywhere; r_c = 0.3 → n = 3.
  loss = losses.clip_cov(clip_cov_ratio=0.3)
  picks = []
  for seed in range(4):
    per_token, _ = _call(loss, logp, logp, adv, mask, rng=jax.random.key(seed))
    zeroed = np.asarray(per_token) == 0
    assert zeroed.sum() == 3
    picks.append(tuple(zeroed.reshape(-1)))
  assert len(set(picks)) > 1


def test_kl_cov_golden():
  # r_k=0.002 → k = 1: top cov token (0,0): −2·1.1 + |ln 1.1| = −2.104690;
  # others −A·r; token-mean = (−2.104690 − 3 + 2.55)/10 = −0.255469.
  loss = losses.kl_cov()
  per_token, metrics = _call(loss, COV_LOGP, COV_OLD, COV_ADV, COV_MASK)
  np.testing.assert_allclose(per_token[0, 0], -2.104690, atol=ATOL)
  np.testing.assert_allclose(
      losses.token_mean(per_token, COV_MASK), -0.255469, atol=ATOL
  )
  np.testing.assert_allclose(metrics["selected_frac"], 0.1, atol=ATOL)


def test_kl_cov_gradient_golden():
  # ∂ℓ/∂logp = −A·r + β·sign(d) on the picked token, −A·r elsewhere; /10
  # (token mean). Worked example, picked (0,0) with r = 1.1, d = ln 1.1 > 0:
  # (−2·1.1 + 1)/10 = −0.12; (1,2): +0.5·1.1/10 = 0.055; (0,1): −2/10.
  loss = losses.kl_cov()
  _, grad = _value_and_token_grad(
      loss, losses.token_mean, COV_LOGP, COV_OLD, COV_ADV, COV_MASK)
  np.testing.assert_allclose(grad[0, 0], -0.12, atol=ATOL)
  np.testing.assert_allclose(grad[1, 2], 0.055, atol=ATOL)
  np.testing.assert_allclose(grad[0, 1], -0.2, atol=ATOL)
  # At ratio 1 (d = 0) the penalty's gradient is sign(0) = 0, as PyTorch's
  # abs in the authors' code: the picked token gets −A·1/10 = −0.2 (JAX's
  # own |d| would give (−2 + 1)/10 = −0.1).
  _, grad = _value_and_token_grad(
      loss, losses.token_mean, COV_LOGP, COV_LOGP, COV_ADV, COV_MASK)
  np.testing.assert_allclose(grad[0, 0], -0.2, atol=ATOL)


# ---------------------------------------------------------------- STEER
STEER_ADV = np.array([[1.0, 1.0, -1.0, -1.0, 0.5]], np.float32)
STEER_PI = np.array([[0.9, 0.3, 0.6, 0.05, 0.5]], np.float32)
STEER_OLD_PI = np.array([[0.85, 0.25, 0.6, 0.05, 0.55]], np.float32)
STEER_H = np.array([[0.4, 1.5, 0.9, 2.0, 0.7]], np.float32)


@pytest.mark.parametrize(
    "linear, lambda_max, want",
    [
        # Ω = [0.031197, 0.248663, 0.155670, 0.945946, 0.001557];
        # linear [0.8, 1.2]: w = 1.2 − (Ω − Ωmin)·0.4/(Ωmax − Ωmin).
        (True, 1.2, [1.187446, 1.095337, 1.134725, 0.8, 1.2]),
        # exp λmin=0.8: k = −ln 0.8/0.945946 = 0.2358947, w = e^{−kΩ}.
        (False, 1.0, [0.992668, 0.943029, 0.963944, 0.8, 0.999633]),
    ],
)
def test_steer_weights_golden(linear, lambda_max, want):
  logp, old = np.log(STEER_PI), np.log(STEER_OLD_PI)
  mask = np.ones_like(logp)
  w = losses.steer_weights(
      logp, old, STEER_ADV, STEER_H, mask,
      lambda_min=0.8, lambda_max=lambda_max, linear=linear,
  )
  np.testing.assert_allclose(w[0], want, atol=ATOL)
  # The loss is w times verl's dual-clip PPO (0.2/0.28, c=10), and w is a
  # constant for the gradient: g = w·(−A·r) on unclipped tokens.
  loss = losses.steer(linear=linear, lambda_max=lambda_max)
  per_token, _ = _call(loss, logp, old, STEER_ADV, mask, entropy=STEER_H)
  ratio = STEER_PI / STEER_OLD_PI
  ppo = _verl_vanilla(STEER_ADV, ratio, 0.2, 0.28, 10.0)
  np.testing.assert_allclose(per_token, np.asarray(want)[None] * ppo,
                             atol=ATOL)
  _, grad = _value_and_token_grad(
      loss, losses.token_mean, logp, old, STEER_ADV, mask, entropy=STEER_H
  )
  # All five ratios lie inside [0.8, 1.28]: g = −w·A·r, /5 by token_mean.
  np.testing.assert_allclose(
      grad * 5, -np.asarray(want)[None] * STEER_ADV * ratio, atol=ATOL
  )


# ---------------------------------------------------------------- §2.8 SIREN
def test_top_p_entropy_golden():
  # p = [0.5, 0.2, 0.15, 0.1, 0.05], top-p 0.8: cumsum [0.5, 0.7, 0.85, ...]
  # keeps {0.5, 0.2} → q = [5/7, 2/7] → H = −Σ q ln q = 0.598270.
  # p = [0.85, 0.1, 0.05, ~0, ~0]: top-1 ≥ 0.8 → H^p = 0.
  probs = np.array(
      [[[0.5, 0.2, 0.15, 0.1, 0.05], [0.85, 0.1, 0.05, 1e-12, 1e-12]]],
      np.float32,
  )
  h = logprobs.top_p_entropy(np.log(probs), top_p=0.8)
  np.testing.assert_allclose(h[0], [0.598270, 0.0], atol=ATOL)


def test_siren_peak_mask_and_penalty_golden():
  # H^p = [0, .4, 1.2, .1, .6, 0, .3, .9, .2, .05]: sorted, position
  # 0.8·9 = 7.2 → thr = 0.6 + 0.2·(0.9 − 0.6) = 0.66; kept {1.2, 0.9},
  # H_sel = 1.05; with H0 = 0.9: 0.005·0.15² = 1.125e-4.
  h = np.array([[0, 0.4, 1.2, 0.1, 0.6, 0, 0.3, 0.9, 0.2, 0.05, 7.0]],
               np.float32)
  mask = np.ones_like(h)
  mask[0, -1] = 0  # padding with a huge entropy must not count
  keep = losses.peak_entropy_mask(h, mask, 0.2)
  np.testing.assert_array_equal(np.flatnonzero(keep[0]), [2, 7])
  np.testing.assert_allclose(losses.selected_entropy(h, mask), 1.05,
                             atol=ATOL)
  logp = np.full_like(h, -1.0)
  per_token, metrics = _call(
      losses.siren(), logp, logp, np.zeros(1, np.float32), mask,
      entropy_nucleus=h, entropy_anchor=0.9,
  )
  np.testing.assert_allclose(metrics["entropy_penalty"], 1.125e-4, rtol=1e-4)
  # A = 0: the PG part is 0, so token_mean = the penalty.
  np.testing.assert_allclose(
      losses.token_mean(per_token, mask), 1.125e-4, rtol=1e-4
  )
  # ∂penalty/∂H_t = 2c(H_sel − H0)/2 for the two kept tokens = 7.5e-4.
  grad = jax.grad(
      lambda e: losses.token_mean(
          _call(losses.siren(), logp, logp, np.zeros(1, np.float32), mask,
                entropy_nucleus=e, entropy_anchor=0.9)[0], mask)
  )(jnp.asarray(h))
  want = np.zeros_like(h)
  want[0, [2, 7]] = 7.5e-4
  np.testing.assert_allclose(grad, want, atol=1e-7)


# ---------------------------------------------------------------- §2.9 DRPO
def test_drpo_golden():
  # One prompt, s = [−0.2, −0.5, −0.8, −1.0], r = [1, 1, 0, 0],
  # ℓ = |o|/T = [2, 6, 5, 9]/10. w ∝ e^{(1−ℓ)/0.1} = [e^8, e^4] →
  # [0.982014, 0.017986]; softmax_neg(s/10) = [0.505, 0.495];
  # J = Σ w s − 10·LSE(s_neg/10) = −0.205396 − 6.031970 = −6.237368 → L = −J.
  # old = logp → KL_old = 0 → penalty coefficient max(1e3·(0 − 1e-4), 0) = 0.
  s = np.array([-0.2, -0.5, -0.8, -1.0], np.float32)
  lengths = np.array([2, 6, 5, 9])
  mask = (np.arange(10)[None] < lengths[:, None]).astype(np.float32)
  logp = s[:, None] * mask
  correct = np.array([[1.0, 1.0, 0.0, 0.0]], np.float32)
  loss = losses.drpo()
  value, grad = _value_and_token_grad(
      loss, losses.token_mean, logp, logp, np.zeros(4, np.float32), mask,
      correctness=correct,
  )
  np.testing.assert_allclose(value, 6.237368, atol=ATOL)
  # ∂L/∂logp_t = −(∂J/∂s_i)/|o_i|, ∂J/∂s = [0.982014, 0.017986, −0.505, −0.495].
  dj = np.array([0.982014, 0.017986, -0.504999, -0.495001])
  np.testing.assert_allclose(
      grad, (-dj / lengths)[:, None] * mask, atol=ATOL
  )


def test_drpo_flat_extras_equal_grouped():
  # correctness [B] + group_size and lengths [B] give the [P, G] result.
  lengths = np.array([2, 6, 5, 9, 3, 4, 3, 1])
  mask = (np.arange(10)[None] < lengths[:, None]).astype(np.float32)
  logp = np.linspace(-2.0, -0.1, 80, dtype=np.float32).reshape(8, 10) * mask
  correct = np.array([1, 1, 0, 0, 1, 0, 1, 0], np.float32)
  adv = np.zeros(8, np.float32)
  grouped, _ = _call(losses.drpo(), logp, logp, adv, mask,
                     correctness=correct.reshape(2, 4))
  flat, _ = _call(losses.drpo(group_size=4), logp, logp, adv, mask,
                  correctness=correct, lengths=lengths)
  np.testing.assert_allclose(flat, grouped, rtol=1e-6, atol=1e-6)


def test_drpo_kl_penalty_and_skipped_prompts():
  # Two prompts; the second is all-correct (skipped) but counts in P = 2.
  # KL_old = mean(old − logp) = 0.01 → coef = 1e3·(0.01 − 1e-4) = 9.9 and
  # the penalty adds 9.9·0.01 = 0.099 to the value.
  lengths = np.array([2, 6, 5, 9, 3, 3, 3, 3])
  mask = (np.arange(10)[None] < lengths[:, None]).astype(np.float32)
  s = np.array([-0.2, -0.5, -0.8, -1.0, -0.3, -0.3, -0.3, -0.3], np.float32)
  logp = s[:, None] * mask
  correct = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.float32)
  per_token, metrics = _call(
      losses.drpo(), logp, logp + 0.01, np.zeros(8, np.float32), mask,
      correctness=correct,
  )
  np.testing.assert_allclose(metrics["kl_coef"], 9.9, rtol=1e-4)
  np.testing.assert_allclose(metrics["active_prompt_frac"], 0.5, atol=ATOL)
  np.testing.assert_allclose(
      losses.token_mean(per_token, mask), 6.237368 / 2 + 0.099, atol=1e-4
  )


# ---------------------------------------------------------------- §0.1, §0.2
AGG_VALUES = np.array([[1, 2, 0, 0], [1, 1, 1, 1]], np.float32)
AGG_MASK = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.float32)


@pytest.mark.parametrize(
    "name, kwargs, want",
    [
        ("token_mean", {}, 7 / 6),              # (1+2+4)/6
        ("seq_mean_token_sum", {}, 3.5),        # (3 + 4)/2
        ("seq_mean_token_mean", {}, 1.25),      # (1.5 + 1)/2
        ("seq_mean_token_sum_norm", {}, 1.75),  # 7/T, T = 4 (verl)
        # TRL dr_grpo: 7/(B·L_max) = 7/(2·4) = 0.875.
        ("seq_mean_token_sum_norm", {"num_sequences": 2}, 0.875),
        ("seq_mean_token_sum_norm", {"loss_scale_factor": 7.0}, 1.0),
    ],
)
def test_aggregation_golden(name, kwargs, want):
  got = getattr(losses, name)(AGG_VALUES, AGG_MASK, **kwargs)
  np.testing.assert_allclose(got, want, atol=ATOL)


def test_seq_mean_token_mean_matches_verl_formula():
  # verl: Σ_t ℓm/(Σ_t m + 1e-8), then mean over non-empty rows; an all-zero
  # row is excluded. Differences of ~1e-8 are expected.
  values = np.concatenate([AGG_VALUES, np.full((1, 4), 5.0, np.float32)])
  mask = np.concatenate([AGG_MASK, np.zeros((1, 4), np.float32)])
  per_seq = (values * mask).sum(-1) / (mask.sum(-1) + 1e-8)
  nonempty = mask.sum(-1) > 0
  verl = per_seq[nonempty].sum() / nonempty.sum()
  np.testing.assert_allclose(
      losses.seq_mean_token_mean(values, mask), verl, atol=1e-6
  )


@pytest.mark.parametrize(
    "logp, ref, k1, k2, k3",
    [(-1.0, -1.5, 0.5, 0.125, 0.106531), (-1.5, -1.0, -0.5, 0.125, 0.148721)],
)
def test_kl_golden(logp, ref, k1, k2, k3):
  # d = logp − ref; k3 = e^{−d} + d − 1: e^{−0.5} − 0.5 = 0.106531,
  # e^{0.5} − 1.5 = 0.148721.
  lp, rf = np.full((1, 2), logp, np.float32), np.full((1, 2), ref, np.float32)
  np.testing.assert_allclose(losses.kl_k1(lp, rf), k1, atol=ATOL)
  np.testing.assert_allclose(losses.kl_k2(lp, rf), k2, atol=ATOL)
  np.testing.assert_allclose(losses.kl_k3(lp, rf), k3, atol=ATOL)
  np.testing.assert_allclose(losses.kl_abs(lp, rf), abs(k1), atol=ATOL)
  # Straight-through: value of k1 / k3, gradient of k2 (= d).
  np.testing.assert_allclose(losses.kl_k1_plus(lp, rf), k1, atol=ATOL)
  np.testing.assert_allclose(losses.kl_k3_plus(lp, rf), k3, atol=ATOL)
  for fn in (losses.kl_k1_plus, losses.kl_k3_plus, losses.kl_k2):
    grad = jax.grad(lambda x, f=fn: jnp.sum(f(x, rf)))(jnp.asarray(lp))
    np.testing.assert_allclose(grad, k1, atol=ATOL)


def test_kl_k3_verl_clamps():
  # verl low_var_kl: clamp (ref − logp) to [−20, 20], result to [−10, 10].
  lp = np.array([[-30.0, -1.0]], np.float32)
  rf = np.array([[-1.0, -1.0]], np.float32)
  x = np.clip(rf - lp, -20, 20)
  verl = np.clip(np.exp(x) - x - 1, -10, 10)
  np.testing.assert_allclose(
      losses.kl_k3(lp, rf, value_clip=10.0), verl, rtol=1e-6
  )
  assert np.isfinite(losses.kl_k3(lp, rf)).all()


def test_entropy_bonus_sign():
  # b = −c·H: minimising the loss raises the entropy.
  h = np.array([[1.0, 2.0, 3.0]], np.float32)
  mask = np.array([[1, 1, 0]], np.float32)
  np.testing.assert_allclose(
      losses.entropy_bonus(h, mask, coef=0.01), [[-0.01, -0.02, 0.0]]
  )
  with pytest.raises(ValueError, match="coef"):
    losses.entropy_bonus(h, coef=-1.0)


# ------------------------------------------- verl formulas on random inputs
def _random_batch(seed):
  rng = np.random.default_rng(seed)
  logp = np.log(rng.uniform(0.05, 0.95, (4, 6))).astype(np.float32)
  old = (logp - 0.5 * rng.standard_normal((4, 6))).astype(np.float32)
  adv = rng.standard_normal(4).astype(np.float32)
  mask = (np.arange(6)[None] < np.array([6, 3, 5, 1])[:, None]).astype(
      np.float32
  )
  return logp, old, adv, mask


def test_geo_mean_matches_verl_formula():
  # verl compute_policy_loss_geo_mean, by hand: per sequence
  # −Ā·exp(Σ_t sgn·min(sgn·d, sgn·clip(d))·m / (Σm + 1e-8)), mean over rows.
  logp, old, adv, mask = _random_batch(0)
  adv_bt = np.repeat(adv[:, None], 6, axis=1)
  d = logp - old
  sgn = np.sign(adv_bt)
  dc = np.clip(d, -0.4, 0.4)
  dmin = sgn * np.minimum(sgn * d, sgn * dc)
  n = mask.sum(-1)
  ratio = np.exp((dmin * mask).sum(-1) / (n + 1e-8))
  seq_adv = (adv_bt * mask).sum(-1) / (n + 1e-8)
  verl = np.mean(-seq_adv * ratio)  # every row is non-empty here
  per_token, _ = _call(losses.geo_mean(), logp, old, adv, mask)
  np.testing.assert_allclose(
      losses.seq_mean_token_mean(per_token, mask), verl, rtol=1e-5
  )


def test_gspo_matches_verl_formula():
  # verl compute_policy_loss_gspo value: s_i = exp(Σ_t d·m/Σm) on every
  # token, max(−A s, −A clip(s)), then seq-mean-token-mean.
  logp, old, adv, mask = _random_batch(1)
  old = (logp - 0.01 * (logp - old)).astype(np.float32)  # tiny ratios
  d = logp - old
  s = np.exp((d * mask).sum(-1) / mask.sum(-1))[:, None]
  a = adv[:, None]
  per_tok = np.maximum(-a * s, -a * np.clip(s, 1 - 3e-4, 1 + 4e-4))
  per_seq = (per_tok * mask).sum(-1) / mask.sum(-1)
  per_token, _ = _call(losses.gspo(), logp, old, adv, mask)
  np.testing.assert_allclose(
      losses.seq_mean_token_mean(per_token, mask), per_seq.mean(), rtol=1e-5
  )
