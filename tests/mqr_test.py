"""MQR: templates, parser, filters, statistics, back ends, mixing, end to end.

The endpoint tests run a fake OpenAI-compatible server on 127.0.0.1 (a
random free port) in a thread; it counts every request it receives, keyed
by the same hash the client caches under.
"""

import collections
import contextlib
import http.server
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading

from mathrl import configlib
from mathrl.data import mqr
from mathrl.data import mqr_augment
from mathrl.data import mqr_backends
from mathrl.data import pipeline
from mathrl.data import synthetic
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


# --- a fake OpenAI-compatible endpoint ----------------------------------------


class FakeEndpoint:
  """A chat-completions server whose replies a test scripts per request.

  `script(body, attempt)` returns None (a normal reply: the content names
  the request's key) or (status, payload bytes, headers); `attempt` counts
  this key's requests from 0. `hold` (an Event) makes every request after
  the `hold_after`-th wait until it is set. `requests` lists the keys in
  arrival order; `peak` is the most requests handled at once.
  """

  def __init__(self, script=None, hold_after=None, barrier=None):
    self.script = script or (lambda body, attempt: None)
    self.requests, self.peak, self._active = [], 0, 0
    self.lock = threading.Lock()
    self.hold_after, self.hold = hold_after, threading.Event()
    self.reached = threading.Event()
    self.barrier = barrier
    endpoint = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):
        del args

      def do_POST(self):  # pylint: disable=invalid-name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        endpoint.serve(self, body)

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.server.daemon_threads = True
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def counts(self):
    return collections.Counter(self.requests)

  def serve(self, handler, body):
    key = mqr_backends.request_key(body)
    with self.lock:
      attempt = self.requests.count(key)
      self.requests.append(key)
      number = len(self.requests)
      self._active += 1
      self.peak = max(self.peak, self._active)
    try:
      if self.barrier is not None and number <= self.barrier.parties:
        self.barrier.wait(timeout=20)
      if self.hold_after is not None and number > self.hold_after:
        self.reached.set()
        self.hold.wait(timeout=60)
      scripted = self.script(body, attempt)
      status, payload, headers = scripted or (200, reply_json(body, key), {})
      with contextlib.suppress(OSError):
        handler.send_response(status)
        for name, value in headers.items():
          handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
    finally:
      with self.lock:
        self._active -= 1

  def close(self):
    self.hold.set()
    self.server.shutdown()
    self.server.server_close()


def reply_json(body, key):
  choices = [{"message": {"role": "assistant",
                          "content": f"<problem>Rewrite {key[:12]} #{i}."
                                     "</problem>"}}
             for i in range(body.get("n", 1))]
  return json.dumps({"choices": choices,
                     "usage": {"prompt_tokens": 100,
                               "completion_tokens": 10}}).encode()


@pytest.fixture
def endpoint_factory():
  made = []

  def make(**kwargs):
    made.append(FakeEndpoint(**kwargs))
    return made[-1]

  yield make
  for e in made:
    e.close()


def conversations(n):
  return [[{"role": "user", "content": f"question {i}"}] for i in range(n)]


def backend(endpoint, **kwargs):
  defaults = dict(base_url=endpoint.url, model="fake", max_tokens=32,
                  batch_size=4, concurrency=3, max_retries=3, timeout_s=10,
                  backoff_s=0.01, max_backoff_s=0.05)
  return mqr_backends.OpenAIBackend(**{**defaults, **kwargs})


# --- endpoint back end ---------------------------------------------------------


def test_batches_run_concurrently_and_keep_order(endpoint_factory):
  # The first 3 requests wait for each other: they only get through if the
  # client really has 3 in flight.
  endpoint = endpoint_factory(barrier=threading.Barrier(3))
  lines = []
  client = backend(endpoint, log=lines.append)
  convs = conversations(10)
  replies = client.complete(convs, n=2)
  keys = [mqr_backends.request_key(client.body(c, 2)) for c in convs]
  assert [r.texts for r in replies] == [
      (f"<problem>Rewrite {k[:12]} #0.</problem>",
       f"<problem>Rewrite {k[:12]} #1.</problem>") for k in keys]
  assert endpoint.counts() == collections.Counter(keys)  # each sent once
  assert endpoint.peak == 3  # concurrency reached and never exceeded
  assert len(lines) == 3  # ceil(10 / batch_size 4) batches
  assert client.counts["prompt_tokens"] == 1000  # 10 x 100
  # A second call sends nothing: every reply is cached.
  again = client.complete(convs, n=2)
  assert [r.texts for r in again] == [r.texts for r in replies]
  assert all(r.cached for r in again) and len(endpoint.requests) == 10


def test_retries_429_and_5xx_with_backoff_and_gives_up(endpoint_factory):
  convs = conversations(4)

  def script(body, attempt):
    question = body["messages"][0]["content"]
    if question == "question 0" and attempt == 0:
      return 429, b"slow down", {"Retry-After": "0"}
    if question == "question 1" and attempt < 2:
      return 500, b"oops", {}
    if question == "question 2":
      return 503, b"down", {}
    if question == "question 3":
      return 400, b"bad request", {}
    return None

  endpoint = endpoint_factory(script=script)
  client = backend(endpoint, max_retries=2)
  replies = client.complete(convs)
  counts = endpoint.counts()
  keys = [mqr_backends.request_key(client.body(c, 1)) for c in convs]
  # 429 once then ok: 2 requests; 500 twice then ok: 3; 503 always: 1 + 2
  # retries = 3, then failed; 400: not retried, failed.
  assert [counts[k] for k in keys] == [2, 3, 3, 1]
  assert [r.error for r in replies] == [None, None, "failed", "failed"]
  assert "HTTP 400" in replies[3].detail
  assert client.counts["retries"] == 1 + 2 + 2
  assert client.counts["http_429"] == 1 and client.counts["http_500"] == 2
  assert client.counts["http_503"] == 3 and client.counts["failed"] == 2
  assert len(client.cache) == 2  # failures are not cached


def test_timeout_is_retried(endpoint_factory):
  stall = threading.Event()

  def script(body, attempt):
    del body
    if attempt == 0:
      stall.wait(timeout=5)  # longer than the client's 0.3 s timeout
    return None

  endpoint = endpoint_factory(script=script)
  client = backend(endpoint, timeout_s=0.3, max_retries=1)
  reply, = client.complete(conversations(1))
  stall.set()
  assert reply.error is None and len(reply.texts) == 1
  assert client.counts["timeouts"] == 1
  assert len(endpoint.requests) == 2


def test_malformed_responses_are_rejected_and_counted(endpoint_factory):
  bad = {
      "question 0": b"<html>not json</html>",
      "question 1": b'{"result": "no choices"}',
      "question 2": b'{"choices": [{"message": {"content": "one"}}]}',
      "question 3": b'{"choices": [{"message": {"content": null}},'
                    b' {"message": {"content": "x"}}]}',
  }

  def script(body, attempt):
    del attempt
    payload = bad.get(body["messages"][0]["content"])
    return None if payload is None else (200, payload, {})

  endpoint = endpoint_factory(script=script)
  client = backend(endpoint)
  replies = client.complete(conversations(5), n=2)
  assert [r.error for r in replies] == ["bad_response"] * 4 + [None]
  assert client.counts["bad_responses"] == 4
  assert len(client.cache) == 1  # only the well-formed reply is cached
  assert len(endpoint.requests) == 5  # not retried


def _augment_cmd(workdir, url, cache):
  return [
      sys.executable, "-m", "mathrl.main", "--mode=augment",
      f"--config={ROOT / 'configs' / 'tiny.py'}", f"--workdir={workdir}",
      "--config.augment.num_questions=8",
      "--config.augment.generator.backend=openai",
      f"--config.augment.generator.base_url={url}",
      "--config.augment.generator.model=fake",
      "--config.augment.generator.concurrency=2",
      "--config.augment.generator.batch_size=2",
      "--config.augment.generator.backoff_s=0.01",
      f"--config.augment.cache={cache}",
  ]


def test_resume_after_kill_sends_no_cached_request_again(
    endpoint_factory, tmp_path):
  cache = tmp_path / "cache.jsonl"
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "OPENAI_API_KEY": "k"}
  first = endpoint_factory(hold_after=10)
  proc = subprocess.Popen(_augment_cmd(tmp_path, first.url, cache),
                          cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
  assert first.reached.wait(timeout=240), proc.stdout.read().decode()[-2000:]
  proc.send_signal(signal.SIGKILL)  # killed with requests in flight
  proc.wait()
  first.hold.set()
  cached = {json.loads(line)["key"] for line in cache.read_text().splitlines()}
  assert 0 < len(cached) <= 10

  second = endpoint_factory()
  done = subprocess.run(_augment_cmd(tmp_path, second.url, cache), cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=240)
  assert done.returncode == 0, done.stderr[-2000:]
  # 8 questions x 3 aspects = 24 requests: the rerun sends exactly those
  # not cached before the kill, each once.
  assert not cached & set(second.requests)
  assert len(second.requests) == len(set(second.requests)) == 24 - len(cached)
  stats = json.loads((tmp_path / "mqr_stats.json").read_text())
  assert sum(stats["per_aspect"][a]["requested"] for a in mqr.ASPECTS) == 24
  assert stats["per_question"]["gen_requests"] == 3
  kept = (tmp_path / "mqr.jsonl").read_text().splitlines()
  rejected = (tmp_path / "mqr_rejected.jsonl").read_text().splitlines()
  assert len(kept) + len(rejected) == 24
