"""Evaluation: golden estimators, maj@k clustering, metrics, end to end."""

import dataclasses
import fractions
import json
import math

from flax import nnx
import jax
import numpy as np
import pytest

from mathrl import eval_job
from mathrl import evaluation
from mathrl import models
from mathrl import rewards
from mathrl import sampling
from mathrl import sharding
from mathrl import stats
from mathrl.data import benchmarks
from mathrl.data import pipeline
from mathrl.data import prompts
from mathrl.data import synthetic
import tiny_tokenizer
from trainer_test import tiny_config


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

  def spy_generate(model, tokens_PL, mask_PL, **kwargs):
    shapes.append((tuple(tokens_PL.shape), kwargs["num_samples"]))
    return real_generate(model, tokens_PL, mask_PL, **kwargs)

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
  # 5 prompts in batches of 2, 2, 1; the last is padded to 2 prompts, each
  # sampled G=2 times, so the sampler always sees 2 prompts x 2 = 4 rows,
  # one compiled shape.
  assert shapes == [((2, 64), 2)] * 3
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


# --- pass@k / maj@k tables ---------------------------------------------------


def test_pass_and_maj_tables_for_one_group_of_four():
  # One problem, gold 6, G = 4 samples in order: 6 (right), 5, 5, 6 (right).
  answers = ["6", "5", "5", "6"]
  correct = [True, False, False, True]
  # pass@k = 1 - C(4-2, k) / C(4, k):
  #   k=1: 1 - 2/4 = 1/2;  k=2: 1 - 1/6 = 5/6;  k=3, 4: C(2, k) = 0 -> 1.
  # maj@k votes over the first k samples; a tie goes to the answer that
  # appeared first:
  #   k=1: {6: 1} -> right;  k=2: {6: 1, 5: 1} tie, 6 first -> right;
  #   k=3: {6: 1, 5: 2} -> 5, wrong;  k=4: {6: 2, 5: 2} tie, 6 first -> right.
  table = {1: (1 / 2, 1.0), 2: (5 / 6, 1.0), 3: (1.0, 0.0), 4: (1.0, 1.0)}
  for k, (pass_k, maj_k) in table.items():
    np.testing.assert_allclose(evaluation.pass_at_k(4, 2, k), pass_k,
                               rtol=1e-12, err_msg=f"pass@{k}")
    assert evaluation.maj_at_k(answers, correct, k) == maj_k, k
  # Reordered so the wrong answer comes first: the k=2 and k=4 ties flip.
  assert evaluation.maj_at_k(["5", "6", "6", "5"],
                             [False, True, True, False], 2) == 0.0
  assert evaluation.maj_at_k(["5", "6", "6", "5"],
                             [False, True, True, False], 4) == 0.0


# --- intervals ---------------------------------------------------------------


def test_wilson_interval_known_values():
  # p̂ = 5/10, z = 1.96, z²/n = 0.38415: centre (0.5 + 0.19208) / 1.38415
  # = 0.5; half = 1.95996 / 1.38415 * sqrt(0.025 + 0.009604) = 0.26341.
  np.testing.assert_allclose(stats.wilson_interval(5, 10),
                             (0.23659, 0.76341), atol=1e-5)
  # p̂ = 0: centre = half = 0.19208 / 1.38415 = 0.13877 -> [0, 0.27753].
  np.testing.assert_allclose(stats.wilson_interval(0, 10), (0.0, 0.27753),
                             atol=1e-5)
  # Symmetric: 10/10 mirrors 0/10.
  np.testing.assert_allclose(stats.wilson_interval(10, 10), (0.72247, 1.0),
                             atol=1e-5)
  # 41/64 (p̂ = 0.6406): the textbook value [0.5182, 0.7471].
  np.testing.assert_allclose(stats.wilson_interval(41, 64),
                             (0.51821, 0.74712), atol=1e-5)
  with pytest.raises(ValueError, match="successes"):
    stats.wilson_interval(11, 10)


def test_bootstrap_interval_known_values():
  # Two problems scoring 0 and 1: a resample's mean is 0, 1/2 or 1 with
  # probability 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are 0 and 1.
  assert stats.bootstrap_interval([0.0, 1.0]) == (0.0, 1.0)
  # Every problem scores the same: no spread.
  assert stats.bootstrap_interval([0.25] * 7) == (0.25, 0.25)
  # 30 of 100: close to the normal interval 0.3 ± 1.96 sqrt(0.21/100)
  # = [0.2102, 0.3898].
  np.testing.assert_allclose(
      stats.bootstrap_interval([1.0] * 30 + [0.0] * 70), (0.2102, 0.3898),
      atol=0.01)
  # Deterministic for a seed.
  scores = np.linspace(0, 1, 9)
  assert stats.bootstrap_interval(scores) == stats.bootstrap_interval(scores)


def test_accuracy_interval_uses_wilson_for_0_1_scores_else_bootstrap():
  assert stats.accuracy_interval([1, 0, 1, 1]) == stats.wilson_interval(3, 4)
  fractional = [0.5, 1.0, 0.0, 0.25]
  assert stats.accuracy_interval(fractional) == stats.bootstrap_interval(
      fractional)
  assert stats.format_interval(0.559, 0.498, 0.619) == "55.9 [49.8, 61.9]"


def test_metrics_carry_intervals():
  samples = [_sample(i, 0, "1", i in "ab", 1, None) for i in "abcd"]
  m = evaluation.metrics_from_rows(
      samples, ks=(1,), answer_equal_fn=evaluation.same_normalized_text)
  # Greedy, 2 of 4 right: Wilson(2, 4).
  low, high = stats.wilson_interval(2, 4)
  assert (m["ci_low/accuracy"], m["ci_high/accuracy"]) == (low, high)
  assert (m["ci_low/maj@1"], m["ci_high/maj@1"]) == (low, high)


# --- protocols ---------------------------------------------------------------


def test_default_ks():
  assert evaluation.default_ks(1) == (1,)
  assert evaluation.default_ks(16) == (1, 2, 4, 8, 16)
  assert evaluation.default_ks(6) == (1, 2, 4, 6)


def test_protocol_presets():
  chat = tiny_tokenizer.make(chat=True)
  base = prompts.PromptTemplate()
  qwen = evaluation.qwen25_math()
  assert qwen.method() == sampling.Greedy() and qwen.ks == (1,)
  assert prompts.render("What is 2+2?", chat, qwen.template(base)) == (
      "<system> " + prompts.BOXED_INSTRUCTION + " <eos> <user> What is 2+2?"
      " <eos> <assistant>")
  ds = evaluation.deepscaler()
  assert ds.method() == sampling.TopP(0.95, 0.6)
  assert ds.num_samples == 16 and 16 in ds.ks
  assert prompts.render("What is 2+2?", chat, ds.template(base)) == (
      "<user> What is 2+2? " + evaluation.DEEPSCALER_INSTRUCTION
      + " <eos> <assistant>")
  # The default keeps the run's template; G can be overridden.
  assert evaluation.Protocol().template(base) == base
  assert ds.with_samples(2).ks == (1, 2)
  with pytest.raises(ValueError, match="outside 1..G=2"):
    evaluation.Protocol(num_samples=2, ks=(4,))


# --- nothing dropped: GSM8K prompts longer than the bucket -------------------


@pytest.fixture(scope="module")
def gsm8k(shared_dir):
  return benchmarks.read_local("gsm8k", "test", shared_dir / "data")


def _lengths(tok, records, template):
  return [len(prompts.encode(prompts.render(r["question"], tok, template),
                             tok, chat=True)) for r in records]


def test_select_prompts_fits_a_bucket_to_the_data(gsm8k):
  chat = tiny_tokenizer.make(chat=True)
  template = prompts.PromptTemplate()
  lengths = _lengths(chat, gsm8k[:6], template)
  assert max(lengths) > 32  # some prompts do not fit the configured bucket
  chosen = evaluation.select_prompts(gsm8k, chat, template, buckets=(32,),
                                     num_examples=6)
  # The first 6 records, in file order; a bucket for the longest, rounded
  # up to 32 tokens, is added to the configured one.
  assert [r["id"] for r in chosen.records] == [f"test-{i}" for i in range(6)]
  assert chosen.buckets == (32, -(-max(lengths) // 32) * 32)
  assert chosen.skipped == () and chosen.num_requested == 6
  # Without fitting: a start-up error naming the prompts and the fields.
  with pytest.raises(ValueError, match=r"test-\d.*eval.buckets.*"
                     r"eval.fit_buckets=True.*eval.max_prompt_length"):
    evaluation.select_prompts(gsm8k, chat, template, buckets=(32,),
                              num_examples=6, fit_buckets=False)
  # With a cap: the longer prompts are skipped, and listed with lengths.
  cap = sorted(lengths)[3]
  capped = evaluation.select_prompts(gsm8k, chat, template, buckets=(32,),
                                     num_examples=6, max_prompt_length=cap)
  assert len(capped.records) + len(capped.skipped) == 6
  assert sorted(n for _, n in capped.skipped) == sorted(
      n for n in lengths if n > cap)


def test_evaluate_source_on_gsm8k_counts_every_prompt(
    gsm8k, tiny_model, tmp_path):
  chat = tiny_tokenizer.make(chat=True)
  template = prompts.PromptTemplate()
  protocol = evaluation.deepscaler().with_samples(2)
  lengths = _lengths(chat, gsm8k[:3], protocol.template(template))
  assert len(set(lengths)) == 3
  path = tmp_path / "samples.jsonl"
  common = dict(
      protocol=protocol, template=template,
      buckets=(32,), batch_size=4, max_new_tokens=3,
      eos_ids=(chat.eos_token_id,), rng=jax.random.PRNGKey(0),
      num_examples=3, answer_equal_fn=evaluation.same_normalized_text,
      benchmark="gsm8k")
  m = evaluation.evaluate_source(tiny_model, chat, gsm8k,
                                 samples_path=str(path), **common)
  # 3 problems x G=2 completions; none skipped; ks (1, 2) with intervals.
  assert (m["num_requested"], m["num_skipped"]) == (3, 0)
  assert (m["num_examples"], m["num_samples"]) == (3, 6)
  assert {"pass@2", "mean@2", "maj@2", "ci_low/mean@2"} <= set(m)
  rows = [json.loads(line) for line in path.read_text().splitlines()]
  assert [(r["id"], r["index"]) for r in rows] == [
      (f"test-{p}", g) for p in range(3) for g in range(2)]
  assert all(r["benchmark"] == "gsm8k" and "answer" in r and "correct" in r
             for r in rows)
  # The longest of the three skipped by a cap: counted, not evaluated.
  capped = evaluation.evaluate_source(
      tiny_model, chat, gsm8k, max_prompt_length=sorted(lengths)[1],
      samples_path=str(path), append_samples=True, **common)
  assert (capped["num_requested"], capped["num_skipped"]) == (3, 1)
  assert capped["num_examples"] == 2
  assert len(path.read_text().splitlines()) == 6 + 4


def test_eval_job_writes_every_benchmark_with_counts(shared_dir, tmp_path):
  # --mode=eval's job on the tiny config (random model, trained BPE):
  # GSM8K's chat-free prompts are far longer than its 80-token bucket,
  # and are evaluated through a derived bucket instead of dropped.
  config = tiny_config(**{
      "data.eval": "gsm8k", "data.local_dir": str(shared_dir / "data"),
      "data.tfds_dir": str(tmp_path / "tfds"),
      "eval.benchmarks": ("gsm8k", "synthetic"), "eval.num_examples": 3,
      "eval.protocol": "qwen25_math", "eval.max_new_tokens": 2})
  workdir = tmp_path / "eval"
  results = eval_job.run(config, str(workdir))
  assert list(results) == ["gsm8k", "synthetic"]
  for m in results.values():
    assert (m["num_requested"], m["num_skipped"], m["num_examples"]) == (
        3, 0, 3)
  saved = json.loads((workdir / eval_job.RESULTS_FILE).read_text())
  assert saved == {"protocol": "qwen25_math", "results": results}
  rows = [json.loads(line) for line in
          (workdir / eval_job.SAMPLES_FILE).read_text().splitlines()]
  assert [r["benchmark"] for r in rows] == ["gsm8k"] * 3 + ["synthetic"] * 3
  report = eval_job.report(results, "qwen25_math").splitlines()
  assert report[1].split()[:3] == ["benchmark", "n", "skipped"]
  assert report[2].split()[:3] == ["gsm8k", "3", "0"]
  # Synthetic records carry a difficulty: the level table follows.
  assert "accuracy per difficulty level" in report


def test_math500_levels_give_per_level_accuracy(shared_dir, tiny_model):
  # MATH-500 records carry their level ("1".."5") as `difficulty`.
  math500 = benchmarks.read_local("math500", "test", shared_dir / "data")
  assert {r["difficulty"] for r in math500} == {"1", "2", "3", "4", "5"}
  plain = tiny_tokenizer.make(chat=False)
  first = [int(r["difficulty"]) for r in math500[:6]]
  m = evaluation.evaluate_source(
      tiny_model, plain, math500, protocol=evaluation.Protocol(),
      template=prompts.PromptTemplate(), buckets=(64,), batch_size=8,
      max_new_tokens=1, eos_ids=(plain.eos_token_id,),
      rng=jax.random.PRNGKey(0), num_examples=6,
      score_fn=lambda completion, gold: True)
  for d in set(first):
    assert m[f"num_examples/difficulty_{d}"] == first.count(d)
    assert m[f"accuracy/difficulty_{d}"] == 1.0
  table = evaluation.level_table({"math500": m}).splitlines()
  assert [line.split()[1] for line in table[1:]] == [
      str(d) for d in sorted(set(first))]


def test_every_local_benchmark_selects_its_first_problems(shared_dir):
  # Every benchmark file goes through prompt selection: the first 3
  # records, in file order, and a bucket that fits the longest prompt.
  chat = tiny_tokenizer.make(chat=True)
  template = evaluation.qwen25_math().template(prompts.PromptTemplate())
  for name in benchmarks.BENCHMARKS:
    records = benchmarks.read_local(name, "test", shared_dir / "data")
    chosen = evaluation.select_prompts(records, chat, template, buckets=(8,),
                                       num_examples=3)
    assert list(chosen.records) == records[:3], name
    assert chosen.buckets[-1] >= max(_lengths(chat, records[:3], template))
