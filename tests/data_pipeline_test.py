"""Synthetic tasks, prompt templating and the resumable grain pipeline."""

import json
import re

from mathrl.rewards import extract
from mathrl.data import pipeline
from mathrl.data import prompts
from mathrl.data import synthetic
from mathrl.data import tfds_builders
import grain
import numpy as np
import pytest
import tiny_tokenizer


@pytest.fixture(scope="module")
def plain_tok():
  return tiny_tokenizer.make(chat=False)


@pytest.fixture(scope="module")
def chat_tok():
  return tiny_tokenizer.make(chat=True)


# --- synthetic tasks -------------------------------------------------------


def test_synthetic_golden_item():
  # Item (seed=0, "train", index=0) is fixed forever by its sha512-seeded
  # generator (and by the SHA-256 split rule its first draw passed).
  record = synthetic.ArithmeticTasks(10, seed=0, max_ops=4, max_digits=3)[0]
  assert record == {
      "question": "Ben has 393 coins. He buys 182 more coins. He gives 81"
                  " coins to Max. He gives 128 coins to Lily. How many coins"
                  " does Ben have now?",
      "answer": "366",  # 393 + 182 − 81 − 128
      "solution": "393 + 182 = 575.\n575 - 81 = 494.\n494 - 128 = 366.\n"
                  "The answer is \\boxed{366}.",
      "source": "synthetic_arithmetic",
      "id": "arith-0-train-0",
      "difficulty": 3,
      "digits": 3,
  }


def test_synthetic_splits_are_disjoint_even_where_the_space_is_small():
  # One-digit amounts, one operation: a few thousand distinct questions, so
  # independent draws would share many; the SHA-256 split rule shares none.
  kw = dict(min_ops=1, max_ops=1, min_digits=1, max_digits=1)
  train = synthetic.ArithmeticTasks(20_000, seed=0, **kw)
  seen = {train[i]["question"] for i in range(20_000)}
  for split in ("validation", "test"):
    held = synthetic.ArithmeticTasks(200, seed=0, split=split, **kw)
    questions = {held[i]["question"] for i in range(200)}
    assert not questions & seen
    assert all(synthetic.split_of(q) == split for q in questions)
  val = synthetic.ArithmeticTasks(200, seed=0, split="validation", **kw)
  test = synthetic.ArithmeticTasks(200, seed=0, split="test", **kw)
  assert not ({val[i]["question"] for i in range(200)}
              & {test[i]["question"] for i in range(200)})
  with pytest.raises(ValueError, match="split must be one of"):
    synthetic.ArithmeticTasks(10, split="dev")


def test_synthetic_deterministic_random_access():
  a = synthetic.ArithmeticTasks(1000, seed=7, max_ops=5, max_digits=3)
  b = synthetic.ArithmeticTasks(1000, seed=7, max_ops=5, max_digits=3)
  assert [a[i] for i in (999, 3, 500)] == [b[i] for i in (999, 3, 500)]
  assert a[-1] == a[999]
  other = synthetic.ArithmeticTasks(1000, seed=8, max_ops=5, max_digits=3)
  assert sum(a[i]["question"] != other[i]["question"] for i in range(20)) > 15
  with pytest.raises(IndexError, match="out of range"):
    a[1000]
  with pytest.raises(ValueError, match="min_ops <= max_ops"):
    synthetic.ArithmeticTasks(10, min_ops=3, max_ops=2)


def test_synthetic_solutions_are_correct_and_graded():
  tasks = synthetic.ArithmeticTasks(
      400, seed=3, min_ops=2, max_ops=6, min_digits=1, max_digits=4
  )
  ops = {"+": int.__add__, "-": int.__sub__, "*": int.__mul__,
         "/": int.__floordiv__}
  seen = set()
  for i in range(len(tasks)):
    r = tasks[i]
    *steps, final = r["solution"].split("\n")
    assert len(steps) == r["difficulty"] and 2 <= r["difficulty"] <= 6
    value = int(re.search(r"has (\d+)", r["question"])[1])
    assert len(str(value)) == r["digits"]
    for step in steps:
      a, op, b, c = re.fullmatch(
          r"(\d+) ([-+*/]) (\d+) = (\d+)\.", step).groups()
      assert int(a) == value
      if op == "/":
        assert int(a) % int(b) == 0
      value = ops[op](int(a), int(b))
      assert value == int(c) and value >= 0
    assert extract.last_boxed(final) == r["answer"] == str(value)
    seen.add((r["difficulty"], r["digits"]))
  assert len(seen) == 5 * 4  # every (ops, digits) level occurs


# --- prompts ---------------------------------------------------------------


def test_left_pad_golden():
  tokens_PL, mask_PL = prompts.left_pad([[5, 6, 7], [8]], (2, 4, 8), pad_id=0)
  # Longest prompt has 3 tokens -> bucket 4; rows are right-aligned.
  np.testing.assert_array_equal(tokens_PL, [[0, 5, 6, 7], [0, 0, 0, 8]])
  np.testing.assert_array_equal(mask_PL, [[0, 1, 1, 1], [0, 0, 0, 1]])
  assert tokens_PL.dtype == np.int32
  with pytest.raises(ValueError, match="largest bucket 8"):
    prompts.bucket_length(9, (2, 4, 8))


def test_render_plain_and_chat(plain_tok, chat_tok):
  template = prompts.PromptTemplate(system="Be brief.")
  assert prompts.render("Mia has 3 pens.", plain_tok, template) == (
      "Question: Mia has 3 pens.\nAnswer:"
  )
  assert prompts.render("Mia has 3 pens.", chat_tok, template) == (
      "<system> Be brief. <eos> <user> Mia has 3 pens.\n"
      + prompts.BOXED_INSTRUCTION + " <eos> <assistant>"
  )
  no_chat = prompts.PromptTemplate(use_chat_template=False)
  assert prompts.render("x", chat_tok, no_chat) == "Question: x\nAnswer:"
  with pytest.raises(ValueError, match="must contain '{question}'"):
    prompts.PromptTemplate(plain="Answer:")


# --- pipeline --------------------------------------------------------------

_TASKS = synthetic.ArithmeticTasks(24, seed=5)


def _iterator(tok, **overrides):
  kwargs = dict(
      tokenizer=tok, template=prompts.PromptTemplate(), prompts_per_batch=3,
      group_size=2, buckets=(32, 64), seed=11, shard_index=0, shard_count=1,
  )
  kwargs.update(overrides)
  return pipeline.PromptIterator(_TASKS, **kwargs)


def _assert_batches_equal(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    np.testing.assert_array_equal(x.tokens_BL, y.tokens_BL)
    np.testing.assert_array_equal(x.mask_BL, y.mask_BL)
    assert (x.ids_P, x.answers_P, x.prompts_P) == (
        y.ids_P, y.answers_P, y.prompts_P)


def test_batch_layout_row_order_and_tokens(chat_tok):
  batch = next(_iterator(chat_tok))
  assert batch.tokens_BL.shape == (6, 64) and batch.mask_BL.shape == (6, 64)
  # Row p*G + g is prompt p: rows come in identical pairs.
  np.testing.assert_array_equal(batch.tokens_BL[0::2], batch.tokens_BL[1::2])
  assert batch.answers_B == tuple(np.repeat(batch.answers_P, 2))
  for p, record in enumerate(batch.records_P):
    ids = chat_tok(batch.prompts_P[p], add_special_tokens=False)["input_ids"]
    row = batch.tokens_BL[2 * p][batch.mask_BL[2 * p] == 1]
    np.testing.assert_array_equal(row, ids)
    assert batch.prompts_P[p].startswith("<user> " + record["question"])
    assert batch.answers_P[p] == record["answer"]


def test_shuffle_is_seeded_and_reshuffles_each_epoch(plain_tok):
  def epoch_ids(it, batches=8):  # 8 batches x 3 prompts = one epoch of 24
    return [i for _ in range(batches) for i in next(it).ids_P]

  it = _iterator(plain_tok)
  first, second = epoch_ids(it), epoch_ids(it)
  assert sorted(first) == sorted(second) == sorted(
      _TASKS[i]["id"] for i in range(24))
  assert first != second
  assert epoch_ids(_iterator(plain_tok)) == first
  assert epoch_ids(_iterator(plain_tok, seed=12)) != first
  ordered = epoch_ids(_iterator(plain_tok, shuffle=False))
  assert ordered == [_TASKS[i]["id"] for i in range(24)]


@pytest.mark.parametrize("shard_count", [1, 2])
def test_resume_is_exact(plain_tok, shard_count):
  for shard in range(shard_count):
    make = lambda: _iterator(plain_tok, shard_index=shard,  # noqa: E731
                             shard_count=shard_count)
    full = make()
    uninterrupted = [next(full) for _ in range(7)]
    run = make()
    head = [next(run) for _ in range(3)]
    state = json.loads(json.dumps(run.get_state()))
    assert state["batches"] == 3
    restored = make()
    restored.set_state(state)
    _assert_batches_equal(head + [next(restored) for _ in range(4)],
                          uninterrupted)


def test_two_shards_are_disjoint_and_cover_the_epoch(plain_tok):
  ids = []
  for shard in range(2):
    it = _iterator(plain_tok, shard_index=shard, shard_count=2,
                   num_epochs=1)
    shard_ids = [i for batch in it for i in batch.ids_P]
    assert len(shard_ids) == 12  # 24 records / 2 shards, 4 batches of 3
    ids.append(set(shard_ids))
  assert not ids[0] & ids[1]
  assert ids[0] | ids[1] == {_TASKS[i]["id"] for i in range(24)}


def test_shards_together_read_the_one_process_batches(plain_tok):
  # Shard i of 2 reads block i of each global batch of 2 × 3 prompts, so
  # the shards' k-th batches, concatenated, are the k-th batch of one
  # stream of 6 prompts per batch (6 batches: across an epoch of 24).
  one = _iterator(plain_tok, prompts_per_batch=6)
  shards = [_iterator(plain_tok, shard_index=i, shard_count=2)
            for i in range(2)]
  for _ in range(6):
    expected = next(one)
    parts = [next(s) for s in shards]
    assert parts[0].ids_P + parts[1].ids_P == expected.ids_P


def test_block_shard_positions():
  ds = grain.MapDataset.range(11)
  # Blocks of 2 over 2 shards: 0 1 | 2 3 | 4 5 | 6 7 | 8 9 | 10.
  assert list(pipeline.block_shard(ds, 2, 0, 2)) == [0, 1, 4, 5, 8, 9]
  assert list(pipeline.block_shard(ds, 2, 1, 2)) == [2, 3, 6, 7, 10]
  assert pipeline.block_shard(ds, 2, 0, 1) is ds


def test_keep_remainder_for_evaluation(plain_tok):
  it = _iterator(plain_tok, num_epochs=1, shuffle=False, prompts_per_batch=5,
                 drop_remainder=False)
  batches = list(it)
  # 24 records in batches of 5: 5 + 5 + 5 + 5 + 4, nothing dropped.
  assert [len(b.ids_P) for b in batches] == [5, 5, 5, 5, 4]
  assert batches[-1].tokens_BL.shape[0] == 4 * 2
  assert [i for b in batches for i in b.ids_P] == [
      _TASKS[i]["id"] for i in range(24)]


def test_state_from_other_shard_is_refused(plain_tok):
  state = _iterator(plain_tok, shard_index=0, shard_count=2).get_state()
  other = _iterator(plain_tok, shard_index=1, shard_count=2)
  with pytest.raises(ValueError, match="same source, seed, shard_index"):
    other.set_state(state)


def test_overlong_prompts_dropped_or_refused(plain_tok):
  lengths = [len(plain_tok(prompts.render(_TASKS[i]["question"], plain_tok,
                                          prompts.PromptTemplate()))
                 ["input_ids"]) for i in range(24)]
  limit = sorted(lengths)[12]
  short = {_TASKS[i]["id"] for i in range(24) if lengths[i] <= limit}
  it = _iterator(plain_tok, buckets=(limit,), num_epochs=1, prompts_per_batch=1)
  assert {i for batch in it for i in batch.ids_P} == short
  strict = _iterator(plain_tok, buckets=(limit,), drop_overlong=False,
                     shuffle=False, prompts_per_batch=24)
  with pytest.raises(ValueError, match="longer than the largest bucket"):
    next(strict)


def test_records_without_required_fields_are_named(plain_tok):
  it = pipeline.PromptIterator(
      [{"question": "Mia has 3 pens.", "id": "x"}], tokenizer=plain_tok,
      template=prompts.PromptTemplate(), prompts_per_batch=1, group_size=1,
      buckets=(16,), seed=0, shard_index=0, shard_count=1)
  with pytest.raises(KeyError, match=r"lacks field\(s\) \['answer'\]"):
    next(it)


def test_benchmark_source_through_pipeline(shared_dir, tmp_path, chat_tok):
  source = tfds_builders.load("amc23", "test", data_dir=tmp_path,
                              local_dir=shared_dir / "data")
  it = pipeline.PromptIterator(
      source, tokenizer=chat_tok, template=prompts.PromptTemplate(),
      prompts_per_batch=8, group_size=4, buckets=(256, 512), seed=0,
      shard_index=1, shard_count=2, num_epochs=1)
  batches = list(it)
  # 40 problems / 2 shards = 20 -> two full batches of 8 (4 left over).
  assert len(batches) == 2
  assert all(b.tokens_BL.shape[0] == 8 * 4 for b in batches)
  answers = {source[i]["id"]: source[i]["answer"] for i in range(40)}
  for b in batches:
    assert b.answers_P == tuple(answers[i] for i in b.ids_P)
