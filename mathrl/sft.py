"""Supervised warm-start: next-token cross-entropy on worked solutions.

  example = sft.encode(record, tokenizer, template=..., max_prompt_length=64,
                       max_completion_length=48)   # None: too long
  batch = sft.collate(examples, buckets=(64,), max_completion_length=48,
                      pad_id=0)
  step_fn = jax.jit(sft.make_sft_step(graphdef, optimizer), donate_argnums=0)
  state, metrics = step_fn(state, batch)

A batch uses the sampler's layout (left-padded prompt [B, L], right-padded
completion [B, T]) so the RL and SFT stages share `logprobs` and shapes; the
completion is the solution text followed by the end-of-sequence token, and
only its tokens are scored.
"""

from collections.abc import Sequence
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from flax import struct

from mathrl import logprobs as logprobs_lib
from mathrl import types
from mathrl import updates
from mathrl.data import prompts


@struct.dataclass
class SFTBatch:
  """B (prompt, solution) pairs in the sampler's layout."""

  prompt_tokens_BL: jax.Array
  prompt_mask_BL: jax.Array
  completion_tokens_BT: jax.Array
  completion_mask_BT: jax.Array


def encode(
    record: dict[str, Any],
    tokenizer: Any,
    *,
    template: prompts.PromptTemplate,
    max_prompt_length: int,
    max_completion_length: int,
    solution_prefix: str = " ",
) -> tuple[list[int], list[int]] | None:
  """(prompt ids, solution ids + EOS), or None when either is too long.

  Args:
    record: a dict with `question` and `solution`.
    tokenizer: a transformers tokenizer with an eos token.
    template: prompt template (as in the RL pipeline).
    max_prompt_length: longest prompt kept (the largest bucket).
    max_completion_length: T, longest solution kept (EOS included).
    solution_prefix: text between the prompt and the solution.

  Returns:
    The two id lists, or None if the record does not fit.
  """
  eos = tokenizer.eos_token_id
  if eos is None:
    raise ValueError("SFT needs a tokenizer with an eos token")
  chat = prompts.uses_chat_template(tokenizer, template)
  text = prompts.render(record["question"], tokenizer, template)
  prompt_ids = prompts.encode(text, tokenizer, chat=chat)
  ids = tokenizer(solution_prefix + record["solution"],
                  add_special_tokens=False)["input_ids"]
  completion_ids = list(ids) + [eos]
  if (len(prompt_ids) > max_prompt_length
      or len(completion_ids) > max_completion_length):
    return None
  return prompt_ids, completion_ids


def collate(
    examples: Sequence[tuple[list[int], list[int]]],
    *,
    buckets: Sequence[int],
    max_completion_length: int,
    pad_id: int,
) -> SFTBatch:
  """Left-pads prompts to a bucket and right-pads solutions to T."""
  tokens_BL, mask_BL = prompts.left_pad([e[0] for e in examples], buckets,
                                        pad_id)
  b = len(examples)
  tokens_BT = np.full((b, max_completion_length), pad_id, np.int32)
  mask_BT = np.zeros((b, max_completion_length), np.int32)
  for i, (_, ids) in enumerate(examples):
    tokens_BT[i, : len(ids)] = ids
    mask_BT[i, : len(ids)] = 1
  return SFTBatch(tokens_BL, mask_BL, tokens_BT, mask_BT)


def make_sft_step(
    graphdef: nnx.GraphDef, optimizer: optax.GradientTransformation
) -> Callable[..., tuple[types.TrainState, dict[str, jax.Array]]]:
  """Builds `sft_step(state, batch) -> (state, metrics)`.

  L = −Σ_{i,t} m_it log π_θ(y_it | x_i, y_i,<t) / Σ m  (token-mean NLL).
  A non-finite loss or gradient skips the update, as in the RL step.

  Args:
    graphdef: the policy graph (static).
    optimizer: optax transformation.

  Returns:
    The (un-jitted) step function over `types.TrainState`.
  """

  def loss_fn(params, batch):
    logp_BT, _ = logprobs_lib.completion_logprobs(
        graphdef, params, batch.prompt_tokens_BL, batch.prompt_mask_BL,
        batch.completion_tokens_BT, batch.completion_mask_BT,
    )
    mask_BT = batch.completion_mask_BT.astype(jnp.float32)
    nll = -jnp.sum(logp_BT * mask_BT) / jnp.maximum(jnp.sum(mask_BT), 1.0)
    return nll, {"nll": nll, "perplexity": jnp.exp(nll)}

  def sft_step(state: types.TrainState, batch: SFTBatch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch
    )
    params, opt_state, finite, grad_norm = updates.guarded_update(
        optimizer, grads, loss, state.params, state.opt_state
    )
    skipped = (~finite).astype(jnp.int32)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        num_skipped=state.num_skipped + skipped,
        consecutive_skipped=jnp.where(
            finite, 0, state.consecutive_skipped + 1
        ),
    )
    return new_state, dict(metrics, loss=loss, grad_norm=grad_norm)

  return sft_step
