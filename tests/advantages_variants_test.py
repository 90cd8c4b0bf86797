"""Tests of the 2025/26 advantage variants (block B of mathrl.advantages).

Golden numbers are worked examples of each method, with the arithmetic in
a comment; expectations are float64 numpy, tolerance 1e-5 unless stated.
Contract tests share one shape (P=3, G=4, T=5, K=2) to keep compiles few.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathrl import advantages
from mathrl.advantages import curriculum
from mathrl.advantages import history
from mathrl.advantages import key_token
from mathrl.advantages import length_shaping
from mathrl.advantages import quantile

ATOL = 1e-5
P, G, T, K = 3, 4, 5, 2

# name -> hyperparameters for the contract tests (defaults where possible).
FACTORIES = {
    "qae": {},
    "ha_dw": {},
    "a_grae": {},
    "mapo": {},
    "canon": {},
    "ktae": {},
    "aapo": {},
    "capo": {},
    "grpo_lambda": {},
    "keep_positive_until": {},
}
TOKEN_LEVEL = ("ktae",)
ELEMENTWISE = ("keep_positive_until",)


def _run(tx, rewards, **kw):
  """init + one jitted update (one compile beats op-by-op dispatch)."""
  state = tx.init(rewards)
  adv, state = jax.jit(tx.update)(rewards, state, **kw)
  return np.asarray(adv, np.float64), state


# --------------------------------------------------------------------------
# Contract tests, parametrized over every exported block-B name.


def _contract_inputs(multi_reward: bool):
  """Rewards, mask and extras; group 0 degenerate, group 1 fully masked."""
  rng = np.random.default_rng(0)
  rewards = rng.integers(0, 2, size=(P, G)).astype(np.float32)
  rewards[0] = 1.0  # all-equal group
  rewards[2] = [1.0, 0.0, 1.0, 0.0]
  mask = np.ones((P, G), np.float32)
  mask[1] = 0.0  # all-masked group
  mask[2, 3] = 0.0  # one padded sample
  rewards[1] = np.nan  # garbage under the mask must not leak
  rewards[2, 3] = np.nan
  if multi_reward:
    rewards = np.stack([rewards, 0.5 * rewards], axis=-1)
  entropy = rng.uniform(0.1, 1.0, size=(P, G)).astype(np.float32)
  entropy[1] = np.nan
  extras = dict(
      lengths=rng.integers(1, T + 1, size=(P, G)).astype(np.int32),
      token_mask=(rng.uniform(size=(P, G, T)) < 0.8).astype(np.float32),
      tokens=rng.integers(0, 6, size=(P, G, T)).astype(np.int32),
      entropy=entropy,
      progress=0.1,
      ref_rewards=rng.integers(0, 2, size=(P, G)).astype(np.float32),
  )
  return jnp.asarray(rewards), jnp.asarray(mask), extras


@pytest.fixture(scope="module", params=[False, True], ids=["PG", "PGK"])
def contract_inputs(request):
  return _contract_inputs(request.param)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_contract_jit_shape_dtype_degenerate(name, contract_inputs):
  rewards, mask, extras = contract_inputs
  tx = getattr(advantages, name)(**FACTORIES[name])
  state = tx.init(rewards)
  update = jax.jit(tx.update)
  adv, new_state = update(rewards, state, mask=mask, **extras)
  if name in TOKEN_LEVEL:
    expected = (P, G, T)
  elif name in ELEMENTWISE:
    expected = rewards.shape  # acts on whatever values flow in
  else:
    expected = (P, G)
  assert adv.shape == expected
  assert adv.dtype == jnp.float32
  adv = np.asarray(adv)
  assert np.all(np.isfinite(adv))
  # Invalid samples get exactly 0; so does the all-equal group (every
  # estimator here centres on a group statistic) except where a method adds
  # a non-centred term (AAPO's momentum, KTAE's key scores, the shaping).
  assert np.all(adv[1] == 0.0)
  assert np.all(adv[2, 3] == 0.0)
  if name not in ("aapo", "ktae", "grpo_lambda", "keep_positive_until"):
    np.testing.assert_array_equal(adv[0], 0.0)
  for leaf in jax.tree.leaves(new_state):
    assert np.all(np.isfinite(np.asarray(leaf)))
  # Unknown extras are accepted and ignored.
  adv_extra, _ = update(rewards, state, mask=mask, unknown=1.0, **extras)
  np.testing.assert_allclose(np.asarray(adv_extra), adv, atol=1e-6)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_contract_abstract_init(name):
  tx = getattr(advantages, name)(**FACTORIES[name])
  concrete = tx.init(jnp.zeros((P, G), jnp.float32))
  abstract = tx.init(jax.ShapeDtypeStruct((P, G), jnp.float32))
  assert jax.tree.structure(concrete) == jax.tree.structure(abstract)
  for c, a in zip(jax.tree.leaves(concrete), jax.tree.leaves(abstract)):
    assert c.shape == a.shape and c.dtype == a.dtype
  # Inside eval_shape too (as the trainer builds its state abstractly).
  shapes = jax.eval_shape(tx.init, jax.ShapeDtypeStruct((P, G), jnp.float32))
  assert jax.tree.structure(shapes) == jax.tree.structure(concrete)


@pytest.mark.parametrize(
    "name", sorted(set(FACTORIES) - {"keep_positive_until"})
)
def test_contract_single_sample_groups_are_finite(name):
  # G = 1: no comparison is possible; the result must stay finite.
  rewards = jnp.array([[1.0], [0.0]])
  extras = dict(
      lengths=jnp.array([[3], [2]], jnp.int32),
      token_mask=jnp.ones((2, 1, 3)),
      tokens=jnp.array([[[1, 2, 3]], [[1, 1, 2]]], jnp.int32),
      entropy=jnp.array([[0.5], [0.2]]),
      progress=0.9,
      ref_rewards=jnp.array([[0.0], [0.0]]),
  )
  adv, _ = _run(getattr(advantages, name)(), rewards, **extras)
  assert np.all(np.isfinite(adv))


def test_multi_reward_weights_are_a_weighted_sum():
  rewards_pgk = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]])
  weights = (1.0, 0.5)
  summed = jnp.einsum("pgk,k->pg", rewards_pgk, jnp.array(weights))
  for name in ("qae", "mapo", "a_grae"):
    multi, _ = _run(getattr(advantages, name)(reward_weights=weights),
                    rewards_pgk)
    single, _ = _run(getattr(advantages, name)(), summed)
    np.testing.assert_allclose(multi, single, atol=ATOL)
  with pytest.raises(ValueError, match="reward_weights"):
    _run(advantages.qae(reward_weights=(1.0, 2.0, 3.0)), rewards_pgk)


def test_missing_extra_is_a_clear_error():
  rewards = jnp.ones((1, 4))
  for name, extra in (("canon", "entropy"), ("ktae", "tokens"),
                      ("aapo", "ref_rewards"), ("capo", "progress"),
                      ("grpo_lambda", "lengths")):
    with pytest.raises(ValueError, match=extra):
      _run(getattr(advantages, name)(), rewards)


# --------------------------------------------------------------------------
# QAE (§2.2).


def test_qae_golden():
  # Group 1 sorted [0,0,0,1]: h = 0.4·3 = 1.2 → 0 + 0.2·(0 − 0) = 0;
  # std = sqrt(0.75/3) = 0.5 → (1 − 0)/(0.5 + 1e-6) = 1.999996.
  # Group 2 sorted [0,1,1,1]: h = 1.2 → 1 + 0.2·0 = 1 → (0 − 1)/0.500001.
  rewards = jnp.array([[1.0, 0, 0, 0], [1, 1, 1, 0]])
  adv, _ = _run(advantages.qae(), rewards)
  np.testing.assert_allclose(
      adv, [[1.999996, 0, 0, 0], [0, 0, 0, -1.999996]], atol=ATOL
  )


def test_qae_golden_g16():
  # G = 16, h = 0.4·15 = 6. 3 correct: 13 zeros → b = 0; std =
  # sqrt(16/15·(3/16)(13/16)) = 0.403113 → 1/0.403114 = 2.480689.
  # 9 correct: 7 zeros → b = 0; std = sqrt(16/15·(9/16)(7/16)) = 0.512348
  # → 1.951796. 10 correct: 6 zeros → sorted[6] = 1 → wrong: −1/0.5 ≈ −2.
  rows = [np.r_[np.ones(n), np.zeros(16 - n)] for n in (3, 9, 10)]
  adv, _ = _run(advantages.qae(), jnp.asarray(np.stack(rows)))
  np.testing.assert_allclose(adv[0, :3], 2.480689, atol=ATOL)
  np.testing.assert_allclose(adv[0, 3:], 0.0, atol=1e-5)
  np.testing.assert_allclose(adv[1, :9], 1.951796, atol=ATOL)
  np.testing.assert_allclose(adv[1, 9:], 0.0, atol=1e-5)
  np.testing.assert_allclose(adv[2, :10], 0.0, atol=1e-5)
  np.testing.assert_allclose(adv[2, 10:], -1.999996, atol=ATOL)


def test_masked_quantile_matches_numpy_linear():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(6, 7)).astype(np.float32)
  mask = (rng.uniform(size=(6, 7)) < 0.7).astype(np.float32)
  mask[0] = 1.0
  for q in (0.1, 0.4, 0.5, 0.9):
    got = np.asarray(quantile.masked_quantile(x, mask, q))[:, 0]
    for p in range(6):
      valid = x[p][mask[p] > 0].astype(np.float64)
      want = np.quantile(valid, q) if valid.size else 0.0
      np.testing.assert_allclose(got[p], want, atol=1e-5)


def test_qae_out_of_range_k_is_the_mean_baseline():
  # K ∉ (0, 1) falls back to the mean: qae equals the GRPO z-score.
  rewards = np.array([[1.0, 0.2, 0.0, 0.5]])
  z = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)
  adv, _ = _run(advantages.qae(quantile_k=1.0), jnp.asarray(rewards))
  np.testing.assert_allclose(adv, z, atol=ATOL)


# --------------------------------------------------------------------------
# HA-DW (§2.3).


def test_ha_dw_golden_functions():
  # History [0.40, 0.45, 0.50]: mean 0.45, population var = 2·0.05²/3 →
  # σ = 0.040825; η_t = 0.1·σ = 0.0040825; C+ = 0.5 − η_t·(0.5 − 0.3)
  # = 0.499184.
  sigma = history.window_std(jnp.array([0.0, 0.40, 0.45, 0.50]), 3)
  np.testing.assert_allclose(sigma, 0.040825, atol=ATOL)
  posterior = history.update_anchor(0.5, 0.3, 0.1 * sigma)
  np.testing.assert_allclose(posterior, 0.499184, atol=ATOL)
  # p̂ = 0.25 < C = 0.5: M = 0.25, D(Â>0) = +1 → Φ = e^0.25 = 1.284025,
  # D(Â<0) = −1 → Φ = e^−0.25 = 0.778801; p̂ = 0.75 mirrors it.
  adv = jnp.array([[1.5, -0.5], [0.5, -1.5]])
  weights = history.difficulty_weights(
      adv, jnp.array([[0.25], [0.75]]), jnp.float32(0.5), 1.0
  )
  np.testing.assert_allclose(
      weights, [[1.284025, 0.778801], [0.778801, 1.284025]], atol=ATOL
  )
  np.testing.assert_allclose(
      weights * adv, [[1.926038, -0.389400], [0.389400, -1.926038]],
      atol=ATOL,
  )


def test_ha_dw_transform_golden_and_history():
  # [1,0,0,0] → Â = [1.499997, −0.499999 ×3], p̂ = 0.25 → ×[e^.25, e^−.25];
  # [1,1,1,0] → Â = [0.499999 ×3, −1.499997], p̂ = 0.75 → ×[e^−.25, e^.25].
  rewards = jnp.array([[1.0, 0, 0, 0], [1, 1, 1, 0]])
  tx = advantages.ha_dw(history_size=3)
  state = tx.init(rewards)
  update = jax.jit(tx.update)
  adv, state = update(rewards, state, mask=None)
  e_p, e_m = math.exp(0.25), math.exp(-0.25)
  np.testing.assert_allclose(
      adv,
      [[1.499997 * e_p, -0.499999 * e_m, -0.499999 * e_m, -0.499999 * e_m],
       [0.499999 * e_m, 0.499999 * e_m, 0.499999 * e_m, -1.499997 * e_p]],
      atol=ATOL,
  )
  # Numpy simulation of three steps (σ over previous batch accuracies).
  batches = [rewards, jnp.array([[1.0, 1, 1, 1], [1, 1, 0, 0]]),
             jnp.array([[0.0, 0, 0, 1], [0, 0, 0, 0]])]
  anchor, hist = 0.5, []
  state = tx.init(rewards)
  for batch in batches:
    _, state = update(batch, state, mask=None)
    y = float(np.mean(np.asarray(batch) > 0))
    sigma = float(np.std(hist[-3:])) if hist else 0.0
    anchor = (1 - 0.1 * sigma) * anchor + 0.1 * sigma * y
    hist.append(y)
  # accuracies 0.5, 0.75, 0.125: σ_2 = std([0.5]) = 0, σ_3 = std([.5, .75])
  # = 0.125 → C = (1 − 0.0125)·0.5 + 0.0125·0.125 = 0.4953125.
  np.testing.assert_allclose(state.anchor, anchor, atol=ATOL)
  np.testing.assert_allclose(anchor, 0.4953125, atol=1e-12)
  assert int(state.count) == 3 and int(state.history_len) == 3


def test_ha_dw_anchor_source_and_masked_batch():
  tx = advantages.ha_dw(sigma_source="anchor", history_size=3)
  rewards = jnp.array([[1.0, 0, 0, 0]])
  state = tx.init(rewards)
  # Only C_0 in the window: σ = 0, so the anchor stays (the paper's literal rule).
  _, state = tx.update(rewards, state, mask=None)
  np.testing.assert_allclose(state.anchor, 0.5)
  # A batch with no valid sample leaves the state untouched.
  _, after = tx.update(rewards, state, mask=jnp.zeros((1, 4)))
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  # The state is a checkpointable NamedTuple of arrays.
  assert isinstance(state, advantages.HADWState)
  assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))


# --------------------------------------------------------------------------
# A-GRAE (§2.4) and MAPO (§2.12).


def test_a_grae_golden():
  # Group 1: μ = .25, √μ = .5; A_hard = A_easy = .5A/.5 = A; m̄ = .5 →
  # A' = A; positives × min(1, .5/1): 1.499997·.5 = .749998.
  # Group 2: μ = .75, √μ = .866025: A_easy = .5A/.133975 = 3.7320A,
  # A_hard = .5A/.866026 = .57735A → A' = .5·(3.7320 + .57735)A = 2.1547A:
  # .499999·2.1547·.5 = .538670 and −1.499997·2.1547 = −3.232023.
  rewards = jnp.array([[1.0, 0, 0, 0], [1, 1, 1, 0]])
  adv, _ = _run(advantages.a_grae(), rewards)
  np.testing.assert_allclose(
      adv,
      [[0.749997, -0.499998, -0.499998, -0.499998],
       [0.538670, 0.538670, 0.538670, -3.232023]],
      atol=ATOL,
  )
  # Two all-wrong groups: m̄ = .25 → easy term weight .75, damping .25.
  rewards4 = jnp.array(
      [[1.0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
  )
  adv4, _ = _run(advantages.a_grae(), rewards4)
  np.testing.assert_allclose(
      adv4[:2],
      [[0.374999, -0.499998, -0.499998, -0.499998],
       [0.367919, 0.367919, 0.367919, -4.415023]],
      atol=ATOL,
  )
  np.testing.assert_array_equal(adv4[2:], 0.0)
  # A fully masked group does not count in m̄: the first result again.
  mask = jnp.array([[1.0] * 4, [1.0] * 4, [0.0] * 4, [0.0] * 4])
  adv_masked, _ = _run(advantages.a_grae(), rewards4, mask=mask)
  np.testing.assert_allclose(adv_masked[:2], adv, atol=ATOL)


def test_mapo_golden():
  # p = .25 → w = 4·.25·.75 = .75. z = [1.499997, −.499999];
  # APD = (r − .25)/(.25 + 1e-6) = [2.999988, −.999996];
  # .75·1.499997 + .25·2.999988 = 1.874995; .75·(−.499999) + .25·(−.999996)
  # = −.624998. Group 2 (μ = .75): APD = [.333333, −.999999]:
  # .75·.499999 + .25·.333333 = .458332; .75·(−1.499997) − .25 = −1.374997.
  rewards = jnp.array([[1.0, 0, 0, 0], [1, 1, 1, 0]])
  adv, _ = _run(advantages.mapo(), rewards)
  np.testing.assert_allclose(
      adv,
      [[1.874995, -0.624998, -0.624998, -0.624998],
       [0.458332, 0.458332, 0.458332, -1.374997]],
      atol=ATOL,
  )


# --------------------------------------------------------------------------
# CANON (§2.14).


def test_canon_golden():
  # entropy [.3,.5,.9,.7] → low half = samples 0,1 (r 1,1), μ_lo = 1;
  # high = 2,3 (r 0,0), μ_hi = 0. λ=1: high r − μ_lo = −1, low r − μ_hi = 1.
  rewards = jnp.array([[1.0, 1, 0, 0]])
  entropy = jnp.array([[0.3, 0.5, 0.9, 0.7]])
  for lam, want in ((1.0, [1, 1, -1, -1]), (0.5, [0.5, 0.5, -0.5, -0.5]),
                    (0.0, [0, 0, 0, 0])):
    adv, _ = _run(advantages.canon(lam=lam), rewards, entropy=entropy)
    np.testing.assert_allclose(adv, [want], atol=ATOL)
  # r=[1,0,1,0,1,0], entropy ascending → μ_lo = 2/3, μ_hi = 1/3.
  # λ=1: low r − 1/3, high r − 2/3; λ=0: low r − 2/3, high r − 1/3.
  rewards6 = jnp.array([[1.0, 0, 1, 0, 1, 0]])
  entropy6 = jnp.array([[0.2, 0.25, 0.3, 0.8, 0.9, 0.95]])
  adv1, _ = _run(advantages.canon(lam=1.0), rewards6, entropy=entropy6)
  adv0, _ = _run(advantages.canon(lam=0.0), rewards6, entropy=entropy6)
  np.testing.assert_allclose(
      adv1, [[2 / 3, -1 / 3, 2 / 3, -2 / 3, 1 / 3, -2 / 3]], atol=ATOL
  )
  np.testing.assert_allclose(
      adv0, [[1 / 3, -2 / 3, 1 / 3, -1 / 3, 2 / 3, -1 / 3]], atol=ATOL
  )


def test_canon_length_variant_alpha_beta_max_length_and_ties():
  # Lengths [30,10,20,40] → low = samples 1,2 (r 0,1), μ_lo = .5;
  # high = 0,3 (r 1,0), μ_hi = .5. α=2, β=.1, λ=.75, L=10:
  # high: [.75(2r − .5 + .1) + .25(r − .5)]/10 → r=1: (1.2 + .125)/10
  #   = .1325; r=0: (−.3 − .125)/10 = −.0425.
  # low: [.75(r − 2·.5 − .1) + .25(r − .5)]/10 → r=0: (−.825 − .125)/10
  #   = −.095; r=1: (−.075 + .125)/10 = .005.
  rewards = jnp.array([[1.0, 0, 1, 0]])
  lengths = jnp.array([[30, 10, 20, 40]], jnp.int32)
  tx = advantages.canon(metric="length", alpha=2.0, beta=0.1, lam=0.75,
                        max_length=10)
  adv, _ = _run(tx, rewards, lengths=lengths)
  np.testing.assert_allclose(adv, [[0.1325, -0.095, 0.005, -0.0425]],
                             atol=ATOL)
  # Exact ties keep the sample order: all entropies equal → samples 0,1
  # are the low half (r 1,1), so λ=1 gives [1,1,−1,−1] as in the golden.
  adv_tie, _ = _run(advantages.canon(), jnp.array([[1.0, 1, 0, 0]]),
                    entropy=jnp.full((1, 4), 0.5))
  np.testing.assert_allclose(adv_tie, [[1, 1, -1, -1]], atol=ATOL)


def test_canon_half_lambda_is_dr_grpo():
  # λ = .5, α = 1, β = 0, even G: .5(r − μ_lo) + .5(r − μ_hi) = r − mean.
  rng = np.random.default_rng(2)
  rewards = rng.uniform(size=(P, G)).astype(np.float32)
  entropy = rng.uniform(size=(P, G)).astype(np.float32)
  adv, _ = _run(advantages.canon(lam=0.5), jnp.asarray(rewards),
                entropy=jnp.asarray(entropy))
  np.testing.assert_allclose(
      adv, rewards - rewards.mean(axis=1, keepdims=True), atol=ATOL
  )
  dr_grpo, _ = _run(advantages.dr_grpo(), jnp.asarray(rewards))
  np.testing.assert_allclose(adv, dr_grpo, atol=ATOL)


# --------------------------------------------------------------------------
# KTAE (§2.1).

KTAE_TOKENS = [[5, 7, 3, 2], [5, 7, 2, 0], [5, 9, 9, 2], [5, 9, 3, 2]]
KTAE_MASK = [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]]


def test_ktae_golden():
  # GRPO part of [1,1,0,0]: ±0.5/(sqrt(1/3) + 1e-6) = ±0.866024.
  # Token 7: table (2,0,0,2) → key +1; token 9: (0,2,2,0) → key −1;
  # tokens 2, 5: (2,2,0,0) → p = 1 → 0; token 3: (1,1,1,1) → p = 1 → 0.
  z = 0.866024
  adv, _ = _run(advantages.ktae(), jnp.array([[1.0, 1, 0, 0]]),
                tokens=jnp.array([KTAE_TOKENS]),
                token_mask=jnp.array([KTAE_MASK], jnp.float32))
  want = [[z, z + 1, z, z], [z, z + 1, z, 0],
          [-z, -z - 1, -z - 1, -z], [-z, -z - 1, -z, -z]]
  np.testing.assert_allclose(adv, [want], atol=1e-4)


def test_ktae_golden_intermediates():
  # Table (2,0,0,2): P(k) = C(2,k)C(2,2−k)/C(4,2) = [1/6, 4/6, 1/6];
  # P(2) = 1/6 → p = 1/6 + 1/6 = 1/3, F = e^(−2/3) = 0.513417;
  # IG = H(.5,.5) − 0 = 1 bit. Table (1,1,1,1): p = 1, IG = 0.
  a, b, c, d = (jnp.array(v, jnp.float32) for v in zip((2, 0, 0, 2),
                                                       (1, 1, 1, 1)))
  log_binom = jnp.asarray(key_token._log_binomial_table(4))
  p = key_token.fisher_pvalue(a, b, c, d, log_binom)
  np.testing.assert_allclose(p, [1 / 3, 1.0], atol=1e-6)
  np.testing.assert_allclose(math.exp(-2 / 3), 0.513417, atol=1e-6)
  np.testing.assert_allclose(
      key_token.information_gain(a, b, c, d), [1.0, 0.0], atol=1e-6
  )


def _ktae_reference(rewards, tokens, token_mask):
  """Literal float64 port of KTAE's formulas for one group."""
  correct = rewards > 0
  n_c, n_w = correct.sum(), (~correct).sum()
  z = (rewards - rewards.mean()) / (rewards.std(ddof=1) + 1e-6)
  if n_c == 0 or n_w == 0:
    return z[:, None] * token_mask, np.zeros(tokens.shape)
  present = {}
  counts = {}
  for i in range(len(rewards)):
    for t in range(tokens.shape[1]):
      if token_mask[i, t]:
        v = int(tokens[i, t])
        present.setdefault(v, set()).add(i)
        counts.setdefault(v, [0, 0])[0 if correct[i] else 1] += 1
  tok_c = token_mask[correct].sum()
  tok_w = token_mask[~correct].sum()
  avg = (tok_c + tok_w) / 2

  def lc(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)

  def ent(p):
    return -p * math.log2(p) if p > 0 else 0.0

  key = {}
  for v, rows in present.items():
    a = sum(correct[i] for i in rows)
    b = len(rows) - a
    c, d = n_c - a, n_w - b
    n = n_c + n_w
    row, col = a + b, a + c
    pk = {k: math.exp(lc(col, k) + lc(n - col, row - k) - lc(n, row))
          for k in range(max(0, row + col - n), min(row, col) + 1)}
    p = sum(x for x in pk.values() if x <= pk[a] * (1 + 1e-7))
    fisher = 0.0 if abs(p - 1) < 1e-6 else math.exp(-2 * p)
    h_y = ent(n_c / n) + ent(n_w / n)
    h_x = sum((x1 + x2) / n * (ent(x1 / (x1 + x2)) + ent(x2 / (x1 + x2)))
              for x1, x2 in ((a, b), (c, d)) if x1 + x2 > 0)
    gain = h_y - h_x
    h = math.asin(math.sqrt(a / n_c)) - math.asin(math.sqrt(b / n_w))
    tf = []
    for cnt, tot in ((counts[v][0], tok_c), (counts[v][1], tok_w)):
      f = cnt / tot
      tf.append(f * 3.0 / (f + 2.0 * (0.5 + 0.5 * tot / avg)))
    x = h + tf[0] / (tf[1] + 1e-5) - tf[1] / (tf[0] + 1e-5)
    key[v] = math.tanh((fisher + gain) * x / 2 / 2)
  keys = np.vectorize(lambda v: key.get(int(v), 0.0))(tokens) * token_mask
  return (z[:, None] + keys) * token_mask, keys


def test_ktae_matches_float64_reference():
  rng = np.random.default_rng(3)
  rewards = np.array([[1.0, 0, 1, 0], [1, 1, 1, 0], [0, 0, 1, 0]])
  tokens = rng.integers(0, 6, size=(P, G, T))
  token_mask = (rng.uniform(size=(P, G, T)) < 0.8).astype(np.float64)
  adv, _ = _run(advantages.ktae(), jnp.asarray(rewards, jnp.float32),
                tokens=jnp.asarray(tokens, jnp.int32),
                token_mask=jnp.asarray(token_mask, jnp.float32))
  refs = [_ktae_reference(rewards[p], tokens[p], token_mask[p])
          for p in range(P)]
  want = np.stack([r[0] for r in refs])
  keys = np.abs(np.stack([r[1] for r in refs]))
  # The authors' estimator runs in float32: tolerance 1e-4.
  np.testing.assert_allclose(adv, want, atol=1e-4)
  # The data exercise unsaturated keys, not only the ±1 / 0 cases.
  assert np.any((keys > 0.01) & (keys < 0.99))


def test_ktae_ignored_token_scores_zero():
  tokens = np.array([KTAE_TOKENS])
  tokens[tokens == 7] = 151643  # the authors' hard-coded pad id
  adv, _ = _run(advantages.ktae(), jnp.array([[1.0, 1, 0, 0]]),
                tokens=jnp.asarray(tokens),
                token_mask=jnp.array([KTAE_MASK], jnp.float32))
  np.testing.assert_allclose(adv[0, 0, 1], 0.866024, atol=1e-4)


# --------------------------------------------------------------------------
# AAPO (§2.13), CAPO (§2.11), GRPO-λ (§2.10).


def test_aapo_golden():
  # TRL ε = 1e-4: (1 − .25)/(.5 + 1e-4) = 1.4997, −.25/.5001 = −.4999;
  # momentum clip([1, 0, −1, 0], −.2, .28) = [.28, 0, −.2, 0].
  adv, _ = _run(advantages.aapo(), jnp.array([[1.0, 0, 0, 0]]),
                ref_rewards=jnp.array([[0.0, 0, 1, 0]]))
  np.testing.assert_allclose(
      adv, [[0.75 / 0.5001 + 0.28, -0.25 / 0.5001, -0.25 / 0.5001 - 0.2,
             -0.25 / 0.5001]], atol=ATOL)
  np.testing.assert_allclose(adv, [[1.7797, -0.4999, -0.6999, -0.4999]],
                             atol=1e-4)
  # An invalid reference rollout contributes no momentum.
  adv_ref, _ = _run(advantages.aapo(), jnp.array([[1.0, 0, 0, 0]]),
                    ref_rewards=jnp.array([[0.0, 0, 1, 0]]),
                    ref_mask=jnp.array([[1.0, 1, 0, 1]]))
  np.testing.assert_allclose(adv_ref[0, 2], -0.25 / 0.5001, atol=ATOL)


def test_capo_golden_and_single_compile():
  # Phase 1 (progress .1 < .25): A = [1.5, −.5, −.5, −.5] → [1.5, 0, 0, 0];
  # phase 2 (progress .5) keeps all four.
  rewards = jnp.array([[1.0, 0, 0, 0]])
  tx = advantages.capo()
  update = jax.jit(tx.update)
  state = tx.init(rewards)
  phase1, _ = update(rewards, state, mask=None, progress=0.1)
  phase2, _ = update(rewards, state, mask=None, progress=0.5)
  np.testing.assert_allclose(phase1, [[1.499997, 0, 0, 0]], atol=ATOL)
  np.testing.assert_allclose(
      phase2, [[1.499997, -0.499999, -0.499999, -0.499999]], atol=ATOL
  )
  assert update._cache_size() == 1  # progress is traced, not static
  mask = curriculum.capo_sample_mask(
      jnp.array([[1.5, -0.5, 0.0, 2.0]]), jnp.array([[1.0, 1, 1, 0]]), 0.1
  )
  np.testing.assert_array_equal(mask, [[1, 0, 0, 0]])


def test_capo_counts_steps_without_progress():
  # switch_step = 2: updates 0 and 1 are phase 1, update 2 is phase 2; a
  # fully masked batch does not count. The count is checkpointable state.
  rewards = jnp.array([[1.0, 0, 0, 0]])
  tx = advantages.capo(switch_step=2)
  update = jax.jit(tx.update)
  state = tx.init(jax.ShapeDtypeStruct((1, 4), jnp.float32))
  assert isinstance(state, advantages.CAPOState)
  seen = []
  for mask in (None, jnp.zeros((1, 4)), None, None):
    adv, state = update(rewards, state, mask=mask)
    seen.append(np.asarray(adv)[0, 1])
  np.testing.assert_allclose(seen, [0.0, 0.0, 0.0, -0.499999], atol=ATOL)
  assert int(state.count) == 3
  # `progress`, when given, wins over the count.
  adv, _ = update(rewards, state, mask=None, progress=0.0)
  np.testing.assert_allclose(np.asarray(adv)[0, 1], 0.0)


def test_grpo_lambda_golden():
  # Accuracies [.25, .75, 1, .5], λ = .5 → ⌈.5·4⌉ = 2 groups: 2 (1.0), 1
  # (.75). u = .5 − (L − 100)/300 = [.5, .1667, −.1667, −.5]; correct get
  # r + u, wrong get r + min(0, u): [1.5, 1.1667, .8333, −.5].
  rewards = jnp.array(
      [[1.0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]]
  )
  lengths = jnp.tile(jnp.array([[100, 200, 300, 400]], jnp.int32), (4, 1))
  shaped, _ = _run(advantages.grpo_lambda(), rewards, lengths=lengths)
  u = np.array([0.5, 1 / 6, -1 / 6, -0.5])
  np.testing.assert_allclose(shaped[1], [1.5, 1 + 1 / 6, 1 - 1 / 6, -0.5],
                             atol=ATOL)
  np.testing.assert_allclose(shaped[2], 1.0 + u, atol=ATOL)
  np.testing.assert_allclose(shaped[[0, 3]], np.asarray(rewards)[[0, 3]])
  # Ties keep the prompt order; fully masked groups are never selected.
  selected = length_shaping.top_groups(
      jnp.array([0.5, 0.5, 0.5, 0.9]), jnp.array([True, True, True, False]),
      0.34,
  )
  np.testing.assert_array_equal(selected, [True, True, False, False])


# --------------------------------------------------------------------------
# Composition.


def test_chain_is_b_after_a():
  rewards = jnp.array([[1.0, 0, 0, 0], [1, 1, 1, 0]])
  lengths = jnp.array([[10, 20, 30, 40], [40, 30, 20, 10]], jnp.int32)
  a, b = advantages.grpo_lambda(), advantages.mapo()
  chained, _ = _run(advantages.chain(a, b), rewards, lengths=lengths)
  mid, _ = _run(a, rewards, lengths=lengths)
  manual, _ = _run(b, jnp.asarray(mid, jnp.float32), lengths=lengths)
  np.testing.assert_allclose(chained, manual, atol=1e-6)
  a, b = advantages.qae(), advantages.keep_positive_until(0.5)
  chained, _ = _run(advantages.chain(a, b), rewards, progress=0.2)
  mid, _ = _run(a, rewards)
  manual, _ = _run(b, jnp.asarray(mid, jnp.float32), progress=0.2)
  np.testing.assert_allclose(chained, manual, atol=1e-6)
  assert np.all(chained >= 0)


def test_stateful_chain_threads_state():
  tx = advantages.chain(advantages.grpo_lambda(), advantages.ha_dw())
  rewards = jnp.array([[1.0, 0, 0, 0]])
  state = tx.init(rewards)
  _, state = tx.update(rewards, state, lengths=jnp.full((1, 4), 3))
  assert int(state[1].count) == 1

