"""The update pays only for completion positions some row of the batch uses.

  buckets = trim.default_buckets(max_new_tokens=256, base=32)
  # (32, 64, 128, 256)
  rollout, width = trim.to_bucket(rollout, buckets)

The sampler returns completions padded to `max_new_tokens` columns; every
position after the batch's longest completion is masked out of every loss,
advantage and metric, yet the update's forward and backward passes would
still run over it. `to_bucket` cuts the completion axis T of a host rollout
to the smallest bucket width that holds the batch's longest completion,
before the rollout is placed on the mesh (TRL and verl pad to the batch's
longest completion likewise). Widths come from a short fixed tuple, so the
jitted train step compiles once per bucket, not once per length.

Every [.., T] array is cut the same way: the completion tokens and mask and
the per-token extras (`types.TOKEN_EXTRAS`, e.g. FSPO's `step_verdicts`).
The columns removed are padding of every row, so the step's values do not
change as long as no method reads the padded width from a shape; the
builders give those methods `sampling.max_new_tokens` explicitly
(`seq_mean_token_sum_norm`'s constant C, DRPO's T_max).
"""

from typing import Sequence

import numpy as np

from mathrl import distributed
from mathrl import types


def default_buckets(max_new_tokens: int, base: int) -> tuple[int, ...]:
  """(b, 2b, 4b, ..., T_max): widths b·2^k below T_max, then T_max itself.

  Powers of two waste at most half the positions of a cut batch and give
  ⌈log2(T_max / b)⌉ + 1 widths (compiles). Example: T_max = 256, b = 32 →
  (32, 64, 128, 256); T_max = 48, b = 16 → (16, 32, 48).

  Args:
    max_new_tokens: T_max, the sampler's width (always the last bucket).
    base: the smallest width b (e.g. `model.logits_chunk_size`, so every
      bucket is a whole number of log-prob chunks).
  """
  if max_new_tokens < 1 or base < 1:
    raise ValueError(
        f"default_buckets: max_new_tokens ({max_new_tokens}) and base"
        f" ({base}) must be >= 1")
  widths, width = [], base
  while width < max_new_tokens:
    widths.append(width)
    width *= 2
  return tuple(widths) + (max_new_tokens,)


def check_buckets(buckets: Sequence[int], max_new_tokens: int) -> None:
  """Fails unless `buckets` rise strictly and end at `max_new_tokens`."""
  widths = tuple(int(b) for b in buckets)
  if not widths:
    return
  if widths[0] < 1 or any(a >= b for a, b in zip(widths, widths[1:])):
    raise ValueError(
        f"rl.completion_buckets={widths} must be positive widths in rising"
        " order")
  if widths[-1] != max_new_tokens:
    raise ValueError(
        f"rl.completion_buckets={widths} must end at"
        f" sampling.max_new_tokens={max_new_tokens} (the width a batch of"
        " full-length completions needs)")


def bucket_width(mask_BT: np.ndarray, buckets: Sequence[int]) -> int:
  """w = min{b ∈ buckets : b ≥ max_i ℓ_i}, ℓ_i the last position in use.

  ℓ_i is one past the last nonzero entry of row i (0 for an empty row), so
  a mask with holes is never cut inside a row. The widest longest
  completion over the processes is used (`distributed.max_over_processes`),
  so every process cuts to the same width. Example: rows of lengths
  [3, 17, 9] with buckets (16, 32, 48) → 32.

  Args:
    mask_BT: [B, T] completion mask (host array).
    buckets: rising widths, the last being T.

  Returns:
    The width w (T itself when no smaller bucket holds every row).
  """
  mask_BT = np.asarray(mask_BT)
  width = mask_BT.shape[-1]
  used_T = np.any(mask_BT != 0, axis=0)
  longest = int(used_T.nonzero()[0].max()) + 1 if used_T.any() else 0
  longest = distributed.max_over_processes(longest)
  fits = [int(b) for b in buckets if longest <= int(b) <= width]
  return min(fits) if fits else width


def cut(rollout: types.Rollout, width: int) -> types.Rollout:
  """`rollout` with its completion axis T cut to the first `width` columns.

  Cuts the completion tokens and mask and the per-token extras
  (`types.TOKEN_EXTRAS`, [P, G, T]); fails if a cut column holds a
  completion token (the cut would change the batch).
  """
  mask_BT = rollout.completion_mask_BT
  if width >= mask_BT.shape[-1]:
    return rollout
  if np.any(np.asarray(mask_BT)[:, width:] != 0):
    raise ValueError(
        f"cutting the completions to {width} columns would drop completion"
        " tokens; cut to a width at least the longest completion"
        " (`bucket_width`)")
  extras = dict(rollout.extras)
  for name in types.TOKEN_EXTRAS:
    if name in extras:
      value = extras[name]
      if value.shape[2] != mask_BT.shape[-1]:
        raise ValueError(
            f"rollout extra `{name}` has shape {value.shape}; expected"
            f" [P, G, T] with T = {mask_BT.shape[-1]}")
      extras[name] = value[:, :, :width]
  return rollout.replace(
      completion_tokens_BT=rollout.completion_tokens_BT[:, :width],
      completion_mask_BT=mask_BT[:, :width], extras=extras)


def to_bucket(rollout: types.Rollout,
              buckets: Sequence[int]) -> tuple[types.Rollout, int]:
  """(rollout cut to `bucket_width`, that width); unchanged when `buckets`
  is empty (trimming off)."""
  width = rollout.completion_mask_BT.shape[-1]
  if not buckets:
    return rollout, width
  width = bucket_width(rollout.completion_mask_BT, buckets)
  return cut(rollout, width), width
