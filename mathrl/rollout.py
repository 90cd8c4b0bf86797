"""Host side of an RL step: sample, decode, score, filter, assemble a Rollout.

  rollout, info = rollout.collect(model, batches, sampler=..., scorer=...)

`collect` draws prompt batches, samples G completions per prompt on device,
decodes them, scores them with the reward set (host code: string parsing and
sympy in worker processes), optionally applies DAPO's dynamic sampling
(drop groups whose rewards are all equal, refill from further batches), and
returns a fixed-shape `types.Rollout` plus per-sample text for logging.
"""

import dataclasses
import time
from typing import Any, Callable, Iterator, Optional

import jax
import numpy as np

from mathrl import distributed
from mathrl import rewards as rewards_lib
from mathrl.rewards import steps
from mathrl import sampling
from mathrl import types
from mathrl.data import pipeline
from mathrl.data import prompts


@dataclasses.dataclass(frozen=True)
class Sampler:
  """How completions are drawn (static for the whole run)."""

  method: Any
  max_new_tokens: int
  eos_ids: tuple[int, ...]
  compact: bool = True
  """`sampling.generate`'s `compact`: finished rows leave the batch."""
  cache_steps: int | None = sampling.CACHE_STEPS
  """`sampling.generate`'s `cache_steps`: the KV cache grows from this."""


@dataclasses.dataclass
class Scored:
  """One generated batch, on the host."""

  prompt_tokens_BL: np.ndarray
  prompt_mask_BL: np.ndarray
  completion_tokens_BT: np.ndarray
  completion_mask_BT: np.ndarray
  rewards_BK: np.ndarray
  rewards_B: np.ndarray
  correct_B: np.ndarray
  texts_B: list[str]
  answers_B: tuple[str, ...]
  extras_B: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  """Per-sample extras the methods declare (`step_verdicts` [B, T],
  `ref_rewards` [B]); `correctness` is `correct_B`."""


def sample_and_score(
    model, batch: pipeline.PromptBatch, *, rng: jax.Array, sampler: Sampler,
    tokenizer, reward_set: rewards_lib.RewardSet,
    mesh: Optional[jax.sharding.Mesh] = None,
) -> tuple[Scored, dict[str, float]]:
  """Samples the batch's rows (already repeated ×G) and scores them.

  `batch` is this process's shard of the global batch (the whole batch
  with one process). The processes' prompts are gathered (left-padded to
  the widest) and sampled as one global batch on `mesh` under the sampling
  rules (`sampling.generate`); each process decodes and scores its own
  rows on its host, and the rewards are gathered, so every process returns
  the same global `Scored` (rows in process order).
  """
  t0 = time.perf_counter()
  g = batch.group_size
  width = distributed.max_over_processes(batch.tokens_BL.shape[1])
  # The P distinct prompts (each process holds whole groups), sampled G
  # times each: one prefill per prompt.
  prompt = distributed.allgather_rows({
      "tokens": _left_pad_to(np.asarray(batch.tokens_PL), width,
                             prompts.pad_id_of(tokenizer)),
      "mask": _left_pad_to(np.asarray(batch.mask_PL), width, 0)})
  if mesh is None and jax.process_count() > 1:
    raise ValueError("sampling with several processes needs the run's mesh")
  out = sampling.generate(
      model, prompt["tokens"], prompt["mask"], num_samples=g,
      rng=rng, max_new_tokens=sampler.max_new_tokens,
      eos_ids=sampler.eos_ids, method=sampler.method, mesh=mesh,
      compact=sampler.compact, cache_steps=sampler.cache_steps,
  )
  prompt = {k: np.repeat(v, g, axis=0) for k, v in prompt.items()}
  tokens_BT = distributed.to_host(out.tokens_BT)
  mask_BT = distributed.to_host(out.mask_BT)
  t1 = time.perf_counter()
  mine = distributed.host_rows(len(tokens_BT))  # this process's rows
  texts = prompts.decode_completions(tokenizer, tokens_BT[mine],
                                     mask_BT[mine])
  lengths_B = mask_BT.sum(-1).astype(np.int32)
  rewards_BK = reward_set(
      texts, batch.answers_B, lengths_B=lengths_B[mine],
      group_size=batch.group_size,
  )
  t2 = time.perf_counter()
  rewards_BK = distributed.allgather_rows(rewards_BK)
  texts = [t for part in distributed.allgather_objects(texts) for t in part]
  answers = [a for part in distributed.allgather_objects(
      list(batch.answers_B)) for a in part]
  k = reward_set.names.index("correctness")
  scored = Scored(
      prompt_tokens_BL=prompt["tokens"], prompt_mask_BL=prompt["mask"],
      completion_tokens_BT=tokens_BT, completion_mask_BT=mask_BT,
      rewards_BK=rewards_BK, rewards_B=reward_set.total(rewards_BK),
      correct_B=rewards_BK[:, k] > 0, texts_B=texts,
      answers_B=tuple(answers),
  )
  return scored, {
      "generate_seconds": t1 - t0,
      "reward_seconds": t2 - t1,
      "generated_tokens": float(lengths_B.sum()),
  }


def _left_pad_to(x_BL: np.ndarray, length: int, value: int) -> np.ndarray:
  pad = length - x_BL.shape[1]
  return np.pad(x_BL, ((0, 0), (pad, 0)), constant_values=value)


def _concat(parts: list[Scored]) -> Scored:
  length = max(p.prompt_tokens_BL.shape[1] for p in parts)
  cat = lambda xs: np.concatenate(xs, axis=0)
  return Scored(
      prompt_tokens_BL=cat([_left_pad_to(p.prompt_tokens_BL, length, 0)
                            for p in parts]),
      prompt_mask_BL=cat([_left_pad_to(p.prompt_mask_BL, length, 0)
                          for p in parts]),
      completion_tokens_BT=cat([p.completion_tokens_BT for p in parts]),
      completion_mask_BT=cat([p.completion_mask_BT for p in parts]),
      rewards_BK=cat([p.rewards_BK for p in parts]),
      rewards_B=cat([p.rewards_B for p in parts]),
      correct_B=cat([p.correct_B for p in parts]),
      texts_B=[t for p in parts for t in p.texts_B],
      answers_B=tuple(a for p in parts for a in p.answers_B),
      extras_B={k: cat([p.extras_B[k] for p in parts])
                for k in parts[0].extras_B},
  )


def _take_groups(s: Scored, groups: np.ndarray, group_size: int) -> Scored:
  rows = (groups[:, None] * group_size + np.arange(group_size)).reshape(-1)
  return Scored(
      prompt_tokens_BL=s.prompt_tokens_BL[rows],
      prompt_mask_BL=s.prompt_mask_BL[rows],
      completion_tokens_BT=s.completion_tokens_BT[rows],
      completion_mask_BT=s.completion_mask_BT[rows],
      rewards_BK=s.rewards_BK[rows], rewards_B=s.rewards_B[rows],
      correct_B=s.correct_B[rows], texts_B=[s.texts_B[r] for r in rows],
      answers_B=tuple(s.answers_B[r] for r in rows),
      extras_B={k: v[rows] for k, v in s.extras_B.items()},
  )


def informative_groups(rewards_B: np.ndarray, group_size: int,
                       correct_B: Optional[np.ndarray] = None) -> np.ndarray:
  """keep_p = std_g(r_pg) > 0: DAPO's dynamic-sampling filter.

  Yu et al. 2025 (arXiv:2503.14476) §3.2: groups whose rewards are all
  equal (all right or all wrong) give GRPO no gradient and are dropped.
  Groups of size 1 are kept. Example: rewards [[1, 0], [1, 1], [0, 0]] →
  [True, False, False].
  """
  del correct_B
  r_PG = rewards_B.reshape(-1, group_size)
  if group_size == 1:
    return np.ones(r_PG.shape[0], bool)
  return r_PG.std(axis=1) > 0


def not_all_correct_groups(rewards_B: np.ndarray, group_size: int,
                           correct_B: np.ndarray) -> np.ndarray:
  """keep_p = ¬∀g correct_pg: NGRPO's filter (arXiv:2509.18851).

  NGRPO's virtual maximum-reward sample gives all-wrong groups a negative
  advantage, so only all-correct groups carry no signal and are dropped.
  Example: correctness [[1, 0], [1, 1], [0, 0]] → [True, False, True].
  """
  del rewards_B
  return ~correct_B.reshape(-1, group_size).all(axis=1)


def _assemble(full: Scored, kept: int, num_prompts: int, group_size: int,
              multi_reward: bool, progress: float) -> tuple[types.Rollout,
                                                           Scored]:
  """The first P groups of `full` as a Rollout; the first `kept` are valid."""
  valid_P = np.arange(num_prompts) < kept
  full = _take_groups(full, np.arange(num_prompts), group_size)
  valid_PG = np.repeat(valid_P[:, None], group_size, axis=1)
  # The train step may run each group's prompt once (rl.share_prompts).
  prompts_PGL = full.prompt_tokens_BL.reshape(num_prompts, group_size, -1)
  if not (prompts_PGL == prompts_PGL[:, :1]).all():
    raise AssertionError("rows of a group hold different prompts")
  rewards = full.rewards_BK if multi_reward else full.rewards_B
  rewards_PG = rewards.reshape((num_prompts, group_size) + rewards.shape[1:])
  rollout = types.Rollout(
      prompt_tokens_BL=full.prompt_tokens_BL,
      prompt_mask_BL=full.prompt_mask_BL,
      completion_tokens_BT=full.completion_tokens_BT,
      completion_mask_BT=full.completion_mask_BT,
      rewards_PG=rewards_PG.astype(np.float32),
      valid_PG=valid_PG.astype(np.float32),
      progress=np.float32(progress),
      extras={k: v.reshape((num_prompts, group_size) + v.shape[1:]).astype(
          np.float32) for k, v in dict(full.extras_B,
                                      correctness=full.correct_B).items()},
  )
  return rollout, full


def add_extras(scored: Scored, batch: pipeline.PromptBatch, *,
               names: tuple[str, ...], tokenizer, reference_model=None,
               **sample_kw) -> Scored:
  """`scored` with the per-sample extras `names` that methods declare.

  `step_verdicts` [B, T]: arithmetic step verdicts of the completions
  (`rewards.steps.step_verdicts`, FSPO). `ref_rewards` [B]: rewards of G
  completions of the same prompts sampled from `reference_model` (the
  frozen initial policy), paired by row (AAPO).

  Args:
    scored: the policy's scored batch.
    batch: the prompts it was sampled from.
    names: extras to add (others are provided elsewhere or not at all).
    tokenizer: the run's tokenizer.
    reference_model: the reference policy, for `ref_rewards`.
    **sample_kw: `sample_and_score`'s arguments (rng, sampler, reward_set,
      mesh) for the reference's samples.
  """
  extras = {}
  if "step_verdicts" in names:
    extras["step_verdicts"] = steps.step_verdicts(
        tokenizer, scored.completion_tokens_BT, scored.completion_mask_BT)
  if "ref_rewards" in names:
    if reference_model is None:
      raise ValueError("ref_rewards needs the reference model's rollouts:"
                       " pass reference_model=")
    ref, _ = sample_and_score(reference_model, batch, tokenizer=tokenizer,
                              **sample_kw)
    extras["ref_rewards"] = ref.rewards_B
  return dataclasses.replace(scored, extras_B=extras)


def _sample_round(model, batch, *, rng, extras, reference_model, **kw):
  """One generation round: samples, scores and the declared extras."""
  scored, timing = sample_and_score(model, batch, rng=rng, **kw)
  if extras:
    scored = add_extras(scored, batch, names=extras,
                        reference_model=reference_model,
                        rng=jax.random.fold_in(rng, 1), **kw)
  return scored, timing


def collect(
    model, batches: Iterator[pipeline.PromptBatch], *,
    rng: jax.Array, sampler: Sampler, tokenizer,
    reward_set: rewards_lib.RewardSet, dynamic_sampling: bool,
    max_rounds: int, multi_reward: bool, progress: float,
    group_filter: Callable[..., np.ndarray] = informative_groups,
    prompt_feedback: Optional[Callable[..., None]] = None,
    mesh: Optional[jax.sharding.Mesh] = None,
    extras: tuple[str, ...] = (),
    reference_model=None,
) -> tuple[types.Rollout, Scored, dict[str, float]]:
  """One RL batch of P groups × G samples, as a device-ready Rollout.

  With dynamic sampling, rounds of P prompts are generated until P groups
  pass `group_filter` (`informative_groups` or `not_all_correct_groups`)
  or `max_rounds` rounds ran; missing groups are filled with uninformative
  ones marked invalid (valid_PG = 0), so the shapes never change.

  `prompt_feedback(ids_P, correct_PG)`, when given, sees every scored
  round (VADE's posterior update).

  `mesh`: sample on it under `sharding.SAMPLE_RULES`; give `model` weights
  already in the sampling shardings to reshard once for all rounds.

  `extras`: the per-sample extras the methods declare beyond
  `correctness` (`add_extras`: `step_verdicts`, and `ref_rewards` from
  `reference_model`'s samples of the same prompts).

  Several processes: each draws its own shard of the prompts from
  `batches` and scores its own rows; the scored rounds are gathered
  (`sample_and_score`), so every process sees the same global rewards,
  runs the same number of rounds, keeps the same groups and returns the
  same global Rollout (P = prompts over all processes).

  Returns:
    (rollout, scored host batch, metrics).
  """
  parts, kept_parts, info = [], [], {}
  num_prompts = group_size = None
  kept = generated = 0
  rounds = correct = samples = 0
  while True:
    batch = next(batches)  # this process's prompts
    group_size = batch.group_size
    scored, timing = _sample_round(
        model, batch, rng=jax.random.fold_in(rng, rounds), extras=extras,
        reference_model=reference_model, sampler=sampler,
        tokenizer=tokenizer, reward_set=reward_set, mesh=mesh)
    num_prompts = len(scored.rewards_B) // group_size  # over all processes
    for k, v in timing.items():
      info[k] = info.get(k, 0.0) + v
    rounds += 1
    if prompt_feedback is not None:  # this process's prompts and verdicts
      mine = scored.correct_B[distributed.host_rows(len(scored.correct_B))]
      prompt_feedback(batch.ids_P, mine.reshape(-1, group_size))
    generated += num_prompts
    correct += int(scored.correct_B.sum())
    samples += len(scored.correct_B)
    if not dynamic_sampling:
      kept_parts, kept = [scored], num_prompts
      break
    good = group_filter(scored.rewards_B, group_size, scored.correct_B)
    kept += int(good.sum())
    kept_parts.append(_take_groups(scored, np.flatnonzero(good), group_size))
    parts.append(_take_groups(scored, np.flatnonzero(~good), group_size))
    if kept >= num_prompts or rounds >= max_rounds:
      break
  full = _concat(kept_parts + parts)
  rollout, full = _assemble(full, min(kept, num_prompts), num_prompts,
                            group_size, multi_reward, progress)
  info.update(_batch_metrics(
      full, reward_set, correct=correct, samples=samples, kept=kept,
      generated=generated, rounds=rounds, num_prompts=num_prompts,
      generated_tokens=info["generated_tokens"]))
  return rollout, full, info


def _batch_metrics(
    full: Scored, reward_set: rewards_lib.RewardSet, *, correct: int,
    samples: int, kept: int, generated: int, rounds: int, num_prompts: int,
    generated_tokens: float,
) -> dict[str, float]:
  """`collect`'s metrics besides the timings, from its round counts.

  Accuracy and length over every generated sample; `kept` of `generated`
  groups passed the filter in `rounds` rounds; the reward components and
  grading counts of the assembled batch `full`.
  """
  info = dict(
      # Over every generated sample, filtered or not.
      accuracy=correct / max(samples, 1),
      dynamic_sampling_pass_rate=kept / max(generated, 1),
      dynamic_sampling_rounds=float(rounds),
      # Groups that take part in the update (0: the step is skipped).
      kept_groups=float(min(kept, num_prompts)),
      generated_length_mean=generated_tokens / max(samples, 1),
  )
  info.update(reward_set.metrics(full.rewards_BK))
  # Unreadable golds, timeouts, ...: counted where each row was graded.
  info.update(distributed.sum_over_processes(reward_set.grading_metrics()))
  return info
