"""SIGTERM during training: checkpoint of that step, exit 75, exact resume."""

import os
import subprocess
import sys
import pathlib

import jax
import numpy as np

from mathrl import checkpoint
from mathrl import metrics
from mathrl import preemption
from mathrl import trainer
from tests.trainer_test import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]
# No periodic checkpoint: only the preemption writes the one of step 1.
OVERRIDES = {"sft.steps": 0, "rl.steps": 2, "checkpoint.every_steps": 100}

# A child process that SIGTERMs itself while RL step 1 samples.
_SIGNALLED_RUN = """
import os, signal, sys
import tests.conftest  # the test suite's JAX set-up (devices, numerics)
from mathrl import rollout, trainer
from tests.trainer_test import tiny_config
collect = rollout.collect
def signalled(*args, **kwargs):
  os.kill(os.getpid(), signal.SIGTERM)
  return collect(*args, **kwargs)
rollout.collect = signalled
trainer.train(tiny_config(**{overrides!r}), sys.argv[1])
"""


def _final(workdir):
  ckpt = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints", "rl"))
  run = trainer.Run(tiny_config(**OVERRIDES), workdir)
  try:
    step = ckpt.latest_step()
    tree, _ = ckpt.restore(step, abstract_state=trainer.RLSetup(
        run).initial_tree(run.init_params))
  finally:
    run.close()
    ckpt.close()
  return step, tree


def _rl_rows(workdir):
  rows = metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))
  return [{k: v for k, v in r.items()
           if "seconds" not in k and "tokens_per_second" not in k}
          for r in rows if r["stage"] == "rl"]


def test_sigterm_checkpoints_the_step_and_the_rerun_matches(tmp_path):
  signalled = str(tmp_path / "signalled")
  child = subprocess.run(
      [sys.executable, "-c", _SIGNALLED_RUN.format(overrides=OVERRIDES),
       signalled], cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert child.returncode == preemption.EXIT_CODE, child.stderr[-3000:]
  assert "RL step 1: stop requested" in child.stderr
  ckpt = checkpoint.Checkpointer(os.path.join(signalled, "checkpoints", "rl"))
  assert ckpt.all_steps() == [1]  # the step it was on, nothing later
  ckpt.close()
  trainer.train(tiny_config(**OVERRIDES), signalled)  # the rerun resumes
  uninterrupted = str(tmp_path / "uninterrupted")
  trainer.train(tiny_config(**OVERRIDES), uninterrupted)
  step_a, tree_a = _final(signalled)
  step_b, tree_b = _final(uninterrupted)
  assert step_a == step_b == 2
  jax.tree.map(np.testing.assert_array_equal, tree_a, tree_b)
  assert _rl_rows(signalled) == _rl_rows(uninterrupted)
