"""Per-token log-probabilities and entropies of completions under a policy.

The batch layout is the sampler's: prompts left-padded to a bucket, [B, L];
completions right-padded, [B, T]; the sequence fed to the model is their
concatenation [B, L + T] with the attention mask of both, so RoPE positions
follow the real tokens. The logits at position L - 1 + t predict completion
token t.

With `group_size=G` the batch is P groups of G rows that share one prompt
(row p·G + g is sample g of prompt p, as in a GRPO rollout). The prompt is
then run once per group: in each layer its keys and values are repeated G
times and the completions are run against them
(`Transformer.shared_prompt_forward`, a scan over the layers), so the dense
layers see P·L + B·T tokens instead of B·(L + T) (2.1x fewer at L = 72,
T = 48, G = 8). Prompt positions never attend to completions, so this is
the same function of the parameters, gradients included (they sum over the
group through the repeat).

With `chunk_size=C` the [B, T, V] logits are never held: the model returns
its final hidden states [B, T, D], and the output head, log-softmax and
entropies run over blocks of C completion positions in a `lax.map` whose
body is rematerialised (`jax.checkpoint`), so forward and backward hold
one [B, C, V] block at a time. For a 49k-token vocabulary at B = 16,
T = 128 that is 403 MB of float32 logits (and as much again for their
softmax and gradient) replaced by 16·C·V·4 bytes (101 MB at C = 32). The
log-probs are the same function (equal to float rounding).
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx



def top_p_entropy(
    logits_BTV: jax.Array, top_p: float = 0.8, top_k: int = 10000
) -> jax.Array:
  """H^p = −Σ_{j<c} q_j log(q_j + 1e-12), q = p_(j)/Σ_{j<c} p_(j) (nucleus).

  SIREN (arXiv:2509.25133; Linn3a/siren `efficient_top_p_sampling`):
  probabilities p of the full softmax, the top-k (10000) in descending order,
  c = the first index whose cumulative probability is ≥ top_p; the first c
  tokens (cumulative probability strictly below top_p — the token that
  crosses it is excluded) are renormalised. If the top-1 probability is
  ≥ top_p, H^p = 0. The gradient flows through the probabilities; the
  nucleus membership is constant.

  Args:
    logits_BTV: [B, T, V] next-token logits of π_θ.
    top_p: nucleus mass p (0.8).
    top_k: candidates considered (10000, or V if smaller).

  Returns:
    [B, T] float32 nucleus entropy.
  """
  probs_BTV = jax.nn.softmax(jnp.asarray(logits_BTV, jnp.float32), axis=-1)
  k = min(top_k, probs_BTV.shape[-1])
  top_BTK, _ = jax.lax.top_k(probs_BTV, k)
  cum_BTK = jnp.cumsum(jax.lax.stop_gradient(top_BTK), axis=-1)
  keep_BTK = cum_BTK < top_p
  kept_BTK = jnp.where(keep_BTK, top_BTK, 0.0)
  total_BT = jnp.sum(kept_BTK, axis=-1, keepdims=True)
  q_BTK = kept_BTK / jnp.where(total_BT > 0, total_BT, 1.0)
  return -jnp.sum(
      jnp.where(keep_BTK, q_BTK * jnp.log(q_BTK + 1e-12), 0.0), axis=-1
  )


def token_logprobs_and_entropy(
    logits_BTV: jax.Array, tokens_BT: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """log π(y_t) = z_{y_t} − logsumexp(z);  H_t = −Σ_v π_v log π_v.

  Computed in float32 whatever the logits' dtype.

  Args:
    logits_BTV: next-token logits at each completion position.
    tokens_BT: the completion tokens whose log-probabilities are wanted.

  Returns:
    (logp_BT, entropy_BT), both float32.
  """
  logits_BTV = logits_BTV.astype(jnp.float32)
  logz_BT = jax.nn.logsumexp(logits_BTV, axis=-1)
  picked_BT = jnp.take_along_axis(
      logits_BTV, tokens_BT[..., None].astype(jnp.int32), axis=-1
  )[..., 0]
  probs_BTV = jax.nn.softmax(logits_BTV, axis=-1)
  entropy_BT = logz_BT - jnp.sum(probs_BTV * logits_BTV, axis=-1)
  return picked_BT - logz_BT, entropy_BT


def completion_logprobs(
    graphdef: nnx.GraphDef,
    params: Any,
    prompt_tokens_BL: jax.Array,
    prompt_mask_BL: jax.Array,
    completion_tokens_BT: jax.Array,
    completion_mask_BT: jax.Array,
    nucleus_top_p: float | None = None,
    group_size: int = 1,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[jax.Array, ...]:
  """log π_θ(y_t | x, y_<t) and H(π_θ(· | x, y_<t)) for every completion token.

  π_θ(· | x, y_<t) = softmax(z_t / τ), z_t the model's logits and τ the
  sampling temperature, so that the scored policy is the one that sampled
  (as verl and TRL do).

  Args:
    graphdef: the policy's graph definition (`nnx.split(model)[0]`).
    params: the policy's state (`nnx.split(model)[1]`), possibly traced.
    prompt_tokens_BL: left-padded prompt ids.
    prompt_mask_BL: 1 on real prompt tokens.
    completion_tokens_BT: right-padded completion ids.
    completion_mask_BT: 1 on completion tokens up to and including the stop.
    nucleus_top_p: also return SIREN's nucleus entropy H^p at this p
      (`top_p_entropy`, with gradient).
    group_size: G > 1 runs each group's shared prompt once (see the module
      docstring); rows p·G .. p·G + G - 1 must hold the same prompt.
    temperature: τ > 0 dividing the logits (1: the model's own policy).
    chunk_size: compute the head and softmax over blocks of this many
      completion positions (see the module docstring); None: all at once.

  Returns:
    (logp_BT, entropy_BT), or (logp_BT, entropy_BT, nucleus_entropy_BT)
    with `nucleus_top_p`; float32, zero where completion_mask_BT is 0.
  """
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  if chunk_size is not None and chunk_size <= 0:
    raise ValueError(f"chunk_size must be positive or None, got {chunk_size}")
  model = nnx.merge(graphdef, params)
  hidden = chunk_size is not None
  if group_size > 1:
    out_BTX = _shared_prompt_logits(
        model, prompt_tokens_BL, prompt_mask_BL, completion_tokens_BT,
        completion_mask_BT, group_size, return_hidden=hidden)
  else:
    prompt_len = prompt_tokens_BL.shape[1]
    tokens_BS = jnp.concatenate(
        [prompt_tokens_BL, completion_tokens_BT], axis=1)
    mask_BS = jnp.concatenate(
        [prompt_mask_BL, completion_mask_BT], axis=1
    ).astype(jnp.int32)
    # The last completion token predicts nothing we score: drop it from
    # the input; the prompt's logits before position L - 1 are not needed.
    out_BTX = model(tokens_BS[:, :-1], attention_mask_BS=mask_BS[:, :-1],
                    logits_start=prompt_len - 1, return_hidden=hidden)

  def score(logits_BTV, tokens_BT):
    if temperature != 1.0:
      logits_BTV = logits_BTV.astype(jnp.float32) / temperature
    out = token_logprobs_and_entropy(logits_BTV, tokens_BT)
    if nucleus_top_p is not None:
      out += (top_p_entropy(logits_BTV, nucleus_top_p),)
    return out

  if hidden:
    out = _chunked(lambda h_BCD, tokens_BC: score(model.logits(h_BCD),
                                                  tokens_BC),
                   out_BTX, completion_tokens_BT, chunk_size)
  else:
    out = score(out_BTX, completion_tokens_BT)
  valid_BT = completion_mask_BT > 0
  return tuple(jnp.where(valid_BT, x, 0.0) for x in out)


def _chunked(score, hidden_BTD, tokens_BT, chunk_size):
  """score(hidden, tokens) over blocks of `chunk_size` positions.

  The blocks run in a `lax.map` with a rematerialised body, so neither the
  forward nor the backward pass holds more than one block's logits.
  """
  b, t, d = hidden_BTD.shape
  chunk_size = min(chunk_size, t)
  n = -(-t // chunk_size)
  pad = n * chunk_size - t
  hidden_BTD = jnp.pad(hidden_BTD, ((0, 0), (0, pad), (0, 0)))
  tokens_BT = jnp.pad(tokens_BT, ((0, 0), (0, pad)))
  hidden_NBCD = jnp.moveaxis(hidden_BTD.reshape(b, n, chunk_size, d), 1, 0)
  tokens_NBC = jnp.moveaxis(tokens_BT.reshape(b, n, chunk_size), 1, 0)
  body = jax.checkpoint(lambda args: score(*args))
  out_NBC = jax.lax.map(body, (hidden_NBCD, tokens_NBC))
  return tuple(jnp.moveaxis(x, 0, 1).reshape(b, n * chunk_size)[:, :t]
               for x in out_NBC)


def _shared_prompt_logits(
    model, prompt_tokens_BL, prompt_mask_BL, completion_tokens_BT,
    completion_mask_BT, group_size, return_hidden=False,
):
  """Next-token logits of every completion position, each prompt run once.

  `Transformer.shared_prompt_forward` on the P distinct prompts (logits of
  their last position) and the first T - 1 completion tokens of all B
  rows; the prompt's logits are repeated over its G rows. With
  `return_hidden`, the final hidden states instead of the logits.
  """
  b, prompt_len = prompt_tokens_BL.shape
  if b % group_size:
    raise ValueError(
        f"group_size={group_size} must divide the batch of {b} rows")
  prompts_PL = prompt_tokens_BL[::group_size]
  prompt_mask_PL = prompt_mask_BL[::group_size]
  repeat = lambda x: jnp.repeat(x, group_size, axis=0)
  if completion_tokens_BT.shape[1] == 1:
    return repeat(model(prompts_PL, attention_mask_BS=prompt_mask_PL,
                        logits_start=prompt_len - 1,
                        return_hidden=return_hidden))
  first_P1V, rest_BSV = model.shared_prompt_forward(
      prompts_PL, prompt_mask_PL, completion_tokens_BT[:, :-1],
      completion_mask_BT[:, :-1], return_hidden=return_hidden)
  return jnp.concatenate([repeat(first_P1V), rest_BSV], axis=1)
