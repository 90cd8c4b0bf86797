"""Prompt text and token ids: templates, tokenisation, left-padding buckets.

A question becomes prompt text through the tokenizer's own chat template
when it has one (instruct models: Qwen2.5-Instruct, Llama-3-Instruct, ...),
or a plain format string otherwise (base models, tiny CPU tokenizers).
Prompts are left-padded so that generation starts at the same column for
every row, to the smallest of a few fixed lengths ("buckets"), which bounds
the number of shapes the sampler is compiled for.
"""

from collections.abc import Sequence
import dataclasses
from typing import Any

import numpy as np

QUESTION = "{question}"
BOXED_INSTRUCTION = (
    "Please reason step by step, and put your final answer within \\boxed{}."
)


@dataclasses.dataclass(frozen=True)
class PromptTemplate:
  """How a question becomes prompt text.

  `{question}` in `user` and `plain` is replaced by the question (plain
  replacement, so other braces such as `\\boxed{}` need no escaping).

  Attributes:
    user: the user message given to a chat template.
    system: optional system message for a chat template.
    plain: the prompt text when no chat template is used.
    use_chat_template: use the tokenizer's chat template when it has one;
      False always uses `plain`.
  """

  user: str = QUESTION + "\n" + BOXED_INSTRUCTION
  system: str | None = None
  plain: str = "Question: " + QUESTION + "\nAnswer:"
  use_chat_template: bool = True

  def __post_init__(self):
    for field in ("user", "plain"):
      if QUESTION not in getattr(self, field):
        raise ValueError(
            f"PromptTemplate.{field} must contain {QUESTION!r}, got "
            f"{getattr(self, field)!r}"
        )


def uses_chat_template(tokenizer: Any, template: PromptTemplate) -> bool:
  """Whether `tokenizer`'s chat template applies under `template`."""
  return template.use_chat_template and bool(
      getattr(tokenizer, "chat_template", None)
  )


def render(question: str, tokenizer: Any, template: PromptTemplate) -> str:
  """The prompt text for one question.

  Args:
    question: the problem statement.
    tokenizer: a transformers tokenizer (its `chat_template`, if any, is
      used).
    template: the `PromptTemplate`.

  Returns:
    The full prompt text, ending where the model's answer starts.
  """
  if not uses_chat_template(tokenizer, template):
    return template.plain.replace(QUESTION, question)
  messages = []
  if template.system is not None:
    messages.append({"role": "system", "content": template.system})
  messages.append(
      {"role": "user", "content": template.user.replace(QUESTION, question)}
  )
  return tokenizer.apply_chat_template(
      messages, tokenize=False, add_generation_prompt=True
  )


def encode(text: str, tokenizer: Any, *, chat: bool) -> list[int]:
  """Token ids of a rendered prompt.

  Args:
    text: output of `render`.
    tokenizer: the same tokenizer.
    chat: whether `text` came from a chat template, which already holds the
      special tokens (so none are added again).

  Returns:
    The token ids.
  """
  return list(tokenizer(text, add_special_tokens=not chat)["input_ids"])


def pad_id_of(tokenizer: Any) -> int:
  """The padding id: the tokenizer's pad token, else its eos token.

  Padded positions are masked out, so any id works; this picks a valid one.

  Raises:
    ValueError: the tokenizer has neither (pass `pad_id=` explicitly).
  """
  for attr in ("pad_token_id", "eos_token_id"):
    value = getattr(tokenizer, attr, None)
    if isinstance(value, int):
      return value
  raise ValueError(
      "tokenizer has no pad_token_id or eos_token_id; pass pad_id= explicitly"
  )


def bucket_length(length: int, buckets: Sequence[int]) -> int:
  """The smallest bucket >= `length`.

  Args:
    length: longest prompt of a batch, in tokens.
    buckets: allowed padded lengths, e.g. (64, 128, 256).

  Returns:
    The bucket.

  Raises:
    ValueError: `length` exceeds every bucket.
  """
  for bucket in sorted(buckets):
    if length <= bucket:
      return bucket
  raise ValueError(
      f"prompt of {length} tokens is longer than the largest bucket "
      f"{max(buckets)}; add a larger bucket or drop long prompts"
  )


def left_pad(
    ids_P: Sequence[Sequence[int]], buckets: Sequence[int], pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
  """Left-pads prompts to the smallest bucket that fits the longest one.

  Args:
    ids_P: P token-id lists.
    buckets: allowed padded lengths.
    pad_id: id written into padded positions.

  Returns:
    tokens_PL: [P, L] int32, prompts right-aligned, `pad_id` on the left.
    mask_PL: [P, L] int32, 1 on prompt tokens, 0 on padding.
  """
  length = bucket_length(max(len(ids) for ids in ids_P), buckets)
  tokens_PL = np.full((len(ids_P), length), pad_id, dtype=np.int32)
  mask_PL = np.zeros((len(ids_P), length), dtype=np.int32)
  for p, ids in enumerate(ids_P):
    if ids:
      tokens_PL[p, length - len(ids) :] = ids
      mask_PL[p, length - len(ids) :] = 1
  return tokens_PL, mask_PL


def decode_completions(
    tokenizer: Any, tokens_BT: np.ndarray, mask_BT: np.ndarray
) -> list[str]:
  """Completion texts, each cut at its mask, special tokens dropped."""
  return [
      tokenizer.decode(row[: int(m.sum())], skip_special_tokens=True)
      for row, m in zip(tokens_BT, mask_BT)
  ]
