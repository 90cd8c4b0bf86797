"""FSPO's step verdicts (arithmetic checks aligned to tokens) and the
rollout's extras: step verdicts and the reference policy's paired rewards."""

import jax
import numpy as np
import pytest
from flax import nnx

from mathrl import models
from mathrl import rewards
from mathrl import rollout as rollout_lib
from mathrl import sampling
from mathrl.data import pipeline
from mathrl.rewards import steps

import tiny_tokenizer


def test_sentences_and_arithmetic_verdicts():
  text = "46 + 20 = 66.\n66 - 11 = 56. So 2.5 * 2 = 5! The answer is 56."
  spans = steps.sentence_spans(text)
  sentences = [text[a:b].strip() for a, b in spans]
  # "2.5" does not end a sentence; the newline and ". " do.
  assert sentences == ["46 + 20 = 66.", "66 - 11 = 56.", "So 2.5 * 2 = 5!",
                       "The answer is 56."]
  # 46 + 20 = 66 holds (+1), 66 − 11 = 55 ≠ 56 (−1), 2.5·2 = 5 (+1), no
  # equation (0).
  assert [steps.arithmetic_verdict(s) for s in sentences] == [1, -1, 1, 0]
  assert steps.arithmetic_verdict("7 / 0 = 1.") == -1
  assert steps.arithmetic_verdict("x = 3 and 3 = 3.") == 0  # nothing to do
  assert steps.arithmetic_verdict("(2 + 3) × 4 = 20.") == 1


def test_token_verdicts_follow_the_sentence_each_token_starts_in():
  pieces = ["4", " + 4", " = 8.", " 2", " * 3 = 7.", " done"]
  # Sentence 1 "4 + 4 = 8." covers pieces 0-2 (+1); sentence 2
  # " 2 * 3 = 7." pieces 3-4 (−1, 6 ≠ 7); " done" has no equation (0).
  np.testing.assert_array_equal(steps.token_verdicts(pieces),
                                [1, 1, 1, -1, -1, 0])
  assert steps.token_verdicts([]).shape == (0,)


@pytest.fixture(scope="module")
def tok():
  return tiny_tokenizer.make(chat=False)


def test_rollout_collects_step_verdicts_and_reference_rewards(tok):
  model = models.Transformer(
      models.ModelConfig(vocab_size=len(tok), hidden_size=32,
                         intermediate_size=64, num_layers=1, num_heads=2,
                         num_kv_heads=1, head_dim=16),
      rngs=nnx.Rngs(0))
  ids = tok(["Ben has 4 coins."], add_special_tokens=False)["input_ids"][0]
  group = 2
  batch = pipeline.PromptBatch(
      tokens_BL=np.repeat(np.array([ids], np.int32), group, 0),
      mask_BL=np.ones((group, len(ids)), np.int32), prompts_P=("q",),
      answers_P=("4",), ids_P=("0",), records_P=({},), group_size=group)
  reward_set = rewards.RewardSet(
      [("correctness", rewards.functions.correctness, 1.0)])
  sampler = rollout_lib.Sampler(
      method=sampling.Temperature(1.0), max_new_tokens=6,
      eos_ids=(tok.eos_token_id,))
  rollout, scored, _ = rollout_lib.collect(
      model, iter([batch]), rng=jax.random.PRNGKey(0), sampler=sampler,
      tokenizer=tok, reward_set=reward_set, dynamic_sampling=False,
      max_rounds=1, multi_reward=False, progress=0.0,
      extras=("step_verdicts", "ref_rewards"), reference_model=model)
  verdicts = np.asarray(rollout.extras["step_verdicts"])
  assert verdicts.shape == (1, group, 6)
  # Each row's verdicts are those of its own decoded tokens.
  for b in range(group):
    n = int(scored.completion_mask_BT[b].sum())
    pieces = [tok.decode([int(t)]) for t in scored.completion_tokens_BT[b, :n]]
    np.testing.assert_array_equal(verdicts[0, b, :n],
                                  steps.token_verdicts(pieces))
    assert not verdicts[0, b, n:].any()
  assert rollout.extras["ref_rewards"].shape == (1, group)
  assert set(np.unique(rollout.extras["ref_rewards"])) <= {0.0, 1.0}
