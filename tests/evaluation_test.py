"""Evaluation: golden estimators, maj@k clustering, metrics, end to end."""

import dataclasses
import fractions
import json
import math

from flax import nnx
import jax
import numpy as np
import pytest

from mathrl import evaluation
from mathrl import models
from mathrl import rewards
from mathrl import sampling
from mathrl import sharding
from mathrl.data import pipeline
from mathrl.data import prompts
from mathrl.data import synthetic
import tiny_tokenizer


# --- pass@k, mean@k ----------------------------------------------------------


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 0.4),  # 1 - C(3,1)/C(5,1) = 1 - 3/5
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5) = 1 - 21/252
        (5, 0, 3, 0.0),  # no correct sample: C(5,3)/C(5,3) = 1
        (5, 4, 2, 1.0),  # n - c = 1 < k = 2: every pair holds a correct one
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k_golden(n, c, k, expected):
  np.testing.assert_allclose(evaluation.pass_at_k(n, c, k), expected,
                             rtol=1e-12)


def test_pass_at_k_matches_exact_binomials_for_large_n():
  # The product form must agree with exact rational arithmetic where the
  # binomials themselves (C(200, 100) ~ 9e58) are far outside float range.
  for n, c, k in [(200, 7, 100), (200, 150, 10), (64, 1, 32)]:
    exact = 1 - fractions.Fraction(math.comb(n - c, k), math.comb(n, k))
    np.testing.assert_allclose(evaluation.pass_at_k(n, c, k), float(exact),
                               rtol=1e-12)


@pytest.mark.parametrize("n, c, k", [(5, 6, 1), (5, 2, 0), (5, 2, 6),
                                     (5, -1, 1)])
def test_pass_at_k_rejects_bad_counts(n, c, k):
  with pytest.raises(ValueError, match="pass_at_k needs"):
    evaluation.pass_at_k(n, c, k)


def test_mean_at_k_golden():
  flags = [True, False, True, True]
  assert evaluation.mean_at_k(flags, 1) == 1.0  # first sample only
  assert evaluation.mean_at_k(flags, 2) == 0.5  # (1 + 0) / 2
  assert evaluation.mean_at_k(flags, 4) == 0.75  # (1 + 0 + 1 + 1) / 4
  with pytest.raises(ValueError, match="1 <= k <= n"):
    evaluation.mean_at_k(flags, 5)


# --- maj@k -------------------------------------------------------------------


def test_maj_at_k_votes_and_breaks_ties_by_first_appearance():
  answers = ["3", "4", "4", " 3", None]
  correct = [True, False, False, True, False]
  # k=3: clusters {3}: 1 (correct), {4, 4}: 2 -> wrong answer wins.
  assert evaluation.maj_at_k(answers, correct, 3) == 0.0
  # k=5: {3, 3}: 2, {4, 4}: 2, None abstains; tie -> "3" came first.
  assert evaluation.maj_at_k(answers, correct, 5) == 1.0
  # Same votes, wrong cluster first: the tie goes to "4".
  assert evaluation.maj_at_k(["4", "3", "3", "4"],
                             [False, True, True, False], 4) == 0.0
  assert evaluation.maj_at_k([None, None], [False, False], 2) == 0.0


def test_maj_at_k_clusters_with_the_given_equality():
  values = {"0.5": 0.5, "\\frac{1}{2}": 0.5, "1/2": 0.5, "3": 3.0}
  calls = []

  def equal(a, b):
    calls.append((a, b))
    return values[a] == values[b]

  answers = ["3", "0.5", "\\frac{1}{2}"]  # gold 3
  correct = [True, False, False]
  # As text, three clusters of one; the tie goes to the first, "3".
  assert evaluation.maj_at_k(answers, correct, 3) == 1.0
  # As numbers, {0.5, 1/2} outvotes {3}.
  assert evaluation.maj_at_k(answers, correct, 3, equal_fn=equal) == 0.0
  # Only the two incorrect answers were compared with each other.
  assert calls == [("\\frac{1}{2}", "0.5")]
  # Correct answers form one cluster without any comparison.
  calls.clear()
  assert evaluation.maj_at_k(["0.5", "1/2", "3", "3"],
                             [True, True, False, False], 4,
                             equal_fn=equal) == 1.0
  assert calls == [("3", "3")]


def test_maj_at_k_with_math_equal():
  # Gold 3; "0.5" and "\frac{1}{2}" are the same wrong answer.
  answers = ["3", "0.5", "\\frac{1}{2}"]
  correct = [rewards.math_equal(a, "3") for a in answers]
  assert correct == [True, False, False]
  assert evaluation.maj_at_k(answers, correct, 3,
                             equal_fn=rewards.math_equal) == 0.0
  assert evaluation.maj_at_k(answers, correct, 3,
                             equal_fn=evaluation.same_normalized_text) == 1.0


def test_normalized_text_equality():
  assert evaluation.same_normalized_text("$\\dfrac{1}{2}$", "\\frac{1}{2}")
  assert evaluation.same_normalized_text("\\left( 1, 2 \\right)", "(1,2)")
  assert not evaluation.same_normalized_text("0.5", "\\frac{1}{2}")


# --- metrics from samples ----------------------------------------------------


def _sample(id_, index, answer, correct, length, difficulty):
  return evaluation.Sample(
      id=id_, index=index, prompt="q", completion=f"\\boxed{{{answer}}}",
      answer=answer, gold="g", correct=correct, length=length,
      difficulty=difficulty)


def test_metrics_from_rows_golden():
  samples = [
      # prompt a (difficulty 1): answers 5, 7, 7; only "5" correct
      _sample("a", 0, "5", True, 4, 1),
      _sample("a", 1, "7", False, 6, 1),
      _sample("a", 2, "7", False, 2, 1),
      # prompt b (difficulty 2): all correct
      _sample("b", 0, "1", True, 3, 2),
      _sample("b", 1, "1", True, 3, 2),
      _sample("b", 2, "1", True, 3, 2),
      # prompt c (difficulty 2): none answered
      _sample("c", 0, None, False, 8, 2),
      _sample("c", 1, None, False, 8, 2),
      _sample("c", 2, None, False, 8, 2),
  ]
  m = evaluation.metrics_from_rows(
      samples, ks=(1, 3), answer_equal_fn=evaluation.same_normalized_text)
  # 4 correct of 9 samples.
  np.testing.assert_allclose(m["accuracy"], 4 / 9)
  # pass@1 per prompt: a 1/3, b 1, c 0 -> mean 4/9; pass@3: 1, 1, 0.
  np.testing.assert_allclose(m["pass@1"], 4 / 9)
  np.testing.assert_allclose(m["pass@3"], 2 / 3)
  # mean@1 uses the first sample: a 1, b 1, c 0.
  np.testing.assert_allclose(m["mean@1"], 2 / 3)
  np.testing.assert_allclose(m["mean@3"], 4 / 9)
  # maj@3: a -> "7" (2 votes) wrong, b right, c abstains -> 1/3.
  np.testing.assert_allclose(m["maj@3"], 1 / 3)
  np.testing.assert_allclose(m["maj@1"], 2 / 3)
  # Lengths: (4 + 6 + 2 + 3 * 3 + 3 * 8) / 9 = 45 / 9.
  np.testing.assert_allclose(m["response_length_mean"], 5.0)
  np.testing.assert_allclose(m["answer_rate"], 6 / 9)
  assert m["num_examples"] == 3 and m["num_samples"] == 9
  # Difficulty 1: 1 of 3 correct; difficulty 2: 3 of 6.
  np.testing.assert_allclose(m["accuracy/difficulty_1"], 1 / 3)
  np.testing.assert_allclose(m["accuracy/difficulty_2"], 0.5)
  assert m["num_examples/difficulty_1"] == 1
  assert m["num_examples/difficulty_2"] == 2


def test_metrics_from_rows_rejects_k_above_group_size():
  samples = [_sample("a", 0, "1", True, 1, None)]
  with pytest.raises(ValueError, match="outside 1..G=1"):
    evaluation.metrics_from_rows(samples, ks=(1, 4))
  with pytest.raises(ValueError, match="no samples"):
    evaluation.metrics_from_rows([], ks=(1,))


def test_summary_table_golden():
  table = evaluation.summary_table({
      "after SFT": {"accuracy": 0.5, "accuracy/difficulty_1": 0.75,
                    "accuracy/difficulty_10": 0.125, "reward_mean": 3.0},
      "after RL": {"accuracy": 0.625, "accuracy/difficulty_1": 1.0,
                   "accuracy/difficulty_2": 0.25, "pass@1": 0.625,
                   "pass@16": 0.875, "pass@2": 0.75, "maj@16": 0.7},
  })
  assert table == "\n".join([
      "metric         after SFT  after RL",
      "accuracy           0.500     0.625",
      "difficulty 1       0.750     1.000",
      "difficulty 2           -     0.250",
      "difficulty 10      0.125         -",
      "maj@16                 -     0.700",
      "pass@2                 -     0.750",
      "pass@16                -     0.875",
  ])


# --- end to end with the tiny model ------------------------------------------


@pytest.fixture(scope="module")
def tok():
  return tiny_tokenizer.make(chat=False)


@pytest.fixture(scope="module")
def tiny_model(tok):
  config = dataclasses.replace(models.presets.TINY, vocab_size=len(tok))
  return models.Transformer(config, rngs=nnx.Rngs(0))


def _batches(tok, source, prompts_per_batch, group_size):
  return pipeline.PromptIterator(
      source, tokenizer=tok, template=prompts.PromptTemplate(),
      prompts_per_batch=prompts_per_batch, group_size=group_size,
      buckets=(64,), seed=0, shuffle=False, num_epochs=1,
      drop_remainder=False, shard_index=0, shard_count=1)


def test_evaluate_end_to_end_pads_the_last_batch(
    tok, tiny_model, monkeypatch, tmp_path):
  source = synthetic.ArithmeticTasks(5, seed=3, max_ops=3, max_digits=1)
  records = [source[i] for i in range(len(source))]
  shapes, scored = [], []
  real_generate = sampling.generate

  def spy_generate(model, tokens_BL, mask_BL, **kwargs):
    shapes.append(tuple(tokens_BL.shape))
    return real_generate(model, tokens_BL, mask_BL, **kwargs)

  def even_gold(completion, gold):
    scored.append((completion, gold))
    return int(gold) % 2 == 0

  monkeypatch.setattr(sampling, "generate", spy_generate)
  path = tmp_path / "samples.jsonl"
  m = evaluation.evaluate(
      nnx.split(tiny_model), tok, _batches(tok, source, 2, 2),
      method=sampling.Temperature(1.0), max_new_tokens=4,
      eos_ids=(tok.eos_token_id,), rng=jax.random.PRNGKey(0),
      batch_size=2, score_fn=even_gold,
      answer_equal_fn=evaluation.same_normalized_text, ks=(1, 2),
      samples_path=str(path))
  # 5 prompts in batches of 2, 2, 1; the last is padded to 2 prompts x G=2,
  # so the sampler always sees B = 4 rows, one compiled shape.
  assert shapes == [(4, 64)] * 3
  # The padding rows are neither scored nor counted: 5 prompts x 2 samples.
  assert len(scored) == 10
  assert [g for _, g in scored] == [r["answer"] for r in records
                                    for _ in range(2)]
  assert m["num_examples"] == 5 and m["num_samples"] == 10
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert [(r["id"], r["index"]) for r in rows] == [
      (r["id"], g) for r in records for g in range(2)]
  assert [r["difficulty"] for r in rows] == [
      r["difficulty"] for r in records for _ in range(2)]
  assert all(1 <= r["length"] <= 4 for r in rows)
  # The scorer decides by the gold alone, so every metric of a prompt is
  # its gold's parity.
  even = np.array([int(r["answer"]) % 2 == 0 for r in records], float)
  for key in ("accuracy", "pass@1", "pass@2", "mean@1", "mean@2"):
    np.testing.assert_allclose(m[key], even.mean(), err_msg=key)
  levels = sorted({r["difficulty"] for r in records})
  for d in levels:
    at_d = [e for e, r in zip(even, records) if r["difficulty"] == d]
    np.testing.assert_allclose(m[f"accuracy/difficulty_{d}"], np.mean(at_d))
  assert sorted(k for k in m if k.startswith("accuracy/")) == sorted(
      f"accuracy/difficulty_{d}" for d in levels)
  np.testing.assert_allclose(
      m["response_length_mean"], np.mean([r["length"] for r in rows]))
  # maj@k agrees with the estimator run on the written samples.
  maj2 = np.mean([evaluation.maj_at_k(
      [r["answer"] for r in rows[2 * p: 2 * p + 2]],
      [r["correct"] for r in rows[2 * p: 2 * p + 2]], 2) for p in range(5)])
  np.testing.assert_allclose(m["maj@2"], maj2)


def test_evaluate_rejects_a_batch_larger_than_batch_size(tok, tiny_model):
  source = synthetic.ArithmeticTasks(3, seed=3, max_ops=1, max_digits=1)
  with pytest.raises(ValueError, match="batch_size=1"):
    evaluation.evaluate(
        tiny_model, tok, _batches(tok, source, 3, 1),
        method=sampling.Greedy(), max_new_tokens=2,
        eos_ids=(tok.eos_token_id,), rng=jax.random.PRNGKey(0),
        batch_size=1, score_fn=lambda c, g: True)


def test_evaluate_on_a_mesh_equals_single_device(tok, tiny_model):
  # Greedy, G=1: 5 prompts padded to one batch of 8 rows, split over the 8
  # fake devices; the completions must not depend on where they ran. The
  # default scorer (math_equal, batched over the worker pool) is used.
  source = synthetic.ArithmeticTasks(5, seed=4, max_ops=2, max_digits=1)

  def run(mesh):
    return evaluation.generate_rows(
        tiny_model, tok, _batches(tok, source, 8, 1),
        method=sampling.Greedy(), max_new_tokens=4,
        eos_ids=(tok.eos_token_id,), rng=jax.random.PRNGKey(0),
        batch_size=8, mesh=mesh)

  single = run(None)
  sharded = run(sharding.make_mesh(data=-1))
  assert [s.id for s in single] == [source[i]["id"] for i in range(5)]
  assert single == sharded
  assert [s.correct for s in single] == [
      rewards.math_equal(s.completion, s.gold) for s in single]
  m = evaluation.metrics_from_rows(single)
  # Greedy accuracy is the mean of the 5 verdicts.
  np.testing.assert_allclose(
      m["accuracy"], np.mean([s.correct for s in single]))
  assert m["num_examples"] == m["num_samples"] == 5
