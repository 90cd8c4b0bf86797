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
# No periodic checkpoint: only the preemption writes the one of step 1.
OVERRIDES = {
    "sft": {"sft.steps": 2, "rl.steps": 0, "checkpoint.every_steps": 100},
}
# What each stage calls once per step: the child SIGTERMs itself there.
HOOKS = {"sft": ("mathrl.sft", "collate")}

_SIGNALLED_RUN = """
import importlib, os, signal, sys
import tests.conftest  # the test suite's JAX set-up (devices, numerics)
from mathrl import trainer
from tests.trainer_test import tiny_config
module = importlib.import_module({module!r})
original = getattr(module, {name!r})
def signalled(*args, **kwargs):
  os.kill(os.getpid(), signal.SIGTERM)
  return original(*args, **kwargs)
setattr(module, {name!r}, signalled)
trainer.train(tiny_config(**{overrides!r}), sys.argv[1])
"""


def _abstract_tree(run, stage):
  """The structure of a `stage` (SFT) checkpoint, as the trainer builds it."""
  assert stage == "sft", stage
  c = run.config
  return train_step_lib.init_train_state(
      run.init_params, builders.make_optimizer(c.sft, c.sft.steps), (),
      jax.random.key_data(jax.random.PRNGKey(c.seed)))


def _final(workdir, stage):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints", stage))
  run = trainer.Run(tiny_config(**OVERRIDES[stage]), workdir)
  try:
    step = ckpt.latest_step()
    tree, _ = ckpt.restore(step, abstract_state=_abstract_tree(run, stage))
  finally:
    run.close()
    ckpt.close()
  return step, tree


def _rows(workdir, stage):
  rows = metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))
  return [{k: v for k, v in r.items()
           if "seconds" not in k and "tokens_per_second" not in k}
          for r in rows if r["stage"] == stage]


# The RL stage's SIGTERM, checkpoint, exit 75 and exact resume run in
# multihost_test.py (two processes, one signalled, against one process);
# trainer_test.py resumes RL in process. SFT's is checked here.
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft"])
def test_sigterm_checkpoints_the_step_and_the_rerun_matches(tmp_path, stage):
  signalled = str(tmp_path / "signalled")
  module, name = HOOKS[stage]
  script = _SIGNALLED_RUN.format(module=module, name=name,
                                 overrides=OVERRIDES[stage])
  child = subprocess.run([sys.executable, "-c", script, signalled], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
  assert child.returncode == preemption.EXIT_CODE, child.stderr[-3000:]
  assert f"{stage.upper()} step 1: stop requested" in child.stderr
  ckpt = checkpoint.Checkpointer(os.path.join(signalled, "checkpoints",
                                              stage))
  assert ckpt.all_steps() == [1]  # the step it was on, nothing later
  ckpt.close()
  trainer.train(tiny_config(**OVERRIDES[stage]), signalled)  # resumes
  uninterrupted = str(tmp_path / "uninterrupted")
  trainer.train(tiny_config(**OVERRIDES[stage]), uninterrupted)
  step_a, tree_a = _final(signalled, stage)
  step_b, tree_b = _final(uninterrupted, stage)
  assert step_a == step_b == 2
  jax.tree.map(np.testing.assert_array_equal, tree_a, tree_b)
  rows = _rows(uninterrupted, stage)
  assert [r["step"] for r in rows] == [1, 2]
  assert _rows(signalled, stage) == rows


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
