"""Reward functions on the host: correctness, format, length, overlong.

Every function returns a float32 numpy vector `[B]`, one value per
completion, and takes keyword arguments by the names a `RewardSet` passes
(`completions`, `answers`, `lengths_B`, `group_size`, `grading_stats`, and
`<name>_B` for each component scored before it), ending in `**extra` so
unused ones are ignored.
Hyperparameters are bound with `functools.partial`, e.g.
`functools.partial(dapo_overlong_penalty, max_length=4096, buffer_length=512)`.
Lengths are token counts (ints), never characters.
"""

import collections
import re
from typing import Any, Sequence

import numpy as np

from mathrl.rewards import extract
from mathrl.rewards import verify

_THINK_OPEN = "<think>"
_THINK_CLOSE = "</think>"


def correctness(
    completions: Sequence[str],
    answers: Sequence[str],
    *,
    verifier: verify.MathVerifier | None = None,
    correct_value: float = 1.0,
    incorrect_value: float = 0.0,
    grading_stats: collections.Counter | None = None,
    **extra: Any,
) -> np.ndarray:
  """r_i = c⁺ if answer(o_i) ≡ a_i else c⁻, RLVR (arXiv 2402.03300).

  Equivalence is `math_equal` (bounded time per pair; a timeout scores as
  incorrect), with the math-verify steps of the batch spread over the
  verifier's worker processes. DAPO uses c⁺ = 1, c⁻ = −1 (arXiv 2503.14476).

  Args:
    completions: B decoded completions.
    answers: B gold answers (repeat each prompt's answer G times).
    verifier: the MathVerifier to use (default: the process-wide one).
    correct_value: c⁺.
    incorrect_value: c⁻.
    grading_stats: if given, the step that decided each pair is counted
      into it (`RewardSet` passes one; see `verify.grading_metrics`).
    **extra: ignored.

  Returns:
    rewards_B: [B] float32.
  """
  del extra
  verifier = verifier or verify.default_verifier()
  graded = verifier.grade_batch(list(completions), list(answers))
  if grading_stats is not None:
    grading_stats.update(step for _, step in graded)
  correct_B = np.asarray([verdict for verdict, _ in graded], dtype=bool)
  return np.where(correct_B, correct_value, incorrect_value).astype(
      np.float32
  )


def _has_think_block(completion: str, think_opened_in_prompt: bool) -> bool:
  """Exactly one reasoning block, closed, and something after it."""
  n_open = completion.count(_THINK_OPEN)
  n_close = completion.count(_THINK_CLOSE)
  if n_close != 1 or n_open != (0 if think_opened_in_prompt else 1):
    return False
  if not think_opened_in_prompt and not re.match(
      r"\s*<think>", completion
  ):
    return False
  return bool(completion.split(_THINK_CLOSE, 1)[1].strip())


def boxed_format(
    completions: Sequence[str],
    *,
    require_think: bool = False,
    think_opened_in_prompt: bool = False,
    max_completion_chars: int = extract.MAX_COMPLETION_CHARS,
    **extra: Any,
) -> np.ndarray:
  """r_i = 1[o_i has a final \\boxed{}], format reward, arXiv 2501.12948.

  DeepSeek-R1's format reward, and GDPO's format component (arXiv
  2601.05242). With `require_think`, the completion must be
  `<think> ... </think>` followed by the answer, the box after the block;
  with `think_opened_in_prompt` the prompt already ends in
  `<think>`, so the completion must hold only the closing tag.

  Args:
    completions: B decoded completions.
    require_think: also require the think block.
    think_opened_in_prompt: the chat template opened the block.
    max_completion_chars: tail searched for the box.
    **extra: ignored.

  Returns:
    rewards_B: [B] float32 in {0, 1}.
  """
  del extra
  rewards = []
  for completion in completions:
    text = completion
    if require_think:
      if not _has_think_block(completion, think_opened_in_prompt):
        rewards.append(0.0)
        continue
      text = completion.split(_THINK_CLOSE, 1)[1]
    boxed = extract.last_boxed(text[-max_completion_chars:])
    rewards.append(0.0 if boxed is None else 1.0)
  return np.asarray(rewards, dtype=np.float32)


def dapo_overlong_penalty(
    lengths_B: np.typing.ArrayLike,
    *,
    max_length: int,
    buffer_length: int,
    penalty_factor: float = 1.0,
    **extra: Any,
) -> np.ndarray:
  """R_len(L) = clip(−(L − (L_max − L_buf))/L_buf·f, −f, 0), DAPO (2503.14476).

  0 up to L_max − L_buf tokens, then linear down to −f at L_max (and −f
  beyond, the paper's value). The same formula as
  `mathrl.advantages.overlong_penalty`, here on the host as a reward
  component.

  Args:
    lengths_B: [B] completion lengths in tokens (ints).
    max_length: L_max, the maximum completion length.
    buffer_length: L_buf (DAPO's L_cache), 0 < L_buf <= L_max.
    penalty_factor: f.
    **extra: ignored.

  Returns:
    rewards_B: [B] float32 in [−f, 0].
  """
  del extra
  if not 0 < buffer_length <= max_length:
    raise ValueError(
        f"dapo_overlong_penalty: need 0 < buffer_length ({buffer_length}) "
        f"<= max_length ({max_length})."
    )
  lengths_B = np.asarray(lengths_B, dtype=np.float64)
  if lengths_B.ndim != 1:
    raise ValueError(
        f"dapo_overlong_penalty: lengths_B must be 1-D [B], got shape "
        f"{lengths_B.shape}; flatten [P, G] lengths first."
    )
  exceed_B = lengths_B - (max_length - buffer_length)
  penalty_B = -exceed_B / buffer_length * penalty_factor
  return (np.clip(penalty_B, -abs(penalty_factor), 0.0) + 0.0).astype(
      np.float32
  )


def kimi_length_reward(
    lengths_B: np.typing.ArrayLike,
    correctness_B: np.typing.ArrayLike,
    *,
    group_size: int,
    **extra: Any,
) -> np.ndarray:
  """r_i = λ_i if correct else min(0, λ_i), Kimi k1.5 (arXiv 2501.12599).

  λ_i = ½ − (ℓ_i − min_g ℓ)/(max_g ℓ − min_g ℓ) over the G responses ℓ of
  one prompt (Kimi k1.5 §2.3.3, its length reward): shorter correct answers
  are rewarded and long wrong ones penalised. A group whose responses all
  have the same length gets 0.

  Args:
    lengths_B: [B] lengths in tokens, B = P·G, grouped by prompt.
    correctness_B: [B] correctness rewards; > 0 means correct.
    group_size: G.
    **extra: ignored.

  Returns:
    rewards_B: [B] float32 in [−½, ½].
  """
  del extra
  lengths_B = np.asarray(lengths_B, dtype=np.float64)
  correct_B = np.asarray(correctness_B) > 0
  if lengths_B.ndim != 1 or lengths_B.shape != correct_B.shape:
    raise ValueError(
        f"kimi_length_reward: lengths_B {lengths_B.shape} and correctness_B "
        f"{correct_B.shape} must both be [B]."
    )
  if group_size < 1 or lengths_B.shape[0] % group_size:
    raise ValueError(
        f"kimi_length_reward: B = {lengths_B.shape[0]} is not a multiple of "
        f"group_size = {group_size}."
    )
  lengths_PG = lengths_B.reshape(-1, group_size)
  min_P1 = lengths_PG.min(axis=1, keepdims=True)
  span_P1 = lengths_PG.max(axis=1, keepdims=True) - min_P1
  lam_PG = np.where(
      span_P1 > 0, 0.5 - (lengths_PG - min_P1) / np.maximum(span_P1, 1), 0.0
  )
  lam_B = lam_PG.reshape(-1)
  return np.where(correct_B, lam_B, np.minimum(lam_B, 0.0)).astype(np.float32)
