"""mathrl.workdirs: run workdirs read back and grouped by config."""

import fake_workdirs
import pytest

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
