"""Tests of block A of mathrl.advantages: building blocks, baselines, seeds.

Golden numbers are worked examples of each method, with the arithmetic in
comments;
verl/TRL baselines are also checked against those libraries' formulas,
written here in numpy float64 (not imported).
"""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathrl import advantages

ATOL = 1e-5
P, G, T, K = 3, 4, 5, 2


def _update(tx, rewards, mask=None, **extra):
  rewards = jnp.asarray(rewards, jnp.float32)
  if mask is not None:
    mask = jnp.asarray(mask, jnp.float32)
  adv, _ = tx.update(rewards, tx.init(rewards), mask=mask, **extra)
  return np.asarray(adv)


def _token_mask(lengths_PG, num_tokens):
  lengths_PG = np.asarray(lengths_PG)
  return (np.arange(num_tokens) < lengths_PG[..., None]).astype(np.float32)


def _np_grpo(r, eps):
  """verl / TRL GRPO: (r − mean)/(std_ddof1 + eps), float64."""
  r = np.asarray(r, np.float64)
  mean = r.mean(1, keepdims=True)
  return (r - mean) / (r.std(1, ddof=1, keepdims=True) + eps)


def _np_masked_whiten(x, m):
  """verl `masked_whiten`: unbiased var over masked entries, +1e-8 in rsqrt."""
  n = m.sum()
  mu = (x * m).sum() / n
  var = (((x - mu) ** 2) * m).sum() / (n - 1)
  return (x - mu) / np.sqrt(var + 1e-8) * m


R2 = [[1.0, 0, 0, 0], [1, 1, 1, 0]]

# --------------------------------------------------------------------------
# Building blocks.


def test_center_scale_and_median_blocks():
  r = np.array([[0.2, 0.9, 0.5, 0.7], [3.0, 1.0, 2.0, 2.0]])
  # means 0.575 and 2.0.
  centred = _update(advantages.center_by_group_mean(), r)
  np.testing.assert_allclose(
      centred, [[-0.375, 0.325, -0.075, 0.125], [1, -1, 0, 0]], atol=ATOL
  )
  # std_ddof1 of row 1: sqrt((1 + 1 + 0 + 0)/3) = 0.816497.
  scaled = _update(advantages.scale_by_group_std(eps=0.0), centred)
  np.testing.assert_allclose(scaled, _np_grpo(r, 0.0), atol=ATOL)
  # Lower medians (torch): sorted [0.2,0.5,0.7,0.9] → 0.5; [1,2,2,3] → 2.
  median = _update(advantages.center_by_group_median(), r)
  np.testing.assert_allclose(
      median, [[-0.3, 0.4, 0.0, 0.2], [1, -1, 0, 0]], atol=ATOL
  )
  # Mean absolute deviation of row 1: (1 + 1 + 0 + 0)/4 = 0.5.
  mad = _update(advantages.scale_by_group_mad(eps=0.0), centred)
  np.testing.assert_allclose(mad[1], [2, -2, 0, 0], atol=ATOL)
  # Median absolute deviation of row 0 about the lower median 0.5:
  # |dev| = [0.3, 0.4, 0, 0.2] → sorted [0, 0.2, 0.3, 0.4] → lower median 0.2.
  mad_median = _update(
      advantages.scale_by_group_mad(eps=0.0, statistic="median"), r
  )
  np.testing.assert_allclose(mad_median[0], r[0] / 0.2, atol=ATOL)


def test_blocks_ignore_masked_samples_and_zero_them():
  # The masked sample holds NaN garbage: it must not reach any statistic.
  r = np.array([[1.0, 0, 0, np.nan], [1, 1, 1, 0]])
  mask = np.array([[1.0, 1, 1, 0], [1, 1, 1, 1]])
  out = _update(advantages.grpo(), r, mask)
  # Row 0 over [1, 0, 0]: mean 1/3, std_ddof1 sqrt(1/3) = 0.577350, so
  # A = (2/3)/0.577351 = 1.154698 and (−1/3)/0.577351 = −0.577349.
  np.testing.assert_allclose(out[0, :3], _np_grpo([[1.0, 0, 0]], 1e-6)[0],
                             atol=ATOL)
  np.testing.assert_allclose(out[0, :3], [1.154698, -0.577349, -0.577349],
                             atol=ATOL)
  assert out[0, 3] == 0.0
  np.testing.assert_allclose(out[1], _np_grpo(R2, 1e-6)[1], atol=ATOL)


def test_leave_one_out_and_sum_rewards():
  # Row 0 baselines: (0+0+0)/3, (1+0+0)/3, ... → [1, −1/3, −1/3, −1/3].
  out = _update(advantages.leave_one_out_baseline(), R2)
  np.testing.assert_allclose(
      out, [[1, -1 / 3, -1 / 3, -1 / 3], [1 / 3, 1 / 3, 1 / 3, -1]],
      atol=ATOL)
  r = np.stack([np.array(R2), np.full((2, 4), 2.0)], -1)
  # 1·corr + 0.5·2 = corr + 1.
  summed = _update(advantages.sum_rewards([1.0, 0.5]), r)
  np.testing.assert_allclose(summed, np.array(R2) + 1.0, atol=ATOL)
  with pytest.raises(ValueError, match="reward_weights has 3 entries"):
    _update(advantages.sum_rewards([1.0, 1.0, 1.0]), r)


def test_whiten_over_batch_matches_verl_masked_whiten():
  x = np.array([[0.3, -1.0, 2.0, 0.5], [1.5, 0.0, -0.2, 0.7]])
  mask = np.array([[1.0, 1, 0, 1], [1, 1, 1, 1]])
  out = _update(advantages.whiten_over_batch(), x, mask)
  np.testing.assert_allclose(out, _np_masked_whiten(x, mask), atol=ATOL)
  # Token weights: a per-sample value on every token equals weighting the
  # sample by its length (GDPO's verl variant).
  lengths = np.array([[3, 1, 2, 2], [1, 1, 1, 1]])
  tm = _token_mask(lengths, 3)
  per_token = _update(
      advantages.chain(advantages.broadcast_to_tokens(),
                       advantages.whiten_over_batch()),
      x, token_mask=tm)
  by_length = _update(
      advantages.whiten_over_batch(weight_by_length=True), x, lengths=lengths
  )
  np.testing.assert_allclose(per_token[..., 0], by_length, atol=ATOL)
  np.testing.assert_allclose(
      per_token, _np_masked_whiten(x[..., None] * tm, tm), atol=ATOL
  )


# --------------------------------------------------------------------------
# Baselines.


def test_grpo_golden_verl_and_trl():
  # Row 0: mean 0.25, std_ddof1 sqrt(0.75/3) = 0.5 → 0.75/(0.5 + eps) = 1.5.
  verl = _update(advantages.grpo(), R2)
  np.testing.assert_allclose(
      verl, [[1.499997, -0.499999, -0.499999, -0.499999],
             [0.499999, 0.499999, 0.499999, -1.499997]], atol=ATOL)
  np.testing.assert_allclose(verl, _np_grpo(R2, 1e-6), atol=ATOL)
  trl = _update(advantages.grpo(eps=1e-4), R2)
  # TRL: 0.75/(0.5 + 1e-4) = 1.4997.
  np.testing.assert_allclose(
      trl, [[1.4997, -0.4999, -0.4999, -0.4999],
            [0.4999, 0.4999, 0.4999, -1.4997]], atol=ATOL)
  np.testing.assert_allclose(trl, _np_grpo(R2, 1e-4), atol=ATOL)
  assert np.all(_update(advantages.grpo(), [[1.0, 1, 1, 1]]) == 0.0)


def test_dr_grpo_rloo_and_their_relations():
  dr = _update(advantages.dr_grpo(), R2)
  # r − mean: [1 − 0.25, −0.25, ...], [1 − 0.75, ..., −0.75].
  np.testing.assert_allclose(
      dr, [[0.75, -0.25, -0.25, -0.25], [0.25, 0.25, 0.25, -0.75]],
      atol=ATOL)
  # dr_grpo is grpo without the std: grpo = dr_grpo/(std + eps).
  std = np.array(R2).std(1, ddof=1, keepdims=True)
  np.testing.assert_allclose(
      _update(advantages.grpo(), R2), dr / (std + 1e-6), atol=ATOL
  )
  # RLOO = G/(G − 1)·(r − mean) (verl `compute_rloo_outcome_advantage`).
  np.testing.assert_allclose(
      _update(advantages.rloo(), R2), 4 / 3 * dr, atol=ATOL
  )


def test_reinforce_pp_golden():
  lengths = np.array([[3, 2, 4, 1], [2, 2, 2, 5]])
  tm = _token_mask(lengths, T)
  out = _update(advantages.reinforce_pp(), R2, token_mask=tm)
  # γ = 1: every token of response i has return r_i; token-weighted mean
  # 9/21 and unbiased variance give the verl numbers.
  expected = [1.126872, -0.845154, -0.845154, -0.845154,
              1.126872, 1.126872, 1.126872, -0.845154]
  np.testing.assert_allclose(out[..., 0].ravel(), expected, atol=ATOL)
  np.testing.assert_allclose(
      out, _np_masked_whiten(np.array(R2)[..., None] * tm, tm), atol=ATOL
  )
  assert np.all(out[tm == 0] == 0.0)
  # γ = 0.5: returns 0.5^(L−1−t)·r on valid tokens, then whitening.
  half = _update(advantages.reinforce_pp(gamma=0.5), R2, token_mask=tm)
  returns = (
      np.array(R2)[..., None]
      * 0.5 ** np.maximum(lengths[..., None] - 1 - np.arange(T), 0) * tm
  )
  np.testing.assert_allclose(half, _np_masked_whiten(returns, tm), atol=ATOL)


def test_reinforce_pp_baseline_golden():
  lengths = np.array([[3, 2, 4, 1], [2, 2, 2, 5]])
  tm = _token_mask(lengths, T)
  out = _update(advantages.reinforce_pp_baseline(), R2, token_mask=tm)
  expected = [1.639565, -0.327913, -0.327913, -0.327913,
              0.655826, 0.655826, 0.655826, -1.311652]
  np.testing.assert_allclose(out[..., 0].ravel(), expected, atol=ATOL)
  centred = np.array(R2) - np.mean(R2, 1, keepdims=True)
  np.testing.assert_allclose(
      out, _np_masked_whiten(centred[..., None] * tm, tm), atol=ATOL
  )


def test_opo_and_gpg_follow_verl():
  lengths = np.array([[1, 2, 3, 4], [4, 4, 4, 8]])
  out = _update(advantages.opo(), R2, lengths=lengths)
  # Row 0 baseline: (1·1)/(1+2+3+4) = 0.1; row 1: (4+4+4)/20 = 0.6.
  np.testing.assert_allclose(
      out, [[0.9, -0.1, -0.1, -0.1], [0.4, 0.4, 0.4, -0.6]], atol=ATOL)
  # GPG (verl): α = B / #nonzero scores = 8/4 = 2, A = α·(r − mean)/1.
  np.testing.assert_allclose(
      _update(advantages.gpg(), R2),
      2.0 * (np.array(R2) - np.mean(R2, 1, keepdims=True)), atol=ATOL)
  # "valid_groups": α = B/(B − M), M = 4 samples of the all-equal group.
  r = [[1.0, 0, 0, 0], [1, 1, 1, 1]]
  np.testing.assert_allclose(
      _update(advantages.gpg(alpha_from="valid_groups"), r)[0],
      2.0 * np.array([0.75, -0.25, -0.25, -0.25]), atol=ATOL)


def test_dapo_overlong_golden_and_transform():
  lengths = np.array([10000, 16384, 17408, 18432, 20480])
  # (L − 16384)/4096: ≤ 0 → 0; 1024/4096 = 0.25; 2048/4096 = 0.5; 1.
  np.testing.assert_allclose(
      advantages.overlong_penalty(
          lengths, max_length=20480, buffer_length=4096, penalty_factor=1.0),
      [0.0, 0.0, -0.25, -0.5, -1.0], atol=ATOL)
  tx = advantages.dapo_overlong()
  shaped = _update(tx, [[1.0, -1.0]], lengths=np.array([[17408, 20480]]))
  np.testing.assert_allclose(shaped, [[0.75, -2.0]], atol=ATOL)
  # chain(a, b) equals b after a.
  rewards = np.array(R2)
  lengths_PG = np.array([[17408, 100, 20480, 5], [1, 2, 18432, 4]])
  chained = _update(
      advantages.chain(advantages.dapo_overlong(), advantages.grpo()),
      rewards, lengths=lengths_PG)
  manual = _update(
      advantages.grpo(), _update(tx, rewards, lengths=lengths_PG)
  )
  np.testing.assert_allclose(chained, manual, atol=ATOL)


# --------------------------------------------------------------------------
# DGPO, GDPO, BNPO, FSPO, NGRPO, MC-GRPO.

DGPO_R = [[1.0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]]


def test_dgpo_golden():
  # DGAE row 0: 4·0.75/(1.5 + 1e-4) = 1.999867. DQW: D = −μ = [−0.25, −0.75,
  # −, −0.5], λ = 3·softmax(D/2) over the 3 valid groups.
  out = _update(advantages.dgpo(), DGPO_R)
  np.testing.assert_allclose(
      out, [[2.254389, -0.751463, -0.751463, -0.751463],
            [0.585240, 0.585240, 0.585240, -1.755720],
            [0, 0, 0, 0],
            [0.994762, 0.994762, -0.994762, -0.994762]], atol=ATOL)
  dgae = _update(advantages.dgpo(enable_dqw=False), DGPO_R)
  np.testing.assert_allclose(
      dgae[0], [1.999867, -0.666622, -0.666622, -0.666622], atol=ATOL)
  logits = np.array([-0.25, -0.75, -0.5]) / 2.0
  lam = 3 * np.exp(logits) / np.exp(logits).sum()
  np.testing.assert_allclose(lam, [1.127270, 0.877918, 0.994812], atol=ATOL)
  np.testing.assert_allclose(out[[0, 1, 3]], lam[:, None] * dgae[[0, 1, 3]],
                             atol=ATOL)
  np.testing.assert_allclose(
      advantages.valid_group_mask(jnp.asarray(DGPO_R)).sum(1), [4, 4, 0, 4])


def test_dgpo_multi_reward_and_code_quirk():
  # Group 0: accuracy all wrong, format varies → valid on the total reward.
  acc = np.array([[0.0, 0, 0, 0], [1, 0, 0, 0]])
  fmt = np.array([[1.0, 0, 1, 0], [1, 1, 1, 1]])
  r = np.stack([acc, fmt], -1)
  total = acc + fmt
  dgae = _update(advantages.dgpo(enable_dqw=False), total)
  # Paper: D = [0, −0.25] → λ = 2·softmax([0, −0.125]).
  lam = 2 * np.exp([0.0, -0.125]) / np.exp([0.0, -0.125]).sum()
  np.testing.assert_allclose(
      _update(advantages.dgpo(), r), lam[:, None] * dgae, atol=ATOL)
  # Code: an all-wrong main reward counts as mean 1 → D = [−1, −0.25].
  lam_code = 2 * np.exp([-0.5, -0.125]) / np.exp([-0.5, -0.125]).sum()
  np.testing.assert_allclose(
      _update(advantages.dgpo(zero_accuracy_quirk=True), r),
      lam_code[:, None] * dgae, atol=ATOL)


def test_gdpo_golden():
  corr = [[1.0, 1, 0, 0], [0, 0, 0, 1]]
  fmt = [[1.0, 0, 1, 0], [1, 1, 1, 1]]
  r = np.stack([corr, fmt], -1)
  # z-scores (eps 1e-4), summed, then (S − μ)/(std_ddof1 + 1e-4) over 8.
  np.testing.assert_allclose(
      _update(advantages.gdpo(), r),
      [[1.527404, 0.0, 0.0, -1.527404],
       [-0.440912, -0.440912, -0.440912, 1.322735]], atol=ATOL)
  s = _np_grpo(corr, 1e-4) + _np_grpo(fmt, 1e-4)
  np.testing.assert_allclose(
      _update(advantages.gdpo(), r),
      (s - s.mean()) / (s.std(ddof=1) + 1e-4), atol=ATOL)
  np.testing.assert_allclose(
      _update(advantages.gdpo(reward_weights=[1.0, 0.5]), r),
      [[1.322757, 0.440919, -0.440919, -1.322757],
       [-0.509116, -0.509116, -0.509116, 1.527347]], atol=ATOL)
  # verl variant: eps 1e-6, token-weighted whitening with these lengths.
  lengths = np.array([[3, 1, 2, 2], [1, 1, 1, 1]])
  np.testing.assert_allclose(
      _update(advantages.gdpo(batch_norm_domain="token"), r,
              lengths=lengths),
      [[1.249883, -0.113626, -0.113626, -1.477134],
       [-0.507237, -0.507237, -0.507237, 1.067207]], atol=ATOL)
  # One reward: GRPO on it (TRL's fallback).
  np.testing.assert_allclose(
      _update(advantages.gdpo(), corr), _np_grpo(corr, 1e-4), atol=ATOL)


def test_bnpo_golden():
  r = [[1.0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
  # p = [.25, .75, .5, 0], m = .375, v = .1041667, c = m(1−m)/v − 1 = 1.25,
  # α = 1 + c·m/3 = 1.15625, β = 1 + c·(1−m)/3 = 1.2604167.
  out = _update(advantages.bnpo(), r)
  np.testing.assert_allclose(
      out, [[0.672980, -0.224327, -0.224327, -0.224327],
            [0.251525, 0.251525, 0.251525, -0.754575],
            [0.447437, 0.447437, -0.447437, -0.447437],
            [0, 0, 0, 0]], atol=ATOL)
  acc = [[1.0, 0, 0, 0], [1, 1, 1, 0]]
  fmt = [[1.0, 1, 0, 1], [1, 1, 1, 1]]
  out = _update(advantages.bnpo(use_advantage_decomposition=True),
                np.stack([acc, fmt], -1))
  # Mean of acc (α = β = 7/6) and fmt (α = 1.7291667, β = 1.1041667) parts.
  np.testing.assert_allclose(
      out, [[0.448007, -0.029731, -0.388546, -0.029731],
            [0.119434, 0.119434, 0.119434, -0.358303]], atol=ATOL)
  # α = β = 1 when all groups share p (v = 0): REINFORCE with a baseline.
  r = [[1.0, 0, 0, 0], [0, 1, 0, 0]]
  np.testing.assert_allclose(
      _update(advantages.bnpo(), r),
      np.array(r) - 0.25, atol=ATOL)


def test_ngrpo_golden():
  r = [[1.0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
  # [0,0,0,0] + virtual 1: μ⁺ = 0.2, σ⁺ = sqrt(0.8/4) = 0.447214 → −0.447213.
  np.testing.assert_allclose(
      _update(advantages.ngrpo(), r),
      [[1.095443, -0.730295, -0.730295, -0.730295],
       [-0.447213, -0.447213, -0.447213, -0.447213],
       [0.447213, 0.447213, 0.447213, -1.788850],
       [0.730295, 0.730295, -1.095443, -1.095443],
       [0, 0, 0, 0]], atol=ATOL)


def test_mc_grpo_golden_and_pivot():
  r = [[2.0, 0, 0, 2, 0], [1, 0, 0, 1, 0], [0.2, 0.9, 0.5, 0.7, 0.1],
       [2, 1.5, 0, 0, 2], [2, 2, 2, 2, 2]]
  # Row 2: median 0.5, |dev| = [.3,.4,0,.2,.4] → median .3, + 1e-3 = .301.
  expected = [[2000, 0, 0, 2000, 0], [1000, 0, 0, 1000, 0],
              [-0.996678, 1.328904, 0, 0.664452, -1.328904],
              [0.998004, 0, -2.994012, -2.994012, 0.998004],
              [0, 0, 0, 0, 0]]
  np.testing.assert_allclose(
      _update(advantages.mc_grpo(), r), expected, rtol=1e-5, atol=ATOL)
  # Pivots by the stable rule: [4, 4, 2, 1, 2].
  keep = np.asarray(advantages.mc_grpo_keep_mask(jnp.asarray(r)))
  np.testing.assert_array_equal(np.argmin(keep, 1), [4, 4, 2, 1, 2])
  dropped = _update(advantages.mc_grpo(drop_pivot=True), r)
  np.testing.assert_allclose(
      dropped[2], [-0.996678, 1.328904, 0.664452, -1.328904], atol=ATOL)
  np.testing.assert_allclose(
      dropped[3], [0.998004, -2.994012, -2.994012, 0.998004], atol=ATOL)


def test_fspo_golden():
  r = [[1.0, 0.0, 0.5, 0.0]]
  # GRPO (eps 1e-6): mean 0.375, std_ddof1 0.478714 → [1.305580, ...].
  verdicts = np.array([[[1, 1, 1, -1, -1, 1]] * 3 + [[0] * 6]], np.float32)
  out = _update(advantages.fspo(), r, step_verdicts=verdicts)
  a = [1.305580, -0.783348, 0.261116, -0.783348]
  signs = np.array([1, 1, 1, -1, -1, 1])
  for i in range(3):
    np.testing.assert_allclose(out[0, i], abs(a[i]) * signs, atol=ATOL)
  np.testing.assert_allclose(out[0, 3], [a[3]] * 6, atol=ATOL)
  # The code's default +1 outside the span: only verified rows change.
  verdicts[0, :3, 5] = 0
  paper = _update(advantages.fspo(), r, step_verdicts=verdicts)
  code = _update(advantages.fspo(outside_span_value=1.0), r,
                 step_verdicts=verdicts)
  np.testing.assert_allclose(paper[0, 1, 5], -0.783348, atol=ATOL)
  np.testing.assert_allclose(code[0, 1, 5], 0.783348, atol=ATOL)
  np.testing.assert_allclose(code[0, 3], paper[0, 3], atol=ATOL)


def test_chain_equals_sequential_application():
  r = np.array([[0.2, 0.9, 0.5, 0.7], [3.0, 1.0, 2.0, 2.0]])
  a = advantages.center_by_group_median()
  b = advantages.scale_by_group_mad(eps=1e-3, statistic="median")
  np.testing.assert_allclose(
      _update(advantages.chain(a, b), r), _update(b, _update(a, r)),
      atol=ATOL)


MASK_EQUALS_DROP = (
    ("grpo", {}), ("rloo", {}), ("opo", {}), ("gpg", {}), ("dgpo", {}),
    ("gdpo", {"batch_norm_domain": "token"}), ("bnpo", {}), ("ngrpo", {}),
    ("mc_grpo", {}), ("reinforce_pp_baseline", {}),
)


def test_masked_sample_equals_dropped_sample():
  # A fifth, masked sample holding NaN garbage changes nothing.
  rng = np.random.default_rng(1)
  rewards = np.round(rng.uniform(size=(2, 4, 2)), 1)
  lengths = np.array([[3, 1, 2, 2], [1, 4, 2, 3]])
  padded = np.concatenate([rewards, np.full((2, 1, 2), np.nan)], 1)
  padded_lengths = np.concatenate([lengths, [[9], [9]]], 1)
  mask = np.concatenate([np.ones((2, 4)), np.zeros((2, 1))], 1)
  for name, hparams in MASK_EQUALS_DROP:
    tx = getattr(advantages, name)(**hparams)
    full = _update(tx, rewards, lengths=lengths,
                   token_mask=_token_mask(lengths, T))
    masked = _update(tx, padded, mask, lengths=padded_lengths,
                     token_mask=_token_mask(padded_lengths, T))
    np.testing.assert_allclose(masked[:, :4], full, atol=ATOL, err_msg=name)
    assert np.all(masked[:, 4] == 0.0), name


# --------------------------------------------------------------------------
# Contract tests over every exported transform factory of block A.

CONTRACT = (
    ("center_by_group_mean", {}),
    ("center_by_group_median", {}),
    ("scale_by_group_std", {}),
    ("scale_by_group_mad", {}),
    ("whiten_over_batch", {}),
    ("leave_one_out_baseline", {}),
    ("sum_rewards", {}),
    ("broadcast_to_tokens", {}),
    ("grpo", {}),
    ("dr_grpo", {}),
    ("rloo", {}),
    ("reinforce_pp", {"gamma": 0.9}),
    ("reinforce_pp_baseline", {}),
    ("opo", {}),
    ("gpg", {}),
    ("dgpo", {}),
    ("gdpo", {}),
    ("bnpo", {"use_advantage_decomposition": True}),
    ("ngrpo", {}),
    ("mc_grpo", {}),
    ("fspo", {}),
    ("dapo_overlong", {"max_length": T, "buffer_length": 2}),
)
TOKEN_LEVEL = ("broadcast_to_tokens", "reinforce_pp", "reinforce_pp_baseline",
               "fspo")
# An all-equal group carries no signal, except: after batch whitening (shift
# by the batch mean), in NGRPO (the virtual max-reward sample), and in the
# blocks that do not centre (shaping, combining, scaling raw rewards).
NONZERO_ON_EQUAL_GROUPS = (
    "sum_rewards", "dapo_overlong", "whiten_over_batch", "reinforce_pp",
    "reinforce_pp_baseline", "gdpo", "ngrpo", "broadcast_to_tokens",
    "scale_by_group_std", "scale_by_group_mad")
PER_COMPONENT = ("center_by_group_mean", "center_by_group_median",
                 "scale_by_group_std", "scale_by_group_mad",
                 "whiten_over_batch", "leave_one_out_baseline")


def _contract_inputs(multi_reward: bool):
  """Row 0 normal (one masked NaN sample), row 1 all equal, row 2 masked."""
  rng = np.random.default_rng(0)
  rewards = rng.uniform(size=(P, G, K) if multi_reward else (P, G))
  rewards[1] = 1.0
  rewards[0, 3] = np.nan
  rewards[2] = np.nan
  mask = np.ones((P, G), np.float32)
  mask[0, 3] = 0.0
  mask[2] = 0.0
  lengths = np.array([[5, 3, 1, 4], [2, 5, 5, 3], [0, 0, 0, 0]], np.int32)
  extras = dict(
      lengths=jnp.asarray(lengths),
      token_mask=jnp.asarray(_token_mask(lengths, T)),
      step_verdicts=jnp.asarray(rng.choice([-1.0, 0.0, 1.0], (P, G, T))),
      entropy=jnp.ones((P, G)),
      tokens=jnp.zeros((P, G, T), jnp.int32),
      progress=0.5,
      some_unknown_extra=jnp.ones((7,)),
  )
  return jnp.asarray(rewards, jnp.float32), jnp.asarray(mask), extras


def test_contract_list_covers_block_a_exports():
  # Every transform factory exported by block A of advantages/__init__.py is
  # in CONTRACT; the rest are plain array functions.
  source = pathlib.Path(advantages.__file__).read_text()
  block = source.split("# --- block A")[1].split("# --- end block A")[0]
  exported = set(re.findall(r"import (\w+)", block))
  functions = {"mc_grpo_keep_mask", "valid_group_mask", "overlong_penalty"}
  assert exported - functions == {n for n, _ in CONTRACT}


@pytest.mark.parametrize("name,hparams", CONTRACT, ids=[n for n, _ in CONTRACT])
def test_contract(name, hparams):
  tx = getattr(advantages, name)(**hparams)
  update = jax.jit(tx.update)
  for multi_reward in (False, True):
    rewards, mask, extras = _contract_inputs(multi_reward)
    if name == "broadcast_to_tokens" and multi_reward:
      with pytest.raises(ValueError, match="sum_rewards"):
        update(rewards, tx.init(rewards), mask=mask, **extras)
      continue
    abstract = tx.init(jax.ShapeDtypeStruct(rewards.shape, rewards.dtype))
    state = tx.init(rewards)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    adv, new_state = update(rewards, state, mask=mask, **extras)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert adv.dtype == jnp.float32
    if name in TOKEN_LEVEL:
      expected = (P, G, T)
    elif name == "dapo_overlong" and multi_reward:
      expected = (P, G, K + 1)
    elif name in PER_COMPONENT and multi_reward:
      expected = (P, G, K)
    else:
      expected = (P, G)
    assert adv.shape == expected, (name, adv.shape)
    adv = np.asarray(adv)
    assert np.all(np.isfinite(adv)), (name, adv)
    assert np.all(adv[2] == 0.0) and np.all(adv[0, 3] == 0.0), name
    if name not in NONZERO_ON_EQUAL_GROUPS:
      assert np.all(adv[1] == 0.0), (name, adv[1])


def test_single_sample_groups_are_finite_and_zero():
  # G = 1: no baseline exists, so the centring methods give 0 (verl would
  # give the raw reward); shaping and combining blocks keep the reward.
  rewards, mask, extras = _contract_inputs(False)
  rewards, mask = rewards[:, :1], mask[:, :1]
  extras = {k: (v[:, :1] if getattr(v, "ndim", 0) >= 2 else v)
            for k, v in extras.items()}
  for name, hparams in CONTRACT:
    tx = getattr(advantages, name)(**hparams)
    adv = np.asarray(tx.update(rewards, tx.init(rewards), mask=mask,
                               **extras)[0])
    assert np.all(np.isfinite(adv)), name
    if name not in NONZERO_ON_EQUAL_GROUPS:
      assert np.all(adv == 0.0), (name, adv)


def test_batch_statistics_are_global_under_sharding():
  # Batch-wide statistics (DQW softmax, Beta fit, whitening) must see every
  # prompt when the prompts are sharded over the 8 devices.
  devices = np.array(jax.devices()[:8])
  mesh = jax.sharding.Mesh(devices, ("data",))
  sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("data"))
  rng = np.random.default_rng(2)
  rewards = (rng.uniform(size=(8, 4)) > 0.5).astype(np.float32)
  lengths = rng.integers(1, T + 1, size=(8, 4))
  extras = dict(lengths=jnp.asarray(lengths),
                token_mask=jnp.asarray(_token_mask(lengths, T)))
  for name in ("dgpo", "bnpo", "reinforce_pp_baseline"):
    tx = getattr(advantages, name)()
    update = jax.jit(tx.update)
    single = update(jnp.asarray(rewards), tx.init(rewards), mask=None,
                    **extras)[0]
    sharded_extras = {k: jax.device_put(v, sharding)
                      for k, v in extras.items()}
    sharded = update(jax.device_put(rewards, sharding), tx.init(rewards),
                     mask=None, **sharded_extras)[0]
    np.testing.assert_allclose(sharded, single, atol=ATOL, err_msg=name)


def test_bad_inputs_raise_clear_errors():
  r = jnp.zeros((2, 4))
  with pytest.raises(ValueError, match="token_mask"):
    advantages.reinforce_pp().update(r, (), mask=None)
  with pytest.raises(ValueError, match="step_verdicts"):
    advantages.fspo().update(r, (), mask=None)
  with pytest.raises(ValueError, match="lengths"):
    advantages.opo().update(r, (), mask=None)
  with pytest.raises(ValueError, match="mask has shape"):
    advantages.grpo().update(r, advantages.grpo().init(r),
                             mask=jnp.ones((4, 2)))
  with pytest.raises(ValueError, match="batch_norm_domain"):
    advantages.gdpo(batch_norm_domain="tokens")
