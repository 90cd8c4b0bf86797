"""Held-out evaluation: accuracy, pass@k, maj@k, mean@k, per difficulty.

  metrics = evaluation.evaluate(
      model, tokenizer, batches, method=sampling.Greedy(),
      max_new_tokens=256, eos_ids=(eos,), rng=jax.random.PRNGKey(0),
      ks=(1,), samples_path=workdir + "/eval_samples.jsonl")
  print(evaluation.summary_table({"after SFT": m_sft, "after RL": m_rl}))

`batches` is an iterable of `pipeline.PromptBatch` built by the caller, each
prompt repeated G times (G samples per prompt; G = 1 for greedy accuracy).
Three layers, each usable alone:
  estimators         `pass_at_k`, `mean_at_k`, `maj_at_k` (pure Python/numpy)
  `generate_rows`    sample, decode and score: one `Sample` per completion
  `metrics_from_rows` samples -> the flat metrics dict
`evaluate` chains the last two and can write the samples as JSON Lines.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
import dataclasses
import json
import math
import os
import re
from typing import Any

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from mathrl import rewards
from mathrl import sampling
from mathrl.data import pipeline
from mathrl.data import prompts

EqualFn = Callable[[str, str], bool]

_TEXT_NOISE_RE = re.compile(r"\s+|\$|\\left|\\right|\\!|\\,|\\;")


# --- estimators --------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
  """pass@k = 1 - C(n-c, k) / C(n, k), unbiased from n samples, c correct.

  Chen et al. 2021, "Evaluating Large Language Models Trained on Code",
  arXiv:2107.03374, eq. 1, in its numerically stable product form
  C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i).

  Args:
    n: samples drawn for the problem (>= 1).
    c: how many of them are correct (0 <= c <= n).
    k: the budget (1 <= k <= n).

  Returns:
    The probability that at least one of k samples, drawn without
    replacement from the n, is correct.
  """
  if not 0 <= c <= n or not 1 <= k <= n:
    raise ValueError(
        f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, "
        f"k={k}; draw at least k samples per prompt (group_size >= k)"
    )
  if n - c < k:
    return 1.0
  return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_at_k(correct_N: Sequence[bool], k: int) -> float:
  """mean@k = (1/k) sum_{i<k} correct_i: accuracy averaged over k samples.

  The sampled pass@1 = (1/k) sum_i p_i of DeepSeek-AI 2025
  (arXiv:2501.12948), also reported as avg@k. The first k of the n i.i.d.
  samples are used: the same ones `maj_at_k` votes with.

  Args:
    correct_N: [n] per-sample correctness of one problem.
    k: samples averaged (1 <= k <= n).

  Returns:
    The fraction of the first k samples that are correct.
  """
  if not 1 <= k <= len(correct_N):
    raise ValueError(
        f"mean_at_k needs 1 <= k <= n, got k={k}, n={len(correct_N)}"
    )
  return float(np.mean(np.asarray(correct_N[:k], dtype=np.float64)))


def normalize_answer(answer: str) -> str:
  """An answer's text without spacing, `$`, `\\left`/`\\right`, `\\dfrac`."""
  text = _TEXT_NOISE_RE.sub("", answer)
  text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
  return text.rstrip(".")


def same_normalized_text(a: str, b: str) -> bool:
  """The cheap answer equivalence: equal after `normalize_answer`."""
  return normalize_answer(a) == normalize_answer(b)


def maj_at_k(
    answers_N: Sequence[str | None],
    correct_N: Sequence[bool],
    k: int,
    *,
    equal_fn: EqualFn = same_normalized_text,
) -> float:
  """maj@k = correct(the most frequent answer among k samples).

  Self-consistency voting (Wang et al. 2022, arXiv:2203.11171) over the
  first k samples. Answers are clustered: a sample joins the first cluster
  (in order of appearance) whose first answer it equals, else starts one.
  Samples with no extracted answer (None) abstain. Correct answers all equal
  the gold, so they form one cluster without calling `equal_fn`, and a
  correct answer never equals an incorrect one (transitivity); `equal_fn`
  only compares incorrect answers. The vote goes to the largest cluster;
  a tie goes to the cluster that appeared first. maj@k is 1 iff the winning
  cluster is the correct one; 0 if every sample abstains.

  Args:
    answers_N: [n] extracted final answers of one problem's samples.
    correct_N: [n] their correctness.
    k: samples that vote (1 <= k <= n).
    equal_fn: equivalence of two incorrect answers, e.g.
      `rewards.math_equal` or `same_normalized_text`.

  Returns:
    1.0 or 0.0.
  """
  if len(answers_N) != len(correct_N):
    raise ValueError(
        f"maj_at_k: {len(answers_N)} answers but {len(correct_N)} "
        "correctness flags; pass one of each per sample"
    )
  if not 1 <= k <= len(answers_N):
    raise ValueError(
        f"maj_at_k needs 1 <= k <= n, got k={k}, n={len(answers_N)}"
    )
  # Each cluster: [size, representative answer, is_correct].
  clusters: list[list[Any]] = []
  for answer, correct in zip(answers_N[:k], correct_N[:k]):
    if answer is None:
      continue
    for cluster in clusters:
      same = (correct and cluster[2]) or (
          not correct and not cluster[2] and equal_fn(answer, cluster[1])
      )
      if same:
        cluster[0] += 1
        break
    else:
      clusters.append([1, answer, bool(correct)])
  if not clusters:
    return 0.0
  best = max(clusters, key=lambda cluster: cluster[0])  # first max wins
  return float(best[2])


# --- sampling and scoring ----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Sample:
  """One evaluated completion.

  Attributes:
    id: the record id.
    index: the sample's number g within its prompt's group (0..G-1).
    prompt: the rendered prompt text.
    completion: decoded completion (cut at its mask, no special tokens).
    answer: `rewards.extract_answer(completion)`, or None.
    gold: the gold answer.
    correct: the scoring function's verdict.
    length: completion length in tokens.
    difficulty: the record's integer `difficulty`, or None.
  """

  id: str
  index: int
  prompt: str
  completion: str
  answer: str | None
  gold: str
  correct: bool
  length: int
  difficulty: int | None


def _pad_rows(x_BL: np.ndarray, rows: int) -> np.ndarray:
  """Appends copies of row 0 (a real prompt: no all-padding rows)."""
  if rows == x_BL.shape[0]:
    return x_BL
  return np.concatenate(
      [x_BL, np.repeat(x_BL[:1], rows - x_BL.shape[0], axis=0)], axis=0
  )


def _difficulty(record: Mapping[str, Any]) -> int | None:
  value = record.get("difficulty")
  if value is None or isinstance(value, bool):
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    return None


def _score(texts: list[str], golds: list[str], score_fn: EqualFn | None):
  if score_fn is None:  # math_equal, worker steps spread over the pool
    return rewards.default_verifier().equal_batch(texts, golds)
  return [bool(score_fn(t, g)) for t, g in zip(texts, golds)]


def generate_rows(
    model: Any,
    tokenizer: Any,
    batches: Iterable[pipeline.PromptBatch],
    *,
    method: Any,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    rng: jax.Array,
    batch_size: int | None = None,
    score_fn: EqualFn | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> list[Sample]:
  """Samples every batch's rows, decodes and scores them.

  A batch with fewer than `batch_size` prompts (the last one of a finite
  pass) is padded to full size with copies of its first prompt, so the
  sampler sees one shape per prompt-length bucket; padded rows are dropped
  before decoding and never scored.

  Args:
    model: an `nnx.Module`, or a `(graphdef, state)` pair from `nnx.split`.
    tokenizer: the transformers tokenizer that made the prompts.
    batches: `PromptBatch`es; each prompt is repeated G = `group_size` times.
    method: a `sampling` method (`sampling.Greedy()`, ...).
    max_new_tokens: T, completion length cap.
    eos_ids: ids that end a completion.
    rng: PRNG key; batch i uses `fold_in(rng, i)`.
    batch_size: prompts per sampler call; None takes the first batch's P.
    score_fn: `(completion, gold) -> bool`; None is `rewards.math_equal`.
    mesh: sample on this mesh (`sampling.generate`'s `mesh`, batch split
      over the data axes: choose `batch_size` * G divisible by them); None
      samples where the model is.

  Returns:
    One `Sample` per real completion, in batch order (prompt-major).
  """
  if isinstance(model, tuple):
    model = nnx.merge(*model)
  samples = []
  for i, batch in enumerate(batches):
    num_prompts, g = len(batch.ids_P), batch.group_size
    batch_size = num_prompts if batch_size is None else batch_size
    if num_prompts > batch_size:
      raise ValueError(
          f"batch {i} has {num_prompts} prompts but batch_size={batch_size};"
          " build the batches with prompts_per_batch <= batch_size"
      )
    rows = num_prompts * g
    out = sampling.generate(
        model,
        jnp.asarray(_pad_rows(np.asarray(batch.tokens_BL), batch_size * g)),
        jnp.asarray(_pad_rows(np.asarray(batch.mask_BL), batch_size * g)),
        rng=jax.random.fold_in(rng, i),
        max_new_tokens=max_new_tokens,
        eos_ids=tuple(eos_ids),
        method=method,
        mesh=mesh,
    )
    tokens_BT = np.asarray(out.tokens_BT)[:rows]
    mask_BT = np.asarray(out.mask_BT)[:rows]
    texts = prompts.decode_completions(tokenizer, tokens_BT, mask_BT)
    golds = list(batch.answers_B)
    verdicts = _score(texts, golds, score_fn)
    lengths_B = mask_BT.sum(axis=-1)
    for b, text in enumerate(texts):
      p = b // g
      samples.append(Sample(
          id=batch.ids_P[p], index=b % g, prompt=batch.prompts_P[p],
          completion=text, answer=rewards.extract_answer(text),
          gold=golds[b], correct=bool(verdicts[b]), length=int(lengths_B[b]),
          difficulty=_difficulty(batch.records_P[p]),
      ))
  return samples


# --- metrics -----------------------------------------------------------------


def _groups(samples: Sequence[Sample]) -> list[list[Sample]]:
  """Consecutive samples of the same prompt (index restarts at 0)."""
  groups: list[list[Sample]] = []
  for sample in samples:
    if sample.index == 0 or not groups:
      groups.append([])
    groups[-1].append(sample)
  return groups


def metrics_from_rows(
    samples: Sequence[Sample],
    *,
    ks: Sequence[int] = (1,),
    answer_equal_fn: EqualFn | None = None,
) -> dict[str, float]:
  """The evaluation metrics of scored samples.

  Args:
    samples: from `generate_rows` (each prompt's G samples consecutive).
    ks: the k of pass@k, maj@k and mean@k; each at most G.
    answer_equal_fn: equivalence of answers for maj@k; None is
      `rewards.math_equal`.

  Returns:
    accuracy (mean correctness of all samples; greedy accuracy when G=1),
    pass@k / maj@k / mean@k (averaged over prompts), response_length_mean
    (tokens), answer_rate (fraction with an extracted answer),
    num_examples (prompts), num_samples, and, for records with an integer
    `difficulty` d, accuracy/difficulty_d and num_examples/difficulty_d.
  """
  if not samples:
    raise ValueError("no samples to evaluate: the batches were empty")
  groups = _groups(samples)
  sizes = {len(group) for group in groups}
  if len(sizes) != 1:
    raise ValueError(
        f"prompts have different sample counts {sorted(sizes)}; evaluate "
        "batches built with one group_size"
    )
  (n,) = sizes
  bad = [k for k in ks if not 1 <= k <= n]
  if bad:
    raise ValueError(
        f"ks={tuple(ks)} has k={bad} outside 1..G={n}; sample more per prompt"
        " (group_size) or lower k"
    )
  equal_fn = rewards.math_equal if answer_equal_fn is None else answer_equal_fn
  correct = np.array([s.correct for s in samples], dtype=np.float64)
  result = {
      "accuracy": float(correct.mean()),
      "response_length_mean": float(np.mean([s.length for s in samples])),
      "answer_rate": float(np.mean([s.answer is not None for s in samples])),
      "num_examples": float(len(groups)),
      "num_samples": float(len(samples)),
  }
  flags = [[s.correct for s in group] for group in groups]
  for k in ks:
    result[f"pass@{k}"] = float(np.mean(
        [pass_at_k(n, sum(f), k) for f in flags]))
    result[f"mean@{k}"] = float(np.mean([mean_at_k(f, k) for f in flags]))
    result[f"maj@{k}"] = float(np.mean([
        maj_at_k([s.answer for s in group], f, k, equal_fn=equal_fn)
        for group, f in zip(groups, flags)
    ]))
  by_level: dict[int, list[float]] = {}
  for group in groups:
    if group[0].difficulty is not None:
      by_level.setdefault(group[0].difficulty, []).extend(
          float(s.correct) for s in group)
  for d in sorted(by_level):
    result[f"accuracy/difficulty_{d}"] = float(np.mean(by_level[d]))
    result[f"num_examples/difficulty_{d}"] = float(len(by_level[d]) // n)
  return result


def write_samples(samples: Sequence[Sample], path: str) -> None:
  """Writes one JSON object per sample (JSON Lines) for inspection."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for sample in samples:
      f.write(json.dumps(dataclasses.asdict(sample), ensure_ascii=False))
      f.write("\n")


def evaluate(
    model: Any,
    tokenizer: Any,
    batches: Iterable[pipeline.PromptBatch],
    *,
    method: Any,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    rng: jax.Array,
    batch_size: int | None = None,
    score_fn: EqualFn | None = None,
    mesh: jax.sharding.Mesh | None = None,
    answer_equal_fn: EqualFn | None = None,
    ks: Sequence[int] = (1,),
    samples_path: str | None = None,
) -> dict[str, float]:
  """Samples, scores and summarises a held-out set.

  Args: as `generate_rows` and `metrics_from_rows`, plus
    samples_path: if given, every sample is written there as JSON Lines.

  Returns:
    The `metrics_from_rows` dict, plus the grading counts of the scoring
    (`reward/gold_unextractable`, `reward/timeouts`, ...: see
    `rewards.verify.grading_metrics`; zeros with a custom `score_fn`).
  """
  grading_before = rewards.default_verifier().stats()
  samples = generate_rows(
      model, tokenizer, batches, method=method,
      max_new_tokens=max_new_tokens, eos_ids=eos_ids, rng=rng,
      batch_size=batch_size, score_fn=score_fn, mesh=mesh,
  )
  grading = rewards.verify.grading_metrics(
      rewards.default_verifier().stats(), grading_before)
  if samples_path is not None:
    write_samples(samples, samples_path)
  return {**metrics_from_rows(samples, ks=ks, answer_equal_fn=answer_equal_fn),
          **grading}


# --- reporting ---------------------------------------------------------------


def _row_order(key: str) -> tuple[int, str, float]:
  """accuracy, then difficulties by level, then pass/maj/mean by k."""
  name, _, number = key.replace("accuracy/difficulty_", "@").rpartition("@")
  try:
    value = float(number)
  except ValueError:
    value = math.inf
  return (0 if key == "accuracy" else 1 if not name else 2, name, value)


def _table_row(key: str) -> bool:
  if key == "accuracy" or key.startswith("accuracy/difficulty_"):
    return True
  name, at, k = key.partition("@")
  return bool(at) and name in ("pass", "maj", "mean") and k.isdigit() and (
      int(k) > 1)


def summary_table(rows_by_stage: Mapping[str, Mapping[str, float]]) -> str:
  """A plain-text table: accuracy per difficulty (rows) for each stage.

  Rows: overall accuracy, `accuracy/difficulty_d` by increasing d, then any
  pass@k / maj@k / mean@k with k > 1 (k = 1 repeats the accuracy of
  greedy runs); a stage without a value shows "-".

  Args:
    rows_by_stage: {stage name: metrics dict from `evaluate`}, in column
      order, e.g. {"after SFT": ..., "after RL": ...}.

  Returns:
    The table, one line per row.
  """
  stages = list(rows_by_stage)
  keys = sorted(
      {key for metrics in rows_by_stage.values() for key in metrics
       if _table_row(key)},
      key=_row_order,
  )
  labels = [
      key.replace("accuracy/difficulty_", "difficulty ") for key in keys
  ]
  first = max([len("metric")] + [len(label) for label in labels])
  widths = [max(6, len(stage)) for stage in stages]
  lines = ["  ".join(
      ["metric".ljust(first)]
      + [s.rjust(w) for s, w in zip(stages, widths)])]
  for key, label in zip(keys, labels):
    cells = []
    for stage, w in zip(stages, widths):
      value = rows_by_stage[stage].get(key)
      cells.append(("-" if value is None else f"{value:.3f}").rjust(w))
    lines.append("  ".join([label.ljust(first)] + cells))
  return "\n".join(lines)
