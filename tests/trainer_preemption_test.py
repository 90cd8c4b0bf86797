"""SIGTERM during training: checkpoint of that step, exit 75, exact resume."""

import os
import pathlib
import signal
import subprocess
import sys
import threading
import types

import jax
import numpy as np
import pytest

from mathrl import builders
from mathrl import checkpoint
from mathrl import metrics
from mathrl import preemption
from mathrl import train_step as train_step_lib
from mathrl import trainer
from tests.trainer_test import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Two SFT steps and no periodic checkpoint: only the preemption writes the
# one of step 1. The child SIGTERMs itself in `sft.collate`, called once per
# step.
OVERRIDES = {"sft.steps": 2, "rl.steps": 0, "checkpoint.every_steps": 100}

_SIGNALLED_RUN = """
import os, signal, sys
import tests.conftest  # the test suite's JAX set-up (devices, numerics)
from mathrl import sft, trainer
from tests.trainer_test import tiny_config
original = sft.collate
def signalled(*args, **kwargs):
  os.kill(os.getpid(), signal.SIGTERM)
  return original(*args, **kwargs)
sft.collate = signalled
trainer.train(tiny_config(**{overrides!r}), sys.argv[1])
"""


def _final(workdir):
  """The last SFT checkpoint: (step, train state)."""
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints", "sft"))
  run = trainer.Run(tiny_config(**OVERRIDES), workdir)
  c = run.config
  abstract = train_step_lib.init_train_state(
      run.init_params, builders.make_optimizer(c.sft, c.sft.steps), (),
      jax.random.key_data(jax.random.PRNGKey(c.seed)))
  try:
    step = ckpt.latest_step()
    tree, _ = ckpt.restore(step, abstract_state=abstract)
  finally:
    run.close()
    ckpt.close()
  return step, tree


def _rows(workdir):
  rows = metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))
  return [{k: v for k, v in r.items()
           if "seconds" not in k and "tokens_per_second" not in k}
          for r in rows if r["stage"] == "sft"]


# The RL stage's SIGTERM, checkpoint, exit 75 and exact resume run in
# multihost_test.py (two processes, one signalled, against one process);
# trainer_test.py resumes RL in process. SFT's is checked here.
@pytest.mark.slow
def test_sigterm_in_sft_checkpoints_the_step_and_the_rerun_matches(tmp_path):
  signalled = str(tmp_path / "signalled")
  script = _SIGNALLED_RUN.format(overrides=OVERRIDES)
  child = subprocess.run([sys.executable, "-c", script, signalled], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
  assert child.returncode == preemption.EXIT_CODE, child.stderr[-3000:]
  assert "SFT step 1: stop requested" in child.stderr
  ckpt = checkpoint.Checkpointer(os.path.join(signalled, "checkpoints",
                                              "sft"))
  assert ckpt.all_steps() == [1]  # the step it was on, nothing later
  ckpt.close()
  trainer.train(tiny_config(**OVERRIDES), signalled)  # resumes
  uninterrupted = str(tmp_path / "uninterrupted")
  trainer.train(tiny_config(**OVERRIDES), uninterrupted)
  step_a, tree_a = _final(signalled)
  step_b, tree_b = _final(uninterrupted)
  assert step_a == step_b == 2
  jax.tree.map(np.testing.assert_array_equal, tree_a, tree_b)
  rows = _rows(uninterrupted)
  assert [r["step"] for r in rows] == [1, 2]
  assert _rows(signalled) == rows


def test_only_the_main_thread_installs_the_handler():
  run = types.SimpleNamespace(guard=preemption.PreemptionGuard())
  previous = signal.getsignal(signal.SIGTERM)
  seen = []

  def in_thread():
    with trainer.Run.preemptible(run):  # no "main thread only" error
      seen.append(signal.getsignal(signal.SIGTERM))

  worker = threading.Thread(target=in_thread)
  worker.start()
  worker.join()
  assert seen == [previous]
  with trainer.Run.preemptible(run):
    handler = signal.getsignal(signal.SIGTERM)
    assert handler == run.guard._handler  # pylint: disable=protected-access
  assert signal.getsignal(signal.SIGTERM) == previous
