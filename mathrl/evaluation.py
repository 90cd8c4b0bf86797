"""Held-out evaluation: accuracy, pass@k, maj@k, mean@k, per difficulty.

  metrics = evaluation.evaluate_source(
      model, tokenizer, source, protocol=evaluation.deepscaler(),
      template=prompts.PromptTemplate(), buckets=(256,), batch_size=64,
      max_new_tokens=1024, eos_ids=(eos,), rng=jax.random.PRNGKey(0),
      num_examples=100, samples_path=workdir + "/samples.jsonl")
  print(evaluation.summary_table({"after SFT": m_sft, "after RL": m_rl}))

Layers, each usable alone:
  estimators         `pass_at_k`, `mean_at_k`, `maj_at_k` (pure Python/numpy)
  `Protocol`         decoding, samples per problem, ks and chat messages;
                     presets `qwen25_math()`, `deepscaler()` (`PROTOCOLS`)
  `select_prompts`   the first N records and prompt buckets that fit them
                     (nothing dropped silently: skips are counted)
  `generate_rows`    sample, decode and score batches of `PromptBatch`es
                     (each prompt repeated G times): one `Sample` each
  `metrics_from_rows` samples -> the flat metrics dict, each accuracy with
                     its 95% interval (`ci_low/KEY`, `ci_high/KEY`)
`evaluate` chains the last two for batches the caller built;
`evaluate_source` runs them all from a source of records. Tables:
`summary_table` (stages), `benchmark_table` and `level_table`.
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
import numpy as np

from mathrl import distributed
from mathrl import rewards
from mathrl import sampling
from mathrl import stats
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
    benchmark: the benchmark's name ("" when not given).
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
  benchmark: str = ""


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
    benchmark: str = "",
) -> list[Sample]:
  """Samples every batch's rows, decodes and scores them.

  A batch with fewer than `batch_size` prompts (the last one of a finite
  pass) is padded to full size with copies of its first prompt, so the
  sampler sees one shape per prompt-length bucket; padded rows are dropped
  before decoding and never scored.

  Several processes: every process iterates the same `batches` and samples
  them as one global batch on `mesh`; each decodes and scores its own
  block of each batch's prompts (`distributed.host_rows`), and the samples
  are gathered, so every process returns all of them, in batch order.

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
    benchmark: the name recorded in every `Sample`.

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
    out = sampling.generate(
        model,
        _pad_rows(np.asarray(batch.tokens_PL), batch_size),
        _pad_rows(np.asarray(batch.mask_PL), batch_size),
        num_samples=g,
        rng=jax.random.fold_in(rng, i),
        max_new_tokens=max_new_tokens,
        eos_ids=tuple(eos_ids),
        method=method,
        mesh=mesh,
    )
    # This process scores its block of the batch's prompts; every process
    # then holds every sample, in batch order.
    local = _host_samples(batch, out, tokenizer, score_fn, benchmark)
    samples.extend(_gather_samples(local))
  return samples


def _host_samples(
    batch: pipeline.PromptBatch,
    out: sampling.SamplingOutput,
    tokenizer: Any,
    score_fn: EqualFn | None,
    benchmark: str,
) -> list[Sample]:
  """This process's block of `batch`'s samples, decoded and scored.

  `out` holds the sampler's rows for the whole (possibly padded) batch;
  only the rows of this process's prompts (`distributed.host_rows`) are
  read, so padding rows past the batch's prompts are never decoded.
  """
  g = batch.group_size
  mine = distributed.host_rows(len(batch.ids_P))
  rows = slice(mine.start * g, mine.stop * g)
  tokens_BT = distributed.to_host(out.tokens_BT)[rows]
  mask_BT = distributed.to_host(out.mask_BT)[rows]
  texts = prompts.decode_completions(tokenizer, tokens_BT, mask_BT)
  golds = list(batch.answers_B)[rows]
  verdicts = _score(texts, golds, score_fn)
  lengths_B = mask_BT.sum(axis=-1)
  local = []
  for j, text in enumerate(texts):
    b = rows.start + j
    p = b // g
    local.append(Sample(
        id=batch.ids_P[p], index=b % g, prompt=batch.prompts_P[p],
        completion=text, answer=rewards.extract_answer(text),
        gold=golds[j], correct=bool(verdicts[j]), length=int(lengths_B[j]),
        difficulty=_difficulty(batch.records_P[p]), benchmark=benchmark,
    ))
  return local


def _gather_samples(local: list[Sample]) -> list[Sample]:
  """Every process's samples, in process order (one process: `local`)."""
  if jax.process_count() == 1:
    return local
  parts = distributed.allgather_objects([dataclasses.asdict(s) for s in local])
  return [Sample(**fields) for part in parts for fields in part]


# --- metrics -----------------------------------------------------------------


def _groups(samples: Sequence[Sample]) -> list[list[Sample]]:
  """Consecutive samples of the same prompt (index restarts at 0)."""
  groups: list[list[Sample]] = []
  for sample in samples:
    if sample.index == 0 or not groups:
      groups.append([])
    groups[-1].append(sample)
  return groups


def _check_groups(samples: Sequence[Sample], ks: Sequence[int]):
  """The prompt groups and G; errors for empty input or unusable ks."""
  if not samples:
    raise ValueError(
        "no samples to evaluate: the batches were empty (every prompt was"
        " skipped or the source is empty)"
    )
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
  return groups, n


def prompt_scores(
    samples: Sequence[Sample],
    *,
    ks: Sequence[int] = (1,),
    answer_equal_fn: EqualFn | None = None,
) -> dict[str, np.ndarray]:
  """Each prompt's score under every estimator: {metric: scores_P}.

  Keys: accuracy (the fraction of its G samples that are correct), and
  pass@k, mean@k, maj@k for each k. A metric's value is the mean of its
  scores over prompts; its interval resamples them (`stats`).
  """
  groups, n = _check_groups(samples, ks)
  equal_fn = rewards.math_equal if answer_equal_fn is None else answer_equal_fn
  flags = [[s.correct for s in group] for group in groups]
  scores = {"accuracy": np.array([np.mean(f) for f in flags], np.float64)}
  for k in ks:
    scores[f"pass@{k}"] = np.array(
        [pass_at_k(n, sum(f), k) for f in flags], np.float64)
    scores[f"mean@{k}"] = np.array(
        [mean_at_k(f, k) for f in flags], np.float64)
    scores[f"maj@{k}"] = np.array([
        maj_at_k([s.answer for s in group], f, k, equal_fn=equal_fn)
        for group, f in zip(groups, flags)
    ], np.float64)
  return scores


def _with_interval(result: dict[str, float], key: str,
                   scores_P: np.ndarray) -> None:
  result[key] = float(scores_P.mean())
  low, high = stats.accuracy_interval(scores_P)
  result[f"ci_low/{key}"] = low
  result[f"ci_high/{key}"] = high


def metrics_from_rows(
    samples: Sequence[Sample],
    *,
    ks: Sequence[int] = (1,),
    answer_equal_fn: EqualFn | None = None,
) -> dict[str, float]:
  """The evaluation metrics of scored samples, with 95% intervals.

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
    Every accuracy-like KEY also has `ci_low/KEY` and `ci_high/KEY`, its
    95% interval over prompts (`stats.accuracy_interval`).
  """
  scores = prompt_scores(samples, ks=ks, answer_equal_fn=answer_equal_fn)
  groups = _groups(samples)
  result = {
      "response_length_mean": float(np.mean([s.length for s in samples])),
      "answer_rate": float(np.mean([s.answer is not None for s in samples])),
      "num_examples": float(len(groups)),
      "num_samples": float(len(samples)),
  }
  for key, scores_P in scores.items():
    _with_interval(result, key, scores_P)
  levels = [group[0].difficulty for group in groups]
  for d in sorted({d for d in levels if d is not None}):
    at_d = np.array([level == d for level in levels])
    _with_interval(result, f"accuracy/difficulty_{d}",
                   scores["accuracy"][at_d])
    result[f"num_examples/difficulty_{d}"] = float(at_d.sum())
  return result


def write_samples(samples: Sequence[Sample], path: str,
                  append: bool = False) -> None:
  """Writes one JSON object per sample (JSON Lines) for inspection.

  Each line holds the prompt, the completion, its extracted answer, the
  gold, the verdict (`correct`), its length, difficulty and benchmark.
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "a" if append else "w", encoding="utf-8") as f:
    for sample in samples:
      f.write(json.dumps(dataclasses.asdict(sample), ensure_ascii=False))
      f.write("\n")


def evaluate(
    model: Any,
    tokenizer: Any,
    batches: Iterable[pipeline.PromptBatch],
    *,
    answer_equal_fn: EqualFn | None = None,
    ks: Sequence[int] = (1,),
    samples_path: str | None = None,
    **options: Any,
) -> dict[str, float]:
  """Samples, scores and summarises a held-out set.

  Args: model, tokenizer, batches and the keyword-only **options (method,
  max_new_tokens, eos_ids, rng, batch_size, score_fn, mesh) as
  `generate_rows`; answer_equal_fn and ks as `metrics_from_rows`; and
    samples_path: if given, every sample is written there as JSON Lines.

  Returns:
    The `metrics_from_rows` dict, plus the grading counts of the scoring
    (`reward/gold_unextractable`, `reward/timeouts`, ...: see
    `rewards.verify.grading_metrics`; zeros with a custom `score_fn`).
  """
  grading_before = rewards.default_verifier().stats()
  samples = generate_rows(model, tokenizer, batches, **options)
  grading = distributed.sum_over_processes(rewards.verify.grading_metrics(
      rewards.default_verifier().stats(), grading_before))
  if samples_path is not None and distributed.is_leader():
    write_samples(samples, samples_path)
  return {**metrics_from_rows(samples, ks=ks, answer_equal_fn=answer_equal_fn),
          **grading}


# --- protocols ---------------------------------------------------------------

# The instruction DeepScaleR's evaluation appends to each question.
DEEPSCALER_INSTRUCTION = (
    "Let's think step by step and output the final answer within \\boxed{}."
)


def default_ks(num_samples: int) -> tuple[int, ...]:
  """1, the powers of two below G, and G: the k reported for G samples."""
  ks = {1, num_samples}
  k = 2
  while k < num_samples:
    ks.add(k)
    k *= 2
  return tuple(sorted(ks))


@dataclasses.dataclass(frozen=True)
class Protocol:
  """How problems are posed and decoded: the settings papers report under.

  Attributes:
    name: a label for tables.
    temperature: sampling temperature; 0 decodes greedily.
    top_p: nucleus mass (1.0: the whole distribution).
    num_samples: G, completions per problem.
    ks: the k of pass@k / mean@k (avg@k) / maj@k, each <= G.
    system: the chat system message; None keeps the run's template's.
    user: the chat user message with `{question}`; None keeps the run's.
  """

  name: str = "greedy"
  temperature: float = 0.0
  top_p: float = 1.0
  num_samples: int = 1
  ks: tuple[int, ...] = (1,)
  system: str | None = None
  user: str | None = None

  def __post_init__(self):
    if self.num_samples < 1 or self.temperature < 0:
      raise ValueError(
          f"protocol {self.name!r}: num_samples={self.num_samples} must be"
          f" >= 1 and temperature={self.temperature} >= 0"
      )
    bad = [k for k in self.ks if not 1 <= k <= self.num_samples]
    if bad:
      raise ValueError(
          f"protocol {self.name!r}: ks={self.ks} has {bad} outside 1..G="
          f"{self.num_samples}; lower k or raise num_samples"
      )

  def method(self):
    """The `sampling` method: Greedy, Temperature or TopP."""
    if self.temperature == 0:
      return sampling.Greedy()
    if self.top_p < 1.0:
      return sampling.TopP(self.top_p, self.temperature)
    return sampling.Temperature(self.temperature)

  def template(self, base: prompts.PromptTemplate) -> prompts.PromptTemplate:
    """`base` with this protocol's chat messages (plain prompts unchanged)."""
    changes = {}
    if self.system is not None:
      changes["system"] = self.system or None
    if self.user is not None:
      changes["user"] = self.user
    return dataclasses.replace(base, **changes)

  def with_samples(self, num_samples: int) -> "Protocol":
    """The same protocol with G = `num_samples` (ks: `default_ks`)."""
    return dataclasses.replace(self, num_samples=num_samples,
                               ks=default_ks(num_samples))


def qwen25_math() -> Protocol:
  """Qwen2.5-Math's evaluation: greedy, one sample, boxed-answer system prompt.

  Yang et al. 2024, "Qwen2.5-Math Technical Report", arXiv:2409.12122: the
  system message "Please reason step by step, and put your final answer
  within \\boxed{}." and the question alone as the user message; accuracy
  is greedy pass@1.
  """
  return Protocol(name="qwen25_math", temperature=0.0, num_samples=1, ks=(1,),
                  system=prompts.BOXED_INSTRUCTION, user=prompts.QUESTION)


def deepscaler() -> Protocol:
  """DeepScaleR's evaluation: temperature 0.6, top-p 0.95, avg@16.

  Luo et al. 2025, "DeepScaleR: Surpassing O1-Preview with a 1.5B Model by
  Scaling RL" (the rllm project): 16 samples per problem, the reported
  number is their mean accuracy (mean@16, also called avg@16 or sampled
  pass@1); the question is followed by "Let's think step by step and
  output the final answer within \\boxed{}." with no system message.
  """
  return Protocol(name="deepscaler", temperature=0.6, top_p=0.95,
                  num_samples=16, ks=default_ks(16), system="",
                  user=prompts.QUESTION + " " + DEEPSCALER_INSTRUCTION)


# Named presets for `eval.protocol` (configs name them as text).
PROTOCOLS: dict[str, Callable[[], Protocol]] = {
    "greedy": Protocol,
    "qwen25_math": qwen25_math,
    "deepscaler": deepscaler,
}


# --- which prompts, at which lengths -----------------------------------------


@dataclasses.dataclass(frozen=True)
class PromptSelection:
  """The records an evaluation runs on and the buckets that fit them.

  Attributes:
    records: the records to evaluate, in source order.
    buckets: padded prompt lengths; every kept prompt fits the largest.
    skipped: (id, length in tokens) of prompts left out because they are
      longer than the allowed maximum; counted in the results.
    num_requested: how many records were asked for (the first N).
  """

  records: tuple[dict[str, Any], ...]
  buckets: tuple[int, ...]
  skipped: tuple[tuple[str, int], ...]
  num_requested: int


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


def select_prompts(
    source: Any,
    tokenizer: Any,
    template: prompts.PromptTemplate,
    *,
    buckets: Sequence[int],
    num_examples: int = 0,
    fit_buckets: bool = True,
    max_prompt_length: int = 0,
    bucket_multiple: int = 32,
) -> PromptSelection:
  """The first `num_examples` records, and buckets derived from their lengths.

  Every prompt is rendered and tokenised once. A prompt longer than
  `max_prompt_length` (when > 0) is not evaluated and is listed in
  `skipped`. When the longest remaining prompt exceeds every bucket, a
  bucket rounded up to `bucket_multiple` tokens is added (`fit_buckets`),
  or a ValueError names the prompts and the settings that would fit them.

  Args:
    source: random-access records (question, answer, id, ...).
    tokenizer: the transformers tokenizer.
    template: how a question becomes a prompt.
    buckets: the configured padded lengths.
    num_examples: evaluate the first N records (source order); 0 all.
    fit_buckets: add a bucket that fits the longest prompt.
    max_prompt_length: skip (and count) prompts longer than this; 0 none.
    bucket_multiple: an added bucket is a multiple of this.

  Returns:
    The `PromptSelection`.
  """
  if num_examples < 0:
    raise ValueError(f"num_examples={num_examples} must be >= 0 (0: all)")
  count = len(source) if not num_examples else min(num_examples, len(source))
  chat = prompts.uses_chat_template(tokenizer, template)
  kept, skipped, lengths = [], [], []
  for i in range(count):
    record = source[i]
    text = prompts.render(str(record["question"]), tokenizer, template)
    length = len(prompts.encode(text, tokenizer, chat=chat))
    if max_prompt_length and length > max_prompt_length:
      skipped.append((str(record["id"]), length))
    else:
      kept.append(record)
      lengths.append(length)
  buckets = tuple(sorted(set(buckets)))
  longest = max(lengths, default=0)
  if longest > buckets[-1]:
    if not fit_buckets:
      too_long = [(str(r["id"]), n) for r, n in zip(kept, lengths)
                  if n > buckets[-1]]
      raise ValueError(
          f"{len(too_long)} of {count} evaluation prompts are longer than the"
          f" largest bucket {buckets[-1]} (id, tokens: {too_long[:5]}"
          f"{' ...' if len(too_long) > 5 else ''}); set eval.buckets to"
          f" include {_round_up(longest, bucket_multiple)}, or"
          " eval.fit_buckets=True, or eval.max_prompt_length to skip them"
          " (they are then counted as num_skipped)"
      )
    buckets += (_round_up(longest, bucket_multiple),)
  return PromptSelection(records=tuple(kept), buckets=buckets,
                         skipped=tuple(skipped), num_requested=count)


def evaluate_source(
    model: Any,
    tokenizer: Any,
    source: Any,
    *,
    protocol: Protocol,
    template: prompts.PromptTemplate,
    buckets: Sequence[int],
    batch_size: int,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    rng: jax.Array,
    num_examples: int = 0,
    fit_buckets: bool = True,
    max_prompt_length: int = 0,
    mesh: jax.sharding.Mesh | None = None,
    score_fn: EqualFn | None = None,
    answer_equal_fn: EqualFn | None = None,
    samples_path: str | None = None,
    append_samples: bool = False,
    benchmark: str = "",
) -> dict[str, float]:
  """Evaluates a source under a protocol, dropping nothing silently.

  `select_prompts` chooses the records and buckets; batches hold
  max(1, batch_size // G) prompts (so about `batch_size` completions per
  sampler call), or every prompt when there are fewer; metrics are `metrics_from_rows`' plus `num_requested`
  (records asked for) and `num_skipped` (prompts longer than
  `max_prompt_length`, not evaluated).

  Args: as `select_prompts`, `generate_rows` and `metrics_from_rows`, plus
    protocol: decoding, G, ks and chat messages.
    samples_path / append_samples: write (or append) every sample there.
    benchmark: the name stored in each sample.

  Returns:
    The metrics dict.
  """
  template = protocol.template(template)
  chosen = select_prompts(
      source, tokenizer, template, buckets=buckets,
      num_examples=num_examples, fit_buckets=fit_buckets,
      max_prompt_length=max_prompt_length)
  counts = {"num_requested": float(chosen.num_requested),
            "num_skipped": float(len(chosen.skipped))}
  if not chosen.records:
    raise ValueError(
        f"no {benchmark or 'evaluation'} prompt can be evaluated: all"
        f" {chosen.num_requested} are longer than eval.max_prompt_length="
        f"{max_prompt_length}; raise it"
    )
  g = protocol.num_samples
  # No more prompts per sampler call than there are: a quick look at 4
  # problems compiles and decodes 4·G rows, not batch_size.
  per_batch = min(max(1, batch_size // g), len(chosen.records))
  batches = pipeline.PromptIterator(
      list(chosen.records), tokenizer=tokenizer, template=template,
      prompts_per_batch=per_batch, group_size=g, buckets=chosen.buckets,
      seed=0, shuffle=False, num_epochs=1, drop_remainder=False,
      drop_overlong=False, shard_index=0, shard_count=1,
  )
  samples = generate_rows(
      model, tokenizer, batches, method=protocol.method(),
      max_new_tokens=max_new_tokens, eos_ids=eos_ids, rng=rng,
      batch_size=per_batch, score_fn=score_fn, mesh=mesh,
      benchmark=benchmark,
  )
  if samples_path is not None and distributed.is_leader():
    write_samples(samples, samples_path, append=append_samples)
  result = metrics_from_rows(samples, ks=protocol.ks,
                             answer_equal_fn=answer_equal_fn)
  result.update(counts)
  return result


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


def _cell(metrics: Mapping[str, float], key: str) -> str:
  """'0.625' or, with an interval in `metrics`, '0.625 [0.510, 0.730]'."""
  value = metrics.get(key)
  if value is None:
    return "-"
  low, high = metrics.get(f"ci_low/{key}"), metrics.get(f"ci_high/{key}")
  if low is None or high is None:
    return f"{value:.3f}"
  return stats.format_interval(value, low, high, percent=False)


def _render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """Left-aligned first column, right-aligned others, two spaces apart."""
  widths = [max(len(r[i]) for r in [header, *rows])
            for i in range(len(header))]
  widths[1:] = [max(6, w) for w in widths[1:]]
  return "\n".join(
      "  ".join([r[0].ljust(widths[0])]
                + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])
      for r in [header, *rows])


def summary_table(rows_by_stage: Mapping[str, Mapping[str, float]]) -> str:
  """A plain-text table: accuracy per difficulty (rows) for each stage.

  Rows: overall accuracy, `accuracy/difficulty_d` by increasing d, then any
  pass@k / maj@k / mean@k with k > 1 (k = 1 repeats the accuracy of
  greedy runs); a stage without a value shows "-". A value with an
  interval in its dict (`ci_low/KEY`, `ci_high/KEY`) shows it in brackets.

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
  rows = [
      [key.replace("accuracy/difficulty_", "difficulty ")]
      + [_cell(rows_by_stage[stage], key) for stage in stages]
      for key in keys
  ]
  return _render(["metric"] + stages, rows)


def benchmark_table(results: Mapping[str, Mapping[str, float]]) -> str:
  """One row per benchmark: problems, skipped, and every accuracy metric.

  Columns: n (problems evaluated), skipped (`num_skipped`), accuracy, then
  pass@k / mean@k / maj@k with k > 1 in the order of `summary_table`'s
  rows; each value with its 95% interval.

  Args:
    results: {benchmark: metrics dict from `evaluate_source`}.

  Returns:
    The table, one line per benchmark.
  """
  keys = sorted(
      {key for metrics in results.values() for key in metrics
       if _table_row(key) and not key.startswith("accuracy/")},
      key=_row_order,
  )
  rows = [
      [name, f"{int(m.get('num_examples', 0))}",
       f"{int(m.get('num_skipped', 0))}"] + [_cell(m, key) for key in keys]
      for name, m in results.items()
  ]
  return _render(["benchmark", "n", "skipped"] + keys, rows)


def level_table(results: Mapping[str, Mapping[str, float]]) -> str:
  """Accuracy per difficulty level (rows) for each benchmark that has them.

  Returns "" when no benchmark's records carry a `difficulty`.
  """
  with_levels = {name: m for name, m in results.items()
                 if any(k.startswith("accuracy/difficulty_") for k in m)}
  if not with_levels:
    return ""
  keys = sorted({k for m in with_levels.values() for k in m
                 if k.startswith("accuracy/difficulty_")}, key=_row_order)
  rows = []
  for key in keys:
    level = key.rpartition("_")[2]
    row = [f"level {level}"]
    for m in with_levels.values():
      n = m.get(f"num_examples/difficulty_{level}")
      row.append("-" if n is None else f"{_cell(m, key)} (n={int(n)})")
    rows.append(row)
  return _render(["level"] + list(with_levels), rows)
