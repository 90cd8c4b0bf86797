"""Per-token log-probabilities and entropies of completions under a policy.

The batch layout is the sampler's: prompts left-padded to a bucket, [B, L];
completions right-padded, [B, T]; the sequence fed to the model is their
concatenation [B, L + T] with the attention mask of both, so RoPE positions
follow the real tokens. The logits at position L - 1 + t predict completion
token t.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from mathrl.losses.siren import top_p_entropy


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
) -> tuple[jax.Array, ...]:
  """log π_θ(y_t | x, y_<t) and H(π_θ(· | x, y_<t)) for every completion token.

  Args:
    graphdef: the policy's graph definition (`nnx.split(model)[0]`).
    params: the policy's state (`nnx.split(model)[1]`), possibly traced.
    prompt_tokens_BL: left-padded prompt ids.
    prompt_mask_BL: 1 on real prompt tokens.
    completion_tokens_BT: right-padded completion ids.
    completion_mask_BT: 1 on completion tokens up to and including the stop.
    nucleus_top_p: also return SIREN's nucleus entropy H^p at this p
      (`losses.top_p_entropy`, with gradient).

  Returns:
    (logp_BT, entropy_BT), or (logp_BT, entropy_BT, nucleus_entropy_BT)
    with `nucleus_top_p`; float32, zero where completion_mask_BT is 0.
  """
  model = nnx.merge(graphdef, params)
  prompt_len = prompt_tokens_BL.shape[1]
  tokens_BS = jnp.concatenate([prompt_tokens_BL, completion_tokens_BT], axis=1)
  mask_BS = jnp.concatenate(
      [prompt_mask_BL, completion_mask_BT], axis=1
  ).astype(jnp.int32)
  # The last completion token predicts nothing we score: drop it from input.
  logits_BSV = model(tokens_BS[:, :-1], attention_mask_BS=mask_BS[:, :-1])
  logits_BTV = logits_BSV[:, prompt_len - 1 :]
  logp_BT, entropy_BT = token_logprobs_and_entropy(
      logits_BTV, completion_tokens_BT
  )
  valid_BT = completion_mask_BT > 0
  out = (
      jnp.where(valid_BT, logp_BT, 0.0),
      jnp.where(valid_BT, entropy_BT, 0.0),
  )
  if nucleus_top_p is None:
    return out
  nucleus_BT = top_p_entropy(logits_BTV, nucleus_top_p)
  return out + (jnp.where(valid_BT, nucleus_BT, 0.0),)
