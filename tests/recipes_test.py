"""Every recipe in configs/: two RL steps of its own train step on the tiny
model, with its own schedule and group size, and its mechanism acting.

The rollout is built here (fixed rewards per group: mixed, all correct,
all wrong, one correct) so each method has the groups it acts on; the
learning rate is raised so that the policy moves between minibatches and
the importance ratios leave 1.
"""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mathrl import builders
from mathrl import models
from mathrl import train_step as train_step_lib
from mathrl import types

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))
L, T = 4, 6


def load(name):
  spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.fixture(scope="module")
def policy():
  return nnx.split(models.Transformer(models.presets.TINY, rngs=nnx.Rngs(0)))


def correct_pattern(num_prompts, group_size):
  """[P, G] 0/1: groups cycle mixed, all correct, all wrong, one correct."""
  rows = []
  for p in range(num_prompts):
    kind = p % 4
    row = np.zeros(group_size)
    if kind == 0:
      row[: group_size // 2] = 1
    elif kind == 1:
      row[:] = 1
    elif kind == 3:
      row[0] = 1
    rows.append(row)
  return np.stack(rows).astype(np.float32)


def shrink(config):
  """The recipe at test size: its schedule and G, P = its update count."""
  rl = config.rl
  rl.prompts_per_step = max(4, rl.num_minibatches * rl.num_microbatches)
  rl.steps = 2
  rl.learning_rate = 0.05
  rl.warmup_steps = 0
  # Each row's prompt in the update: its step compiles faster than the
  # shared-prompt one; train_step_test checks that both give the same step.
  rl.share_prompts = False
  if rl.aggregation == "seq_mean_token_sum_norm":
    rl.aggregation_kwargs.loss_scale_factor = T
  return config


def make_rollout(config, reward_set, extras=()):
  """A fixed-shape rollout whose groups share their prompt.

  The extras the recipe declares are made here as the rollout would: step
  verdicts −1 on every token of each group's first sample (FSPO), and
  reference rewards 0 (AAPO).
  """
  p, g = config.rl.prompts_per_step, config.rl.num_generations
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  prompt_PL = jax.random.randint(k1, (p, L), 3, 200)
  lengths_B = 2 + jnp.arange(p * g) % (T - 1)
  correct_PG = correct_pattern(p, g)
  if config.rewards.multi:
    rewards = np.zeros((p, g, len(reward_set)), np.float32)
    rewards[..., 0] = correct_PG * config.rewards.correctness
    rewards[..., 1:] = 1.0  # format etc. satisfied: only correctness varies
  else:
    rewards = correct_PG * config.rewards.correctness
  mask_BT = (jnp.arange(T)[None] < lengths_B[:, None]).astype(jnp.int32)
  made = {"correctness": jnp.asarray(correct_PG)}
  if "step_verdicts" in extras:
    first_B = (jnp.arange(p * g) % g == 0)[:, None]
    made["step_verdicts"] = jnp.where(first_B, -mask_BT, 0).astype(
        jnp.float32).reshape(p, g, T)
  if "ref_rewards" in extras:
    made["ref_rewards"] = jnp.zeros((p, g))
  return types.Rollout(
      prompt_tokens_BL=jnp.repeat(prompt_PL, g, axis=0),
      prompt_mask_BL=jnp.ones((p * g, L), jnp.int32),
      completion_tokens_BT=jax.random.randint(k2, (p * g, T), 3, 200),
      completion_mask_BT=mask_BT,
      rewards_PG=jnp.asarray(rewards), valid_PG=jnp.ones((p, g)),
      progress=jnp.float32(0.0), extras=made,
  )


def build_step(config, policy):
  """(RL parts, initial train state, reference params or None)."""
  graphdef, params = policy
  parts = builders.make_rl(config, graphdef)
  state = train_step_lib.init_train_state(
      params, parts.optimizer,
      parts.adv_tx.init(jnp.zeros(parts.rewards_like.shape)),
      jax.random.key_data(jax.random.PRNGKey(0)),
      method_state=parts.method_state)
  ref = jax.tree.map(jnp.copy, params) if parts.needs_reference else None
  return parts, state, ref


def run_two_steps(name, policy):
  config = shrink(load(name))
  parts, state, ref = build_step(config, policy)
  rollout = make_rollout(config, parts.reward_set, parts.rollout_extras)
  step = jax.jit(parts.train_step)
  all_metrics = []
  for _ in range(2):
    state, metrics = step(state, rollout, ref)
    all_metrics.append({k: float(v) for k, v in metrics.items()})
  return config, parts, rollout, state, all_metrics


def _clips(m):
  return m.get("clip_frac", 0.0) + m.get("clip_frac_low", 0.0) + m.get(
      "clip_frac_high", 0.0)


def check_clipping(parts, rollout, m):
  del parts, rollout
  assert _clips(m) > 0, m


def check_dapo(parts, rollout, m):
  check_clipping(parts, rollout, m)
  # DAPO's filter (worked example): groups [[1,1,1,1],[0,0,0,0],[1,0,0,0]]
  # keep [False, False, True].
  keep = parts.group_filter(np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0.]),
                            4, np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0]))
  np.testing.assert_array_equal(keep, [False, False, True])


def check_ngrpo(parts, rollout, m):
  check_clipping(parts, rollout, m)
  assert parts.train_step.entropy_coef == 0.001
  # The filter drops the all-correct groups only (pattern: mixed, all
  # correct, all wrong, one correct).
  correct = np.asarray(rollout.extras["correctness"])
  g = correct.shape[1]
  keep = parts.group_filter(correct.reshape(-1), g, correct.reshape(-1))
  np.testing.assert_array_equal(keep, [True, False, True, True])


def check_valid_groups(parts, rollout, m):
  del m
  # DGPO's loss sees the valid groups only: mixed and one-correct.
  keep = parts.train_step.loss_sample_mask(rollout.rewards_PG,
                                           rollout.valid_PG)
  np.testing.assert_array_equal(keep.sum(-1), [8, 0, 0, 8])


def check_mc_grpo(parts, rollout, m):
  check_clipping(parts, rollout, m)
  assert rollout.rewards_PG.shape[1] == 9  # G + 1 rollouts
  keep = parts.train_step.loss_sample_mask(rollout.rewards_PG,
                                           rollout.valid_PG)
  # One pivot per group leaves the loss.
  np.testing.assert_array_equal(np.asarray(keep).sum(-1), [8, 8, 8, 8])


def check_kl_cov(parts, rollout, m):
  del parts, rollout
  assert m["selected_frac"] > 0 and m["abs_kl"] > 0, m


def check_drpo(parts, rollout, m):
  del parts, rollout
  # Off-policy minibatches: the KL to the behaviour policy that DRPO's
  # constraint bounds is measured (nonzero) on prompts with both outcomes.
  assert m["kl_old"] != 0 and m["approx_kl"] > 0, m
  assert m["active_prompt_frac"] > 0, m


def check_siren(parts, rollout, m):
  del parts, rollout
  assert np.isfinite(m["entropy_anchor"]) and m["entropy_penalty"] > 0, m


def check_forking(parts, rollout, m):
  check_clipping(parts, rollout, m)
  assert parts.policy_loss.needs.entropy == "current"
  assert 0 < m["kept_frac"] < 1, m


def check_fspo(parts, rollout, m):
  del rollout
  assert parts.rollout_extras == ("step_verdicts",)
  # The first sample of each group has verdict −1 on every token, so its
  # tokens get −|A| (G = 8; GRPO z-scores sum to 0 per group before the
  # flip). Mixed group [1]*4 + [0]*4: |A| = 0.5/sqrt(2/7) = 0.935414, the
  # flip moves the sum to −2·0.935414; one correct [1] + [0]*7: A_0 =
  # 0.875/sqrt(1/8) = 2.474874 → −2·2.474874; the uniform groups have
  # A = 0. Mean over 32 samples: −(1.870829 + 4.949747)/32 = −0.213143.
  np.testing.assert_allclose(m["advantage_mean"], -0.213143, atol=1e-5)


def check_aapo(parts, rollout, m):
  del rollout
  assert parts.rollout_extras == ("ref_rewards",) and parts.needs_reference
  # Reference rewards 0: momentum clip(r − 0, −0.2, 0.28) = 0.28 on each
  # correct sample; z-scores sum to 0 per group. G = 6, groups mixed (3
  # correct), all correct (6), all wrong (0), one correct (1): mean
  # 0.28·10/24 = 0.116667.
  np.testing.assert_allclose(m["advantage_mean"], 0.116667, atol=1e-5)


def check_capo(parts, rollout, m):
  del m
  adv, _ = parts.adv_tx.update(
      rollout.rewards_PG, parts.adv_tx.init(rollout.rewards_PG),
      mask=rollout.valid_PG, progress=rollout.progress)
  keep = parts.train_step.loss_sample_mask(
      rollout.rewards_PG, rollout.valid_PG, advantages=adv,
      progress=rollout.progress)
  # Phase 1 (progress 0): only positive advantages stay in the loss: 4 of
  # the mixed group, none of the uniform groups, the one correct sample.
  np.testing.assert_array_equal(np.asarray(keep).sum(-1), [4, 0, 0, 1])


def check_clip_cov(parts, rollout, m):
  del parts, rollout
  # The random pick of high-covariance tokens detached some tokens.
  assert 0 < m["cov_clip_frac"] < 1 and "clip_frac" in m, m


def advantage_golden(value):
  """A check that the step's mean |advantage| is `value` (rollout above)."""

  def check(parts, rollout, m):
    del parts, rollout
    np.testing.assert_allclose(m["advantage_abs_mean"], value, atol=1e-5)

  return check


# Mean |A| over the 32 samples of the test rollout (G = 8; groups mixed
# [1]*4 + [0]*4, all correct, all wrong, one correct [1] + [0]*7):
# GRPO z-score: mixed 8·0.5/sqrt(2/7) = 7.483315, one correct
# (0.875 + 7·0.125)/sqrt(1/8) = 4.949747 → 12.433062/32 = 0.388533.
GRPO_ABS = 0.388533
# Dr. GRPO r − mean: (8·0.5 + 0.875 + 7·0.125)/32 = 5.75/32 = 0.179688.
DR_GRPO_ABS = 0.179688
# RLOO r − mean of the others = (G/(G − 1))·(r − mean): 5.75·8/7/32 =
# 0.205357.
RLOO_ABS = 0.205357
# GDPO: the format component (all 1) has z-score 0 in every group; the
# correctness z-scores (group eps 1e-4) S have Σ|S| = 8·0.935239 +
# 2.474174 + 7·0.353453 = 12.430263 and mean 0, and are whitened over the
# batch: unbiased std sqrt(Σ S²/31) = 0.671864, so mean |A| =
# 12.430263/32/(0.671864 + 1e-4) = 0.578075.
GDPO_ABS = 0.578075
# BNPO: group accuracies p = [0.5, 1, 0, 0.125], m = 0.40625, unbiased
# v = 0.605469/3 = 0.201823, c = m(1 − m)/v − 1 = 0.195161, α = 1 +
# c·m/3 = 1.026428, β = 1 + c(1 − m)/3 = 1.038626; A = (r − p)/Beta_pdf(p)
# with 1/pdf(0.5) = 0.980653 and 1/pdf(0.125) = 0.995495 on the varied
# groups: mean |A| = (4·0.980653 + 1.75·0.995495)/32 = 0.177023.
BNPO_ABS = 0.177023
# REINFORCE++ (γ = 1): every token's return is its sample's reward,
# whitened over the 125 valid tokens (lengths 2 + b mod 5), 53 of them in
# the 13 correct samples: μ = 53/125 = 0.424, unbiased σ² = (53·0.576² +
# 72·0.424²)/124 = 0.246194, σ = 0.496179; |A| = 0.576/σ = 1.160872
# (correct), 0.424/σ = 0.854530 (wrong): (13·1.160872 + 19·0.854530)/32 =
# 0.978981.
REINFORCE_PP_ABS = 0.978981
# tiny (G = 2): groups [1, 0] (mixed and one correct) get ±0.5/sqrt(0.5)
# = ±0.707107: 4·0.707107/8 = 0.353553.
TINY_ABS = 0.353553


CHECKS = {
    "dapo": check_dapo, "ngrpo": check_ngrpo, "gspo": check_clipping,
    "cispo": check_clipping, "steer": check_clipping,
    "clip_cov": check_clip_cov, "kl_cov": check_kl_cov,
    "drpo": check_drpo, "siren": check_siren,
    "forking_tokens": check_forking, "mc_grpo": check_mc_grpo,
    "dgpo": check_valid_groups, "dgpo_math": check_valid_groups,
    "mathforge": check_valid_groups, "mathforge_mqr": check_valid_groups,
    "fspo": check_fspo,
    "aapo": check_aapo, "capo": check_capo,
    "grpo": advantage_golden(GRPO_ABS), "default": advantage_golden(GRPO_ABS),
    "grpo_gsm8k": advantage_golden(GRPO_ABS),
    "smollm2_rl": advantage_golden(GRPO_ABS),
    "vade": advantage_golden(GRPO_ABS),
    "dr_grpo": advantage_golden(DR_GRPO_ABS),
    "rloo": advantage_golden(RLOO_ABS), "tiny": advantage_golden(TINY_ABS),
    "gdpo": advantage_golden(GDPO_ABS), "bnpo": advantage_golden(BNPO_ABS),
    "reinforce_pp": advantage_golden(REINFORCE_PP_ABS),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_two_rl_steps_of_the_recipe_and_its_mechanism(name, policy):
  _, parts, rollout, state, metrics = run_two_steps(name, policy)
  for m in metrics:
    assert np.isfinite(m["loss"]), m
    assert m["empty_updates"] == 0, m
  assert int(state.num_skipped) == 0 and int(state.step) == 2
  # Every recipe names the check of its own mechanism.
  CHECKS[name](parts, rollout, metrics[-1])


def test_token_weighting_from_the_config_composes_with_any_surrogate():
  from mathrl import configlib  # pylint: disable=g-import-not-at-top
  c = configlib.base_config()
  c.rl.loss = "cispo"
  c.rl.token_weighting = "forking_tokens"
  c.rl.token_weighting_kwargs.top_fraction = 0.5
  loss = builders.make_policy_loss(c)
  assert loss.name == "forking_tokens(cispo)"
  assert loss.needs.entropy == "current"
  c.rl.token_weighting = "entropy_mask"
  with pytest.raises(builders.ConfigError, match="clip_cov, forking_tokens,"
                     " kl_cov, steer"):
    builders.make_policy_loss(c)
  c.rl.loss, c.rl.token_weighting = "steer", "kl_cov"
  c.rl.token_weighting_kwargs = {}
  with pytest.raises(builders.ConfigError, match="already a token-weighted"):
    builders.make_policy_loss(c)
