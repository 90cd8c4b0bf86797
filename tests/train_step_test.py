"""The jitted train step: equivalences, skipping of non-finite updates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mathrl import advantages
from mathrl import logprobs
from mathrl import losses
from mathrl import models
from mathrl import train_step as train_step_lib
from mathrl import types

P, G, L, T = 4, 2, 4, 5


@pytest.fixture(scope="module")
def policy():
  model = models.Transformer(models.presets.TINY, rngs=nnx.Rngs(0))
  return nnx.split(model)


def _rollout(rewards_PG=None):
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  prompt = jax.random.randint(k1, (P * G, L), 3, 200)
  prompt_mask = jnp.ones((P * G, L), jnp.int32).at[::3, :2].set(0)
  completion = jax.random.randint(k2, (P * G, T), 3, 200)
  lengths = jnp.array([5, 3, 1, 4, 5, 2, 5, 4])
  completion_mask = (jnp.arange(T)[None] < lengths[:, None]).astype(jnp.int32)
  if rewards_PG is None:
    rewards_PG = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
  return train_step_lib.Rollout(
      prompt_tokens_BL=prompt,
      prompt_mask_BL=prompt_mask,
      completion_tokens_BT=completion,
      completion_mask_BT=completion_mask,
      rewards_PG=rewards_PG,
      valid_PG=jnp.ones((P, G)),
      progress=jnp.float32(0.0),
  )


def _make(policy, **kw):
  graphdef, params = policy
  # SGD, so parameter updates compare as tightly as gradients (Adam's
  # g/sqrt(v) amplifies float noise in near-zero gradients).
  opt = optax.sgd(0.5)
  adv_tx = advantages.grpo()
  step = train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=kw.pop("aggregate", losses.token_mean), **kw)
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((P, G))), jax.random.PRNGKey(0))
  return jax.jit(step), state




@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_completion_logprobs_match_full_forward(policy, temperature):
  graphdef, params = policy
  r = _rollout()
  logp_BT, ent_BT = jax.jit(
      functools.partial(logprobs.completion_logprobs, temperature=temperature),
      static_argnums=0)(
          graphdef, params, r.prompt_tokens_BL, r.prompt_mask_BL,
          r.completion_tokens_BT, r.completion_mask_BT)
  model = nnx.merge(graphdef, params)
  tokens = jnp.concatenate([r.prompt_tokens_BL, r.completion_tokens_BT], 1)
  mask = jnp.concatenate([r.prompt_mask_BL, r.completion_mask_BT], 1)
  logits = model(tokens, attention_mask_BS=mask)
  # The sampled policy: softmax(logits / τ).
  logsm = jax.nn.log_softmax(logits / temperature, -1)
  for b in range(P * G):
    for t in range(T):
      if r.completion_mask_BT[b, t]:
        want = logsm[b, L - 1 + t, r.completion_tokens_BT[b, t]]
        np.testing.assert_allclose(logp_BT[b, t], want, atol=1e-5)
        p = jnp.exp(logsm[b, L - 1 + t])
        np.testing.assert_allclose(
            ent_BT[b, t], -jnp.sum(p * logsm[b, L - 1 + t]), atol=1e-5)
      else:
        assert logp_BT[b, t] == 0 and ent_BT[b, t] == 0


def _shared_prompt_rollout():
  """_rollout with one prompt per group (as a GRPO rollout has)."""
  r = _rollout()
  return r.replace(
      prompt_tokens_BL=jnp.repeat(r.prompt_tokens_BL[::G], G, axis=0),
      prompt_mask_BL=jnp.repeat(r.prompt_mask_BL[::G], G, axis=0))


def test_shared_prompt_logprobs_and_gradients_equal_full_forward(policy):
  graphdef, params = policy
  r = _shared_prompt_rollout()
  weights_BT = jax.random.normal(jax.random.PRNGKey(3), (P * G, T))

  def objective(params, group_size):
    logp_BT, ent_BT = logprobs.completion_logprobs(
        graphdef, params, r.prompt_tokens_BL, r.prompt_mask_BL,
        r.completion_tokens_BT, r.completion_mask_BT, group_size=group_size)
    return jnp.sum(weights_BT * logp_BT + ent_BT), (logp_BT, ent_BT)

  run = jax.jit(jax.value_and_grad(objective, has_aux=True),
                static_argnums=1)
  (_, (logp, ent)), grads = run(params, 1)
  (_, (logp_s, ent_s)), grads_s = run(params, G)
  np.testing.assert_allclose(logp_s, logp, atol=1e-5)
  np.testing.assert_allclose(ent_s, ent, atol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5),
               grads_s, grads)
  assert max(jax.tree.leaves(jax.tree.map(
      lambda g: jnp.max(jnp.abs(g)), grads))) > 1e-3


def test_share_prompts_train_step_equals_unshared(policy):
  full, state = _make(policy, num_microbatches=2)
  shared, _ = _make(policy, num_microbatches=2, share_prompts=True)
  s_full, m_full = full(state, _shared_prompt_rollout(), None)
  s_shared, m_shared = shared(state, _shared_prompt_rollout(), None)
  np.testing.assert_allclose(m_shared["loss"], m_full["loss"], atol=1e-6)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-6),
               s_shared.params, s_full.params)


@pytest.mark.parametrize("aggregate", [losses.token_mean,
                                       losses.seq_mean_token_mean])
def test_microbatched_equals_full_batch(policy, aggregate):
  full, state = _make(policy, aggregate=aggregate, num_microbatches=1)
  micro, _ = _make(policy, aggregate=aggregate, num_microbatches=4)
  s_full, m_full = full(state, _rollout(), None)
  s_micro, m_micro = micro(state, _rollout(), None)
  np.testing.assert_allclose(m_full["loss"], m_micro["loss"], atol=1e-6)
  np.testing.assert_allclose(m_full["grad_norm"], m_micro["grad_norm"],
                             rtol=1e-5)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-6),
               s_full.params, s_micro.params)
  assert int(s_full.step) == 1
  # The step moved the parameters.
  diff = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), s_full.params,
                      state.params)
  assert max(jax.tree.leaves(diff)) > 1e-4


def test_on_policy_ratio_is_one_and_loss_is_minus_mean_advantage(policy):
  step, state = _make(policy)
  _, metrics = step(state, _rollout(), None)
  # On-policy (1 epoch, 1 minibatch): ratio = 1, nothing clipped, and the
  # token-mean PPO loss is -Σ_t A_i m_it / Σ m. GRPO advantages for groups
  # [1,0],[0,1],[1,1],[0,1] (std ddof=1 = 0.7071): ±0.7071 per sample, 0 for
  # the tied group. Lengths 5,3 | 1,4 | 5,2 | 5,4:
  # (0.7071·5 − 0.7071·3 − 0.7071·1 + 0.7071·4 + 0 − 0.7071·5 + 0.7071·4)/29
  want = -(0.70710677 * (5 - 3 - 1 + 4 - 5 + 4)) / 29
  np.testing.assert_allclose(metrics["pg_loss"], want, rtol=1e-4)
  np.testing.assert_allclose(metrics["clip_frac_low"] + metrics.get(
      "clip_frac_high", 0.0), 0.0, atol=1e-7)


def test_loss_sample_mask_drops_samples_after_the_advantages(policy):
  # Drop sample 1 of group 0 and sample 0 of group 3 from the loss (as
  # MC-GRPO drops its pivot). The advantages still see them: GRPO gives
  # ±0.7071 as above (group 0 alone would give 0). Kept, lengths 5 | 1,4 |
  # 5,2 | 4: loss = −0.7071·(5 − 1 + 4 + 0 + 4)/(5 + 1 + 4 + 5 + 2 + 4)
  # = −0.7071·12/21.
  keep_PG = jnp.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
  step, state = _make(policy, loss_sample_mask=lambda r, m: keep_PG)
  _, metrics = step(state, _rollout(), None)
  np.testing.assert_allclose(metrics["pg_loss"], -0.70710677 * 12 / 21,
                             rtol=1e-4)


def test_nonfinite_update_is_skipped_and_counted(policy):
  step, state = _make(policy)
  bad = _rollout(jnp.array([[1.0, jnp.nan], [0.0, 1.0], [1.0, 1.0],
                            [0.0, 1.0]]))
  new_state, metrics = step(state, bad, None)
  jax.tree.map(np.testing.assert_array_equal, new_state.params, state.params)
  assert int(new_state.num_skipped) == 1
  assert int(new_state.consecutive_skipped) == 1
  good_state, _ = step(new_state, _rollout(), None)
  assert int(good_state.consecutive_skipped) == 0
  assert int(good_state.num_skipped) == 1
  del metrics


def test_ppo_epochs_minibatches_and_kl_run(policy):
  step, state = _make(policy, ppo_epochs=2, num_minibatches=2,
                       kl_estimator=losses.kl_k3, kl_coef=0.04)
  new_state, metrics = step(state, _rollout(), state.params)
  assert np.isfinite(metrics["loss"]) and metrics["kl"] >= 0
  # 2 epochs × 2 minibatches = 4 updates, each from a distinct minibatch.
  assert metrics["grad_norm"] > 0 and int(new_state.step) == 1


def test_on_policy_shortcut_equals_recomputed_old_logp(policy):
  recompute, state = _make(policy, recompute_old_logp=True)
  shortcut, _ = _make(policy, recompute_old_logp=False)
  s_a, m_a = recompute(state, _rollout(), None)
  s_b, m_b = shortcut(state, _rollout(), None)
  np.testing.assert_allclose(m_a["loss"], m_b["loss"], atol=1e-6)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-6),
               s_a.params, s_b.params)
  with pytest.raises(ValueError, match="one update per batch"):
    _make(policy, recompute_old_logp=False, ppo_epochs=2)


def test_rollout_extras_reach_the_policy_loss(policy):
  # DRPO reads per-sample `correctness`; it travels with its rows through
  # minibatching ([P, G] → [B]).
  graphdef, params = policy
  opt = optax.sgd(0.5)
  adv_tx = advantages.grpo()
  step = jax.jit(train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.drpo(group_size=G),
      aggregate=losses.token_mean, ppo_epochs=1, num_minibatches=2,
      recompute_old_logp=True))
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((P, G))), jax.random.PRNGKey(0))
  rollout = _rollout()
  rollout = rollout.replace(extras={
      "correctness": (rollout.rewards_PG > 0).astype(jnp.float32)})
  new_state, metrics = step(state, rollout, None)
  # Groups [1,0] and [0,1] have a correct and an incorrect answer.
  assert metrics["active_prompt_frac"] > 0
  assert np.isfinite(metrics["loss"]) and metrics["grad_norm"] > 0
  assert int(new_state.num_skipped) == 0


def test_siren_anchor_is_set_once_and_penalises_entropy_drift(policy):
  graphdef, params = policy
  r = _rollout()
  siren = losses.siren(coef=0.5)
  siren_step, state = _make(policy, recompute_old_logp=False)
  state = state.replace(method_state=train_step_lib.init_method_state(siren))
  siren_step = jax.jit(train_step_lib.make_train_step(
      graphdef, optax.sgd(0.5), advantages.grpo(),
      policy_loss=siren, aggregate=losses.token_mean,
      recompute_old_logp=False))
  ppo_step = jax.jit(train_step_lib.make_train_step(
      graphdef, optax.sgd(0.5), advantages.grpo(),
      policy_loss=losses.ppo_clip(dual_clip=3.0), aggregate=losses.token_mean,
      recompute_old_logp=False))
  assert np.isnan(state.method_state["entropy_anchor"])
  # H0 = SIREN's selected nucleus entropy of the first batch under θ0.
  nucleus_BT = jax.jit(logprobs.completion_logprobs, static_argnums=(0, 6))(
      graphdef, params, r.prompt_tokens_BL, r.prompt_mask_BL,
      r.completion_tokens_BT, r.completion_mask_BT, 0.8)[2]
  want_h0 = losses.selected_entropy(nucleus_BT, r.completion_mask_BT, 0.2)
  s1, m1 = siren_step(state, r, None)
  np.testing.assert_allclose(s1.method_state["entropy_anchor"], want_h0, rtol=1e-6)
  # Step 1: H_sel = H0, so the penalty and its gradient are 0 and the
  # update is PPO-clip's (clip 0.2/0.2, dual clip 3 as SIREN's defaults).
  np.testing.assert_allclose(m1["entropy_penalty"], 0.0, atol=1e-12)
  p1, _ = ppo_step(state, r, None)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-6),
               s1.params, p1.params)
  # Step 2: the anchor is held; the penalty is c·(H_sel − H0)² > 0 and is
  # in the loss: loss − pg_loss = penalty (one micro-batch).
  s2, m2 = siren_step(s1, r, None)
  np.testing.assert_allclose(s2.method_state["entropy_anchor"], s1.method_state["entropy_anchor"])
  want = 0.5 * (m2["entropy_selected"] - s1.method_state["entropy_anchor"]) ** 2
  np.testing.assert_allclose(m2["entropy_penalty"], want, rtol=1e-5)
  assert m2["entropy_penalty"] > 0
  np.testing.assert_allclose(m2["loss"] - m2["pg_loss"],
                             m2["entropy_penalty"], rtol=1e-4, atol=1e-9)


@pytest.fixture(scope="module")
def dgpo_example():
  """DGPO's worked example: 4 groups of 4, rewards and lengths below."""
  rewards = jnp.array([[1.0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0],
                       [1, 1, 0, 0]])
  lengths = jnp.array([10, 20, 30, 40, 5, 5, 5, 5, 7, 7, 7, 7, 8, 12, 16, 4])
  t = 40
  k1, k2 = jax.random.split(jax.random.PRNGKey(2))
  return train_step_lib.Rollout(
      prompt_tokens_BL=jnp.repeat(jax.random.randint(k1, (4, L), 3, 200), 4,
                                  axis=0),
      prompt_mask_BL=jnp.ones((16, L), jnp.int32),
      completion_tokens_BT=jax.random.randint(k2, (16, t), 3, 200),
      completion_mask_BT=(jnp.arange(t)[None] < lengths[:, None]).astype(
          jnp.int32),
      rewards_PG=rewards, valid_PG=jnp.ones((4, 4)),
      progress=jnp.float32(0.0))


def test_dgpo_loss_is_the_token_mean_over_valid_groups(policy, dgpo_example):
  # Paper eq. 3 on the worked example, on-policy (ratio 1):
  # A = λ·Â per sample (group 2 is invalid: all wrong), lengths L;
  # J = Σ_valid A·L / (tokens of valid groups = 100 + 20 + 40 = 160)
  #   = −0.2817986, so loss = +0.2817986. Over all 188 tokens (no valid-
  # group normaliser) it would be 0.2817986·160/188 = 0.2398.
  graphdef, params = policy
  opt = optax.sgd(0.1)
  adv_tx = advantages.dgpo()
  step = jax.jit(train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean, recompute_old_logp=False))
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((4, 4))), jax.random.PRNGKey(0))
  _, metrics = step(state, dgpo_example, None)
  np.testing.assert_allclose(metrics["pg_loss"], 0.2817986155, rtol=1e-5)


def _entropy_probe(inputs):
  """−A·r per token; reports the mean of the `entropy` extra it was given."""
  entropy_BT = losses.base.extra_BT(inputs, "entropy", "[B, T] entropy")
  ratio_BT = jnp.exp(losses.base.log_ratio(inputs))
  return -inputs.adv_BT * ratio_BT, {
      "entropy_probe": losses.base.masked_mean(entropy_BT, inputs.mask_BT)}


@pytest.mark.parametrize("which", ["current", "behaviour"])
def test_declared_entropy_is_the_current_or_behaviour_policys(policy, which):
  # Two minibatches: the second is scored after the first update, so the
  # current policy's entropy (what 80/20 forking tokens select by) differs
  # from the behaviour policy's (what STEER reads).
  graphdef, params = policy
  opt = optax.sgd(0.5)
  adv_tx = advantages.grpo()
  probe = losses.base.make("entropy_probe", _entropy_probe,
                           needs=types.Needs(entropy=which))
  step = jax.jit(train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=probe, aggregate=losses.token_mean,
      num_minibatches=2))
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((P, G))), jax.random.PRNGKey(0))
  _, metrics = step(state, _rollout(), None)
  # `entropy` is the token mean of the current policy's entropy.
  gap = abs(float(metrics["entropy_probe"]) - float(metrics["entropy"]))
  if which == "current":
    assert gap < 1e-6
  else:
    assert gap > 1e-5


def test_logged_kl_and_entropy_are_token_means_for_every_aggregation(
    policy):
  # The loss aggregation scales the loss (a token sum is ~length x a token
  # mean), but the logged KL and entropy stay token means, so methods with
  # different aggregations plot on one scale.
  graphdef, params = policy
  ref = jax.tree.map(lambda x: x * 1.01, params)  # KL > 0
  r = _rollout()
  logged = {}
  for name in ("token_mean", "seq_mean_token_sum"):
    step, state = _make(policy, aggregate=getattr(losses, name),
                        kl_estimator=losses.kl_k3, kl_coef=0.04)
    _, logged[name] = step(state, r, ref)
  logp_BT, ent_BT = logprobs.completion_logprobs(
      graphdef, params, r.prompt_tokens_BL, r.prompt_mask_BL,
      r.completion_tokens_BT, r.completion_mask_BT)
  ref_logp_BT, _ = logprobs.completion_logprobs(
      graphdef, ref, r.prompt_tokens_BL, r.prompt_mask_BL,
      r.completion_tokens_BT, r.completion_mask_BT)
  mask_BT = r.completion_mask_BT
  expect = {
      "entropy": jnp.sum(ent_BT * mask_BT) / jnp.sum(mask_BT),
      "kl": jnp.sum(losses.kl_k3(logp_BT, ref_logp_BT) * mask_BT)
            / jnp.sum(mask_BT)}
  assert float(expect["kl"]) > 1e-6
  for name, metrics in logged.items():
    for key, value in expect.items():
      np.testing.assert_allclose(metrics[key], value, rtol=1e-4,
                                 err_msg=f"{key} with {name}")
  assert not np.isclose(logged["token_mean"]["loss"],
                        logged["seq_mean_token_sum"]["loss"])


def test_minibatch_without_tokens_is_skipped_not_applied(policy):
  # No valid sample (dynamic sampling kept no group): AdamW's weight decay
  # would still move θ; the update is skipped and counted as empty, not as
  # non-finite.
  graphdef, params = policy
  opt = optax.adamw(0.1, weight_decay=0.1)
  adv_tx = advantages.grpo()
  step = jax.jit(train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean))
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((P, G))), jax.random.PRNGKey(0))
  empty = _rollout().replace(valid_PG=jnp.zeros((P, G)))
  new_state, metrics = step(state, empty, None)
  jax.tree.map(np.testing.assert_array_equal, new_state.params, state.params)
  assert metrics["empty_updates"] == 1 and int(new_state.num_skipped) == 0


@pytest.mark.parametrize("loss_mask, want", [
    # Phase 1 (progress 0 < 0.25) keeps positive advantages: samples (0,0),
    # (1,1), (3,1) with A = 0.7071 and lengths 5, 4, 4. As a loss mask the
    # others leave the token mean: −0.7071·13/13. As a gate they stay with
    # A = 0: −0.7071·13/29.
    (True, -0.70710677), (False, -0.70710677 * 13 / 29)])
def test_capo_loss_mask_reading(policy, loss_mask, want):
  graphdef, params = policy
  opt = optax.sgd(0.1)
  adv_tx = advantages.capo(loss_mask=loss_mask)
  step = jax.jit(train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean, recompute_old_logp=False))
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((P, G))), jax.random.PRNGKey(0))
  _, metrics = step(state, _rollout(), None)
  np.testing.assert_allclose(metrics["pg_loss"], want, rtol=1e-4)
