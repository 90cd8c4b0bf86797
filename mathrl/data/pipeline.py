"""The prompt input pipeline: grain shuffling, sharding, batching, ×G, resume.

From any random-access source of records (a benchmark from
`tfds_builders.load`, `synthetic.ArithmeticTasks`, a list of dicts) to
batches of P left-padded prompts, each repeated G times for group sampling:

  source ─► shuffle(seed), reshuffled every epoch ─► repeat(epochs)
         ─► shard: of every global batch of n·P records, process i of n
             takes the i-th block of P (`block_shard`)
         ─► template + tokenise ─► drop prompts longer than every bucket
         ─► batch P, left-pad to a length bucket ─► repeat rows ×G

Every stage is a grain dataset, so the iterator position is one integer and
`PromptIterator.get_state()` / `set_state()` resume at exactly the next
batch. Processes share the global shuffle and take disjoint blocks of it,
so together they cover each epoch with no coordination, and the processes'
batches, concatenated in process order, are the batch one process with
n·P prompts per batch would read.
"""

from collections.abc import Sequence
import dataclasses
from typing import Any

import grain
from mathrl.data import prompts
import numpy as np

_REQUIRED = ("question", "answer", "id")


@dataclasses.dataclass(frozen=True)
class PromptBatch:
  """P prompts, each repeated G times (row p*G + g is prompt p's g-th copy).

  Attributes:
    tokens_BL: [B, L] int32 prompt ids, B = P*G, left-padded.
    mask_BL: [B, L] int32, 1 on prompt tokens and 0 on padding.
    prompts_P: the P rendered prompt texts.
    answers_P: the P gold answers.
    ids_P: the P record ids.
    records_P: the P source records (all fields, e.g. `difficulty`).
    group_size: G.
  """

  tokens_BL: np.ndarray
  mask_BL: np.ndarray
  prompts_P: tuple[str, ...]
  answers_P: tuple[str, ...]
  ids_P: tuple[str, ...]
  records_P: tuple[dict[str, Any], ...]
  group_size: int

  @property
  def tokens_PL(self) -> np.ndarray:
    """[P, L] the distinct prompts (row p·G of `tokens_BL`)."""
    return self.tokens_BL[::self.group_size]

  @property
  def mask_PL(self) -> np.ndarray:
    """[P, L] the distinct prompts' mask."""
    return self.mask_BL[::self.group_size]

  @property
  def answers_B(self) -> tuple[str, ...]:
    """Gold answer of every row (each of the P answers repeated G times)."""
    return tuple(a for a in self.answers_P for _ in range(self.group_size))


def _prepare(record: dict[str, Any], tokenizer: Any,
             template: prompts.PromptTemplate) -> dict[str, Any]:
  missing = [f for f in _REQUIRED if f not in record]
  if missing:
    raise KeyError(
        f"record {str(record)[:120]} lacks field(s) {missing}; pipeline "
        f"sources must yield dicts with {list(_REQUIRED)}"
    )
  text = prompts.render(str(record["question"]), tokenizer, template)
  chat = prompts.uses_chat_template(tokenizer, template)
  return {
      "record": record,
      "prompt": text,
      "ids": prompts.encode(text, tokenizer, chat=chat),
  }


def _collate(
    items: Sequence[dict[str, Any]],
    buckets: Sequence[int],
    pad_id: int,
    group_size: int,
) -> PromptBatch:
  tokens_PL, mask_PL = prompts.left_pad(
      [item["ids"] for item in items], buckets, pad_id
  )
  return PromptBatch(
      tokens_BL=np.repeat(tokens_PL, group_size, axis=0),
      mask_BL=np.repeat(mask_PL, group_size, axis=0),
      prompts_P=tuple(item["prompt"] for item in items),
      answers_P=tuple(str(item["record"]["answer"]) for item in items),
      ids_P=tuple(str(item["record"]["id"]) for item in items),
      records_P=tuple(item["record"] for item in items),
      group_size=group_size,
  )


def _default_shard(
    shard_index: int | None, shard_count: int | None
) -> tuple[int, int]:
  if shard_index is None or shard_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    shard_index = jax.process_index() if shard_index is None else shard_index
    shard_count = jax.process_count() if shard_count is None else shard_count
  if not 0 <= shard_index < shard_count:
    raise ValueError(
        f"need 0 <= shard_index < shard_count, got {shard_index}, "
        f"{shard_count}"
    )
  return shard_index, shard_count


def block_shard(ds: grain.MapDataset, block: int, shard_index: int,
                shard_count: int) -> grain.MapDataset:
  """Shard i's records: positions k·b·n + i·b + j (j < b) of `ds`.

  Global batch k is positions [k·b·n, (k+1)·b·n) of the stream; shard i
  takes its i-th block of b = `block` records. So the shards' k-th batches,
  concatenated in shard order, are the one-shard stream's k-th batch of
  b·n records, whatever n. Example: b=2, n=2: shard 0 takes 0 1 4 5 8 9 ...,
  shard 1 takes 2 3 6 7 10 11 ...
  """
  if shard_count == 1:
    return ds
  span = block * shard_count
  full, rest = divmod(len(ds), span)
  length = full * block + min(block, max(0, rest - shard_index * block))
  first = shard_index * block
  return grain.MapDataset.range(length).map(
      lambda j: ds[(j // block) * span + first + j % block])


def _check_batching(source: Any, prompts_per_batch: int, group_size: int,
                    shard_index: int, shard_count: int) -> None:
  """Raises ValueError for an empty source or an impossible batch or shard."""
  if len(source) == 0:  # pylint: disable=g-explicit-length-test
    raise ValueError(f"empty source {source!r}")
  if prompts_per_batch < 1 or group_size < 1:
    raise ValueError(
        "prompts_per_batch and group_size must be >= 1, got "
        f"{prompts_per_batch}, {group_size}"
    )
  if not 0 <= shard_index < shard_count:
    raise ValueError(
        f"need 0 <= shard_index < shard_count, got {shard_index}, "
        f"{shard_count}"
    )


def _shard_records(
    source: Any,
    *,
    prompts_per_batch: int,
    seed: int,
    shuffle: bool,
    num_epochs: int | None,
    shard_index: int,
    shard_count: int,
    drop_remainder: bool,
) -> grain.MapDataset:
  """This process's records in stream order (arguments as `prompt_dataset`).

  Shuffled (and reshuffled every epoch), repeated `num_epochs` times, cut to
  whole global batches when a finite multi-shard run drops its remainder,
  then this shard's block of P of every global batch (`block_shard`).
  """
  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs)
  if num_epochs is not None and drop_remainder and shard_count > 1:
    # Whole global batches only, so every process runs the same number of
    # steps.
    span = shard_count * prompts_per_batch
    ds = ds[: len(ds) - len(ds) % span]
  return block_shard(ds, prompts_per_batch, shard_index, shard_count)


def prompt_dataset(
    source: Any,
    *,
    tokenizer: Any,
    template: prompts.PromptTemplate,
    prompts_per_batch: int,
    group_size: int,
    buckets: Sequence[int],
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    drop_overlong: bool = True,
    drop_remainder: bool = True,
    pad_id: int | None = None,
    read_threads: int = 1,
) -> grain.IterDataset:
  """The grain dataset of `PromptBatch`es (see the module docstring).

  Args:
    source: random-access records (`len`, `__getitem__` -> dict with at least
      question, answer, id).
    tokenizer: a transformers tokenizer.
    template: how questions become prompt text.
    prompts_per_batch: P, prompts per batch on this process.
    group_size: G, copies of each prompt (generations per prompt).
    buckets: allowed padded prompt lengths L.
    seed: shuffle seed (shared by all processes).
    shuffle: shuffle (and reshuffle every epoch); False keeps source order.
    num_epochs: passes over the source; None repeats forever.
    shard_index: this process's shard (jax.process_index() in multi-host).
    shard_count: number of shards (jax.process_count()).
    drop_overlong: skip prompts longer than every bucket; False raises.
      (Skips happen per shard, so a finite run that skips prompts can give
      processes different batch counts: size buckets to fit the data.)
    drop_remainder: for a finite run, drop the last incomplete batch and,
      with several shards, cut the stream to whole global batches of
      `shard_count` × P records (every process then runs the same number
      of batches: what training needs). False keeps every record
      (evaluation): the last batch may hold fewer than P prompts, and
      shards may differ by up to P records.
    pad_id: id for padding; None uses the tokenizer's pad (else eos) id.
    read_threads: threads preparing records ahead of the consumer. More than
      one shares the tokenizer between threads; tokenising is cheap, so 1 is
      the default.

  Returns:
    A grain IterDataset of PromptBatch.
  """
  _check_batching(source, prompts_per_batch, group_size, shard_index,
                  shard_count)
  pad_id = prompts.pad_id_of(tokenizer) if pad_id is None else pad_id
  max_len = max(buckets)
  ds = _shard_records(
      source, prompts_per_batch=prompts_per_batch, seed=seed,
      shuffle=shuffle, num_epochs=num_epochs, shard_index=shard_index,
      shard_count=shard_count, drop_remainder=drop_remainder)
  ds = ds.map(lambda record: _prepare(record, tokenizer, template))
  if drop_overlong:
    ds = ds.filter(lambda item: len(item["ids"]) <= max_len)
  iter_ds = ds.to_iter_dataset(
      read_options=grain.ReadOptions(
          num_threads=read_threads, prefetch_buffer_size=4 * prompts_per_batch
      )
  )
  return iter_ds.batch(
      prompts_per_batch,
      drop_remainder=drop_remainder,
      batch_fn=lambda items: _collate(items, buckets, pad_id, group_size),
  )


class PromptIterator:
  """A checkpointable iterator of `PromptBatch`es.

  `get_state()` is a JSON-serialisable dict; an iterator built with the same
  arguments and given that state with `set_state()` yields exactly the
  batches the saved one would have yielded next.

  Args: as `prompt_dataset`, except that `shard_index` / `shard_count`
  default to this JAX process and the process count.
  """

  def __init__(
      self,
      source: Any,
      *,
      shard_index: int | None = None,
      shard_count: int | None = None,
      seed: int,
      **kwargs: Any,
  ):
    self._shard_index, self._shard_count = _default_shard(
        shard_index, shard_count
    )
    self._seed = seed
    self._num_records = len(source)
    self._dataset = prompt_dataset(
        source,
        seed=seed,
        shard_index=self._shard_index,
        shard_count=self._shard_count,
        **kwargs,
    )
    self._iterator = iter(self._dataset)
    self._batches = 0

  def __iter__(self) -> "PromptIterator":
    return self

  def __next__(self) -> PromptBatch:
    batch = next(self._iterator)
    self._batches += 1
    return batch

  def _identity(self) -> dict[str, int]:
    return {
        "seed": self._seed,
        "shard_index": self._shard_index,
        "shard_count": self._shard_count,
        "num_records": self._num_records,
    }

  def get_state(self) -> dict[str, Any]:
    """Position and identity of the stream, as a JSON-serialisable dict."""
    return {
        "grain": self._iterator.get_state(),
        "batches": self._batches,
        **self._identity(),
    }

  def set_state(self, state: dict[str, Any]) -> None:
    """Moves to the position in `state` (from `get_state`).

    Raises:
      ValueError: `state` was saved by an iterator over a different source
        size, seed or shard, which would silently yield other data.
    """
    saved = {k: state.get(k) for k in self._identity()}
    if saved != self._identity():
      raise ValueError(
          f"iterator state was saved for {saved} but this iterator is "
          f"{self._identity()}; restore it into an iterator built with the "
          "same source, seed, shard_index and shard_count"
      )
    self._iterator.set_state(state["grain"])
    self._batches = int(state["batches"])


class MixedSource:
  """Random-access union of base records and extra records at a set share.

  Used to mix MQR rewrites into the training questions: all `base` records
  plus m = round(n · ratio / (1 − ratio)) records of `extra` (n = len(base)),
  so that extras make up m / (n + m) ≈ `ratio` of every epoch. The extras
  are a seeded permutation of `extra`, cycled when m > len(extra) (the
  number of repeated extras is `repeated`). ratio 0 is `base` alone; ratio 1
  is `extra` alone, each once. Shuffling is left to `prompt_dataset`.

  Args:
    base: random-access records (the original questions).
    extra: random-access records (the rewrites).
    ratio: the extras' share, in [0, 1].
    seed: seed of the extras' selection.
  """

  def __init__(self, base: Any, extra: Any, *, ratio: float, seed: int):
    if not 0.0 <= ratio <= 1.0:
      raise ValueError(f"data.mqr.ratio must lie in [0, 1], got {ratio}")
    if ratio > 0 and len(extra) == 0:  # pylint: disable=g-explicit-length-test
      raise ValueError("ratio > 0 but there are no extra (MQR) records")
    n_base = 0 if ratio == 1.0 else len(base)
    m = len(extra) if ratio == 1.0 else round(n_base * ratio / (1 - ratio))
    order = np.random.default_rng(seed).permutation(max(len(extra), 1))
    self._base, self._extra = base, extra
    self._index = [(0, i) for i in range(n_base)] + [
        (1, int(order[j % len(order)])) for j in range(m)]
    self.num_extra = m
    self.repeated = max(0, m - len(extra))

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, i: int) -> dict[str, Any]:
    which, j = self._index[i]
    return (self._extra if which else self._base)[j]
