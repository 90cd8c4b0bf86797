"""The rollout sampler: exactness against transformers and the full forward,
sampling distributions, compile-once, sharding, and memory checks."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hf_checkpoints
from mathrl import models
from mathrl import sampling
from mathrl import sharding

# Three left-padded prompts of lengths 5, 3 and 1 in a bucket of 6.
PROMPTS_BL = np.array([[0, 11, 12, 13, 14, 15],
                       [0, 0, 0, 21, 22, 23],
                       [0, 0, 0, 0, 0, 31]], np.int32)
MASK_BL = (PROMPTS_BL > 0).astype(np.int32)
T = 8


@pytest.fixture(scope="module")
def loaded(tiny_checkpoints):
  return {f: models.from_pretrained(p) for f, p in tiny_checkpoints.items()}


def _hf_greedy(path, eos_id):
  torch = hf_checkpoints._torch()  # pylint: disable=protected-access
  import transformers  # pylint: disable=g-import-not-at-top
  hf = transformers.AutoModelForCausalLM.from_pretrained(path)
  out = hf.generate(torch.tensor(PROMPTS_BL).long(),
                    attention_mask=torch.tensor(MASK_BL).long(),
                    do_sample=False, max_new_tokens=T, eos_token_id=eos_id,
                    pad_token_id=0)
  return out[:, PROMPTS_BL.shape[1]:].numpy()


@pytest.mark.parametrize("family", hf_checkpoints.FAMILIES)
def test_greedy_equals_transformers_with_eos_stop(family, loaded,
                                                  tiny_checkpoints):
  model = loaded[family]
  free = sampling.generate(model, PROMPTS_BL, MASK_BL, rng=jax.random.key(0),
                           max_new_tokens=T, eos_ids=(255,))
  # Stop on the token row 0 emits third, so rows stop at different steps.
  eos = int(free.tokens_BT[0, 2])
  out = sampling.generate(model, PROMPTS_BL, MASK_BL, rng=jax.random.key(0),
                          max_new_tokens=T, eos_ids=(eos,))
  hf = _hf_greedy(tiny_checkpoints[family], eos)
  tokens, mask = np.asarray(out.tokens_BT), np.asarray(out.mask_BT)
  for b in range(3):
    n = int(mask[b].sum())
    np.testing.assert_array_equal(tokens[b, :n], hf[b, :n])
    stops = np.flatnonzero(tokens[b, :n] == eos)
    # Mask is 1 up to and including the first stop token, 0 after it.
    if stops.size:
      assert n == stops[0] + 1
      assert (tokens[b, n:] == 0).all()
    else:
      assert n == T
  assert mask[0].sum() <= 3  # row 0 stops by its third token


@pytest.mark.parametrize("family", hf_checkpoints.FAMILIES)
def test_logprobs_and_entropy_equal_full_forward(family, loaded):
  model = loaded[family]
  out = sampling.generate(model, PROMPTS_BL, MASK_BL, rng=jax.random.key(3),
                          max_new_tokens=T, eos_ids=(7,),
                          method=sampling.TopK(20, temperature=0.8),
                          return_entropy=True)
  tokens_BS = jnp.concatenate([PROMPTS_BL, out.tokens_BT], 1)
  mask_BS = jnp.concatenate([MASK_BL, out.mask_BT], 1)
  logp_BSV = jax.nn.log_softmax(model(tokens_BS, attention_mask_BS=mask_BS))
  # Position L - 1 + t predicts completion token t (temperature 1, untruncated).
  logp_BTV = logp_BSV[:, PROMPTS_BL.shape[1] - 1:-1]
  want_BT = jnp.take_along_axis(logp_BTV, out.tokens_BT[..., None], -1)[..., 0]
  want_ent_BT = -jnp.sum(jnp.exp(logp_BTV) * logp_BTV, -1)
  m = np.asarray(out.mask_BT, bool)
  np.testing.assert_allclose(np.asarray(out.logprobs_BT)[m],
                             np.asarray(want_BT)[m], atol=1e-5)
  np.testing.assert_allclose(np.asarray(out.entropy_BT)[m],
                             np.asarray(want_ent_BT)[m], atol=1e-5)
  assert (np.asarray(out.logprobs_BT)[~m] == 0).all()


# A known distribution over 8 tokens.
_P = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])
_N = 20_000
# Total-variation bound: the expected TV of N=20k multinomial draws over 8
# outcomes is about ½·Σ sqrt(p(1−p)/N) ≈ 0.008; 0.02 leaves a wide margin
# and still catches any wrong truncation (each wrong token moves ≥ 0.02).
_TV_BOUND = 0.02


def _renorm(p, keep):
  q = np.where(keep, p, 0.0)
  return q / q.sum()


@pytest.mark.parametrize("method,want", [
    # softmax(log p / 0.7) ∝ p^(1/0.7).
    (sampling.Temperature(0.7), _P ** (1 / 0.7) / np.sum(_P ** (1 / 0.7))),
    # The 3 most likely tokens, renormalised: [.3, .2, .15] / .65.
    (sampling.TopK(3), _renorm(_P, np.arange(8) < 3)),
    # Nucleus 0.6: mass before tokens 0,1,2 is 0, .3, .5 < .6, before
    # token 3 it is .65 ≥ .6, so tokens 0-2 remain.
    (sampling.TopP(0.6), _renorm(_P, np.arange(8) < 3)),
    # Min-p 0.4: keep p ≥ 0.4 · 0.3 = 0.12, i.e. tokens 0-2.
    (sampling.MinP(0.4), _renorm(_P, _P >= 0.12)),
    # Min-p 0.3 at temperature 2: q ∝ sqrt(p); keep q ≥ 0.3 q_max, i.e.
    # sqrt(p) ≥ 0.3·sqrt(0.3) ⇔ p ≥ 0.027: all but the last token.
    (sampling.MinP(0.3, temperature=2.0), _renorm(np.sqrt(_P), _P >= 0.027)),
])
def test_sampling_distributions_match_truncated_targets(method, want):
  logits_NV = jnp.broadcast_to(jnp.log(jnp.asarray(_P, jnp.float32)), (_N, 8))
  draws = np.asarray(jax.jit(method.sample)(logits_NV, jax.random.key(0)))
  freq = np.bincount(draws, minlength=8) / _N
  tv = 0.5 * np.abs(freq - want).sum()
  assert tv < _TV_BOUND, (freq, want)
  assert (freq[want == 0] == 0).all()


def test_inverse_cdf_categorical_matches_target_and_skips_masked_tokens():
  # Tokens 0 and 7 masked (-inf): the target is _P renormalised over 1-6.
  logits_V = np.log(_P).astype(np.float32)
  logits_V[[0, 7]] = -np.inf
  draws = np.asarray(jax.jit(sampling.categorical)(
      jax.random.key(3), jnp.broadcast_to(jnp.asarray(logits_V), (_N, 8))))
  freq = np.bincount(draws, minlength=8) / _N
  want = _renorm(_P, np.isfinite(logits_V))
  assert 0.5 * np.abs(freq - want).sum() < _TV_BOUND, (freq, want)
  assert freq[0] == freq[7] == 0
  # One finite logit per row: always that token; ids are int32.
  one_BV = jnp.where(jnp.eye(4, 6, k=2) > 0, 0.0, -jnp.inf)
  got = sampling.categorical(jax.random.key(0), one_BV)
  assert got.dtype == jnp.int32
  np.testing.assert_array_equal(got, [2, 3, 4, 5])


def test_two_level_categorical_equals_the_float64_inverse_cdf():
  # V = 300: blocks of 128 tokens, the last one padded (44 real tokens).
  # Row 1 has -inf logits over tokens 100-299 (mass in the first block
  # only), row 2 one finite logit, token 290, in the padded block; the
  # rest are random. The draw must be the float64 inverse CDF's at the
  # same uniform U (draws within rounding of a CDF step are improbable
  # at 64 rows: U would have to fall within ~1e-7 of one of 300 steps).
  r = np.random.RandomState(0)
  logits_BV = r.randn(64, 300).astype(np.float32) * 3
  logits_BV[1, 100:] = -np.inf
  logits_BV[2] = -np.inf
  logits_BV[2, 290] = 0.0
  rng = jax.random.key(5)
  got = np.asarray(jax.jit(sampling.categorical)(rng, jnp.asarray(logits_BV)))
  u_B = np.asarray(jax.random.uniform(rng, (64, 1)))[:, 0]
  p_BV = np.exp(logits_BV.astype(np.float64)
                - logits_BV.max(axis=1, keepdims=True))
  cdf_BV = np.cumsum(p_BV / p_BV.sum(axis=1, keepdims=True), axis=1)
  want = [np.searchsorted(c, u, side="right") for c, u in zip(cdf_BV, u_B)]
  np.testing.assert_array_equal(got, want)
  assert got[1] < 100 and got[2] == 290


def test_greedy_is_argmax_and_methods_validate_arguments():
  logits = jnp.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
  np.testing.assert_array_equal(
      sampling.Greedy().sample(logits, jax.random.key(0)), [1, 0])
  for bad in (lambda: sampling.Temperature(0.0), lambda: sampling.TopK(0),
              lambda: sampling.TopP(0.0), lambda: sampling.MinP(1.5)):
    with pytest.raises(ValueError):
      bad()


def test_samples_per_prompt_are_independent_and_deterministic(loaded):
  model = loaded["qwen2"]
  kw = dict(rng=jax.random.key(5), max_new_tokens=T, eos_ids=(255,),
            method=sampling.Temperature(1.0), num_samples=3)
  a = sampling.generate(model, PROMPTS_BL, MASK_BL, **kw)
  b = sampling.generate(model, PROMPTS_BL, MASK_BL, **kw)
  np.testing.assert_array_equal(a.tokens_BT, b.tokens_BT)
  assert a.tokens_BT.shape == (9, T)
  # Rows p*3 + g share prompt p but not their samples.
  for p in range(3):
    rows = np.asarray(a.tokens_BT[3 * p:3 * p + 3])
    assert len({tuple(r) for r in rows}) > 1


def test_one_prefill_per_prompt_equals_prefilling_every_row(loaded):
  model = loaded["qwen2"]
  graphdef, params = nnx.split(model)
  kw = dict(max_new_tokens=T, return_entropy=False, pad_id=0)
  # pylint: disable=protected-access
  shared, _ = sampling._prefill(graphdef, params, PROMPTS_BL, MASK_BL,
                                num_samples=3, **kw)
  every, _ = sampling._prefill(graphdef, params, np.repeat(PROMPTS_BL, 3, 0),
                               np.repeat(MASK_BL, 3, 0), **kw)
  assert shared.logits_RV.shape == every.logits_RV.shape == (9, 256)
  np.testing.assert_allclose(shared.logits_RV, every.logits_RV, atol=1e-5)
  for a, b in zip(jax.tree.leaves(shared.cache), jax.tree.leaves(every.cache)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Through generate: G samples of P prompts == the P·G rows given.
  kw = dict(rng=jax.random.key(4), max_new_tokens=T, eos_ids=(255,),
            method=sampling.Temperature(1.0))
  a = sampling.generate(model, PROMPTS_BL, MASK_BL, num_samples=3, **kw)
  b = sampling.generate(model, np.repeat(PROMPTS_BL, 3, 0),
                        np.repeat(MASK_BL, 3, 0), **kw)
  np.testing.assert_array_equal(a.tokens_BT, b.tokens_BT)
  np.testing.assert_allclose(a.logprobs_BT, b.logprobs_BT, atol=1e-5)


def test_compiles_once_per_bucket(loaded):
  model = loaded["llama"]
  kw = dict(max_new_tokens=4, eos_ids=(255,), method=sampling.Temperature(1.0),
            buckets=(8,))
  # pylint: disable=protected-access
  jitted = (sampling._prefill, sampling._decode)
  before = [f._cache_size() for f in jitted]
  sampling.generate(model, PROMPTS_BL, MASK_BL, rng=jax.random.key(1), **kw)
  # Different prompts, lengths and key; same bucket, batch and T.
  other = np.array([[0, 0, 41, 42], [51, 52, 53, 54], [0, 61, 62, 63]])
  sampling.generate(model, other, (other > 0).astype(np.int32),
                    rng=jax.random.key(2), **kw)
  assert [f._cache_size() for f in jitted] == [n + 1 for n in before]


# 3 prompts x G 8 over data x fsdp = 4 shards: 3 does not divide into 4,
# so every row is prefilled; 4 prompts x G 2: each prompt is prefilled once
# and its cache copied to its 2 rows.
@pytest.mark.parametrize("extra_prompts, g, seed", [
    ([], 8, 9), ([[0, 0, 41, 42, 43, 44]], 2, 3)])
def test_sharded_sampling_equals_single_device(loaded, extra_prompts, g,
                                               seed):
  model = loaded["qwen3"]
  prompts_BL = np.concatenate([PROMPTS_BL, np.reshape(extra_prompts, (-1, 6))
                               ]).astype(np.int32)
  mask_BL = (prompts_BL > 0).astype(np.int32)
  kw = dict(rng=jax.random.key(seed), max_new_tokens=T, eos_ids=(255,),
            method=sampling.Temperature(1.0), num_samples=g)
  single = sampling.generate(model, prompts_BL, mask_BL, **kw)
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  sharded = sampling.generate(model, prompts_BL, mask_BL, mesh=mesh, **kw)
  np.testing.assert_array_equal(single.tokens_BT, sharded.tokens_BT)
  np.testing.assert_allclose(single.logprobs_BT, sharded.logprobs_BT,
                             atol=1e-5)


def test_cache_too_large_fails_before_compiling(loaded):
  model = loaded["qwen2"]
  # 2 · 2 layers · 3 rows · (6 + 8) slots · 2 kv heads · 16 dims · 4 bytes.
  need = 2 * 2 * 3 * 14 * 2 * 16 * 4
  assert sampling.kv_cache_bytes(model.config, 3, 14, jnp.float32) == need
  with pytest.raises(ValueError, match="reduce the batch"):
    sampling.generate(model, PROMPTS_BL, MASK_BL, rng=jax.random.key(0),
                      max_new_tokens=T, eos_ids=(1,),
                      max_cache_bytes=need - 1)
  # Growing (room 2, 4, 8) last holds the 6 + 4 slots it grows from and
  # the whole 14: the whole cache's bytes are not enough for that.
  with pytest.raises(ValueError, match=r"\+ 10 slots .*cache_steps=None"):
    sampling.generate(model, PROMPTS_BL, MASK_BL, rng=jax.random.key(0),
                      max_new_tokens=T, eos_ids=(1,), cache_steps=2,
                      max_cache_bytes=need)


def test_bucket_padding_and_its_errors():
  tokens, mask = sampling.pad_to_bucket(PROMPTS_BL, MASK_BL, (4, 8, 16))
  assert tokens.shape == (3, 8)
  np.testing.assert_array_equal(tokens[:, -6:], PROMPTS_BL)
  assert mask[:, :2].sum() == 0
  with pytest.raises(ValueError, match="largest bucket 4"):
    sampling.pad_to_bucket(PROMPTS_BL, MASK_BL, (2, 4))


def test_cached_decode_logits_equal_full_forward(loaded):
  model = loaded["qwen2"]
  out = sampling.generate(model, PROMPTS_BL, MASK_BL, rng=jax.random.key(4),
                          max_new_tokens=T, eos_ids=(255,),
                          method=sampling.Temperature(1.0))
  tokens_BS = jnp.concatenate([PROMPTS_BL, out.tokens_BT], 1)
  mask_BS = jnp.concatenate([MASK_BL, out.mask_BT], 1)
  full_BSV = model(tokens_BS, attention_mask_BS=mask_BS)
  # The sampler's path: prefill the prompt, then one cached token per step.
  l = PROMPTS_BL.shape[1]
  cache = model.init_cache(3, l + T)
  step_BSV, cache = model(jnp.asarray(PROMPTS_BL), attention_mask_BS=MASK_BL,
                          cache=cache)
  got = [step_BSV[:, -1]]
  for t in range(T - 1):
    step_BSV, cache = model(out.tokens_BT[:, t:t + 1],
                            attention_mask_BS=out.mask_BT[:, t:t + 1],
                            cache=cache)
    got.append(step_BSV[:, 0])
  got_BTV = jnp.stack(got, 1)
  # Logits at position L - 1 + t predict completion token t.
  want_BTV = full_BSV[:, l - 1:-1]
  m = np.asarray(out.mask_BT, bool)
  np.testing.assert_allclose(np.asarray(got_BTV)[m], np.asarray(want_BTV)[m],
                             atol=1e-5)


# 16 random left-padded prompts of lengths 1-6, and 32 stop ids (one in
# 8 of the vocabulary): rows stop at many different steps.
_RAGGED_BL = np.random.default_rng(0).integers(1, 256, (16, 6)).astype(
    np.int32)
_RAGGED_BL[np.arange(6)[None, :] < np.arange(16)[:, None] % 6] = 0
_STOPS = tuple(range(3, 256, 8))


@pytest.fixture
def compactions(monkeypatch):
  """Rows kept by each compaction step; the first one's collectives."""
  calls, collectives = [], []
  compact = sampling._compact  # pylint: disable=protected-access

  def counted(*args):
    calls.append(args[2].size)  # rows kept
    if len(calls) == 1:
      collectives.extend(
          line for line in compact.lower(*args).compile().as_text()
          .splitlines() if "all-gather(" in line or "all-to-all(" in line
          or "collective-permute(" in line)
    return compact(*args)

  monkeypatch.setattr(sampling, "_compact", counted)
  return calls, collectives


@pytest.mark.parametrize("method", [sampling.Greedy(),
                                    sampling.Temperature(1.0)])
def test_compaction_gives_the_full_batch_output(method, loaded, compactions):
  compactions, _ = compactions
  model = loaded["llama"]
  kw = dict(rng=jax.random.key(6), max_new_tokens=12, eos_ids=_STOPS,
            method=method, return_entropy=True)
  mask_BL = (_RAGGED_BL > 0).astype(np.int32)
  full = sampling.generate(model, _RAGGED_BL, mask_BL, compact=False, **kw)
  assert not compactions
  compact = sampling.generate(model, _RAGGED_BL, mask_BL, **kw)
  lengths = np.asarray(full.mask_BT).sum(1)
  # Rows stop at different steps, and the 16 rows shrank to smaller buckets.
  assert len(set(lengths)) >= 4, lengths
  assert compactions and compactions == sorted(compactions, reverse=True)
  np.testing.assert_array_equal(compact.tokens_BT, full.tokens_BT)
  np.testing.assert_array_equal(compact.mask_BT, full.mask_BT)
  np.testing.assert_allclose(compact.logprobs_BT, full.logprobs_BT, atol=1e-5)
  np.testing.assert_allclose(compact.entropy_BT, full.entropy_BT, atol=1e-5)


def test_cache_windows_double_up_to_t():
  # 128, 256, 512, then T = 600 itself.
  assert sampling.cache_windows(600, 128) == (128, 256, 512, 600)
  assert sampling.cache_windows(12, 2) == (2, 4, 8, 12)
  assert sampling.cache_windows(128, 128) == (128,)  # fits at once
  assert sampling.cache_windows(32, None) == (32,)
  with pytest.raises(ValueError, match="cache_steps must be >= 1"):
    sampling.cache_windows(32, 0)


def test_growing_cache_gives_the_whole_cache_output(loaded, compactions,
                                                    monkeypatch):
  compactions, _ = compactions
  grown = []
  grow = sampling._grown  # pylint: disable=protected-access

  def counted(cache, *, slots):
    grown.append((cache.mask_BM.shape[1], slots))
    return grow(cache, slots=slots)

  monkeypatch.setattr(sampling, "_grown", counted)
  model = loaded["llama"]
  kw = dict(rng=jax.random.key(6), max_new_tokens=12, eos_ids=_STOPS,
            method=sampling.Temperature(1.0), return_entropy=True)
  mask_BL = (_RAGGED_BL > 0).astype(np.int32)
  whole = sampling.generate(model, _RAGGED_BL, mask_BL, compact=False,
                            cache_steps=None, **kw)
  assert not grown
  growing = sampling.generate(model, _RAGGED_BL, mask_BL, cache_steps=2, **kw)
  # Prompt bucket 6 + room 2, 4, 8, 12: the cache grew from 8 slots
  # (while rows still ran) and rows were compacted in between.
  assert grown[0] == (8, 10) and all(
      b - a in (2, 4) for a, b in grown), grown
  assert compactions
  np.testing.assert_array_equal(growing.tokens_BT, whole.tokens_BT)
  np.testing.assert_array_equal(growing.mask_BT, whole.mask_BT)
  np.testing.assert_allclose(growing.logprobs_BT, whole.logprobs_BT,
                             atol=1e-5)
  np.testing.assert_allclose(growing.entropy_BT, whole.entropy_BT, atol=1e-5)


def test_row_draws_do_not_depend_on_the_other_rows():
  logits_RV = jax.random.normal(jax.random.key(0), (8, 50))
  row_R = jnp.arange(8, dtype=jnp.int32)
  method = sampling.TopP(0.9)
  rng, step = jax.random.key(1), jnp.int32(5)
  all_R = sampling.sample_rows(method, logits_RV, rng, row_R, step)
  # Rows 6, 1, 3 alone and reordered draw what they drew among all 8.
  keep = jnp.array([6, 1, 3])
  some_R = sampling.sample_rows(method, logits_RV[keep], rng, row_R[keep],
                                step)
  np.testing.assert_array_equal(some_R, all_R[keep])
  # Another step gives other draws (the stream advances with the step).
  other = sampling.sample_rows(sampling.Temperature(5.0), logits_RV, rng,
                               row_R, step + 1)
  assert (other != sampling.sample_rows(sampling.Temperature(5.0), logits_RV,
                                        rng, row_R, step)).any()


def test_batch_buckets_are_multiples_of_the_shards():
  # Powers of two from MIN_BUCKET_ROWS = 8 up, below B.
  assert sampling.batch_buckets(64) == (64, 32, 16, 8)
  assert sampling.batch_buckets(64, min_rows=1) == (64, 32, 16, 8, 4, 2, 1)
  # 24 rows over 4 data-parallel shards: 6, 4, 2 rows per shard.
  assert sampling.batch_buckets(24, 4) == (24, 16, 8)
  # 16 shards: never below one row per shard.
  assert sampling.batch_buckets(48, 16) == (48, 32, 16)
  assert sampling.batch_buckets(5) == (5,)
  with pytest.raises(ValueError, match="not divisible into 4 shards"):
    sampling.batch_buckets(6, 4)


def test_sharded_compaction_equals_single_device(loaded, compactions):
  model = loaded["qwen3"]
  kw = dict(rng=jax.random.key(2), max_new_tokens=12, eos_ids=_STOPS,
            method=sampling.Temperature(1.0), num_samples=2)
  mask_BL = (_RAGGED_BL > 0).astype(np.int32)
  single = sampling.generate(model, _RAGGED_BL, mask_BL, compact=False, **kw)
  # Batch over data × fsdp = 4 shards: buckets of 32, 16 and 8 rows.
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  # The cache grows too (room 4, 8, 12): its padding keeps the sharding.
  sharded = sampling.generate(model, _RAGGED_BL, mask_BL, mesh=mesh,
                              cache_steps=4, **kw)
  compactions, collectives = compactions
  assert compactions and all(n % 4 == 0 for n in compactions)
  # Rows stay in their shard: the cache [B, K, H, M] and logits [B, V] are
  # gathered without communication; only the write-back of the [B, T ≤ 12]
  # outputs (and their [B, 1] row ids) gathers across shards.
  shapes = [re.search(r"= \w+\[(\d+),(\d+)\]\{", line)
            for line in collectives]
  assert all(m and int(m.group(2)) <= 12 for m in shapes), collectives
  np.testing.assert_array_equal(single.tokens_BT, sharded.tokens_BT)
  np.testing.assert_array_equal(single.mask_BT, sharded.mask_BT)
  np.testing.assert_allclose(single.logprobs_BT, sharded.logprobs_BT,
                             atol=1e-5)
