"""The decoder-only Transformer (Qwen2/2.5, Qwen3, Llama 3.x) and its KV cache.

Forward without a cache (training, log-probs):

  logits_BSV = model(tokens_BS)                             # positions 0..S-1
  logits_BSV = model(tokens_BS, attention_mask_BS=mask_BS)  # left-padded

Positions are cumsum(mask) - 1 clipped at 0 (so a left-padded row starts at
position 0 on its first real token), or `positions_BS=` when given; each
query attends causally to real (mask 1) keys.

KV-cache contract (used by `mathrl.sampling`):

  cache = model.init_cache(batch_size, max_length, dtype=None)   # KVCache
  logits_BSV, cache = model(tokens_BS, attention_mask_BS=mask_BS, cache=cache)

`KVCache` is a `flax.struct.dataclass` pytree:

  k                tuple of num_layers arrays [B, K, H, M] (keys stored
                   transposed, so q·kᵀ is a plain matmul), M = max_length
                   slots; model dtype unless `dtype` is given.
  v                tuple of num_layers arrays [B, K, M, H].
  mask_BM          int32 [B, M], 1 where a slot holds a real token.
  index            int32 scalar, the next slot to write.
  next_position_B  int32 [B], RoPE position of each row's next real token
                   (= number of real tokens so far).

A call with a cache writes the S new tokens into slots [index, index + S)
(`lax.dynamic_update_slice`), sets mask_BM there to attention_mask_BS (all
ones when None), uses positions next_position_B[:, None] + cumsum(mask_BS)
- 1 (padding tokens get some position; they are masked), lets the query at
slot index + s attend to slots j <= index + s whose mask is 1, and returns
the cache with index += S and next_position_B += sum(mask_BS, axis=1). It
works under `jax.jit` with the cache traced, and through
`nnx.split`/`nnx.merge`. The caller keeps index + S <= M (a traced index
cannot be checked; XLA would clamp the write). `cache_sharding(cache, mesh,
rules)` gives the cache's NamedShardings (logical axes K_CACHE_AXES and V_CACHE_AXES).

Layers are stacked (leading 'layers' axis on every block parameter). The
forward without a cache runs them with `jax.lax.scan` (compile time does
not grow with depth), and so does `shared_prompt_forward`, which scores G
continuations of each prompt with the prompt's layers run once (the train
step's `rl.share_prompts`). `scan_layers=False` unrolls that loop into
straight-line code (the same values): compile time then grows with depth,
and on CPU the gradient of a small model ran 8-15% faster (4 layers of
width 256; benchmarks/RESULTS.md). With a cache (prefill and decode) the
layers are unrolled and every layer has its own key and value buffers:
inside the sampler's decode loop XLA then hoists the per-layer weight
slices out of the loop and updates each cache buffer in place, where a
scan over a stacked cache sliced weights and cache every step (on CPU,
14.3 → 8 ms per decode step for the 3.3M benchmark model at B=64).

Numerics (mixed precision as large-model trainers do it): parameters are
stored in `param_dtype` (float32 by default, so optimizer updates far below
bf16's resolution still land) and cast to the compute `dtype` where they
are read (per layer, inside the scan); matmuls and activations run in
`dtype` (float32 for tests, bfloat16 on accelerators); RMSNorm statistics,
RoPE and softmax in float32; logits are returned in float32. Gradients
flow back through the casts, so they arrive in `param_dtype`.

`decode_attention` names the attention of a decode step (a cache and one
new token per row; `decode_attention.IMPLEMENTATIONS`): 'xla' (the
default, `layers.attend`) or 'pallas', a fused flash-decoding kernel that
keeps the scores in on-chip memory on TPU. Prefill and the cache-free
forward always use `layers.attend`.

`remat=True` rematerialises each decoder layer in the backward pass
(`jax.checkpoint` around the scanned block, and around each block of the
cached forward): activation memory of the scanned forwards drops from every
layer's intermediates to one [B, S, D] residual per layer (and [P, L, D]
for the shared prompts), for about one extra forward of compute.
"""

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from mathrl import sharding
from mathrl.models import config as config_lib
from mathrl.models import decode_attention as decode_attention_lib
from mathrl.models import layers


@flax.struct.dataclass
class KVCache:
  """Per-layer keys/values of a batch being decoded (see module docstring)."""

  k: tuple[jax.Array, ...]
  """Per layer [B, K, H, M] cached keys (RoPE applied), stored transposed."""
  v: tuple[jax.Array, ...]
  """Per layer [B, K, M, H] cached values."""
  mask_BM: jax.Array
  """int32 [B, M]: 1 where a slot holds a real token."""
  index: jax.Array
  """int32 scalar: the next slot to write."""
  next_position_B: jax.Array
  """int32 [B]: RoPE position of each row's next real token."""


# Logical axes of each layer's KVCache.k [B, K, H, M] and .v [B, K, M, H]:
# q·kᵀ contracts [H, M] and probs·v contracts [M, H] per (B, K), both plain
# matmuls with no transpose of the cache at every decode step.
K_CACHE_AXES = ("batch", "kv_heads", "head_dim", "length")
V_CACHE_AXES = ("batch", "kv_heads", "length", "head_dim")


def cache_sharding(
    cache: KVCache, mesh: jax.sharding.Mesh, rules: sharding.Rules
) -> KVCache:
  """NamedShardings for every field of `cache` (e.g. for jit in_shardings).

  Args:
    cache: a KVCache (or one from `jax.eval_shape`).
    mesh: the device mesh.
    rules: logical-to-mesh rules (normally sharding.SAMPLE_RULES).

  Returns:
    A KVCache whose leaves are `jax.sharding.NamedSharding`s.
  """
  def named(axes, x):
    return jax.sharding.NamedSharding(
        mesh, sharding.logical_to_spec(axes, x.shape, mesh, rules))

  return KVCache(
      k=tuple(named(K_CACHE_AXES, x) for x in cache.k),
      v=tuple(named(V_CACHE_AXES, x) for x in cache.v),
      mask_BM=named(("batch", "length"), cache.mask_BM),
      index=named((), cache.index),
      next_position_B=named(("batch",), cache.next_position_B),
  )


class Block(nnx.Module):
  """Pre-norm decoder block: x + attn(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, config: config_lib.ModelConfig, *, dtype,
               num_stacked: int, rngs: nnx.Rngs):
    d, eps = config.hidden_size, config.rms_norm_eps
    self.input_norm = layers.RMSNorm(d, "embed", eps=eps, dtype=dtype,
                                     num_stacked=num_stacked, rngs=rngs)
    self.attn = layers.Attention(config, dtype=dtype,
                                 num_stacked=num_stacked, rngs=rngs)
    self.post_attn_norm = layers.RMSNorm(d, "embed", eps=eps, dtype=dtype,
                                         num_stacked=num_stacked, rngs=rngs)
    self.mlp = layers.MLP(config, dtype=dtype, num_stacked=num_stacked,
                          rngs=rngs)

  def __call__(self, x_BSD, rope_BSH, mask_BST, kv=None, index=None,
               decode_attend=layers.attend):
    """x ← x + Attn(RMSNorm(x)); x ← x + SwiGLU(RMSNorm(x)); arXiv:1706.03762.

    Args:
      x_BSD: [B, S, D] hidden states.
      rope_BSH: (cos_BSH, sin_BSH) RoPE angles of the S positions.
      mask_BST: [B, S, T] attention mask (T = S, or M cache slots).
      kv: None, or this layer's cache (k_BKHM, v_BKMH); the new keys and
        values are written at slot `index`.
      index: first cache slot to write (traced int32 scalar).
      decode_attend: the attention of a decode step (a cache and S = 1),
        `layers.attend`'s contract (see `decode_attention`); any other
        call uses `layers.attend`.

    Returns:
      (x_BSD, kv) with kv updated (in place inside a jitted loop).
    """
    q_BSNH, k_BSKH, v_BSKH = self.attn.project_qkv(
        self.input_norm(x_BSD), rope_BSH)
    k_BKHS = jnp.transpose(k_BSKH, (0, 2, 3, 1))
    v_BKSH = jnp.swapaxes(v_BSKH, 1, 2)
    if kv is not None:
      k_BKHM, v_BKMH = kv
      k_BKHM = jax.lax.dynamic_update_slice(
          k_BKHM, k_BKHS.astype(k_BKHM.dtype), (0, 0, 0, index))
      v_BKMH = jax.lax.dynamic_update_slice(
          v_BKMH, v_BKSH.astype(v_BKMH.dtype), (0, 0, index, 0))
      kv = (sharding.shard(k_BKHM, *K_CACHE_AXES),
            sharding.shard(v_BKMH, *V_CACHE_AXES))
      k_BKHS = k_BKHM.astype(q_BSNH.dtype)
      v_BKSH = v_BKMH.astype(q_BSNH.dtype)
    attend = decode_attend if kv is not None and x_BSD.shape[1] == 1 else (
        layers.attend)
    attn_BSNH = attend(q_BSNH, k_BKHS, v_BKSH, mask_BST)
    x_BSD = x_BSD + self.attn.output(attn_BSNH)
    x_BSD = x_BSD + self.mlp(self.post_attn_norm(x_BSD))
    return sharding.shard(x_BSD, "batch", "length", "embed"), kv


def _remat_block(run):
  """`run(block, x, kv)` rematerialised in the backward pass.

  The block enters `jax.checkpoint` as its state and is rebuilt inside, so
  blocks made outside a trace (the sampler slices them once, outside its
  decode loop) are never mutated from an inner trace level.
  """
  def remat_run(block, x, kv):
    graphdef, state = nnx.split(block)
    pure = lambda state, x, kv: run(nnx.merge(graphdef, state), x, kv)
    return jax.checkpoint(pure)(state, x, kv)
  return remat_run


def _rope_positions(mask_BS: jax.Array, cache: KVCache | None) -> jax.Array:
  """p_bs = max(n_b + Σ_{s' ≤ s} mask_bs' − 1, 0); RoFormer arXiv:2104.09864.

  RoPE positions that count only real tokens, so a left-padded row starts at
  position 0 on its first real token; n_b is the cache's next_position_B (0
  without a cache).
  """
  positions_BS = jnp.cumsum(mask_BS, axis=1) - 1
  if cache is not None:
    positions_BS = positions_BS + cache.next_position_B[:, None]
  return jnp.maximum(positions_BS, 0)


def _attention_mask(
    mask_BS: jax.Array, cache: KVCache | None
) -> tuple[jax.Array, jax.Array | None]:
  """a_bst = [t ≤ i + s] ∧ real_bt (causal over real keys); arXiv:1706.03762.

  Without a cache the keys are the S new tokens (T = S, i = 0, real_bt =
  mask_BS). With one they are the M cache slots: i = cache.index, and
  real_bt is cache.mask_BM with mask_BS written at slots [i, i + S).

  Returns:
    (mask_BST bool [B, S, T], slots_BM): slots_BM is the cache's updated
    mask [B, M], None without a cache.
  """
  s = mask_BS.shape[1]
  if cache is None:
    causal_SS = jnp.tril(jnp.ones((s, s), jnp.bool_))
    return causal_SS[None, :, :] & (mask_BS[:, None, :] > 0), None
  index = cache.index
  slots_BM = jax.lax.dynamic_update_slice(
      cache.mask_BM, mask_BS.astype(cache.mask_BM.dtype), (0, index))
  m = slots_BM.shape[1]
  query_slot_S = index + jnp.arange(s)
  causal_SM = jnp.arange(m)[None, :] <= query_slot_S[:, None]
  return causal_SM[None, :, :] & (slots_BM[:, None, :] > 0), slots_BM


class Transformer(nnx.Module):
  """Decoder-only LM: embed -> scanned blocks -> RMSNorm -> logits."""

  def __init__(self, config: config_lib.ModelConfig, *,
               dtype=jnp.float32, param_dtype=None, remat: bool = False,
               scan_layers: bool = True, decode_attention: str = "xla",
               rngs: nnx.Rngs):
    """Random init (normal(0.02) weights, unit norms, zero biases).

    Args:
      config: shapes and numerics.
      dtype: compute dtype (jnp.float32 or jnp.bfloat16).
      param_dtype: parameter storage dtype; None: `dtype`.
      remat: rematerialise each layer in the backward pass (see the module
        docstring).
      scan_layers: run the cache-free forwards as a loop over the stacked
        layers (compile time independent of depth); False unrolls that
        loop (see the module docstring).
      decode_attention: the attention of a decode step with a cache, a
        name in `decode_attention.IMPLEMENTATIONS` ('xla' or 'pallas').
      rngs: initialisation randomness.
    """
    decode_attention_lib.get(decode_attention)  # a clear error if unknown
    self.config = config
    self.dtype = dtype
    self.param_dtype = dtype if param_dtype is None else param_dtype
    self.remat = remat
    self.scan_layers = scan_layers
    self.decode_attention = decode_attention
    dtype = self.param_dtype
    v, d = config.vocab_size, config.hidden_size
    self.embed = nnx.Param(
        layers.WEIGHT_INIT(rngs.params(), (v, d), dtype),
        out_sharding=("vocab", "embed"), eager_sharding=False)
    self.layers = Block(config, dtype=dtype, num_stacked=config.num_layers,
                        rngs=rngs)
    self.final_norm = layers.RMSNorm(d, "embed", eps=config.rms_norm_eps,
                                     dtype=dtype, num_stacked=None, rngs=rngs)
    if config.tie_word_embeddings:
      self.lm_head = None
    else:
      self.lm_head = nnx.Param(
          layers.WEIGHT_INIT(rngs.params(), (d, v), dtype),
          out_sharding=("embed", "vocab"), eager_sharding=False)

  def _compute(self, x: jax.Array) -> jax.Array:
    """A parameter (or its slice) in the compute dtype."""
    return x.astype(self.dtype)

  def _rope(self, positions_BS: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(cos, sin) RoPE angles of the positions (`layers.rope_cos_sin`)."""
    c = self.config
    return layers.rope_cos_sin(
        positions_BS,
        layers.rope_inv_freq(c.head_dim, c.rope_theta, c.rope_scaling))

  def _embed(self, tokens_BS: jax.Array) -> jax.Array:
    """x = E[tokens] in the compute dtype, sharded (batch, length, embed)."""
    x_BSD = self._compute(jnp.take(self.embed[...], tokens_BS, axis=0))
    return sharding.shard(x_BSD, "batch", "length", "embed")

  def _empty_kv(self, batch_size: int, length: int, dtype):
    """One layer's zero keys [B, K, H, M] and values [B, K, M, H]."""
    c = self.config
    return (jnp.zeros((batch_size, c.num_kv_heads, c.head_dim, length), dtype),
            jnp.zeros((batch_size, c.num_kv_heads, length, c.head_dim), dtype))

  def split_layers(self) -> tuple[Block, ...]:
    """One Block per layer, its slice of the stacked params in `dtype`."""
    graphdef, state = nnx.split(self.layers)
    return tuple(
        nnx.merge(graphdef, jax.tree.map(  # pylint: disable=cell-var-from-loop
            lambda x: self._compute(x[i]), state))
        for i in range(self.config.num_layers))

  def init_cache(self, batch_size: int, max_length: int,
                 dtype=None) -> KVCache:
    """An empty KVCache of `max_length` slots (see module docstring).

    Args:
      batch_size: B.
      max_length: M, the number of slots (prompt + new tokens).
      dtype: cache dtype (default: the model dtype).

    Returns:
      A KVCache with zero keys/values, mask 0, index 0, positions 0.
    """
    dtype = self.dtype if dtype is None else dtype
    kv = [self._empty_kv(batch_size, max_length, dtype)
          for _ in range(self.config.num_layers)]
    return KVCache(
        k=tuple(k for k, _ in kv), v=tuple(v for _, v in kv),
        mask_BM=jnp.zeros((batch_size, max_length), jnp.int32),
        index=jnp.zeros((), jnp.int32),
        next_position_B=jnp.zeros((batch_size,), jnp.int32),
    )

  def __call__(
      self,
      tokens_BS: jax.Array,
      attention_mask_BS: jax.Array | None = None,
      *,
      positions_BS: jax.Array | None = None,
      cache: KVCache | None = None,
      blocks: tuple[Block, ...] | None = None,
      logits_start: int = 0,
      return_hidden: bool = False,
  ):
    """logits = RMSNorm(blocksᴸ(embed(tokens)))·Wᵥ; arXiv:1706.03762.

    Decoder-only, pre-norm, as Llama 3 (arXiv:2407.21783), Qwen2
    (arXiv:2407.10671) and Qwen3 (arXiv:2505.09388). Returns the logits
    for every position (and the updated cache when given one).

    Args:
      tokens_BS: [B, S] int token ids.
      attention_mask_BS: [B, S] 1 for real tokens, 0 for (left) padding;
        None means all real.
      positions_BS: [B, S] explicit RoPE positions (overrides the derived
        ones).
      cache: a KVCache from `init_cache`, or None.
      blocks: with a cache, the per-layer blocks from `split_layers()` to
        use instead of slicing the stacked parameters here (a decode loop
        splits once, outside the loop).
      logits_start: compute logits only for positions logits_start..S-1
        (static): scoring completions needs none of the prompt's, and for
        a 150k-token vocabulary they cost as much as a layer each.
      return_hidden: return the final-norm hidden states [B, S -
        logits_start, D] (in `dtype`) instead of logits, for callers that
        apply `logits()` block by block (`mathrl.logprobs` with a chunk
        size never holds the [B, S, V] logits).

    Returns:
      logits_BSV float32 [B, S - logits_start, V] without a cache;
      (logits_BSV, cache) with one (hidden states instead of logits with
      `return_hidden`).
    """
    b, s = tokens_BS.shape
    if attention_mask_BS is None:
      mask_BS = jnp.ones((b, s), jnp.int32)
    else:
      mask_BS = attention_mask_BS.astype(jnp.int32)
    if positions_BS is None:
      positions_BS = _rope_positions(mask_BS, cache)
    mask_BST, slots_BM = _attention_mask(mask_BS, cache)

    rope_BSH = self._rope(positions_BS)
    x_BSD = self._embed(tokens_BS)
    if cache is None:
      x_BSD = self._scanned_layers(x_BSD, rope_BSH, mask_BST)
    else:
      x_BSD, new_k, new_v = self._cached_layers(
          x_BSD, rope_BSH, mask_BST, cache, blocks)
    hidden_BSD = self.final_norm(x_BSD[:, logits_start:])
    logits_BSV = hidden_BSD if return_hidden else self.logits(hidden_BSD)
    if cache is None:
      return logits_BSV
    new_cache = KVCache(
        k=new_k, v=new_v, mask_BM=slots_BM, index=cache.index + s,
        next_position_B=cache.next_position_B + jnp.sum(mask_BS, axis=1),
    )
    return logits_BSV, new_cache

  def _scanned_layers(self, x_BSD, rope_BSH, mask_BST):
    """x ← blockₗ(x) for l = 1..L; one block scanned over the stacked params.

    The forward without a cache (see the module docstring).
    """
    return self._layer_loop(
        lambda block, x_BSD: block(x_BSD, rope_BSH, mask_BST)[0], x_BSD)

  def _layer_loop(self, step, carry):
    """carry ← step(blockₗ, carry) for l = 1..L over the stacked layers.

    One `lax.scan` whose body is one layer's Block (its parameters cast to
    `dtype`), rematerialised in the backward pass with `remat`, and
    unrolled unless `scan_layers`.
    """
    graphdef, layer_state = nnx.split(self.layers)

    def body(carry, state):
      block = nnx.merge(graphdef, jax.tree.map(self._compute, state))
      return step(block, carry), None

    if self.remat:
      body = jax.checkpoint(body)
    carry, _ = jax.lax.scan(body, carry, layer_state,
                            unroll=1 if self.scan_layers else True)
    return carry

  def _cached_layers(self, x_BSD, rope_BSH, mask_BST, cache, blocks):
    """x ← blockₗ(x) for l = 1..L, unrolled, each writing its cache slots.

    Each layer writes its S new keys and values at slots [cache.index,
    cache.index + S) of its own buffers; `blocks` are the per-layer blocks
    of `split_layers()` (None: sliced here).

    Returns:
      (x_BSD, k, v): the hidden states and every layer's updated key and
      value buffers (tuples, as KVCache.k and .v).
    """
    index = cache.index
    new_k, new_v = [], []
    decode_attend = decode_attention_lib.get(self.decode_attention)
    run = lambda block, x, kv: block(x, rope_BSH, mask_BST, kv, index,
                                     decode_attend)
    if self.remat:
      run = _remat_block(run)
    for i, block in enumerate(blocks or self.split_layers()):
      x_BSD, (k, v) = run(block, x_BSD, (cache.k[i], cache.v[i]))
      new_k.append(k)
      new_v.append(v)
    return x_BSD, tuple(new_k), tuple(new_v)

  def shared_prompt_forward(
      self,
      prompt_tokens_PL: jax.Array,
      prompt_mask_PL: jax.Array,
      tokens_BS: jax.Array,
      mask_BS: jax.Array,
      *,
      return_hidden: bool = False,
  ) -> tuple[jax.Array, jax.Array]:
    """Logits of P prompts and of B = P·G continuations that share them.

    The same function as `__call__` on each row's prompt and continuation
    concatenated (arXiv:1706.03762), with the prompt's layers run once per
    group: in one scan over the stacked layers, layer l runs the P prompts
    (keys and values written to an L-slot buffer, as a prefill), repeats
    their keys and values G times along the batch and runs the B
    continuations against them (slots L .. L + S - 1). Compile time does
    not grow with depth, and with `remat` each layer (both parts) is
    rematerialised in the backward pass, as in the cache-free forward.

    Args:
      prompt_tokens_PL: [P, L] left-padded prompt ids.
      prompt_mask_PL: [P, L] 1 on real prompt tokens.
      tokens_BS: [B, S] continuation ids; rows p·G .. p·G + G - 1 continue
        prompt p.
      mask_BS: [B, S] 1 on real continuation tokens.
      return_hidden: final-norm hidden states instead of logits.

    Returns:
      (first_P1V, rest_BSV): float32 logits at each prompt's last position
      and at every continuation position (hidden states [.., D] in `dtype`
      with `return_hidden`).
    """
    (p, prompt_len), (b, s) = prompt_tokens_PL.shape, tokens_BS.shape
    if p == 0 or b % p:
      raise ValueError(f"{b} continuation rows do not split into groups "
                       f"of the {p} prompts")
    repeat = lambda x: jnp.repeat(x, b // p, axis=0)
    prompt_mask_PL = prompt_mask_PL.astype(jnp.int32)
    # The continuation rows see a cache whose first L slots hold their
    # prompt: masks and RoPE positions as `__call__` derives them for it.
    prefix = KVCache(
        k=(), v=(), mask_BM=jnp.concatenate(
            [repeat(prompt_mask_PL), jnp.zeros((b, s), jnp.int32)], axis=1),
        index=jnp.asarray(prompt_len, jnp.int32),
        next_position_B=repeat(jnp.sum(prompt_mask_PL, axis=1)))
    mask_BS = mask_BS.astype(jnp.int32)
    prompt_rope = self._rope(_rope_positions(prompt_mask_PL, None))
    rope_BSH = self._rope(_rope_positions(mask_BS, prefix))
    prompt_mask_PLL, _ = _attention_mask(prompt_mask_PL, None)
    mask_BSM, _ = _attention_mask(mask_BS, prefix)

    def step(block, carry):
      x_PLD, x_BSD = carry
      kv = self._empty_kv(p, prompt_len, x_PLD.dtype)
      x_PLD, (k_PKHL, v_PKLH) = block(x_PLD, prompt_rope, prompt_mask_PLL,
                                      kv, 0)
      k_BKHS, v_BKSH = self._empty_kv(b, s, x_BSD.dtype)
      kv = (jnp.concatenate([repeat(k_PKHL), k_BKHS], axis=3),
            jnp.concatenate([repeat(v_PKLH), v_BKSH], axis=2))
      x_BSD, _ = block(x_BSD, rope_BSH, mask_BSM, kv, prompt_len)
      return x_PLD, x_BSD

    x_PLD, x_BSD = self._layer_loop(
        step, (self._embed(prompt_tokens_PL), self._embed(tokens_BS)))
    head = (lambda h: h) if return_hidden else self.logits
    return (head(self.final_norm(x_PLD[:, -1:])),
            head(self.final_norm(x_BSD)))

  def logits(self, hidden_BSD: jax.Array) -> jax.Array:
    """z = h·Wᵥ (the output head, or the tied embedding); arXiv:1706.03762.

    Args:
      hidden_BSD: [B, S, D] final-norm hidden states
        (`__call__(return_hidden=True)`).

    Returns:
      float32 [B, S, V] logits (matmul in `dtype`, float32 accumulation).
    """
    if self.lm_head is None:
      logits_BSV = jnp.einsum(
          "BSD,VD->BSV", hidden_BSD, self._compute(self.embed[...]),
          preferred_element_type=jnp.float32)
    else:
      logits_BSV = jnp.einsum(
          "BSD,DV->BSV", hidden_BSD, self._compute(self.lm_head[...]),
          preferred_element_type=jnp.float32)
    return sharding.shard(logits_BSV.astype(jnp.float32),
                          "batch", "length", "vocab")
