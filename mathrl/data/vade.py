"""VADE: variance-aware dynamic sampling by online prompt-difficulty estimates.

  batches = vade.VadeSelector(candidates, prompts_per_batch=P, seed=0)
  batch = next(batches)                 # P of the k·P candidate prompts
  ...                                   # sample G answers, score them
  batches.observe(batch.ids_P, correct_PG)

A GRPO group teaches nothing when its answers are all right or all wrong;
its reward variance p(1 − p) is largest at success rate p = 1/2. VADE keeps
a Beta posterior of each prompt's success rate, updated from every scored
group, and picks each batch from a larger candidate batch by Thompson
sampling: draw p̂ ~ Beta(α, β) per candidate and keep the P candidates with
the largest p̂(1 − p̂). A prompt never seen has the prior Beta(α₀, β₀), so
unseen prompts are explored; as the policy improves, old evidence decays
towards the prior (forgetting factor λ), because the success rate drifts.

Posterior update for a prompt scored with s successes out of n samples:
  α ← λ·α + (1 − λ)·α₀ + s,   β ← λ·β + (1 − λ)·β₀ + (n − s).
Example (α₀ = β₀ = 1, λ = 0.9): 3 of 4 correct → Beta(4, 2); then 0 of 4
→ α = 0.9·4 + 0.1 + 0 = 3.7, β = 0.9·2 + 0.1 + 4 = 5.9.

This is the Beta-Bernoulli bandit with posterior sampling of online prompt
selection (Qu et al. 2025, MoPPS, arXiv:2507.04632), scored by the
Bernoulli reward variance that makes a group informative.
"""

import dataclasses
from typing import Any, Iterator

import numpy as np

from mathrl.data import pipeline


def update_posterior(alpha: np.ndarray, beta: np.ndarray,
                     successes: np.ndarray, trials: np.ndarray, *,
                     decay: float, prior: tuple[float, float]
                     ) -> tuple[np.ndarray, np.ndarray]:
  """α ← λα + (1−λ)α₀ + s, β ← λβ + (1−λ)β₀ + (n − s), elementwise."""
  a0, b0 = prior
  new_alpha = decay * alpha + (1.0 - decay) * a0 + successes
  new_beta = decay * beta + (1.0 - decay) * b0 + (trials - successes)
  return new_alpha, new_beta


def thompson_select(alpha: np.ndarray, beta: np.ndarray, num: int,
                    rng: np.random.Generator) -> np.ndarray:
  """Indices of the `num` candidates with the largest p̂(1 − p̂), p̂ ~ Beta.

  Ties keep the candidates' order (stable sort).
  """
  p = rng.beta(alpha, beta)
  score = p * (1.0 - p)
  return np.sort(np.argsort(-score, kind="stable")[:num])


def take_prompts(batch: pipeline.PromptBatch,
                 keep_P: np.ndarray) -> pipeline.PromptBatch:
  """The sub-batch of prompts `keep_P` (with their G rows each)."""
  g = batch.group_size
  rows = (keep_P[:, None] * g + np.arange(g)).reshape(-1)
  pick = lambda xs: tuple(xs[i] for i in keep_P)
  return dataclasses.replace(
      batch, tokens_BL=batch.tokens_BL[rows], mask_BL=batch.mask_BL[rows],
      prompts_P=pick(batch.prompts_P), answers_P=pick(batch.answers_P),
      ids_P=pick(batch.ids_P), records_P=pick(batch.records_P))


class VadeSelector:
  """P prompts per batch, chosen by VADE from a stream of candidate batches.

  Args:
    candidates: an iterator of candidate `PromptBatch`es (k·P prompts each,
      e.g. a `pipeline.PromptIterator`), with `get_state` / `set_state`.
    prompts_per_batch: P.
    seed: the Thompson sampling stream's seed.
    decay: λ, the weight of old evidence per update (1 = no forgetting).
    prior: (α₀, β₀).
  """

  def __init__(self, candidates: Iterator[pipeline.PromptBatch], *,
               prompts_per_batch: int, seed: int, decay: float = 0.9,
               prior: tuple[float, float] = (1.0, 1.0)):
    if not 0.0 <= decay <= 1.0:
      raise ValueError(f"vade: decay must be in [0, 1], got {decay}")
    if min(prior) <= 0:
      raise ValueError(f"vade: prior (α₀, β₀) must be > 0, got {prior}")
    self._candidates = candidates
    self._num = prompts_per_batch
    self._seed = seed
    self._draws = 0
    self.decay = decay
    self.prior = tuple(float(x) for x in prior)
    self.posterior: dict[str, tuple[float, float]] = {}
    """record id → (α, β), for every prompt scored so far."""

  def __iter__(self) -> "VadeSelector":
    return self

  def params(self, ids) -> tuple[np.ndarray, np.ndarray]:
    """(α, β) of each id (the prior for ids never scored)."""
    ab = np.array([self.posterior.get(i, self.prior) for i in ids], float)
    return ab[:, 0], ab[:, 1]

  def __next__(self) -> pipeline.PromptBatch:
    batch = next(self._candidates)
    if len(batch.ids_P) < self._num:
      raise ValueError(
          f"vade: a candidate batch holds {len(batch.ids_P)} prompts, fewer"
          f" than the {self._num} to select")
    rng = np.random.default_rng([self._seed, self._draws])
    self._draws += 1
    alpha, beta = self.params(batch.ids_P)
    return take_prompts(batch, thompson_select(alpha, beta, self._num, rng))

  def observe(self, ids_P, correct_PG: np.ndarray) -> None:
    """Updates the posterior of each prompt from its scored samples."""
    correct_PG = np.asarray(correct_PG, float)
    alpha, beta = self.params(ids_P)
    alpha, beta = update_posterior(
        alpha, beta, correct_PG.sum(-1),
        np.full(len(ids_P), correct_PG.shape[-1], float),
        decay=self.decay, prior=self.prior)
    for i, a, b in zip(ids_P, alpha, beta):
      self.posterior[i] = (float(a), float(b))

  def get_state(self) -> dict[str, Any]:
    return {"candidates": self._candidates.get_state(),
            "draws": self._draws,
            "posterior": {k: list(v) for k, v in self.posterior.items()}}

  def set_state(self, state: dict[str, Any]) -> None:
    self._candidates.set_state(state["candidates"])
    self._draws = int(state["draws"])
    self.posterior = {k: tuple(v) for k, v in state["posterior"].items()}
