"""mathrl.sweep: building points, the local runner, TPU commands."""

import os
import pathlib
import shlex
import signal
import subprocess
import time

import pytest

from mathrl import sweep
from mathrl import trainer

REPO = pathlib.Path(__file__).resolve().parents[1]
COMPARISON = (REPO / "experiments" / "2026-11-30_algorithms_synthetic"
              / "sweep.py")

# A two-point sweep of seconds-long runs: the tiny config without SFT,
# two RL steps, the learning rate swept.
TINY_SWEEP = '''
from mathrl import sweep
BASE = "configs/tiny.py"
FAST = {"sft.steps": 0, "rl.steps": 2, "eval.validation": False,
        "data.synthetic.num_train": 200, "tokenizer.corpus_records": 200}
POINTS = sweep.product(
    [dict(FAST)],
    [{"name": "lr1e-4", "rl.learning_rate": 1e-4},
     {"name": "lr3e-4", "rl.learning_rate": 3e-4, "rl.steps": 8}])
'''


def test_grid_product_union_seeds():
  points = sweep.grid({"a": [1, 2], "b": ["x"]})
  assert points == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
  assert sweep.union(points, [{"c": 3}]) == points + [{"c": 3}]
  named = sweep.product([{"name": "m", "a": 1}], [{"name": "n", "b": 2}])
  assert named == [{"name": "m_n", "a": 1, "b": 2}]
  assert sweep.seeds([{"name": "m"}, {"a": 1}], [0, 1]) == [
      {"name": "m_seed0", "seed": 0}, {"name": "m_seed1", "seed": 1},
      {"a": 1, "seed": 0}, {"a": 1, "seed": 1}]


def test_load_names_points_and_rejects_duplicates(tmp_path):
  path = tmp_path / "s.py"
  path.write_text('BASE = "configs/tiny.py"\n'
                  'POINTS = [{"rl.learning_rate": 0.1, "seed": 2},'
                  ' {"name": "x y", "config": "configs/grpo.py"}]\n')
  loaded = sweep.load(str(path))
  assert [(p.name, p.config) for p in loaded.points] == [
      ("learning_rate=0.1_seed=2", "configs/tiny.py"),
      ("x-y", "configs/grpo.py")]
  path.write_text('BASE = "configs/tiny.py"\nPOINTS = [{"seed": 1}] * 2\n')
  with pytest.raises(ValueError, match="share workdir names"):
    sweep.load(str(path))
  path.write_text('POINTS = []\n')
  with pytest.raises(ValueError, match="defines no BASE"):
    sweep.load(str(path))


def test_command_and_tpu_commands_as_text():
  point = sweep.Point("p", "configs/tiny.py",
                      (("data.buckets", (72,)), ("rl.learning_rate", 0.001),
                       ("rl.dynamic_sampling", True)))
  assert sweep.command(point, "/r/p", python="python") == [
      "python", "-m", "mathrl.main", "--config=configs/tiny.py",
      "--workdir=/r/p", "--config.data.buckets=(72,)",
      "--config.rl.learning_rate=0.001", "--config.rl.dynamic_sampling=True"]
  (line,) = sweep.tpu_commands(
      sweep.Sweep("s.py", "configs/tiny.py", (point,)), "gs://b/runs/",
      tpu="v5e-8", zone="us-west4-a")
  assert line == (
      "gcloud compute tpus tpu-vm ssh v5e-8 --zone=us-west4-a --worker=all"
      " --command=" + shlex.quote(
          "cd ~/mathrl && python3 -m mathrl.main --config=configs/tiny.py"
          " --workdir=gs://b/runs/p '--config.data.buckets=(72,)'"
          " --config.rl.learning_rate=0.001"
          " --config.rl.dynamic_sampling=True"))
  # The remote command survives the shell: split back, it is the argv.
  remote = shlex.split(shlex.split(line)[-1].partition("=")[2])
  assert remote[3:] == sweep.command(point, "gs://b/runs/p",
                                     python="python3")


def test_comparison_sweep_has_nine_methods_by_three_seeds_that_validate():
  loaded = sweep.load(str(COMPARISON))
  names = [p.name for p in loaded.points]
  # Seed-major: every method of seed 0 before any of seed 1.
  assert len(names) == 27 and names[:3] == [
      "grpo_seed0", "dr_grpo_seed0", "dapo_seed0"]
  assert [n.rsplit("seed", 1)[1] for n in names] == ["0"] * 9 + ["1"] * 9 + [
      "2"] * 9
  by_name = {p.name: sweep.point_config(p) for p in loaded.points
             if p.name.endswith("seed1")}
  for config in by_name.values():
    trainer.validate(config)
    # The default job's data, SFT and budget on every method.
    assert (config.rl.steps, config.sft.steps, config.seed) == (400, 1000, 1)
    assert tuple(config.data.buckets) == (72,)
  # The recipes' own method fields stay.
  assert by_name["dgpo_seed1"].rl.advantage == "dgpo"
  assert by_name["dgpo_seed1"].rl.advantage_kwargs.dqw_temp == 2.0
  assert by_name["gspo_seed1"].rl.loss == "gspo"
  assert by_name["mc_grpo_seed1"].rl.num_generations == 9
  assert by_name["grpo_seed1"].rl.kl == "kl_k3"


def _wait_for(path: pathlib.Path, proc, seconds=240):
  deadline = time.monotonic() + seconds
  while not path.exists():
    assert proc.poll() is None, "the point ended before its first checkpoint"
    assert time.monotonic() < deadline, f"{path} did not appear"
    time.sleep(0.05)


@pytest.mark.slow
def test_local_runner_runs_skips_finished_and_resumes_killed(
    tmp_path, monkeypatch):
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", os.environ.get(
      "MATHRL_TEST_JAX_CACHE",
      str(pathlib.Path.home() / ".cache" / "mathrl_jax_test_cache")))
  path = tmp_path / "tiny_sweep.py"
  path.write_text(TINY_SWEEP)
  loaded = sweep.load(str(path))
  root = tmp_path / "runs"
  # Start the 8-step point alone and kill it after its first RL checkpoint.
  killed = loaded.points[1]
  workdir = root / killed.name
  workdir.mkdir(parents=True)
  proc = subprocess.Popen(sweep.command(killed, str(workdir)), cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    _wait_for(workdir / "checkpoints" / "rl" / "1", proc)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert not sweep.is_finished(str(workdir))
  # The sweep runs the fresh point and resumes the killed one, two at once.
  logs = []
  codes = sweep.run_local(loaded, str(root), processes=2, log=logs.append)
  assert codes == {"lr1e-4": 0, "lr3e-4": 0}
  assert all(sweep.is_finished(str(root / n)) for n in codes)
  assert "RL: resumed at step" in (workdir / sweep.LOG_FILE).read_text()
  assert "resumed" not in (root / "lr1e-4" / sweep.LOG_FILE).read_text()
  # Rerun: both finished, nothing is started.
  logs.clear()
  assert sweep.run_local(loaded, str(root), log=logs.append) == {
      "lr1e-4": None, "lr3e-4": None}
  assert logs == ["[sweep] lr1e-4: finished, skipped",
                  "[sweep] lr3e-4: finished, skipped"]
