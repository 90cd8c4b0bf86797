"""Named multi-reward vectors `[B, K]`, for GDPO-style multi-reward RL.

A `RewardSet` scores a batch with K named components into one float32
matrix `rewards_BK` whose column k is component k (GDPO normalises each
column separately, arXiv 2601.05242); `total` gives the weighted sum for
single-reward algorithms. Components run in order, and each later one
receives the earlier results as `<name>_B` keyword arguments (a length
reward can read `correctness_B`).

Example:
  rewards = RewardSet([
      ("correctness", functions.correctness, 1.0),
      ("format", functions.boxed_format, 0.5),
      ("overlong", functools.partial(functions.dapo_overlong_penalty,
                                     max_length=1024, buffer_length=256),
       1.0),
  ])
  rewards_BK = rewards(completions, answers, lengths_B=lengths_B)
  rewards_B = rewards.total(rewards_BK)
  logged = {**rewards.metrics(rewards_BK), **rewards.grading_metrics()}
"""

import collections
import functools
import inspect
import re
from typing import Any, Callable, Sequence

import numpy as np

from mathrl.rewards import verify

RewardFn = Callable[..., np.ndarray]
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class RewardSet:
  """K named reward components, scored together into `[B, K]`.

  Args:
    components: (name, fn, weight) triples. `fn` is called with keywords
      `completions`, `answers`, `lengths_B`, `group_size`, the earlier
      components' `<name>_B`, and `grading_stats` (a Counter of deciding
      steps) if it takes that keyword or `**extra`; it returns a `[B]`
      vector (see `mathrl.rewards.functions`).
  """

  def __init__(self, components: Sequence[tuple[str, RewardFn, float]]):
    if not components:
      raise ValueError("RewardSet: give at least one (name, fn, weight).")
    names = [c[0] for c in components]
    for name in names:
      if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"RewardSet: component name {name!r} must be an identifier "
            "(it becomes the keyword `<name>_B` for later components)."
        )
    if len(set(names)) != len(names):
      raise ValueError(f"RewardSet: duplicate component names in {names}.")
    self.names: tuple[str, ...] = tuple(names)
    self._fns = tuple(c[1] for c in components)
    self.weights_K = np.asarray([c[2] for c in components], np.float32)
    # Deciding steps of the correctness checks since `grading_metrics()`.
    self._grading = collections.Counter()

  def __len__(self) -> int:
    return len(self.names)

  def __call__(
      self,
      completions: Sequence[str],
      answers: Sequence[str],
      *,
      lengths_B: Any = None,
      group_size: int = 1,
  ) -> np.ndarray:
    """Scores a batch.

    Args:
      completions: B decoded completions (grouped by prompt when
        group-wise components are used).
      answers: B gold answers.
      lengths_B: [B] completion lengths in tokens, for length components.
      group_size: G, for group-wise components.

    Returns:
      rewards_BK: [B, K] float32, column k = component `names[k]`.
    """
    batch = len(completions)
    if len(answers) != batch:
      raise ValueError(
          f"RewardSet: {batch} completions but {len(answers)} answers."
      )
    if lengths_B is not None:
      lengths_B = np.asarray(lengths_B)
      if lengths_B.shape != (batch,):
        raise ValueError(
            f"RewardSet: lengths_B has shape {lengths_B.shape}, expected "
            f"({batch},): one token count per completion."
        )
    scored: dict[str, np.ndarray] = {}
    for name, fn in zip(self.names, self._fns):
      if "lengths_B" in _required_kwargs(fn) and lengths_B is None:
        raise ValueError(
            f"RewardSet: component {name!r} needs lengths_B (token counts)."
        )
      extra = {}
      if _accepts(fn, "grading_stats"):
        extra["grading_stats"] = self._grading
      values_B = np.asarray(
          fn(
              completions=completions,
              answers=answers,
              lengths_B=lengths_B,
              group_size=group_size,
              **extra,
              **scored,
          ),
          dtype=np.float32,
      )
      if values_B.shape != (batch,):
        raise ValueError(
            f"RewardSet: component {name!r} returned shape "
            f"{values_B.shape}, expected ({batch},)."
        )
      scored[f"{name}_B"] = values_B
    return np.stack([scored[f"{n}_B"] for n in self.names], axis=1)

  def total(self, rewards_BK: np.ndarray) -> np.ndarray:
    """r_i = Σ_k w_k r_ik, the weighted sum (GRPO on summed rewards).

    Args:
      rewards_BK: [B, K] from `__call__`.

    Returns:
      rewards_B: [B] float32.
    """
    rewards_BK = np.asarray(rewards_BK, np.float32)
    if rewards_BK.ndim != 2 or rewards_BK.shape[1] != len(self):
      raise ValueError(
          f"RewardSet.total: rewards_BK has shape {rewards_BK.shape}, "
          f"expected [B, {len(self)}]."
      )
    return rewards_BK @ self.weights_K

  def grading_metrics(self) -> dict[str, float]:
    """Grading counts since the last call, then resets them.

    Keys `reward/gold_unextractable`, `reward/timeouts`,
    `reward/grader_errors`, `reward/no_answer`, `reward/refused`: how many
    scored pairs (over every call since the last `grading_metrics`, e.g.
    all dynamic-sampling rounds of a step) had a gold whose answer could
    not be read, hit the worker deadline, ... (`verify.grading_metrics`).
    Counted by components that take `grading_stats` (`correctness`).
    """
    counts = verify.grading_metrics(self._grading)
    self._grading.clear()
    return counts

  def metrics(self, rewards_BK: np.ndarray) -> dict[str, float]:
    """Mean of each component, keyed `reward/<name>`, for logging."""
    rewards_BK = np.asarray(rewards_BK, np.float32)
    return {
        f"reward/{name}": float(rewards_BK[:, k].mean())
        for k, name in enumerate(self.names)
    }


def _accepts(fn: RewardFn, name: str) -> bool:
  """True if `fn` (through partials) takes keyword `name` or `**kwargs`."""
  while isinstance(fn, functools.partial):
    fn = fn.func
  try:
    params = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return False
  return any(
      p.name == name or p.kind == inspect.Parameter.VAR_KEYWORD
      for p in params
  )


def _required_kwargs(fn: RewardFn) -> set[str]:
  """Names of parameters of `fn` (through partials) that have no default."""
  bound = set()
  while isinstance(fn, functools.partial):
    bound |= set(fn.keywords)
    fn = fn.func
  try:
    params = inspect.signature(fn).parameters.values()
  except (TypeError, ValueError):
    return set()
  return {
      p.name
      for p in params
      if p.default is inspect.Parameter.empty
      and p.kind
      not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
      and p.name not in bound
  }
