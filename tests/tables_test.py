"""mathrl.tables: final numbers per group, differences to a baseline."""

import fake_workdirs
import pytest

from mathrl import metrics
from mathrl import tables
from mathrl import workdirs


@pytest.fixture
def groups(tmp_path):
  runs = [workdirs.load_run(w) for w in fake_workdirs.four_methods(tmp_path)]
  return workdirs.group_runs(runs)


def test_rl_seconds_count_a_resumed_step_once(tmp_path):
  path = fake_workdirs.write(tmp_path, "grpo_s0", seed=0, advantage="grpo",
                             end_accuracy=0.5)
  # A resume from the step-2 checkpoint redoes steps 3 and 4 (3 s each):
  # 2 s + 2 s + 3 s + 3 s = 10 s, not 4 x 2 + 2 x 3 = 14 s.
  with metrics.MetricWriter(path, use_tensorboard=False) as writer:
    for step in (3, 4):
      writer.write(step, {"step_seconds": 3.0}, stage="rl")
  assert tables._rl_seconds(workdirs.load_run(path)) == 10.0


def test_table_against_a_baseline(groups):
  text = tables.summary_table(groups, baseline="grpo")
  main, _, second = text.partition("Difference to grpo")
  assert main.splitlines()[0] == (
      "| run | seeds | test acc. start | test acc. end | vs grpo | change |"
      " validation acc. (last) | test acc. (val.-chosen) | test level 1 |"
      " RL seconds |")
  rows = fake_workdirs.table_rows(main)
  assert rows["grpo"][4] == "(baseline)"
  # dgpo - grpo per seed: [0.05, 0.06, 0.04], mean 0.05, s_d = 0.01,
  # half = 4.30265 * 0.01 / sqrt(3) = 0.024841: +5.0 [+2.5, +7.5], excludes 0.
  assert rows["dgpo"][4] == "+5.0 [+2.5, +7.5]* (paired)"
  # dapo (seeds 3-5) vs grpo (0-2) are not paired: Welch, means 0.4 - 0.6,
  # equal variances 0.01 -> ν = 4, half = 2.77645 * sqrt(2 * 0.01 / 3)
  # = 0.226696: -20.0 [-42.7, +2.7], includes 0, no mark.
  assert rows["dapo"][4] == "-20.0 [-42.7, +2.7] (Welch)"
  assert rows["gspo"][4] == "+2.0 (no CI)"  # 0.62 - mean 0.6, one seed
  # Change, dgpo: end - start 0.5 per seed = [0.05, 0.16, 0.24], mean 0.15,
  # s = 0.095394, half = 4.30265 * 0.095394 / sqrt(3) = 0.236972; gspo,
  # one seed: 0.62 - 0.5, no interval logged for a change.
  assert rows["dgpo"][5] == "15.0 [-8.7, 38.7]"
  assert rows["gspo"][5] == "12.0"
  # Validation-chosen test accuracy. grpo: steps 2 (tie, earliest), 4, 4
  # -> [0.55, 0.6, 0.7], mean 0.616667, s = 0.076376,
  # half = 4.30265 * 0.076376 / sqrt(3) = 0.189729.
  assert rows["grpo"][7] == "61.7 [42.7, 80.6] @2,4,4"
  # gspo, one seed: step 2's test 0.65 with its own interval [0.45, 0.75].
  assert rows["gspo"][7] == "65.0 [45.0, 75.0] @2"
  assert rows["gspo"][1] == "1 (1 unfinished)"
  second_rows = fake_workdirs.table_rows(second)
  assert second.splitlines()[2] == (
      "| run | test acc. (val.-chosen) | test level 1 |")
  assert "grpo" not in second_rows
  # Val.-chosen dgpo - grpo: [0.55 - 0.55, 0.66 - 0.6, 0.74 - 0.7]
  # = [0, 0.06, 0.04], mean 0.033333, s_d = 0.030551,
  # half = 4.30265 * 0.030551 / sqrt(3) = 0.075892.
  assert second_rows["dgpo"][1] == "+3.3 [-4.3, +10.9] (paired)"
  # Level 1 at the final step equals the end accuracy in these runs.
  assert second_rows["dgpo"][2] == "+5.0 [+2.5, +7.5]* (paired) |"
  note = text.splitlines()[-1]
  assert "* = the interval excludes 0" in note
  assert "Unfinished runs" in note and "gspo_s0 (step 4 of 6)" in note


def test_table_without_baseline_has_no_difference_column(groups):
  text = tables.summary_table(groups)
  assert "vs " not in text.splitlines()[0]
  assert "Difference to" not in text and "excludes 0" not in text


def test_unknown_baseline_lists_the_groups(groups):
  with pytest.raises(ValueError, match="'ppo' names no group; the groups"
                     " are: 'grpo', 'dgpo', 'dapo', 'gspo'"):
    tables.summary_table(groups, baseline="ppo")
