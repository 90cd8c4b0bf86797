"""On-device rollout sampling: prefill + KV-cache decode in one jitted loop.

  out = sampling.generate(model, prompt_tokens_BL, prompt_mask_BL, rng=key,
                          max_new_tokens=T, eos_ids=(eos,),
                          method=sampling.TopP(0.95, temperature=1.0))
  out.tokens_BT, out.logprobs_BT, out.mask_BT

Prompts are left-padded (`prompt_mask_BL` is 0 on padding). Each prompt is
prefilled once into a KV cache of L + T slots (with `num_samples` G, that
cache row is copied to the prompt's G rows: an RL group's samples share
one prefill), then one token per row is decoded
per iteration of a `lax.while_loop` that stops when every row has emitted a
stop id (any of `eos_ids`) or T tokens exist. `mask_BT` is 1 up to and
including the stop token, 0 after it; later positions hold `pad_id` and
log-probability 0.

Compaction (`compact=True`, the default): finished rows would otherwise
cost a full decode step each until the last row stops. The loop instead
returns to the host whenever the rows still running fit the next smaller
batch bucket (B, then shards · 2^k ≥ 8: 64 → 32 → 16 → 8 rows); their cache
rows, logits and outputs are gathered into that bucket (padding rows are
marked done) and decoding resumes. Rows never move between data-parallel
shards. Each bucket size compiles once. Row r draws its step-t token with
the key fold_in(fold_in(rng, r), t), so its samples do not depend on which
other rows are still in the batch: the output is the same with and
without compaction.

`logprobs_BT` are log π(y_t | x, y_<t) of the sampled tokens under the
model itself — temperature 1, no truncation — whatever the sampling method;
`entropy_BT` (when asked for) is the entropy of that same untempered
distribution. The RL train step does not read them: it recomputes its
log-probs at the sampling temperature (`train_step.make_train_step(
temperature=τ)`), so compare these with a tempered policy only at τ = 1.

Compilation: prefill and decode loop are specialised on (model graph, B,
L, T, method, eos_ids), so a run compiles once per prompt-length bucket
(plus once per batch bucket it compacts to); pass `buckets=` to left-pad
prompts to a few fixed lengths.

KV-cache memory: 2 (k and v) × layers × B × (L + T) × K × H × bytes(dtype);
`generate` refuses a request above `max_cache_bytes` (default: the device's
memory limit when it reports one) before compiling anything.
"""

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax import struct

from mathrl import distributed
from mathrl import sharding
from mathrl.data import prompts
from mathrl.models import transformer



# Tokens per block of the two-level inverse CDF in `categorical` (the TPU
# lane width).
CDF_BLOCK = 128


def _last_positive(w_BX: jax.Array) -> jax.Array:
  """[B] index of the last positive entry of each row (0 if none)."""
  index_X = jnp.arange(w_BX.shape[-1])
  return jnp.max(jnp.where(w_BX > 0, index_X, 0), axis=-1)


def categorical(rng: jax.Array, logits_BV: jax.Array) -> jax.Array:
  """y = min{v : Σ_{u≤v} softmax(z)_u > U}, U ~ Uniform[0, 1) per row.

  Inverse-CDF sampling (Devroye 1986, "Non-Uniform Random Variate
  Generation", §III.2): one uniform per row instead of the V Gumbel draws
  of `jax.random.categorical` (on CPU at B=64, V=512: 0.19 vs 0.63 ms per
  decode step). Tokens with logit -inf have probability 0 and are never
  drawn.

  The CDF is searched in two levels, so no [B, V] array but the logits is
  formed: the unnormalised masses e^{z−max z} summed per block of
  CDF_BLOCK tokens ([B, V/128]), the block where the cumulative mass first
  exceeds U · total, then the cumulative masses inside that one block.
  Two reads of the logits (max, block sums) where a cumulative sum over
  the vocabulary moves the [B, V] floats about ten times on TPU (for
  Qwen2.5's 151,936 tokens at 64 rows per chip, 0.4 GB per decode step).
  The drawn token is the same as with one cumulative sum over V except
  where U falls within float rounding of a CDF step.

  Args:
    rng: PRNG key.
    logits_BV: [B, V] float logits (-inf allowed, at least one finite).

  Returns:
    [B] int32 sampled ids.
  """
  z_BV = logits_BV.astype(jnp.float32)
  b, v = z_BV.shape
  pad = -v % CDF_BLOCK
  z_BV = jnp.pad(z_BV, ((0, 0), (0, pad)), constant_values=-jnp.inf)
  z_BCW = z_BV.reshape(b, -1, CDF_BLOCK)
  max_B11 = jnp.max(z_BCW, axis=(1, 2), keepdims=True)
  mass_BC = jnp.sum(jnp.exp(z_BCW - max_B11), axis=-1)
  cum_BC = jnp.cumsum(mass_BC, axis=-1)
  u_B1 = jax.random.uniform(rng, (b, 1)) * cum_BC[:, -1:]
  # The block holding the draw; never past the last block with mass.
  block_B = jnp.minimum(jnp.sum(cum_BC <= u_B1, axis=-1),
                        _last_positive(mass_BC))
  before_B1 = jnp.where(
      block_B[:, None] > 0,
      jnp.take_along_axis(cum_BC, jnp.maximum(block_B - 1, 0)[:, None],
                          axis=-1), 0.0)
  z_BW = jnp.take_along_axis(z_BCW, block_B[:, None, None], axis=1)[:, 0]
  w_BW = jnp.exp(z_BW - max_B11[:, 0])
  cdf_BW = before_B1 + jnp.cumsum(w_BW, axis=-1)
  inner_B = jnp.minimum(jnp.sum(cdf_BW <= u_B1, axis=-1),
                        _last_positive(w_BW))
  return (block_B * CDF_BLOCK + inner_B).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Greedy:
  """y = argmax_v z_v."""

  def sample(self, logits_BV: jax.Array, rng: jax.Array) -> jax.Array:
    del rng
    return jnp.argmax(logits_BV, axis=-1).astype(jnp.int32)


def _check_temperature(temperature: float):
  if not temperature > 0:
    raise ValueError(
        f"temperature must be > 0, got {temperature}; use Greedy() for 0"
    )


@dataclasses.dataclass(frozen=True)
class Temperature:
  """y ~ softmax(z / τ) (Ackley et al. 1985)."""

  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self.temperature)

  def sample(self, logits_BV, rng):
    return categorical(rng, logits_BV / self.temperature)


@dataclasses.dataclass(frozen=True)
class TopK:
  """y ~ softmax(z / τ) restricted to the k largest logits (Fan et al. 2018)."""

  k: int
  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self.temperature)
    if self.k < 1:
      raise ValueError(f"TopK needs k >= 1, got {self.k}")

  def sample(self, logits_BV, rng):
    k = min(self.k, logits_BV.shape[-1])
    kth_B1 = jax.lax.top_k(logits_BV, k)[0][:, -1:]
    logits_BV = jnp.where(logits_BV < kth_B1, -jnp.inf, logits_BV)
    return categorical(rng, logits_BV / self.temperature)


@dataclasses.dataclass(frozen=True)
class TopP:
  """Nucleus sampling (Holtzman et al. 2020, arXiv:1904.09751).

  Keeps the smallest set of most likely tokens (under softmax(z / τ)) whose
  mass reaches p, then samples from it renormalised.
  """

  p: float
  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self.temperature)
    if not 0 < self.p <= 1:
      raise ValueError(f"TopP needs 0 < p <= 1, got {self.p}")

  def sample(self, logits_BV, rng):
    logits_BV = logits_BV / self.temperature
    sorted_BV = jnp.sort(logits_BV, axis=-1)[:, ::-1]
    probs_BV = jax.nn.softmax(sorted_BV, axis=-1)
    # Mass strictly before each sorted token; keep tokens it does not yet
    # reach p with (the top token is always kept).
    before_BV = jnp.cumsum(probs_BV, axis=-1) - probs_BV
    keep_BV = before_BV < self.p
    cutoff_B1 = jnp.min(
        jnp.where(keep_BV, sorted_BV, jnp.inf), axis=-1, keepdims=True
    )
    logits_BV = jnp.where(logits_BV < cutoff_B1, -jnp.inf, logits_BV)
    return categorical(rng, logits_BV)


@dataclasses.dataclass(frozen=True)
class MinP:
  """Min-p sampling (Nguyen et al. 2024, arXiv:2407.01082).

  Keeps tokens whose probability under softmax(z / τ) is at least
  p × the largest probability.
  """

  p: float
  temperature: float = 1.0

  def __post_init__(self):
    _check_temperature(self.temperature)
    if not 0 <= self.p <= 1:
      raise ValueError(f"MinP needs 0 <= p <= 1, got {self.p}")

  def sample(self, logits_BV, rng):
    logits_BV = logits_BV / self.temperature
    # p_v >= p · p_max  <=>  z_v >= z_max + log p.
    threshold_B1 = jnp.max(logits_BV, axis=-1, keepdims=True) + jnp.log(
        jnp.maximum(self.p, 1e-30)
    )
    logits_BV = jnp.where(logits_BV < threshold_B1, -jnp.inf, logits_BV)
    return categorical(rng, logits_BV)



@struct.dataclass
class SamplingOutput:
  """What `generate` returns (B rows, T = max_new_tokens columns)."""

  tokens_BT: jax.Array
  """int32 sampled ids; `pad_id` after the stop token."""
  logprobs_BT: jax.Array
  """float32 log π(y_t | ·) at temperature 1; 0 where mask is 0."""
  mask_BT: jax.Array
  """int32, 1 up to and including the stop token."""
  entropy_BT: jax.Array | None = None
  """float32 entropy of π(· | ·) at temperature 1 (when asked for)."""


@struct.dataclass
class SamplingState:
  """The decode loop's carry: the R rows of the current batch bucket.

  R = B until finished rows are compacted away (see `generate`'s
  `compact`); `row_R` maps each of them back to its row of the output.
  """

  step: jax.Array
  """int32 scalar: tokens generated so far (the column to write next)."""
  logits_RV: jax.Array
  """float32 next-token logits of every row."""
  cache: transformer.KVCache
  """Keys/values of the prompt and the tokens so far."""
  done_R: jax.Array
  """bool: the row has emitted a stop id (or is bucket padding)."""
  row_R: jax.Array
  """int32 output row of each row; B for bucket padding (never written)."""
  tokens_RT: jax.Array
  logprobs_RT: jax.Array
  mask_RT: jax.Array
  entropy_RT: jax.Array


def pad_to_bucket(
    prompt_tokens_BL: Any,
    prompt_mask_BL: Any,
    buckets: Sequence[int],
    pad_id: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads prompts to the smallest bucket that fits the longest one.

  Args:
    prompt_tokens_BL: left-padded prompt ids.
    prompt_mask_BL: 1 on real prompt tokens.
    buckets: allowed padded lengths.
    pad_id: id written into new padding.

  Returns:
    (tokens, mask) whose width is the chosen bucket.

  Raises:
    ValueError: a prompt is longer than every bucket, or the prompts are
      not left-padded.
  """
  tokens = np.asarray(prompt_tokens_BL)
  mask = np.asarray(prompt_mask_BL)
  width = prompts.bucket_length(int(mask.sum(axis=1).max()), buckets)
  surplus = tokens.shape[1] - width
  if surplus > 0:
    if mask[:, :surplus].any():
      raise ValueError("prompts must be left-padded (real tokens at the end)")
    return tokens[:, surplus:], mask[:, surplus:]
  pad = ((0, 0), (-surplus, 0))
  return (np.pad(tokens, pad, constant_values=pad_id),
          np.pad(mask, pad, constant_values=0))


def kv_cache_bytes(config, batch_size: int, length: int, dtype) -> int:
  """2 · layers · B · (L + T) · K · H · bytes(dtype)."""
  return (
      2 * config.num_layers * batch_size * length * config.num_kv_heads
      * config.head_dim * jnp.dtype(dtype).itemsize
  )


def _device_memory_limit() -> int | None:
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  return (stats or {}).get("bytes_limit")


def sample_rows(method, logits_RV: jax.Array, rng: jax.Array,
                row_R: jax.Array, step: jax.Array) -> jax.Array:
  """y_r = method(z_r; key_r,t), key_r,t = fold_in(fold_in(rng, r), t).

  Every output row r draws from its own key stream, so its tokens do not
  depend on which (or how many) other rows share the batch: compaction of
  finished rows and sharding leave every row's samples unchanged.

  Args:
    method: a sampling method (`Greedy()`, `Temperature(τ)`, ...).
    logits_RV: [R, V] next-token logits.
    rng: the generation's PRNG key.
    row_R: [R] int32 output row of each row.
    step: int32 scalar, the column being sampled.

  Returns:
    [R] int32 sampled ids.
  """
  def one(logits_V, row):
    key = jax.random.fold_in(jax.random.fold_in(rng, row), step)
    return method.sample(logits_V[None], key)[0]

  return jax.vmap(one)(logits_RV, row_R)


@functools.partial(
    jax.jit, static_argnames=("graphdef", "max_new_tokens", "return_entropy",
                              "pad_id", "num_samples", "cache_steps"))
def _prefill(graphdef, params, prompt_tokens_PL, prompt_mask_PL, *,
             max_new_tokens, return_entropy, pad_id, num_samples=1,
             cache_steps=None):
  """The decode state after prefilling the prompts into an L + T cache
  (L + `cache_steps` when given: `_grown` makes room for the rest).

  Each of the P prompts is prefilled once; its cache rows and first-token
  logits are then repeated G = `num_samples` times (row p·G + g), so the
  G samples of a prompt share one prefill instead of repeating it.

  Returns:
    (state of all B = P·G rows, empty [B, T] outputs for `_compact` to
    fill).
  """
  model = nnx.merge(graphdef, params)
  p, l = prompt_tokens_PL.shape
  b, t = p * num_samples, max_new_tokens
  cache = model.init_cache(p, l + (t if cache_steps is None else cache_steps))
  # Only the last prompt position's logits are needed (the first token's).
  logits_P1V, cache = model(prompt_tokens_PL, attention_mask_BS=prompt_mask_PL,
                            cache=cache, logits_start=l - 1)
  logits_BV = logits_P1V[:, 0].astype(jnp.float32)
  if num_samples > 1:
    cache = _repeat_cache(cache, num_samples)
    logits_BV = sharding.shard(jnp.repeat(logits_BV, num_samples, axis=0),
                               "batch", None)
  out = SamplingOutput(
      tokens_BT=jnp.full((b, t), pad_id, jnp.int32),
      logprobs_BT=jnp.zeros((b, t), jnp.float32),
      mask_BT=jnp.zeros((b, t), jnp.int32),
      entropy_BT=jnp.zeros((b, t) if return_entropy else (b, 0), jnp.float32),
  )
  state = SamplingState(
      step=jnp.zeros((), jnp.int32), logits_RV=logits_BV,
      cache=cache, done_R=jnp.zeros((b,), bool),
      row_R=jnp.arange(b, dtype=jnp.int32), tokens_RT=out.tokens_BT,
      logprobs_RT=out.logprobs_BT, mask_RT=out.mask_BT,
      entropy_RT=out.entropy_BT,
  )
  return state, out


def _map_cache_rows(c: transformer.KVCache, rows) -> transformer.KVCache:
  """`rows` (a function of a [B, ...] array) applied to every batch field."""
  return c.replace(
      k=tuple(sharding.shard(rows(k), *transformer.K_CACHE_AXES) for k in c.k),
      v=tuple(sharding.shard(rows(v), *transformer.V_CACHE_AXES) for v in c.v),
      mask_BM=sharding.shard(rows(c.mask_BM), "batch", None),
      next_position_B=sharding.shard(rows(c.next_position_B), "batch"))


def _repeat_cache(c: transformer.KVCache, g: int) -> transformer.KVCache:
  """Each cache row repeated g times (row p·g + i is a copy of row p)."""
  return _map_cache_rows(c, functools.partial(jnp.repeat, repeats=g, axis=0))


def _decode_step(model, blocks, s: SamplingState, rng, *, eos_ids, method,
                 return_entropy, pad_id) -> SamplingState:
  """One token for every row: sample, record, feed it through the cache."""
  tok_R = sample_rows(method, s.logits_RV, rng, s.row_R, s.step)
  logp_RV = jax.nn.log_softmax(s.logits_RV, axis=-1)
  logp_R = jnp.take_along_axis(logp_RV, tok_R[:, None], axis=-1)[:, 0]
  live_R = ~s.done_R
  tok_R = jnp.where(live_R, tok_R, pad_id)
  col = s.step
  entropy_RT = s.entropy_RT
  if return_entropy:
    ent_R = -jnp.sum(jnp.exp(logp_RV) * logp_RV, axis=-1)
    entropy_RT = entropy_RT.at[:, col].set(jnp.where(live_R, ent_R, 0.0))
  eos_E = jnp.asarray(eos_ids, jnp.int32)
  done_R = s.done_R | jnp.any(tok_R[:, None] == eos_E[None, :], axis=-1)
  logits_R1V, cache = model(tok_R[:, None],
                            attention_mask_BS=live_R[:, None].astype(
                                jnp.int32), cache=s.cache, blocks=blocks)
  return SamplingState(
      step=s.step + 1, logits_RV=logits_R1V[:, 0].astype(jnp.float32),
      cache=cache, done_R=done_R, row_R=s.row_R,
      tokens_RT=s.tokens_RT.at[:, col].set(tok_R),
      logprobs_RT=s.logprobs_RT.at[:, col].set(jnp.where(live_R, logp_R, 0.0)),
      mask_RT=s.mask_RT.at[:, col].set(live_R.astype(jnp.int32)),
      entropy_RT=entropy_RT,
  )


@functools.partial(
    jax.jit, static_argnames=("graphdef", "shards", "stop_at", "eos_ids",
                              "method", "return_entropy", "pad_id"),
    donate_argnames=("state",))
def _decode(graphdef, params, state, rng, *, shards, stop_at, eos_ids, method,
            return_entropy, pad_id) -> SamplingState:
  """The state after decoding until T tokens exist or few rows run.

  The loop stops once no shard has more than `stop_at` live rows (with
  stop_at 0: once every row is done), i.e. when they fit a smaller bucket,
  or once the KV cache is full (`_grown` then makes room).
  """
  model = nnx.merge(graphdef, params)
  # Per-layer weights sliced once, outside the decode loop.
  blocks = model.split_layers()
  t = state.tokens_RT.shape[1]
  slots = state.cache.mask_BM.shape[1]

  def cond(s: SamplingState):
    live_DR = ~s.done_R.reshape(shards, -1)
    return ((s.step < t) & (s.cache.index < slots)
            & (jnp.max(jnp.sum(live_DR, axis=1)) > stop_at))

  def body(s: SamplingState):
    return _decode_step(model, blocks, s, rng, eos_ids=eos_ids,
                        method=method, return_entropy=return_entropy,
                        pad_id=pad_id)

  return jax.lax.while_loop(cond, body, state)


# New-token room of the first KV cache `generate` allocates; it doubles
# each time it fills (`cache_windows`).
CACHE_STEPS = 128


def cache_windows(max_new_tokens: int,
                  cache_steps: int | None) -> tuple[int, ...]:
  """New-token room of the KV cache's successive sizes: c, 2c, 4c, ..., T.

  A decode step attends over every slot of the cache, filled or not, so a
  cache that grows with the sequence (as `transformers`' does) reads
  fewer keys and values than one of L + T slots from the start: with
  doubling, about L + 0.7·T slots per step on average for long T, against
  L + T. Each size is one more compile of the decode loop.

  Args:
    max_new_tokens: T.
    cache_steps: c, the first size's room; None (or c >= T): (T,), the
      whole cache up front.

  Returns:
    Increasing sizes ending at T. Example: cache_windows(600, 128) =
    (128, 256, 512, 600).
  """
  if cache_steps is not None and cache_steps < 1:
    raise ValueError(f"cache_steps must be >= 1 or None, got {cache_steps}")
  if cache_steps is None or cache_steps >= max_new_tokens:
    return (max_new_tokens,)
  sizes = [cache_steps]
  while sizes[-1] * 2 < max_new_tokens:
    sizes.append(sizes[-1] * 2)
  return tuple(sizes) + (max_new_tokens,)


@functools.partial(jax.jit, static_argnames=("slots",))
def _grown(c: transformer.KVCache, *, slots: int) -> transformer.KVCache:
  """The cache padded to `slots` empty, masked slots (a new buffer)."""
  extra = slots - c.mask_BM.shape[1]

  def pad(x, axis):
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths)

  return c.replace(
      k=tuple(sharding.shard(pad(k, 3), *transformer.K_CACHE_AXES)
              for k in c.k),
      v=tuple(sharding.shard(pad(v, 2), *transformer.V_CACHE_AXES)
              for v in c.v),
      mask_BM=sharding.shard(pad(c.mask_BM, 1), "batch", None))


def _take_rows(x_R, index_DR):
  """x[index] per shard: row d·(R/D) + index_DR[d, j] of x_R, shard-local."""
  d = index_DR.shape[0]
  x_DR = x_R.reshape((d, x_R.shape[0] // d) + x_R.shape[1:])
  out_DR = jax.vmap(lambda x, i: x[i])(x_DR, index_DR)
  return out_DR.reshape((index_DR.size,) + x_R.shape[1:])


def _write_rows(state: SamplingState, out: SamplingOutput) -> SamplingOutput:
  """out[row_r] ← row r of `state`, for every row (padding is dropped)."""
  def put(x_BT, x_RT):
    return x_BT.at[state.row_R].set(x_RT, mode="drop")

  return SamplingOutput(
      tokens_BT=put(out.tokens_BT, state.tokens_RT),
      logprobs_BT=put(out.logprobs_BT, state.logprobs_RT),
      mask_BT=put(out.mask_BT, state.mask_RT),
      entropy_BT=put(out.entropy_BT, state.entropy_RT))


_finish = jax.jit(_write_rows, donate_argnames=("out",))


@functools.partial(jax.jit, donate_argnames=("out",))
def _compact(state: SamplingState, out: SamplingOutput, index_DR, pad_DR):
  """Writes every row back to `out`, then keeps the rows `index_DR` names.

  Args:
    state: the decode state of R rows, in D shards of R/D rows.
    out: the [B, T] outputs.
    index_DR: [D, R'/D] rows to keep, counted within each shard (so no row
      moves between data-parallel shards).
    pad_DR: [D, R'/D] true where the kept row is bucket padding.

  Returns:
    (the state of the R' kept rows, `out` with the rows of `state`).
  """
  out = _write_rows(state, out)
  take = functools.partial(_take_rows, index_DR=index_DR)
  pad_R = pad_DR.reshape(-1)
  cache = _map_cache_rows(state.cache, take)
  state = SamplingState(
      step=state.step, logits_RV=take(state.logits_RV), cache=cache,
      done_R=take(state.done_R) | pad_R,
      row_R=jnp.where(pad_R, out.tokens_BT.shape[0], take(state.row_R)),
      tokens_RT=take(state.tokens_RT), logprobs_RT=take(state.logprobs_RT),
      mask_RT=take(state.mask_RT), entropy_RT=take(state.entropy_RT))
  return state, out


# The smallest batch bucket compaction goes down to: below ~8 rows a
# decode step costs about the same whatever the row count (reading the
# weights dominates), so smaller buckets would only add compiles.
MIN_BUCKET_ROWS = 8


def batch_buckets(batch_size: int, shards: int = 1,
                  min_rows: int = MIN_BUCKET_ROWS) -> tuple[int, ...]:
  """Row counts the decode loop compacts to: B, then shards · 2^k < B.

  Every size is a multiple of `shards` (the data-parallel ways the batch
  is split), so each shard keeps an equal number of rows; none is below
  `min_rows` (or `shards`).
  """
  if batch_size % shards:
    raise ValueError(
        f"batch of {batch_size} rows is not divisible into {shards} shards")
  sizes, per_shard = [batch_size], 1
  while per_shard * shards < batch_size:
    if per_shard * shards >= min_rows:
      sizes.append(per_shard * shards)
    per_shard *= 2
  return tuple(sorted(set(sizes), reverse=True))


def _compaction_index(done_R: np.ndarray, shards: int,
                      buckets: Sequence[int]):
  """The live rows of each shard, padded to the smallest bucket that fits."""
  live = [np.flatnonzero(~d) for d in done_R.reshape(shards, -1)]
  most = max(len(x) for x in live)
  per_shard = min(b // shards for b in buckets if b // shards >= most)
  index_DR = np.zeros((shards, per_shard), np.int32)
  pad_DR = np.ones((shards, per_shard), bool)
  for d, rows in enumerate(live):
    index_DR[d, :len(rows)] = rows
    pad_DR[d, :len(rows)] = False
  return index_DR, pad_DR


def _decode_all(graphdef, params, state, out, rng, *, compact, shards,
                max_new_tokens, windows, **kw) -> SamplingOutput:
  """The [B, T] outputs of the decode loop, finished rows compacted away.

  Without `compact`, one loop over all B rows until every row is done.
  With it, the loop returns whenever every shard's live rows fit the next
  smaller bucket; the live rows are gathered into that bucket (within
  their shard) and decoding resumes, so a finished row stops costing a
  decode step, at one compile per bucket size. `windows`
  (`cache_windows`) are the KV cache's new-token room, the present one
  first: when the cache fills, the loop returns and the cache grows to
  the next.
  """
  buckets = batch_buckets(state.done_R.shape[0], shards) if compact else ()
  rooms = list(windows)
  compacted = False
  while True:
    r = state.done_R.shape[0]
    smaller = [b // shards for b in buckets if b < r]
    stop_at = max(smaller) if smaller else 0
    state = _decode(graphdef, params, state, rng, shards=shards,
                    stop_at=stop_at, **kw)
    if not stop_at and len(rooms) == 1:
      break  # every row is done or has T tokens
    # Every process reads all rows' flags, so all grow and compact alike.
    step, done_R = distributed.to_host(state.step), distributed.to_host(
        state.done_R)
    if step >= max_new_tokens or done_R.all():
      break
    if step == rooms[0]:  # the cache is full
      prompt_len = state.cache.mask_BM.shape[1] - rooms.pop(0)
      state = state.replace(
          cache=_grown(state.cache, slots=prompt_len + rooms[0]))
    live = (~done_R.reshape(shards, -1)).sum(axis=1).max()
    if stop_at and live <= stop_at:
      index_DR, pad_DR = _compaction_index(done_R, shards, buckets)
      state, out = _compact(state, out, index_DR, pad_DR)
      compacted = True
  if not compacted:
    return SamplingOutput(tokens_BT=state.tokens_RT,
                          logprobs_BT=state.logprobs_RT,
                          mask_BT=state.mask_RT, entropy_BT=state.entropy_RT)
  return _finish(state, out)


@functools.partial(
    jax.jit, static_argnames=("graphdef", "max_new_tokens", "eos_ids",
                              "method", "num_samples", "return_entropy",
                              "pad_id"))
def sampler_program(graphdef, params, prompt_tokens_PL, prompt_mask_PL, rng,
                    *, max_new_tokens, eos_ids, method, num_samples=1,
                    return_entropy=False, pad_id=0) -> SamplingOutput:
  """Prefill + the whole decode loop as one program, without compaction.

  What `generate` runs when `compact=False`, in a single jit: for
  ahead-of-time compilation (`mathrl.aot`) and for inspecting the decode
  loop's compiled HLO. The P prompts are prefilled once each and copied
  to B = P·G rows (G = `num_samples`; pass `prefill_copies`' G, as
  `generate` does). Same outputs as `generate(..., compact=False)`.
  """
  state, _ = _prefill(graphdef, params, prompt_tokens_PL, prompt_mask_PL,
                      max_new_tokens=max_new_tokens,
                      return_entropy=return_entropy, pad_id=pad_id,
                      num_samples=num_samples)
  state = _decode(graphdef, params, state, rng, shards=1, stop_at=0,
                  eos_ids=eos_ids, method=method,
                  return_entropy=return_entropy, pad_id=pad_id)
  return SamplingOutput(tokens_BT=state.tokens_RT,
                        logprobs_BT=state.logprobs_RT,
                        mask_BT=state.mask_RT, entropy_BT=state.entropy_RT)


def generate(
    model: nnx.Module,
    prompt_tokens_BL: Any,
    prompt_mask_BL: Any,
    *,
    rng: jax.Array,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    method: Any = Greedy(),
    num_samples: int = 1,
    return_entropy: bool = False,
    pad_id: int = 0,
    buckets: Sequence[int] | None = None,
    mesh: jax.sharding.Mesh | None = None,
    max_cache_bytes: int | None = None,
    compact: bool = True,
    cache_steps: int | None = CACHE_STEPS,
) -> SamplingOutput:
  """Samples up to `max_new_tokens` tokens after each left-padded prompt.

  Args:
    model: a `mathrl.models.Transformer`.
    prompt_tokens_BL: [B, L] int prompt ids, left-padded.
    prompt_mask_BL: [B, L] 1 on real prompt tokens.
    rng: a PRNG key; the result is a deterministic function of it.
    max_new_tokens: T.
    eos_ids: ids that end a row (the stop token is kept, mask 1).
    method: Greedy(), Temperature(t), TopK(k, t), TopP(p, t) or MinP(p, t).
    num_samples: G; each prompt is repeated G times (row p·G + g) and the
      rows are sampled independently. A prompt is prefilled once and its
      KV cache copied to its G rows (unless a mesh splits the B = P·G
      rows into shards that P does not divide: then every row is
      prefilled), so pass the P distinct prompts with G, not P·G rows.
    return_entropy: also return the per-token entropy.
    pad_id: id written after a row's stop token.
    buckets: left-pad prompts to the smallest of these lengths that fits.
    mesh: sample on this mesh with `sharding.SAMPLE_RULES` (weights not
      FSDP-sharded, batch split over data axes); None: where the model is.
    max_cache_bytes: refuse requests whose KV cache is larger (default: the
      device's memory limit when known).
    compact: drop finished rows from the decode batch: whenever the rows
      still running fit a smaller bucket (`batch_buckets`), they are
      gathered into it, so a finished row stops costing decode steps
      (one compile per bucket size). The output is the same either way:
      each row samples from its own key stream.
    cache_steps: the KV cache first holds the prompt and this many new
      tokens, and its new-token room doubles each time it fills (up to
      max_new_tokens; `cache_windows`), so early decode steps attend over
      fewer slots, at one compile per size; the last growth briefly holds
      both caches. None: all max_new_tokens slots from the start. The
      output is the same either way (up to float rounding).

  Returns:
    SamplingOutput with [B·G, T] arrays.
  """
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if not eos_ids:
    raise ValueError("eos_ids is empty: give at least one stop id")
  tokens, mask = _prompt_rows(prompt_tokens_BL, prompt_mask_BL,
                              buckets=buckets, pad_id=pad_id)
  p, l = tokens.shape
  b = p * num_samples
  windows = cache_windows(max_new_tokens, cache_steps)
  # The last growth holds the cache it grows from and the whole one.
  _check_cache_fits(model.config, b, l + max_new_tokens, model.dtype,
                    max_cache_bytes,
                    growing_from=l + windows[-2] if len(windows) > 1 else 0)
  graphdef, params = nnx.split(model)
  shards = 1 if mesh is None else batch_shards((b, l), mesh)
  shared = prefill_copies(p, num_samples, shards)
  if shared == 1:  # the P prompts do not split evenly: repeat them here
    tokens = np.repeat(tokens, num_samples, axis=0)
    mask = np.repeat(mask, num_samples, axis=0)
  if mesh is None:
    tokens, mask = jnp.asarray(tokens), jnp.asarray(mask)
  else:
    params, tokens, mask = _place_on_mesh(params, tokens, mask, mesh)
  run = functools.partial(
      _sample, graphdef, params, tokens, mask, rng, compact=compact,
      shards=shards, max_new_tokens=max_new_tokens, num_samples=shared,
      windows=windows,
      eos_ids=tuple(int(e) for e in eos_ids), method=method,
      return_entropy=return_entropy, pad_id=pad_id)
  if mesh is None:
    out = run()
  else:
    with jax.set_mesh(mesh), sharding.axis_rules(sharding.SAMPLE_RULES):
      out = run()
  return out if return_entropy else out.replace(entropy_BT=None)


def prefill_copies(num_prompts: int, num_samples: int, shards: int) -> int:
  """How many rows each prefilled prompt is copied to: G or 1.

  The P prompts are prefilled once each (and the cache copied G times)
  when P splits evenly over the `shards` data-parallel shards of the B =
  P·G rows, so each prompt's G copies stay in its shard; otherwise every
  one of the B rows is prefilled (return 1: the caller repeats prompts).
  """
  return num_samples if num_prompts % shards == 0 else 1


def _prompt_rows(
    prompt_tokens_BL: Any,
    prompt_mask_BL: Any,
    *,
    buckets: Sequence[int] | None,
    pad_id: int,
) -> tuple[np.ndarray, np.ndarray]:
  """The sampler's int32 [B, L] prompt rows and mask, on the host.

  Left-padded to the smallest bucket that fits (when `buckets` is given)
  and checked to be [B, L]; arguments as `generate`.
  """
  tokens, mask = prompt_tokens_BL, prompt_mask_BL
  if buckets is not None:
    tokens, mask = pad_to_bucket(tokens, mask, buckets, pad_id)
  # Host arrays until placed: with a mesh over several processes each
  # process places the rows its devices hold (`_place_on_mesh`).
  tokens = np.asarray(tokens, np.int32)
  mask = np.asarray(mask, np.int32)
  if tokens.shape != mask.shape or tokens.ndim != 2:
    raise ValueError(
        f"prompt tokens {tokens.shape} and mask {mask.shape} must both be"
        " [B, L]"
    )
  return tokens, mask


def _check_cache_fits(config, b: int, m: int, dtype, max_cache_bytes,
                      growing_from: int = 0):
  """Raises when a KV cache of B rows × M slots (plus the `growing_from`
  slots of the cache it last grows from) exceeds the memory limit."""
  need = kv_cache_bytes(config, b, m + growing_from, dtype)
  limit = max_cache_bytes if max_cache_bytes is not None else (
      _device_memory_limit())
  if limit is not None and need > limit:
    growing = (f" + {growing_from} slots of the cache it grows from"
               if growing_from else "")
    raise ValueError(
        f"the KV cache needs {need / 2**30:.2f} GiB (2 × {config.num_layers}"
        f" layers × B={b} × (L+T={m}{growing}) × K="
        f"{config.num_kv_heads} × H={config.head_dim} ×"
        f" {jnp.dtype(dtype).itemsize} bytes) but only"
        f" {limit / 2**30:.2f} GiB are available: reduce the batch (rows ×"
        " samples), the prompt bucket or max_new_tokens, shard the batch"
        " over more devices" + (", or allocate the cache whole"
                                " (cache_steps=None)" if growing_from else "")
    )


def batch_shards(shape, mesh) -> int:
  """How many ways SAMPLE_RULES split a [B, L] batch of `shape` on `mesh`."""
  spec = sharding.logical_to_spec(("batch", None), shape, mesh,
                                  sharding.SAMPLE_RULES)
  axes = () if spec[0] is None else (
      (spec[0],) if isinstance(spec[0], str) else spec[0])
  sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
  return int(np.prod([sizes[a] for a in axes], dtype=int))


def _place_on_mesh(params, tokens_BL, mask_BL, mesh):
  """Puts weights and (host) prompts on `mesh` by SAMPLE_RULES."""
  rules = sharding.SAMPLE_RULES
  params = jax.device_put(
      params, sharding.logical_to_sharding(params, mesh, rules))
  tokens_BL, mask_BL = distributed.global_from_host(
      (tokens_BL, mask_BL), mesh, rules)
  return params, tokens_BL, mask_BL


def _sample(graphdef, params, tokens_PL, mask_PL, rng, *, compact, shards,
            max_new_tokens, num_samples, return_entropy, pad_id, windows,
            **kw) -> SamplingOutput:
  """Prefill (once per prompt), then the (compacting, growing) decode
  loop; `windows` as `cache_windows` gives them."""
  state, out = _prefill(graphdef, params, tokens_PL, mask_PL,
                        max_new_tokens=max_new_tokens,
                        return_entropy=return_entropy, pad_id=pad_id,
                        num_samples=num_samples, cache_steps=windows[0])
  return _decode_all(graphdef, params, state, out, rng, compact=compact,
                     shards=shards, max_new_tokens=max_new_tokens,
                     windows=windows, return_entropy=return_entropy,
                     pad_id=pad_id, **kw)
