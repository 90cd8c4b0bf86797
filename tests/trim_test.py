"""Cutting the update's completion axis to a bucket (mathrl.trim): the
width chosen, what is cut, and train steps equal to the uncut ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mathrl import builders
from mathrl import configlib
from mathrl import models
from mathrl import sharding
from mathrl import trainer
from mathrl import trim
from mathrl import types
from tests import recipes_test

# The recipes' rollouts (lengths 2..6 of T = 6) padded to PAD columns and
# cut back to the bucket 8 of (8, PAD).
PAD, BUCKETS = 12, (8, 12)


def test_default_buckets_double_from_the_base_up_to_max_new_tokens():
  assert trim.default_buckets(256, 32) == (32, 64, 128, 256)
  assert trim.default_buckets(48, 16) == (16, 32, 48)
  assert trim.default_buckets(100, 32) == (32, 64, 100)
  assert trim.default_buckets(8, 16) == (8,)


def test_bucket_width_is_the_smallest_bucket_holding_the_longest_row():
  mask_BT = np.zeros((3, 48), np.int32)
  mask_BT[0, :3] = 1
  mask_BT[1, :17] = 1
  mask_BT[2, :9] = 1
  # Longest completion 17: 16 < 17 ≤ 32.
  assert trim.bucket_width(mask_BT, (16, 32, 48)) == 32
  mask_BT[1, 17:] = 0
  mask_BT[1, 16] = 0  # longest now 16, which bucket 16 holds
  assert trim.bucket_width(mask_BT, (16, 32, 48)) == 16
  # A hole inside a row does not shorten it: last use at position 40.
  mask_BT[2, 40] = 1
  assert trim.bucket_width(mask_BT, (16, 32, 48)) == 48
  assert trim.bucket_width(np.zeros((2, 48)), (16, 32, 48)) == 16


def _rollout(lengths, width, token_extra=True):
  b = len(lengths)
  mask_BT = (np.arange(width)[None] < np.asarray(lengths)[:, None])
  extras = {"correctness": np.ones((b // 2, 2), np.float32)}
  if token_extra:
    extras["step_verdicts"] = -mask_BT.reshape(b // 2, 2, width).astype(
        np.float32)
  return types.Rollout(
      prompt_tokens_BL=np.ones((b, 3), np.int32),
      prompt_mask_BL=np.ones((b, 3), np.int32),
      completion_tokens_BT=np.arange(b * width).reshape(b, width),
      completion_mask_BT=mask_BT.astype(np.int32),
      rewards_PG=np.zeros((b // 2, 2), np.float32),
      valid_PG=np.ones((b // 2, 2), np.float32),
      progress=np.float32(0), extras=extras)


def test_to_bucket_cuts_tokens_mask_and_per_token_extras_alike():
  rollout = _rollout([3, 5, 1, 2], width=16)
  cut, width = trim.to_bucket(rollout, (8, 16))
  assert width == 8
  assert cut.completion_tokens_BT.shape == cut.completion_mask_BT.shape == (
      4, 8)
  np.testing.assert_array_equal(cut.completion_tokens_BT,
                                rollout.completion_tokens_BT[:, :8])
  assert cut.extras["step_verdicts"].shape == (2, 2, 8)
  np.testing.assert_array_equal(cut.extras["correctness"],
                                rollout.extras["correctness"])
  # Off (no buckets), or nothing to cut: the same rollout.
  assert trim.to_bucket(rollout, ()) == (rollout, 16)
  assert trim.to_bucket(_rollout([3, 16, 1, 2], 16), (8, 16))[1] == 16


def test_cut_refuses_to_drop_completion_tokens():
  with pytest.raises(ValueError, match="drop completion tokens"):
    trim.cut(_rollout([3, 9, 1, 2], width=16), 8)


def test_bad_buckets_name_the_field():
  config = configlib.base_config()  # max_new_tokens 48
  assert builders.make_completion_buckets(config) == (16, 32, 48)
  config.rl.completion_buckets = (32, 16, 48)
  with pytest.raises(builders.ConfigError, match="rising order"):
    builders.make_completion_buckets(config)
  config.rl.completion_buckets = (16, 32)
  with pytest.raises(builders.ConfigError, match="max_new_tokens=48"):
    builders.make_completion_buckets(config)
  config.rl.trim_completions = False
  assert builders.make_completion_buckets(config) == ()


def test_the_cut_batch_keeps_the_row_sharding():
  mesh = sharding.make_mesh(data=-1)
  rollout = _rollout([3, 5, 1, 2, 4, 2, 1, 1], width=16, token_extra=False)
  whole = trainer._device_batch(rollout, mesh)
  cut = trainer._device_batch(trim.to_bucket(rollout, (8, 16))[0], mesh)
  for name in ("completion_tokens_BT", "completion_mask_BT"):
    before, after = getattr(whole, name), getattr(cut, name)
    assert after.shape == (8, 8)
    assert after.sharding.spec == before.sharding.spec
    assert after.sharding.spec[0] is not None  # rows split over devices


def _pad(rollout, width):
  """`rollout` right-padded to `width` columns: masked positions holding
  arbitrary token ids (they must not matter) and zero per-token extras."""
  t = rollout.completion_mask_BT.shape[-1]
  pad = lambda x, value: jnp.pad(
      x, [(0, 0)] * (x.ndim - 1) + [(0, width - t)], constant_values=value)
  extras = dict(rollout.extras)
  for name in types.TOKEN_EXTRAS:
    if name in extras:
      extras[name] = pad(extras[name], 0)
  return rollout.replace(
      completion_tokens_BT=pad(rollout.completion_tokens_BT, 7),
      completion_mask_BT=pad(rollout.completion_mask_BT, 0), extras=extras)


def _recipe(name):
  """The recipe at test size, sampling PAD tokens; Dr. GRPO's normaliser
  left to the builders (C = max_new_tokens); DAPO with its overlong
  shaping in the step (lengths 5 and 6 are past 12 − 8); FSPO under
  Clip-Cov's token weighting (a random pick of tokens)."""
  config = recipes_test.shrink(recipes_test.load(name))
  config.sampling.max_new_tokens = PAD
  # Adam's first update is lr·g/(|g| + ε): an entry with |g| near ε = 1e-8
  # carries the float32 rounding of a sum over more (zero) terms to the
  # parameter as about lr·1e-3; the loss and gradient norm are compared
  # at 1e-6 anyway.
  config.rl.learning_rate = 1e-4
  if "loss_scale_factor" in config.rl.aggregation_kwargs:
    del config.rl.aggregation_kwargs["loss_scale_factor"]
  if name == "dapo":
    config.rl.shaping = "dapo_overlong"
    config.rl.shaping_kwargs.max_length = PAD
    config.rl.shaping_kwargs.buffer_length = 8
  if name == "fspo":
    config.rl.token_weighting = "clip_cov"
    config.rl.token_weighting_kwargs.clip_cov_ratio = 0.3
    config.rl.token_weighting_kwargs.clip_cov_lb = -10.0
    config.rl.token_weighting_kwargs.clip_cov_ub = 10.0
  return config


# GRPO (KL); Dr. GRPO's constant normaliser; DAPO's overlong shaping, dual
# clip and token mean; FSPO's per-token step verdicts with Clip-Cov.
@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "dapo", "fspo"])
def test_a_step_on_the_cut_batch_equals_the_padded_one(name, policy):
  config = _recipe(name)
  parts, state, ref = recipes_test.build_step(config, policy)
  padded = _pad(recipes_test.make_rollout(config, parts.reward_set,
                                          parts.rollout_extras), PAD)
  cut, width = trim.to_bucket(jax.tree.map(np.asarray, padded), BUCKETS)
  assert width == 8 and cut.completion_mask_BT.shape[-1] == 8
  step = jax.jit(parts.train_step)
  state_pad, m_pad = step(state, padded, ref)
  state_cut, m_cut = step(state, cut, ref)
  assert m_pad.keys() == m_cut.keys()
  for key in m_pad:
    np.testing.assert_allclose(m_cut[key], m_pad[key], rtol=1e-6, atol=1e-6,
                               err_msg=key)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6),
      state_cut.params, state_pad.params)
  assert float(m_pad["loss"]) != 0.0
  if name == "fspo":
    assert float(m_pad["cov_clip_frac"]) > 0  # Clip-Cov picked tokens


def test_width_dependent_constants_are_max_new_tokens():
  # Built with sampling.max_new_tokens = PAD: Dr. GRPO's C and DRPO's
  # T_max do not depend on the width of the arrays the step sees.
  parts = builders.make_rl(_recipe("drpo"))
  assert dict(parts.policy_loss.hparams)["max_length"] == PAD
  aggregate = builders.make_aggregation(_recipe("dr_grpo"))
  assert aggregate.keywords["loss_scale_factor"] == PAD
  # Σ ℓ·m / C with C = 12 at any width: 6 / 12 = 0.5.
  values_BT, mask_BT = np.ones((2, 8)), np.zeros((2, 8))
  mask_BT[:, :3] = 1
  assert float(aggregate(values_BT, mask_BT)) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def policy():
  return nnx.split(models.Transformer(models.presets.TINY, rngs=nnx.Rngs(0)))
