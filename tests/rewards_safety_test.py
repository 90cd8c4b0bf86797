"""Hostile inputs: bounded time, nothing executed, stuck workers killed."""

import concurrent.futures
import functools
import logging
import os
import pathlib
import subprocess
import sys
import time

import pytest

import mathrl
from mathrl import rewards
from mathrl.rewards import guards
from mathrl.rewards import pool
from mathrl.rewards import ratelimit
from mathrl.rewards import sympy_check

# The hard bound every math_equal call must meet once the pool is up:
# the 3 s worker deadline plus parent-side work; "well under 5 s".
BOUND_S = 4.0


@pytest.fixture(scope="module")
def verifier():
  return rewards.default_verifier().start()


def _timed(fn, *args):
  start = time.monotonic()
  result = fn(*args)
  return result, time.monotonic() - start


_DEEP = 100_000
HOSTILE_CASES = (
    # (name, completion, gold)
    ("deep braces", "{" * _DEEP + "1" + "}" * _DEEP, "1"),
    ("deep braces in a box", r"\boxed{" + "{" * _DEEP + "1" + "}" * _DEEP + "}",
     "1"),
    ("unclosed braces in a box", r"\boxed{" + "{" * _DEEP, "1"),
    ("many boxes", r"\boxed{" * 50_000, "1"),
    ("power tower", r"\boxed{10^{10^{10}}}", "1"),
    ("python power tower", r"\boxed{9**9**9}", "1"),
    ("stacked superscripts", r"\boxed{{10}^{10}^{10}}", "1"),
    ("huge exponent", r"\boxed{2^{99999999}}", "1"),
    ("huge factorial", r"\boxed{100000!}", "1"),
    ("huge scientific", r"\boxed{1e99999}", "1"),
    ("2 MB of text", "lorem ipsum " * 175_000 + r"\boxed{10^{10^{10}}}", "1"),
    ("2 MB answer line", "#### " + "9" * 2_000_000, "9"),
    ("gold is hostile", r"\boxed{1}", "{" * _DEEP),
    # Unboxed prose goes to math-verify's own extraction: bait for its
    # patterns, and a power tower that only the worker deadline stops.
    ("power tower in prose", "We get $10^{10^{10}}$ as the count.", "1"),
    ("dollar signs", "$" * _DEEP, "1"),
    ("answer-cue bait", "Final Answer: the answer is " * 500, "1"),
    ("inline-math bait", "$a$ " * 5_000, "1"),
    # Passes every cheap guard but keeps sympy busy for long: only the
    # worker deadline stops it.
    ("slow for sympy", r"\boxed{\sum_{n=1}^{10000} n^{10000}}", "1"),
)


@pytest.mark.parametrize(
    "name, completion, gold", HOSTILE_CASES, ids=[c[0] for c in HOSTILE_CASES]
)
def test_hostile_inputs_return_false_within_bound(verifier, name, completion,
                                                  gold):
  del verifier
  result, seconds = _timed(rewards.math_equal, completion, gold)
  assert result is False, name
  assert seconds < BOUND_S, (name, seconds)


def test_a_stuck_pair_does_not_cost_its_batch(verifier):
  slow = r"\boxed{\sum_{n=1}^{10000} n^{10000}}"
  timeouts_before = verifier.stats().get("timeout", 0)
  completions = [slow, r"\boxed{\frac{2}{4}}", r"\boxed{(1,2]}", slow,
                 r"\boxed{\sqrt{4}}", r"\boxed{x^2}"]
  golds = ["1", "0.5", "(1, 2]", "1", "2", "x^3"]
  start = time.monotonic()
  verdicts = verifier.equal_batch(completions, golds)
  seconds = time.monotonic() - start
  assert verdicts == [False, True, True, False, True, False]
  assert verifier.stats()["timeout"] == timeouts_before + 2
  # Two 3 s deadlines on two workers, plus a respawn: well under 20 s.
  assert seconds < 20.0


@pytest.mark.parametrize(
    "answer, reason",
    (
        (r"10^{10^{10}}", "huge exponent"),
        (r"{10}^{10}^{10}", "huge exponent"),
        ("9**9**9", "huge exponent"),
        (r"2^{99999999}", "huge exponent"),
        ("100000!", "huge factorial"),
        ("{" * 30 + "}" * 30, "too deep"),
        ("1" * 1001, "too long"),
        ("__import__('os')", "looks like code"),
        ("lambda: 0", "looks like code"),
        # Ordinary answers pass.
        (r"2^{2023}", None),
        (r"x^{2}y^{2}", None),
        (r"e^{i\pi}", None),
        (r"\frac{\sqrt{2}}{2}", None),
        (r"\left( 3, \frac{\pi}{2} \right)", None),
        ("5!", None),
    ),
)
def test_refusal_reasons(answer, reason):
  assert guards.refusal_reason(answer, max_answer_chars=1000) == reason


def test_2mb_completion_still_finds_its_answer(verifier):
  completion = "lorem ipsum " * 175_000 + r"so \boxed{\frac{84}{2}}."
  assert len(completion) > 2_000_000
  result, seconds = _timed(verifier.equal, completion, "42")
  assert result is True
  assert seconds < BOUND_S


@pytest.mark.parametrize(
    "payload",
    (
        "__import__('os').system('touch {path}')",
        "eval(\"__import__('os').system('touch {path}')\")",
        "open('{path}', 'w')",
        "exec(\"open('{path}', 'w')\")",
    ),
)
def test_python_in_the_box_is_never_executed(verifier, tmp_path, payload):
  path = tmp_path / "pwned"
  code = payload.format(path=path)
  result, seconds = _timed(rewards.math_equal, r"\boxed{" + code + "}", "0")
  assert result is False and seconds < BOUND_S
  # Bypass the parent's refusal and hand the text to the worker's
  # math-verify step itself: it parses LaTeX and arithmetic only.
  direct = verifier.worker_pool.call(
      sympy_check.check, (code, "0"), timeout_s=3.0
  )
  assert direct.status in ("ok", "error") and direct.value is not True
  assert not path.exists()


def test_stuck_verification_is_killed_and_the_pool_recovers():
  # A check that sleeps 60 s stands in for sympy stuck on some input.
  slow = rewards.MathVerifier(
      num_workers=2,
      timeout_s=1.0,
      check_fn=functools.partial(sympy_check.sleep_then_check, 60.0),
  ).start()
  try:
    assert slow.worker_pool.wait_ready(60.0)
    pids_before = set(slow.worker_pool.pids())
    result, seconds = _timed(slow.equal, r"\boxed{\frac{1}{3}}", "1/3")
    assert result is False
    assert 1.0 <= seconds < BOUND_S
    assert slow.stats()["timeout"] == 1
    assert slow.worker_pool.stats()["timeout"] == 1
    # The next call is served at once by the other worker.
    ok = slow.worker_pool.call(
        sympy_check.check, ("1/3", r"\frac13"), timeout_s=3.0
    )
    assert ok.status == "ok" and ok.value is True
    # The killed worker was replaced: all workers are up again.
    assert slow.worker_pool.wait_ready(60.0)
    assert slow.worker_pool.stats()["spawned"] == 3
    pids_after = set(slow.worker_pool.pids())
    killed = pids_before - pids_after
    assert len(killed) == 1
    for pid in killed:
      with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped, not a zombie
  finally:
    slow.close()


def test_pool_survives_failing_and_dying_workers():
  with pool.ProcessPool(num_workers=1) as workers:
    raised = workers.call(int, ("not a number",), timeout_s=5.0)
    assert raised.status == "error" and "ValueError" in raised.value
    # os._exit ends the worker mid-call, as a crash in sympy's C code would.
    died = workers.call(os._exit, (3,), timeout_s=5.0)
    assert died.status == "error"
    # wait_s lets the call wait for the replacement to start.
    again = workers.call(int, ("7",), timeout_s=5.0, wait_s=60.0)
    assert again.status == "ok" and again.value == 7
    assert workers.stats()["spawned"] == 2


def test_pool_close_kills_every_worker():
  workers = pool.ProcessPool(num_workers=2)
  assert workers.wait_ready(60.0)
  pids = workers.pids()
  assert len(pids) == 2
  workers.close()
  assert not [pid for pid in pids if _running(pid)]
  assert not workers.pids()
  with pytest.raises(RuntimeError, match="closed"):
    workers.call(sympy_check.check, ("1", "1"), timeout_s=1.0)


_LEAK_SCRIPT = """
import os, signal, sys, threading, time
from mathrl.rewards import pool
p = pool.ProcessPool(num_workers=2)
assert p.wait_ready(60.0)
print(' '.join(map(str, p.pids())), flush=True)
if sys.argv[1] == 'killed_while_busy':
  threading.Thread(target=p.call, args=(time.sleep, (60.0,)),
                   kwargs={'timeout_s': 120.0}, daemon=True).start()
  time.sleep(0.5)
  os.kill(os.getpid(), signal.SIGKILL)  # no atexit, a worker mid-task
"""


@pytest.mark.parametrize("how", ("normal_exit", "killed_while_busy"))
def test_workers_do_not_outlive_their_parent(tmp_path, how):
  # normal_exit: the script never closes its pool, atexit must.
  # killed_while_busy: the parent dies by SIGKILL with one worker asleep
  # in a task; the idle worker sees EOF, the busy one its watchdog.
  script = tmp_path / "leak.py"
  script.write_text(_LEAK_SCRIPT)
  package_root = pathlib.Path(mathrl.__file__).resolve().parents[1]
  env = dict(os.environ, PYTHONPATH=str(package_root))
  out = subprocess.run(
      [sys.executable, str(script), how],
      capture_output=True, text=True, env=env, timeout=120, check=False,
  )
  pids = [int(p) for p in out.stdout.split()]
  assert len(pids) == 2, out.stderr[-2000:]
  deadline = time.monotonic() + 10.0
  alive = pids
  while alive and time.monotonic() < deadline:
    alive = [pid for pid in alive if _running(pid)]
    time.sleep(0.05)
  assert not alive


def _running(pid: int) -> bool:
  """True if `pid` exists and is not a zombie awaiting its reaper."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False
  except OSError:
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return False
    return True


def test_log_lines_are_rate_limited_and_truncated(caplog):
  log = ratelimit.RateLimitedLog(interval_s=60.0, max_chars=100)
  huge = "{" * 2_000_000
  with caplog.at_level(logging.WARNING, logger="mathrl.rewards"):
    assert log.warning("refused", "refused: %s", huge)
    for _ in range(5):
      assert not log.warning("refused", "refused: %s", huge)
    assert log.warning("timeout", "timeout: %s", "x")
  lines = [r.getMessage() for r in caplog.records]
  assert len(lines) == 2
  assert len(lines[0]) < 200 and "2000000 chars" in lines[0]


def test_bad_argument_types_raise():
  with pytest.raises(TypeError, match="gold must be a str"):
    rewards.math_equal(r"\boxed{1}", 1)


def test_math_equal_from_many_threads(verifier):
  # math-verify's own signal timeouts would fail off the main thread; the
  # pool has no such limit. 6 threads share the workers.
  pairs = [(r"\boxed{\frac{1}{2}}", "0.5"), (r"\boxed{(1,2)}", "(2,1)"),
           (r"\boxed{\sqrt{8}}", r"2\sqrt2")] * 6
  expected = [True, False, True] * 6
  with concurrent.futures.ThreadPoolExecutor(6) as executor:
    got = list(executor.map(lambda p: verifier.equal(*p), pairs))
  assert got == expected
