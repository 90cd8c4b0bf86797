"""Checkpoint round trips, sharded restore, and kill -9 during an async save."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from mathrl import checkpoint
from mathrl import metrics


def _state(seed):
  k = jax.random.PRNGKey(seed)
  return {
      "params": {"w": jax.random.normal(k, (8, 4)), "b": jnp.arange(4.0)},
      "step": jnp.asarray(seed, jnp.int32),
      "rng": jax.random.key_data(jax.random.PRNGKey(seed + 1)),
  }


def test_round_trip_keeps_values_metadata_and_latest(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
  assert ckpt.latest_step() is None
  for step in (1, 2, 3):
    ckpt.save(step, _state(step), metadata={"data": {"next": step * 10}})
  ckpt.wait()
  assert ckpt.latest_step() == 3
  assert ckpt.all_steps() == [2, 3]  # max_to_keep=2 dropped step 1
  abstract = jax.eval_shape(lambda: _state(0))
  state, meta = ckpt.restore(abstract_state=abstract)
  jax.tree.map(np.testing.assert_array_equal, state, _state(3))
  assert meta == {"data": {"next": 30}}
  ckpt.close()


def test_restore_places_arrays_into_requested_sharding(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(5, _state(5))
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:8]).reshape(4, 2), ("a", "b"))
  sh = NamedSharding(mesh, P("a", "b"))
  abstract = jax.eval_shape(lambda: _state(0))
  abstract["params"]["w"] = jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=sh)
  state, _ = ckpt.restore(5, abstract_state=abstract)
  assert state["params"]["w"].sharding.is_equivalent_to(sh, 2)
  np.testing.assert_array_equal(state["params"]["w"], _state(5)["params"]["w"])
  ckpt.close()


def test_missing_checkpoint_error_says_what_to_do(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  try:
    ckpt.restore(abstract_state=jax.eval_shape(lambda: _state(0)))
  except FileNotFoundError as e:
    assert "no complete checkpoint" in str(e)
  else:
    raise AssertionError("restore without checkpoints must raise")
  ckpt.close()


_SAVER = textwrap.dedent("""
    import sys, time
    import jax, jax.numpy as jnp
    from mathrl import checkpoint
    ckpt = checkpoint.Checkpointer(sys.argv[1], max_to_keep=None)
    big = {"w": jnp.ones((2048, 2048))}
    ckpt.save(1, big); ckpt.wait()
    print("saved1", flush=True)
    for step in range(2, 1000):
      ckpt.save(step, {"w": big["w"] * step})
      print("started", step, flush=True)
""")


def test_mismatched_state_error_says_what_to_do_and_keeps_the_checkpoint(
    tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), async_save=False)
  ckpt.save(1, _state(1))
  # A newer state with one more field (as a TrainState gaining a field).
  abstract = jax.eval_shape(lambda: dict(_state(0), anchor=jnp.zeros(())))
  try:
    ckpt.restore(abstract_state=abstract)
  except ValueError as e:
    message = str(e)
  else:
    raise AssertionError("restore into a mismatched state did not fail")
  assert "does not match the state this run builds" in message
  assert "config.json" in message and "fresh workdir" in message
  # Nothing was lost: the old structure still restores.
  state, _ = ckpt.restore(abstract_state=jax.eval_shape(lambda: _state(0)))
  jax.tree.map(np.testing.assert_array_equal, state, _state(1))


def test_kill_during_async_save_resumes_from_last_complete(tmp_path):
  """kill -9 while saves are in flight: only complete checkpoints are seen."""
  proc = subprocess.Popen(
      [sys.executable, "-c", _SAVER, str(tmp_path)],
      stdout=subprocess.PIPE,
      text=True,
      env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  started = 0
  for line in proc.stdout:
    if line.startswith("started"):
      started += 1
      if started == 3:
        break
  time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  latest = ckpt.latest_step()
  assert latest is not None and latest >= 1
  abstract = {"w": jax.ShapeDtypeStruct((2048, 2048), jnp.float32)}
  state, _ = ckpt.restore(latest, abstract_state=abstract)
  # Every saved step s holds w == s (step 1 holds ones): a torn write would not.
  np.testing.assert_array_equal(np.asarray(state["w"])[::256, ::256], latest)
  ckpt.close()


def test_metric_writer_jsonl_rows_and_resume_dedup(tmp_path):
  with metrics.MetricWriter(str(tmp_path), use_tensorboard=True) as w:
    w.write(1, {"reward_mean": jnp.float32(0.5), "kl": float("nan")}, stage="rl")
    w.write(2, {"reward_mean": 0.75}, stage="rl")
  with metrics.MetricWriter(str(tmp_path), use_tensorboard=False) as w:
    w.write(2, {"reward_mean": 0.8}, stage="rl")  # a resumed run re-logs step 2
  with open(os.path.join(tmp_path, metrics.METRICS_FILE), "a") as f:
    f.write('{"stage": "rl", "st')  # killed mid-write
  rows = metrics.read_jsonl(os.path.join(tmp_path, metrics.METRICS_FILE))
  assert rows == [
      {"stage": "rl", "step": 1, "reward_mean": 0.5, "kl": None},
      {"stage": "rl", "step": 2, "reward_mean": 0.8},
  ]
  assert os.listdir(os.path.join(tmp_path, "tb"))
