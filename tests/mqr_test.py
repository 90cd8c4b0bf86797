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
                                     "</problem>"},
              "finish_reason": "length" if i == 1 else "stop"}
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


# --- endpoint back end --------------------------------------------------------


def test_batches_run_concurrently_and_keep_order(endpoint_factory):
  # The first 3 requests wait for each other: they only get through if the
  # client really has 3 in flight.
  endpoint = endpoint_factory(barrier=threading.Barrier(3))
  lines = []
  client = backend(endpoint, log=lines.append)
  convs = conversations(10)
  # An identical request in the same call is sent once.
  replies = client.complete(convs + conversations(1), n=2)
  assert replies[10].texts == replies[0].texts and replies[10].cached
  replies = replies[:10]
  keys = [mqr_backends.request_key(client.body(c, 2)) for c in convs]
  assert [r.texts for r in replies] == [
      (f"<problem>Rewrite {k[:12]} #0.</problem>",
       f"<problem>Rewrite {k[:12]} #1.</problem>") for k in keys]
  assert all(r.truncated == (False, True) for r in replies)
  assert endpoint.counts() == collections.Counter(keys)  # each sent once
  assert endpoint.peak == 3  # concurrency reached and never exceeded
  assert len(lines) == 3  # ceil(10 / batch_size 4) batches
  assert client.counts["prompt_tokens"] == 1000  # 10 x 100
  # A second call sends nothing: every reply is cached.
  again = client.complete(convs, n=2)
  assert [r.texts for r in again] == [r.texts for r in replies]
  assert all(r.cached for r in again) and len(endpoint.requests) == 10
  assert all(r.truncated == (False, True) for r in again)


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


# --- templates, parser, filters -----------------------------------------------


def test_template_messages_and_versions():
  t = mqr.make_template()
  assert t.version == mqr.TEMPLATE_VERSION
  system, user = t.messages(r"Find $x$ if $2x = \frac{1}{2}$.", "1/4", "term")
  assert system == {"role": "system", "content": mqr.SYSTEM}
  # Plain substitution: LaTeX braces survive, nothing is left unfilled.
  assert r"$2x = \frac{1}{2}$" in user["content"]
  assert "Its final answer is: 1/4" in user["content"]
  assert mqr.INSTRUCTIONS["term"] in user["content"]
  assert "{" + "question}" not in user["content"]
  custom = mqr.make_template(instructions={"term": "Name it a glorp."})
  assert custom.version.startswith(mqr.TEMPLATE_VERSION + "+")
  assert custom.version != mqr.make_template(system="Be terse.").version
  assert "Name it a glorp." in custom.messages("q", "1", "term")[-1][
      "content"]
  with pytest.raises(ValueError, match="lacks {answer}"):
    mqr.make_template(user="Rewrite {question} by {instruction}")
  with pytest.raises(ValueError, match="unknown MQR aspect"):
    t.messages("q", "1", "story")
  with pytest.raises(ValueError, match="distinct names"):
    mqr.check_aspects(("term", "term"))


@pytest.mark.parametrize("reply, expected", [
    ("<problem>A harder problem.</problem>", ("A harder problem.", "ok")),
    ("Sure! <problem>\nA harder problem.\n</problem> Hope it helps.",
     ("A harder problem.", "ok")),
    ("<think>let me see</think>Rewritten problem: A harder problem.",
     ("A harder problem.", "ok")),
    ("```\nA harder problem.\n```", ("A harder problem.", "ok")),
    ("<problem>A harder problem, cut off by the tok", (None, "malformed")),
    ("A harder problem.</problem>", (None, "malformed")),
    ("<problem>{question}</problem>", (None, "malformed")),
    ("   ", (None, "empty")),
    ("<problem> </problem>", (None, "empty")),
])
def test_parse_rewrite(reply, expected):
  assert mqr.parse_rewrite(reply) == expected


def test_parse_rewrite_can_require_tags():
  assert mqr.parse_rewrite("A harder problem.", require_tags=True) == (
      None, "malformed")


ORIGINAL = "Tom has 3 apples and buys 4 more. How many apples does he have?"
FILTERS = {"max_length_ratio": 6.0, "copy_threshold": 0.95}


@pytest.mark.parametrize("rewrite, verdict", [
    ("At the harvest fair, Tom, a keen gardener, has 3 apples and buys 4 "
     "more from a stall. How many apples does he have?", "kept"),
    (ORIGINAL, "copy"),
    ("tom has 3 apples, and buys 4 more; how many apples does he have",
     "copy"),  # same words, other case and punctuation
    ("Tom has 3 apples and buys 4 more, 7 in all. How many does he have?",
     "leak"),  # the gold 7 appears, the original has no 7
    (r"Tom has 3 apples and buys 4 more: \boxed{7}.", "leak"),
    ("Tom has 3 apples, buys 4 more and eats 0.7 of one. How many apples"
     " are left?", "kept"),  # 0.7 is not the answer 7
    ("word " * 500, "malformed"),  # runaway: 2500 characters > max(6 x 63,
                                   # 2000)
])
def test_screen_verdicts(rewrite, verdict):
  reply = f"<problem>{rewrite}</problem>"
  assert mqr.screen(ORIGINAL, "7", reply, **FILTERS)[1] == verdict


def test_truncated_and_echoing_replies_are_malformed():
  t = mqr.make_template()
  filters = dict(FILTERS, prompt_text=t.fixed_text("background"))
  story = "At the fair, Tom has 3 apples and buys 4 more. How many now?"
  assert mqr.screen(ORIGINAL, "7", story, **filters)[1] == "kept"
  # Cut by the length cap: untagged is unfinished; closed tags are whole.
  assert mqr.screen(ORIGINAL, "7", story, truncated=True, **filters)[1] == (
      "malformed")
  assert mqr.screen(ORIGINAL, "7", f"<problem>{story}</problem> And th",
                    truncated=True, **filters)[1] == "kept"
  # Restating the request (8 words of the instruction) is not a problem.
  echo = ("Tom has 3 apples. Place the problem inside a story or real-world"
          " setting that seems connected to it.")
  assert mqr.screen(ORIGINAL, "7", echo, **filters)[1] == "malformed"


def test_leak_counts_occurrences_beyond_the_original():
  original = "Find the sum of 7 and 0."
  # The gold 7 is in the original once: one mention is not a leak, two is.
  assert not mqr.leaks_answer(original, "Add 0 to the number 7.", "7")
  assert mqr.leaks_answer(original, "Add 0 to 7; the sum is 7.", "7")
  assert mqr.leaks_answer("Solve x+1=2.", "Solve x+1=2, where $x=1$.", "$1$")


def test_majority_preserves_uses_the_vote():
  def equal(a, b):
    return a.replace(" ", "") == b.replace(" ", "")
  box = lambda x: f"so \\boxed{{{x}}}"
  # Two of three say 7: kept. One 7 against two 8s: not kept. Unanswered
  # completions abstain: one 7 and two without an answer is kept.
  assert mqr.majority_preserves([box(7), box(8), box(7)], "7", equal)
  assert not mqr.majority_preserves([box(7), box(8), box(8)], "7", equal)
  assert mqr.majority_preserves(["no idea", box(7), "hmm"], "7", equal)
  assert not mqr.majority_preserves(["no idea"], "7", equal)
  assert not mqr.majority_preserves([], "7", equal)


# --- the driver with scripted back ends ---------------------------------------


class ScriptedBackend:
  """Replies from a function of the last message (no model, no network)."""

  def __init__(self, reply_fn, name="scripted"):
    self.reply_fn, self.name = reply_fn, name
    self.counts = collections.Counter()
    self.calls = []

  def complete(self, conversations, n=1):
    self.calls.append(len(conversations))
    out = []
    for messages in conversations:
      text = self.reply_fn(messages[-1]["content"])
      if text is None:
        out.append(mqr_backends.Reply(error="failed", detail="scripted"))
      else:
        out.append(mqr_backends.Reply(texts=(text,) * n, prompt_tokens=10,
                                      completion_tokens=5 * n))
    return out


SOURCES = [
    {"id": "q0", "question": "What is 2 + 3?", "answer": "5"},
    {"id": "q1", "question": "What is 4 * 6?", "answer": "24"},
    {"id": "q2", "question": "What is nothing?", "answer": ""},
]


def _rewriter(user):
  """background: a good rewrite; term: a copy for q0, a leak for q1;
  sub_problem: a truncated reply for q0, a failed request for q1."""
  question = user.split("Problem:\n", 1)[1].split("\n\nIts final", 1)[0]
  if mqr.INSTRUCTIONS["background"] in user:
    return f"<problem>On a long train journey, Ann asks: {question}</problem>"
  if mqr.INSTRUCTIONS["term"] in user:
    if "2 + 3" in question:
      return f"<problem>{question}</problem>"
    return f"<problem>{question} (It is 24.)</problem>"
  return "<problem>Let" if "2 + 3" in question else None


def _solver(user):
  # Solves the train-journey version of q0 right, of q1 wrong.
  return r"\boxed{5}" if "2 + 3" in user else r"\boxed{25}"


def test_augment_verdicts_statistics_and_outputs(tmp_path):
  def equal(a, b):
    return a.strip() == b.strip()
  generator = ScriptedBackend(_rewriter, "scripted-rewriter")
  stats = mqr_augment.augment(
      SOURCES, generator=generator, template=mqr.make_template(),
      aspects=mqr.ASPECTS, out_dir=str(tmp_path),
      solver=ScriptedBackend(_solver), solver_k=3, filters=FILTERS,
      equal=equal)
  c = stats.counts
  # q2 has no gold answer: skipped, not sent. 2 questions x 3 aspects.
  assert dict(stats.skipped_sources) == {"empty_gold": 1}
  assert generator.calls == [6]
  assert (c["background"]["kept"], c["background"]["not_preserved"]) == (1, 1)
  assert (c["term"]["copy"], c["term"]["leak"]) == (1, 1)
  assert (c["sub_problem"]["malformed"], c["sub_problem"]["failed"]) == (1, 1)
  for aspect in mqr.ASPECTS:  # every request has exactly one verdict
    verdicts = sum(c[aspect][v] for v in ("kept",) + mqr.REJECTIONS)
    assert verdicts == c[aspect]["requested"] == 2
  # Only the 2 background rewrites reached the solver (n=3 each).
  assert c["background"]["solved"] == 2 and c["term"]["solved"] == 0
  assert c["background"]["solve_completion_tokens"] == 2 * 15
  kept = mqr.load(tmp_path / "mqr.jsonl")
  assert [(r["id"], r["source_id"], r["aspect"], r["answer"]) for r in kept
          ] == [("q0/mqr/background", "q0", "background", "5")]
  assert kept[0]["question"] == (
      "On a long train journey, Ann asks: What is 2 + 3?")
  assert kept[0]["generator"] == "scripted-rewriter"
  assert kept[0]["template_version"] == mqr.TEMPLATE_VERSION
  assert kept[0]["solver_answers"] == ["5", "5", "5"]
  rejected = [json.loads(line) for line in
              (tmp_path / "mqr_rejected.jsonl").read_text().splitlines()]
  assert sorted(r["verdict"] for r in rejected) == [
      "copy", "failed", "leak", "malformed", "not_preserved"]
  summary = json.loads((tmp_path / "mqr_stats.json").read_text())
  # Per source question: 3 generator requests; 5 replies of 10 prompt
  # tokens (the failed request bills none) over 2 questions = 25; 2
  # solver requests over 2 questions = 1.
  assert summary["per_question"]["gen_requests"] == 3
  assert summary["per_question"]["gen_prompt_tokens"] == 25
  assert summary["per_question"]["solve_requests"] == 1
  report = (tmp_path / "mqr_report.md").read_text()
  assert "**Original.** What is 2 + 3?" in report
  assert "**Rewrite.** On a long train journey" in report
  assert "# Rejected MQR rewrites" in report
  assert "kept" in stats.table() and "not_preserved" in stats.table()


def test_report_command_prints_original_and_rewrite(tmp_path, capsys):
  record = mqr.make_record(SOURCES[0], "term", "Define a glorp as 2 + 3.",
                           generator="g", template_version="v")
  path = tmp_path / "mqr.jsonl"
  path.write_text(json.dumps(record) + "\n")
  mqr.main(["mqr", str(path), "1"])
  out = capsys.readouterr().out
  assert "## term" in out and "What is 2 + 3?" in out
  assert "Define a glorp as 2 + 3." in out


# --- mixing into training -----------------------------------------------------


def _write_rewrites(path, base, count):
  """One rewrite per aspect of the first `count` base records."""
  rows = [mqr.make_record(base[i], aspect, f"[{aspect}] {base[i]['question']}",
                          generator="test", template_version="v")
          for i in range(count) for aspect in mqr.ASPECTS]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return rows


@pytest.mark.parametrize("ratio, n_extra", [
    (0.5, 40),   # 40 * 0.5 / 0.5
    (0.75, 120),  # the MathForge share: 40 * 0.75 / 0.25
    (0.0, 0),
])
def test_mixed_stream_has_the_expected_share_and_gold_answers(
    tmp_path, ratio, n_extra):
  import tiny_tokenizer  # pylint: disable=g-import-not-at-top
  from mathrl.data import prompts  # pylint: disable=g-import-not-at-top
  base = synthetic.ArithmeticTasks(40, seed=5, max_ops=2)
  _write_rewrites(tmp_path / "mqr.jsonl", base, 10)  # 30 rewrites
  mixed = pipeline.MixedSource(
      base, mqr.load(tmp_path / "mqr.jsonl"), ratio=ratio, seed=0)
  assert len(mixed) == 40 + n_extra
  assert mixed.repeated == max(0, n_extra - 30)
  gold = {base[i]["id"]: base[i]["answer"] for i in range(len(base))}
  base_by_id = {base[i]["id"]: base[i] for i in range(len(base))}
  batches = pipeline.prompt_dataset(
      mixed, tokenizer=tiny_tokenizer.make(chat=False),
      template=prompts.PromptTemplate(), prompts_per_batch=8, group_size=2,
      buckets=(96,), seed=1, num_epochs=1)
  seen = rewritten = 0
  for batch in batches:
    for record, answer in zip(batch.records_P, batch.answers_P):
      seen += 1
      if "aspect" in record:
        rewritten += 1
        assert record["question"].startswith(f"[{record['aspect']}] ")
        assert answer == gold[record["source_id"]]  # the original's gold
        assert "solution" not in record
        assert record["difficulty"] == base_by_id[record["source_id"]][
            "difficulty"]
  # One epoch, nothing dropped: exactly n_extra of 40 + n_extra prompts.
  assert (seen, rewritten) == (40 + n_extra, n_extra)


def test_mixed_source_edges(tmp_path):
  base = synthetic.ArithmeticTasks(6, seed=5)
  rows = _write_rewrites(tmp_path / "mqr.jsonl", base, 2)
  only = pipeline.MixedSource(base, rows, ratio=1.0, seed=0)
  assert sorted(only[i]["id"] for i in range(len(only))) == sorted(
      r["id"] for r in rows)
  with pytest.raises(ValueError, match=r"ratio must lie in \[0, 1\]"):
    pipeline.MixedSource(base, rows, ratio=1.5, seed=0)
  with pytest.raises(ValueError, match="no MQR record of aspects"):
    (tmp_path / "empty.jsonl").write_text("")
    mqr.load(tmp_path / "empty.jsonl")
  (tmp_path / "bad.jsonl").write_text('{"id": "x", "question": "q"}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl:1, field 'source_id'"):
    mqr.load(tmp_path / "bad.jsonl")
  term = mqr.load(tmp_path / "mqr.jsonl", aspects=("term",))
  assert [r["aspect"] for r in term] == ["term", "term"]


def test_config_wires_mqr_into_the_rl_source_and_scales_prompts(tmp_path):
  from mathrl import builders  # pylint: disable=g-import-not-at-top
  c = configlib.base_config()
  c.data.synthetic.num_train = 40
  base = builders.make_train_source(c, str(tmp_path))
  _write_rewrites(tmp_path / "mqr.jsonl", base, 10)
  assert builders.make_rl_source(c, str(tmp_path), base) is base  # path ""
  c.data.mqr.path = str(tmp_path / "mqr.jsonl")
  c.data.mqr.aspects = ("background", "term")
  c.data.mqr.ratio = 0.5
  source = builders.make_rl_source(c, str(tmp_path), base)
  extras = [source[i] for i in range(len(source)) if "aspect" in source[i]]
  # 40 originals + 40 rewrites, drawn from the 20 background/term ones.
  assert len(source) == 80 and len(extras) == 40
  assert {r["aspect"] for r in extras} == {"background", "term"}
  # The switch: P x (1 + 2 aspects), steps unchanged; a second application
  # changes nothing; off (or no path) leaves the config as it is.
  assert configlib.apply_mqr_scaling(c) is c
  c.data.mqr.scale_prompts_per_step = True
  no_path = configlib.base_config()
  no_path.data.mqr.scale_prompts_per_step = True
  with pytest.raises(ValueError, match="data.mqr.path is empty"):
    configlib.apply_mqr_scaling(no_path)
  scaled = configlib.apply_mqr_scaling(c)
  assert (scaled.rl.prompts_per_step, scaled.rl.steps) == (16 * 3, c.rl.steps)
  assert configlib.apply_mqr_scaling(scaled).rl.prompts_per_step == 48
  assert c.rl.prompts_per_step == 16  # the input is not changed


# --- end to end on local models -----------------------------------------------


def _local_config(model, tokenizer="", **overrides):
  c = configlib.base_config()
  c.data.synthetic.num_train = 50
  a = c.augment
  a.num_questions = 3
  for section in (a.generator, a.solver):
    section.backend = "local"
    section.model = str(model)
    section.tokenizer = str(tokenizer)
    section.max_new_tokens = 8
    section.batch_size = 9
    section.buckets = (256,)
  a.solver.k = 2
  for key, value in overrides.items():
    target, _, field = key.rpartition(".")
    section = c
    for part in target.split("."):
      section = section[part]
    section[field] = value
  return c


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
  """(tiny random qwen2 checkpoint, chat tokenizer folder of 127 words).

  The tokenizer has its own folder: next to the checkpoint's config.json,
  transformers would load it as a Qwen2 tokenizer.
  """
  import hf_checkpoints  # pylint: disable=g-import-not-at-top
  import tiny_tokenizer  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("mqr_model")
  path = hf_checkpoints.write_tiny_checkpoint("qwen2", root / "qwen2")
  tokenizer = tiny_tokenizer.make(chat=True, num_problems=20)
  assert len(tokenizer) <= 256  # the checkpoint's vocabulary
  tokenizer.save_pretrained(root / "tokenizer")
  return path, root / "tokenizer"


def test_end_to_end_with_a_tiny_local_generator_and_solver(
    tiny_generator, tmp_path):
  model_path, tokenizer_path = tiny_generator
  c = _local_config(model_path, tokenizer_path)
  stats = mqr_augment.run(c, str(tmp_path), log=lambda *_: None)
  summary = json.loads((tmp_path / "mqr_stats.json").read_text())
  kept = (tmp_path / "mqr.jsonl").read_text().splitlines()
  rejected = [json.loads(line) for line in
              (tmp_path / "mqr_rejected.jsonl").read_text().splitlines()]
  # 3 questions x 3 aspects, each with exactly one verdict; the random
  # model's text is gibberish, so what it says is not checked, only that
  # every rewrite is accounted for and on disk.
  for aspect in mqr.ASPECTS:
    counts = stats.counts[aspect]
    assert counts["requested"] == 3
    assert sum(counts[v] for v in ("kept",) + mqr.REJECTIONS) == 3
    assert counts["gen_completion_tokens"] > 0
  assert len(kept) + len(rejected) == 9
  assert all(r["generator"] == f"local:{model_path}" for r in rejected)
  assert summary["generator"] == f"local:{model_path}"
  assert summary["solver_k"] == 2
  # One sampler call for the 9 rewrites (batch 9); the solver gets the
  # rewrites that passed the text filters, k=2 replies each.
  assert summary["generator_counts"]["sampler_calls"] == 1
  solved = sum(stats.counts[a]["solved"] for a in mqr.ASPECTS)
  assert solved == sum(stats.counts[a][v] for a in mqr.ASPECTS
                       for v in ("kept", "not_preserved"))
  assert summary["solver_counts"].get("sampler_calls", 0) == min(solved, 1)
  # A rerun answers every request from the cache and writes the same files.
  before = (tmp_path / "mqr_rejected.jsonl").read_text()
  mqr_augment.run(c, str(tmp_path), log=lambda *_: None)
  again = json.loads((tmp_path / "mqr_stats.json").read_text())
  assert "sampler_calls" not in again["generator_counts"]
  assert again["generator_counts"]["cache_hits"] >= 9
  assert sum(again["per_aspect"][a]["gen_sent"] for a in mqr.ASPECTS) == 0
  assert (tmp_path / "mqr_rejected.jsonl").read_text() == before


def test_local_backend_samples_n_replies_per_prompt(tiny_generator):
  import transformers  # pylint: disable=g-import-not-at-top
  from mathrl import models  # pylint: disable=g-import-not-at-top
  from mathrl import sampling  # pylint: disable=g-import-not-at-top
  model_path, tokenizer_path = tiny_generator
  model = models.from_pretrained(str(model_path))
  tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_path)
  local = mqr_backends.LocalBackend(
      model, tokenizer, name="tiny", max_new_tokens=4,
      method=sampling.Greedy(), batch_size=2, buckets=(32,))
  convs = conversations(3) + [[{"role": "user", "content": "x " * 40}]]
  replies = local.complete(convs, n=2)
  # Greedy: both replies of a prompt are the same; the 40-word prompt does
  # not fit the 32-token bucket and fails, counted, without sampling.
  assert [len(r.texts) for r in replies] == [2, 2, 2, 0]
  assert all(r.texts[0] == r.texts[1] for r in replies[:3])
  assert replies[3].error == "failed" and "largest bucket" in replies[3].detail
  # The random model emits no stop token within 4 tokens: all cut.
  assert all(r.truncated == (True, True) for r in replies[:3])
  assert local.counts["sampler_calls"] == 2  # 3 prompts, batches of 2
  assert local.counts["failed"] == 1


@pytest.mark.slow
def test_end_to_end_with_the_real_smollm2_model(tmp_path):
  from mathrl.models import checkpoints  # pylint: disable=g-import-not-at-top
  try:
    checkpoints.checkpoint_path(mqr_backends.SMOLLM2_PRESET)
  except FileNotFoundError as e:
    pytest.skip(str(e))
  # 2 questions x 3 aspects = 6 rewrites, then one solution each; both
  # stages sample 6 rows x 16 tokens from prompts padded to 256 tokens (the
  # rewrite prompts are ~200 tokens), so they share compiled programs.
  c = _local_config(mqr_backends.SMOLLM2_PRESET, **{
      "augment.num_questions": 2, "augment.solver.k": 1,
      "augment.generator.batch_size": 6, "augment.solver.batch_size": 6,
      "augment.generator.max_new_tokens": 16,
      "augment.solver.max_new_tokens": 16})
  stats = mqr_augment.run(c, str(tmp_path), log=lambda *_: None)
  for aspect in mqr.ASPECTS:
    counts = stats.counts[aspect]
    assert counts["requested"] == 2
    assert sum(counts[v] for v in ("kept",) + mqr.REJECTIONS) == 2
    assert counts["failed"] == 0  # every prompt fits the 256 bucket
  report = (tmp_path / "mqr_report.md").read_text()
  assert "**Original.**" in report and "**Rewrite.**" in report


def test_training_run_sees_the_mixed_share_with_original_golds(
    tmp_path, monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top
  from mathrl import builders  # pylint: disable=g-import-not-at-top
  from mathrl import trainer  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      "tiny", ROOT / "configs" / "tiny.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  # 8 training questions + 8 rewrites (ratio 0.5) = 16 prompts: 4 RL steps
  # of P=4 are exactly one epoch.
  c.data.synthetic.num_train = 8
  c.rl.steps, c.rl.prompts_per_step, c.sft.steps = 4, 4, 0
  c.checkpoint.every_steps = 4
  base = builders.make_train_source(c, str(tmp_path))
  _write_rewrites(tmp_path / "mqr.jsonl", base, 4)  # 12 rewrites
  c.data.mqr.path = str(tmp_path / "mqr.jsonl")
  c.data.mqr.ratio = 0.5
  seen = []
  original_next = pipeline.PromptIterator.__next__

  def recording_next(self):
    batch = original_next(self)
    if batch.group_size == c.rl.num_generations:  # not the evaluation's
      seen.extend(zip(batch.records_P, batch.answers_P))
    return batch

  monkeypatch.setattr(pipeline.PromptIterator, "__next__", recording_next)
  trainer.train(c, str(tmp_path / "run"))
  gold = {base[i]["id"]: base[i]["answer"] for i in range(len(base))}
  rewritten = [(r, a) for r, a in seen if "aspect" in r]
  assert len(seen) == 16 and len(rewritten) == 8
  assert all(a == gold[r["source_id"]] for r, a in rewritten)
  assert len({r["id"] for r, _ in seen if "aspect" not in r}) == 8


def test_a_local_model_that_is_not_there_names_what_it_accepts(tmp_path):
  with pytest.raises(FileNotFoundError,
                     match="neither a folder, a .gguf file nor one of"):
    mqr_backends.load_local(str(tmp_path / "no_such_model"))
