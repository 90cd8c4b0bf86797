"""Two real JAX processes train exactly like one process with all devices.

Two local processes (4 fake CPU devices each, coordinator on 127.0.0.1) run
SFT and 4 RL steps of the tiny config with dynamic sampling: each reads its
own shard of the prompts, samples and scores its rows, and the rewards,
dynamic-sampling rounds and evaluations are gathered. Process 1 alone gets
SIGTERM in RL step 2: both stop after that step with its checkpoint (exit
75); relaunched, they resume and finish. Parameters and the logged metrics
then equal a one-process run on 8 devices.
"""

import math
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from mathrl import checkpoint
from mathrl import metrics
from mathrl import preemption
from mathrl import trainer
from tests.trainer_test import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Two SFT steps at a high rate make some completions stop before the
# 8-token cap, so DAPO's overlong penalty differs within some groups:
# dynamic sampling keeps some groups and refills the others (several
# rounds), and the updates are not empty.
OVERRIDES = {
    "sft.learning_rate": 3e-2, "rl.steps": 4, "rl.prompts_per_step": 4,
    "rl.dynamic_sampling": True, "rewards.overlong": 1.0,
    "rewards.overlong_buffer": 8, "checkpoint.every_steps": 100,
}
NUM_VALIDATION = 8  # a short SFT validation pass

_WORKER = """
import os, signal, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
import tests.conftest  # the suite's JAX set-up (numerics, compile cache)
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
from tests.multihost_test import config, share_compilation_cache
share_compilation_cache()
from mathrl import rollout, trainer
pid, port, workdir, stop_in = sys.argv[1:]
if int(stop_in) and pid == "1":  # SIGTERM to process 1 only, mid-step
  collect, calls = rollout.collect, []
  def signalled(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(stop_in):
      os.kill(os.getpid(), signal.SIGTERM)
    return collect(*args, **kwargs)
  rollout.collect = signalled
trainer.train(config("127.0.0.1:" + port, int(pid)), workdir)
"""


def share_compilation_cache() -> bool:
  """Lets process 1 read the compilation cache entries process 0 writes.

  JAX writes persistent-cache entries from process 0 only and keys each by,
  among others, a fingerprint of the device topology. On CPU that
  fingerprint differs between the two processes of one run (jax 0.10.2,
  4 devices each: 14288805208343829072 in process 0, 15558309907069382866
  in process 1), so process 1 never finds an entry: it compiles every
  program that process 0 loads from the suite's cache and falls behind it
  by whole compiles at each collective. No public option changes the key
  (`jax_share_binary_between_hosts` hands executables over under the
  same per-process key, so process 1 would wait for one process 0 never
  sends). This keys entries by the device kinds instead, JAX's own
  fallback for backends without a topology description, through two
  private functions of `jax._src.cache_key`.

  If JAX renames them or changes their arguments, nothing is changed
  (with a warning): the test still runs, process 1 compiling. Measured on
  a 2-core x86-64 CPU with a warm suite cache, the whole test took 42 and
  54 s with the override, 61 and 88 s without it, and 86 s with a fresh
  cache directory of the workers' own (process 1 never writes to it).

  Returns:
    Whether the cache key was changed.
  """
  # pylint: disable=g-import-not-at-top,protected-access
  import inspect
  import warnings
  try:
    from jax._src import cache_key
    by_topology = cache_key._hash_accelerator_config
    by_kind = cache_key._hash_devices
    same_args = (len(inspect.signature(by_topology).parameters)
                 == len(inspect.signature(by_kind).parameters) == 2)
  except (ImportError, AttributeError, TypeError, ValueError) as e:
    same_args, reason = False, f"{type(e).__name__}: {e}"
  else:
    reason = "their arguments differ"
  if not same_args:
    warnings.warn(
        "multihost_test: cannot key the compilation cache by device kind"
        f" ({reason}); process 1 compiles what process 0 reads from the"
        " cache, so the test runs slower.")
    return False
  cache_key._hash_accelerator_config = by_kind
  return True


def config(coordinator: str = "", process_id: int = 0):
  """The run; with a coordinator, process `process_id` of two."""
  c = tiny_config(**OVERRIDES)
  c.data.synthetic.num_validation = NUM_VALIDATION
  if coordinator:
    c.distributed.coordinator_address = coordinator
    c.distributed.num_processes = 2
    c.distributed.process_id = process_id
  return c


def _free_port() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return str(s.getsockname()[1])


def _launch(workdir: str, stop_in: int) -> list[tuple[int, str]]:
  """Runs both processes to the end; [(exit status, stderr)] per process.

  Their stderr goes to files: a full pipe that nobody reads would block a
  process mid-run, and the other one with it, in a collective.
  """
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env["PYTHONPATH"] = str(ROOT)
  port = _free_port()
  os.makedirs(os.path.dirname(workdir), exist_ok=True)
  logs = [f"{workdir}.{stop_in}.{i}.stderr" for i in range(2)]
  procs = []
  for i, log in enumerate(logs):
    with open(log, "w") as f:
      procs.append(subprocess.Popen(
          [sys.executable, "-c", _WORKER, str(i), port, workdir,
           str(stop_in)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
          stderr=f))
  try:
    for p in procs:
      p.wait(timeout=900)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return [(p.returncode, pathlib.Path(log).read_text())
          for p, log in zip(procs, logs)]


def _final(workdir):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints", "rl"))
  run = trainer.Run(config(), workdir)
  try:
    step = ckpt.latest_step()
    tree, _ = ckpt.restore(step, abstract_state=trainer.RLSetup(
        run).initial_tree(run.init_params))
  finally:
    run.close()
    ckpt.close()
  return step, tree


def _rows(workdir):
  rows = metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))
  return [{k: v for k, v in r.items()
           if "seconds" not in k and "tokens_per_second" not in k}
          for r in rows]


def _assert_rows_close(rows_a, rows_b):
  """Same rows and keys; numbers equal to fp32 reduction-order noise."""
  assert [(r["stage"], r["step"]) for r in rows_a] == [
      (r["stage"], r["step"]) for r in rows_b]
  for a, b in zip(rows_a, rows_b):
    assert sorted(a) == sorted(b), (a["stage"], a["step"])
    for key in a:
      x, y = a[key], b[key]
      if isinstance(x, float) and math.isnan(x):
        assert math.isnan(y), key
      elif isinstance(x, (int, float)):
        assert y == pytest.approx(x, rel=1e-5, abs=1e-6), (a["step"], key)
      else:
        assert x == y, key


def test_cache_sharing_falls_back_when_jax_renames_its_functions(
    monkeypatch):
  # pylint: disable=g-import-not-at-top,protected-access
  from jax._src import cache_key
  # monkeypatch restores the originals after the test: this process keeps
  # JAX's own cache keys.
  original = cache_key._hash_accelerator_config
  monkeypatch.setattr(cache_key, "_hash_accelerator_config", original)
  assert share_compilation_cache()
  assert cache_key._hash_accelerator_config is cache_key._hash_devices
  monkeypatch.setattr(cache_key, "_hash_accelerator_config", original)
  monkeypatch.delattr(cache_key, "_hash_devices")
  with pytest.warns(UserWarning, match="AttributeError"):
    assert not share_compilation_cache()
  assert cache_key._hash_accelerator_config is original
  monkeypatch.setattr(cache_key, "_hash_devices", lambda h, d, extra: None,
                      raising=False)
  with pytest.warns(UserWarning, match="arguments differ"):
    assert not share_compilation_cache()
  assert cache_key._hash_accelerator_config is original


@pytest.mark.slow
def test_two_processes_stop_resume_and_match_one_process(tmp_path):
  two = str(tmp_path / "two_processes")
  first = _launch(two, stop_in=2)
  assert [rc for rc, _ in first] == [preemption.EXIT_CODE] * 2, [
      err[-3000:] for _, err in first]
  # Process 1 was signalled; process 0 (the one that logs) stopped too.
  assert "RL step 2: stop requested" in first[0][1]
  ckpt = checkpoint.Checkpointer(os.path.join(two, "checkpoints", "rl"))
  assert ckpt.all_steps() == [2]  # the step both were on
  ckpt.close()
  second = _launch(two, stop_in=0)
  assert [rc for rc, _ in second] == [0, 0], [err[-3000:] for _, err in second]
  assert "RL: resumed at step 2" in second[0][1]

  one = str(tmp_path / "one_process")
  trainer.train(config(), one)  # 8 devices, the same mesh (data 8)
  step_two, tree_two = _final(two)
  step_one, tree_one = _final(one)
  assert step_two == step_one == 4
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5), tree_two, tree_one)
  rows_two, rows_one = _rows(two), _rows(one)
  rl = [r for r in rows_one if r["stage"] == "rl"]
  # The updates were not empty and dynamic sampling refilled groups.
  assert [r["step"] for r in rl] == [1, 2, 3, 4]
  assert any(r["dynamic_sampling_rounds"] > 1 for r in rl)
  assert any(r["kept_groups"] > 0 for r in rl)
  _assert_rows_close(rows_two, rows_one)
