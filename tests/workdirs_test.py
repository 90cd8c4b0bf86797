"""mathrl.workdirs: run workdirs read back and grouped by config."""

import fake_workdirs
import pytest

from mathrl import metrics
from mathrl import workdirs


def test_runs_group_by_config_minus_seed(tmp_path):
  runs = [workdirs.load_run(w) for w in fake_workdirs.three_runs(tmp_path)]
  groups = workdirs.group_runs(runs)
  # Seeds and the per-run tfds_dir do not split a group; the label is the
  # workdirs' name without the seed suffix (grpo_s0, grpo_s1 -> grpo).
  assert {k: len(v) for k, v in groups.items()} == {"grpo": 2, "dgpo": 1}
  assert [workdirs.run_name(run) for run in groups["grpo"]] == [
      "grpo_s0", "grpo_s1"]


def test_groups_named_by_config_fields_when_names_do_not_tell(tmp_path):
  # Workdir names that do not separate the groups (run_a and run_b are
  # two seeds of one method, run_c another method):
  # the label names the config field in which the groups differ.
  dirs = [fake_workdirs.write(tmp_path, "run_a", seed=0, advantage="grpo",
                              end_accuracy=0.5),
          fake_workdirs.write(tmp_path, "run_b", seed=1, advantage="grpo",
                              end_accuracy=0.5),
          fake_workdirs.write(tmp_path, "run_c", seed=0, advantage="dgpo",
                              end_accuracy=0.5)]
  groups = workdirs.group_runs([workdirs.load_run(w) for w in dirs])
  assert {k: len(v) for k, v in groups.items()} == {
      "rl.advantage=grpo": 2, "rl.advantage=dgpo": 1}


def test_curve_reads_the_rl_and_eval_stages(tmp_path):
  run = workdirs.load_run(fake_workdirs.write(
      tmp_path, "grpo_s0", seed=0, advantage="grpo", end_accuracy=0.7))
  # Step 0 from the "eval" row, step 4 from the "rl" row; the SFT stage's
  # validation row (step 2) is not on the RL curve.
  assert workdirs.curve(run, "eval_accuracy") == {0: 0.5, 4: 0.7}
  assert workdirs.curve(run, "validation_accuracy") == {4: 0.45}


def test_a_folder_without_metrics_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="has no metrics.jsonl"):
    workdirs.load_run(str(tmp_path))


def test_elapsed_seconds_sums_steps_and_evaluations(tmp_path):
  run = workdirs.load_run(fake_workdirs.write(
      tmp_path, "grpo_s0", seed=0, advantage="grpo", end_accuracy=0.7,
      evals={2: (0.45, 0.55)}))
  # Start evaluation 3 s; steps 2 s each; step 2 adds a test (3 s) and a
  # validation (1 s, its own "eval" row); step 4 both (3 + 1 s):
  # 3, 3+2=5, 5+2+3+1=11, 11+2=13, 13+2+3+1=19.
  assert workdirs.elapsed_seconds(run) == {0: 3.0, 1: 5.0, 2: 11.0,
                                           3: 13.0, 4: 19.0}


def test_elapsed_seconds_counts_a_redone_step_once(tmp_path):
  path = fake_workdirs.write(tmp_path, "grpo_s0", seed=0, advantage="grpo",
                             end_accuracy=0.7)
  with metrics.MetricWriter(path, use_tensorboard=False) as writer:
    # Resumed from a step-2 checkpoint: steps 3 and 4 logged again, 5 s.
    writer.write(3, {"step_seconds": 5.0}, stage="rl")
    writer.write(4, {"step_seconds": 5.0}, stage="rl")
  # 3 + 2 + 2 + 5 + 5 (step 4's redone row has no evaluation).
  assert workdirs.elapsed_seconds(workdirs.load_run(path))[4] == 17.0


def test_elapsed_seconds_of_a_run_with_unlogged_steps_is_an_error(tmp_path):
  path = tmp_path / "sparse"
  path.mkdir()
  with metrics.MetricWriter(str(path), use_tensorboard=False) as writer:
    for step in (2, 4, 6, 8, 10, 12, 14):  # log.every_steps = 2
      writer.write(step, {"step_seconds": 1.0}, stage="rl")
  with pytest.raises(ValueError, match=r"sparse: RL steps \[1, 3, 5, 7, 9\]"
                     r" \.\.\. have no metrics row.*log.every_steps=1"):
    workdirs.elapsed_seconds(workdirs.load_run(str(path)))
