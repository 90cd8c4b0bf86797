"""Shared types and the dimension key used for array names everywhere.

Dimension key (array names carry these as suffixes, e.g. `rewards_PG`,
`logits_BSV`; einsum strings use the same letters):

  P  prompts in a batch
  G  generations (samples) per prompt
  B  sequences, B = P * G
  R  rows of the sampler's current batch bucket (R ≤ B, see sampling.py)
  L  prompt length (left-padded bucket)
  T  completion (generated) length
  S  full sequence length, or KV-cache length
  M  KV-cache slots (maximum cache length)
  D  model (embedding) dimension
  F  MLP hidden dimension
  N  query heads
  K  key/value heads; in reward arrays, the number of reward components
  H  head dimension
  V  vocabulary
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
from flax import struct

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
PyTree = Any


@dataclasses.dataclass(frozen=True)
class Needs:
  """What a method needs from the train step, and what it changes there.

  Advantage transforms carry one as `tx.needs`, policy losses as
  `loss.needs`. The train step and the builders read these declarations
  instead of checking a method's name.
  """

  entropy: str = ""
  """"" (none), "behaviour" (the sampling policy's per-token entropy, before
  any update) or "current" (the policy being optimised, per micro-batch).
  Advantage transforms get it as `entropy` [P, G] (mean over a response's
  tokens), losses as `entropy` [B, T]."""
  nucleus_top_p: Optional[float] = None
  """The current policy's nucleus (top-p) entropy at this p, [B, T] with
  gradient (`logprobs.top_p_entropy`), for a regulariser (SIREN)."""
  multi_reward: bool = False
  """Reads multi-reward rewards [P, G, K] (others need K summed first)."""
  extras: tuple[str, ...] = ()
  """Per-sample rollout extras [P, G, ...] it cannot run without (e.g.
  `correctness`, `step_verdicts`, `ref_rewards`)."""
  loss_sample_mask: Optional[Callable[..., Array]] = None
  """`(rewards, mask_PG, *, advantages, progress) -> [P, G]` 0/1 samples
  that enter the loss and every loss normaliser, applied after the
  advantages saw all valid samples (DGPO's valid groups, MC-GRPO's pivot,
  CAPO's phase-1 positives); `advantages` are [P, G] (summed over T)."""
  regulariser: Any = None
  """A stateful loss regulariser (`init`, `begin`, `extras`, `penalty`,
  `surrogate`; e.g. SIREN's entropy anchor); its state lives in
  `TrainState.method_state`."""
  shaping: str = ""
  """Not an estimator on its own: "rewards" (reward shaping, runs in front of
  an advantage estimator, e.g. DAPO's overlong penalty) or "advantages" (a
  gate after one, e.g. CAPO's keep-positive phase); "" for estimators."""

  def merge(self, other: "Needs") -> "Needs":
    """The union of two declarations (a chain needs what its members need)."""
    entropy = self.entropy or other.entropy
    if self.entropy and other.entropy and self.entropy != other.entropy:
      raise ValueError(
          f"a chain needs both the {self.entropy} and the {other.entropy}"
          " policy's entropy; use one")
    masks = [m for m in (self.loss_sample_mask, other.loss_sample_mask) if m]
    if len(masks) == 2:
      first, second = masks
      mask = lambda rewards, valid, **extra: (
          first(rewards, valid, **extra) * second(rewards, valid, **extra))
    else:
      mask = masks[0] if masks else None
    tops = {p for p in (self.nucleus_top_p, other.nucleus_top_p) if p}
    if len(tops) > 1:
      raise ValueError(f"a chain needs nucleus entropies at two p: {tops}")
    if self.regulariser is not None and other.regulariser is not None:
      raise ValueError("two stateful regularisers cannot be combined")
    return Needs(
        entropy=entropy,
        nucleus_top_p=tops.pop() if tops else None,
        multi_reward=self.multi_reward or other.multi_reward,
        extras=tuple(dict.fromkeys(self.extras + other.extras)),
        loss_sample_mask=mask,
        regulariser=(self.regulariser if self.regulariser is not None
                     else other.regulariser),
        shaping=self.shaping if self.shaping == other.shaping else "",
    )


@struct.dataclass
class TrainState:
  """Everything an RL (or SFT) run checkpoints about the policy."""

  step: Array
  """int32 scalar: completed train steps."""
  params: Any
  """The policy's parameters (`nnx.split(model)[1]`)."""
  opt_state: Any
  """optax state."""
  adv_state: Any
  """State of the advantage transform (ha_dw's anchor, aapo's momentum...)."""
  rng: Array
  """uint32 key data; each step folds in its step number."""
  num_skipped: Array
  """int32 scalar: updates skipped so far because of non-finite values."""
  consecutive_skipped: Array
  """int32 scalar: non-finite updates in a row (0 after a good update)."""
  method_state: Any = ()
  """State of the policy loss's regulariser (`Needs.regulariser`), e.g.
  SIREN's anchor `{"entropy_anchor": H0}`; () when there is none."""


@struct.dataclass
class Rollout:
  """One RL batch: B = P·G sequences, row p·G + g is sample g of prompt p."""

  prompt_tokens_BL: Array
  """Left-padded prompt ids."""
  prompt_mask_BL: Array
  """1 on real prompt tokens."""
  completion_tokens_BT: Array
  """Right-padded sampled ids."""
  completion_mask_BT: Array
  """1 up to and including the stop token."""
  rewards_PG: Array
  """Rewards [P, G] or multi-reward [P, G, K]."""
  valid_PG: Array
  """1 for samples that take part (0 = padding group/sample)."""
  progress: Array
  """float32 scalar in [0, 1]: fraction of the run done (CAPO's schedule)."""
  extras: dict[str, Array] = dataclasses.field(default_factory=dict)
  """Per-sample inputs [P, G, ...] given by name to the advantage transform
  (as [P, G, ...]) and to the policy loss (as [B, ...]): e.g. `correctness`
  (DRPO), `step_verdicts` [P, G, T] (FSPO), `ref_rewards` (AAPO)."""


ROLLOUT_EXTRAS = ("correctness", "step_verdicts", "ref_rewards")
"""The per-sample extras `rollout.collect` provides (see `Needs.extras`):
`correctness` always; `step_verdicts` (arithmetic step checks) and
`ref_rewards` (the reference policy's paired rollouts) when a method
declares them."""

TOKEN_EXTRAS = ("step_verdicts",)
"""The rollout extras with a trailing completion axis T ([P, G, T]): cut
with the completions when the update's width is trimmed (`mathrl.trim`)."""
