"""mathrl.plot: curves and the final-number table from run workdirs."""

import json

import numpy as np
import pytest

from mathrl import metrics
from mathrl import plot
from mathrl import stats


def _workdir(root, name, *, seed, advantage, end_accuracy, evals=None,
             config_steps=4):
  """A workdir as the trainer writes it: config.json and metrics.jsonl.

  `evals` {step: (validation, test)} adds evaluations before the last
  step, validation and test in separate rows (an "eval"-stage row and the
  step's "rl" row; metrics.jsonl keeps one row per stage and step); the
  last step has both in one row, validation 0.45.
  """
  path = root / name
  config = {"seed": seed, "rl": {"advantage": advantage,
                                 "steps": config_steps},
            "data": {"tfds_dir": str(path / "tfds")}}
  path.mkdir()
  (path / "config.json").write_text(json.dumps(config))
  with metrics.MetricWriter(str(path), use_tensorboard=False) as writer:
    writer.write(2, {"validation_accuracy": 0.4}, stage="sft")
    writer.write(0, {"eval_accuracy": 0.5, "eval_ci_low/accuracy": 0.3,
                     "eval_ci_high/accuracy": 0.7,
                     "eval_accuracy/difficulty_1": 0.6}, stage="eval")
    for step in range(1, 5):
      row = {"reward_mean": 0.1 * step + seed, "entropy": 1.0 / step,
             "response_length_mean": 10.0 + step, "kl": 0.01 * step,
             "clip_fraction": 0.0, "step_seconds": 2.0}
      if step in (evals or {}):
        validation, test = evals[step]
        writer.write(step, {"validation_accuracy": validation},
                     stage="eval")
        row.update({"eval_accuracy": test, "eval_ci_low/accuracy": test - 0.2,
                    "eval_ci_high/accuracy": test + 0.1})
      if step == 4:
        row.update({"eval_accuracy": end_accuracy,
                    "eval_ci_low/accuracy": end_accuracy - 0.2,
                    "eval_ci_high/accuracy": end_accuracy + 0.1,
                    "eval_accuracy/difficulty_1": end_accuracy,
                    "validation_accuracy": 0.45})
      writer.write(step, row, stage="rl")
  return str(path)


@pytest.fixture
def workdirs(tmp_path):
  return [
      _workdir(tmp_path, "grpo_s0", seed=0, advantage="grpo",
               end_accuracy=0.5),
      _workdir(tmp_path, "grpo_s1", seed=1, advantage="grpo",
               end_accuracy=0.7),
      _workdir(tmp_path, "dgpo_s0", seed=0, advantage="dgpo",
               end_accuracy=0.6),
  ]


def test_runs_group_by_config_minus_seed(workdirs):
  groups = plot.group_runs([plot.load_run(w) for w in workdirs])
  # Seeds and the per-run tfds_dir do not split a group; the label is the
  # workdirs' name without the seed suffix (grpo_s0, grpo_s1 -> grpo).
  assert {k: len(v) for k, v in groups.items()} == {"grpo": 2, "dgpo": 1}
  steps, mean, low, high = plot.group_curve(groups["grpo"], "reward_mean")
  # Seed 0: 0.1 s, seed 1: 1 + 0.1 s -> mean 0.5 + 0.1 s, band ±0.5.
  np.testing.assert_array_equal(steps, [1, 2, 3, 4])
  np.testing.assert_allclose(mean, 0.5 + 0.1 * steps)
  np.testing.assert_allclose(high - low, 1.0)


def test_groups_named_by_config_fields_when_names_do_not_tell(tmp_path):
  # Workdir names that do not separate the groups (run_a and run_b are
  # two seeds of one method, run_c another method):
  # the label names the config field in which the groups differ.
  dirs = [_workdir(tmp_path, "run_a", seed=0, advantage="grpo",
                   end_accuracy=0.5),
          _workdir(tmp_path, "run_b", seed=1, advantage="grpo",
                   end_accuracy=0.5),
          _workdir(tmp_path, "run_c", seed=0, advantage="dgpo",
                   end_accuracy=0.5)]
  groups = plot.group_runs([plot.load_run(w) for w in dirs])
  assert {k: len(v) for k, v in groups.items()} == {
      "rl.advantage=grpo": 2, "rl.advantage=dgpo": 1}


def test_rl_seconds_count_a_resumed_step_once(tmp_path):
  path = _workdir(tmp_path, "grpo_s0", seed=0, advantage="grpo",
                  end_accuracy=0.5)
  # A resume from the step-2 checkpoint redoes steps 3 and 4 (3 s each):
  # 2 s + 2 s + 3 s + 3 s = 10 s, not 4 x 2 + 2 x 3 = 14 s.
  with metrics.MetricWriter(path, use_tensorboard=False) as writer:
    for step in (3, 4):
      writer.write(step, {"step_seconds": 3.0}, stage="rl")
  assert plot._rl_seconds(plot.load_run(path)) == 10.0


def test_plot_writes_a_png_with_one_line_per_group(workdirs, tmp_path):
  out = tmp_path / "figs" / "curves.png"
  groups = plot.group_runs([plot.load_run(w) for w in workdirs[:1]]
                           + [plot.load_run(workdirs[2])])
  fig = plot.plot(groups, str(out))
  assert out.is_file() and out.stat().st_size > 1000
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
  # Validation accuracy is logged at RL step 4: it has a panel too.
  assert titles == [title for title, _ in plot.PANELS]
  for ax in fig.axes[:len(titles)]:
    assert len(ax.get_lines()) == 2, ax.get_title()  # two workdirs, two lines
  reward = fig.axes[0].get_lines()[0]
  np.testing.assert_allclose(reward.get_ydata(), [0.1, 0.2, 0.3, 0.4])


def test_seed_interval_golden():
  # mean 0.6, s = 0.1, t_{0.975, 2} = 4.30265: 0.6 ± 4.30265 * 0.1 / sqrt(3)
  # = 0.6 ± 0.248414.
  np.testing.assert_allclose(stats.seed_interval([0.5, 0.6, 0.7]),
                             (0.6, 0.351586, 0.848414), atol=1e-6)
  assert stats.seed_interval([0.3]) == (0.3, 0.3, 0.3)


def test_cli_writes_png_and_markdown_table(workdirs, tmp_path, capsys):
  out, table = tmp_path / "c.png", tmp_path / "t.md"
  assert plot.main(workdirs + ["--out", str(out), "--table", str(table)]) == 0
  assert out.stat().st_size > 1000
  lines = table.read_text().splitlines()
  assert lines[0].startswith("| run | seeds | test acc. start |")
  rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in lines[2:4]}
  # grpo, 2 seeds: end 0.5 and 0.7 -> 60.0 ± 12.706 * 0.1414 / sqrt(2)
  # = 60.0 ± 127.1 points (two seeds say little); change 0 and 0.2.
  assert rows["grpo"][1] == "2"
  assert rows["grpo"][3] == "60.0 [-67.1, 187.1]"
  # dgpo, 1 seed: its own interval over problems from the metrics.
  assert rows["dgpo"][3] == "60.0 [40.0, 70.0]"
  assert rows["dgpo"][5] == "45.0"  # last validation accuracy
  # Validation peaks (0.45) at step 4 only: the chosen test is the end's.
  assert rows["dgpo"][6] == "60.0 [40.0, 70.0] @4"
  assert rows["dgpo"][8] == "8 |"  # 4 steps x 2 s
  assert capsys.readouterr().out.startswith("| run |")


def test_t_quantile_known_values():
  # Student t tables: t_{0.975, 2} = 4.303, t_{0.975, 4} = 2.776,
  # t_{0.975, 30} = 2.042; df -> inf gives the normal 1.960.
  np.testing.assert_allclose(
      [stats.t_quantile(df) for df in (2, 4, 30, 1e9)],
      [4.30265, 2.77645, 2.04227, 1.95996], atol=1e-5)


def test_paired_interval_golden():
  # d = [0.6 - 0.5, 0.7 - 0.6, 0.9 - 0.7] = [0.1, 0.1, 0.2]: mean 0.133333,
  # s_d = sqrt((2 * 0.033333² + 0.066667²) / 2) = 0.057735,
  # half = t_{0.975, 2} s_d / sqrt(3) = 4.30265 * 0.033333 = 0.143422.
  np.testing.assert_allclose(
      stats.paired_interval([0.6, 0.7, 0.9], [0.5, 0.6, 0.7]),
      (0.133333, -0.010088, 0.276755), atol=1e-6)
  with pytest.raises(ValueError, match="one baseline value per seed"):
    stats.paired_interval([0.6, 0.7], [0.5, 0.6, 0.7])


def test_welch_interval_golden():
  # x̄ - ȳ = 0.7 - 0.5 = 0.2; a = b = s²/n = 0.01 / 3;
  # ν = (2a)² / (a²/2 + b²/2) = 4, t_{0.975, 4} = 2.77645,
  # half = 2.77645 * sqrt(2 * 0.01 / 3) = 2.77645 * 0.0816497 = 0.226696.
  np.testing.assert_allclose(
      stats.welch_interval([0.6, 0.7, 0.8], [0.4, 0.5, 0.6]),
      (0.2, -0.026696, 0.426696), atol=1e-6)
  with pytest.raises(ValueError, match=">= 2 values on each side"):
    stats.welch_interval([0.6], [0.4, 0.5])


def test_intervals_match_scipy_t_tests():
  # Equivalence with scipy's t-tests, here at fractional Welch degrees of
  # freedom: ν = (0.01 + 0.01/3)² / (0.01² + (0.01/3)²/2) = 1.68421.
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  a, b = [0.6, 0.7, 0.8], [0.5, 0.7]
  welch = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval()
  np.testing.assert_allclose(stats.welch_interval(a, b)[1:],
                             (welch.low, welch.high), rtol=1e-9)
  a, b = [0.6, 0.7, 0.9, 0.4], [0.5, 0.6, 0.7, 0.45]
  paired = scipy_stats.ttest_rel(a, b).confidence_interval()
  np.testing.assert_allclose(stats.paired_interval(a, b)[1:],
                             (paired.low, paired.high), rtol=1e-9)


@pytest.fixture
def method_workdirs(tmp_path):
  """grpo and dgpo on seeds 0-2, dapo on seeds 3-5, gspo on seed 0."""
  dirs = []
  # grpo seed 0 also evaluates at step 2: validation 0.45 ties step 4's, so
  # the earliest, step 2, is chosen (test 0.55).
  for seed, end in zip((0, 1, 2), (0.5, 0.6, 0.7)):
    dirs.append(_workdir(tmp_path, f"grpo_s{seed}", seed=seed,
                         advantage="grpo", end_accuracy=end,
                         evals={2: (0.45, 0.55)} if seed == 0 else None))
  for seed, end in zip((0, 1, 2), (0.55, 0.66, 0.74)):
    dirs.append(_workdir(tmp_path, f"dgpo_s{seed}", seed=seed,
                         advantage="dgpo", end_accuracy=end))
  for seed, end in zip((3, 4, 5), (0.3, 0.4, 0.5)):
    dirs.append(_workdir(tmp_path, f"dapo_s{seed}", seed=seed,
                         advantage="dapo", end_accuracy=end))
  # gspo's validation peaks at step 2 (0.5 > 0.45); its config asks for 6
  # steps, so the run is unfinished.
  dirs.append(_workdir(tmp_path, "gspo_s0", seed=0, advantage="gspo",
                       end_accuracy=0.62, evals={2: (0.5, 0.65)},
                       config_steps=6))
  return dirs


def _rows(text):
  return {line.split(" | ")[0][2:]: line.split(" | ")
          for line in text.splitlines() if line.startswith("| ")}


def test_table_against_a_baseline(method_workdirs):
  groups = plot.group_runs([plot.load_run(w) for w in method_workdirs])
  text = plot.summary_table(groups, baseline="grpo")
  main, _, second = text.partition("Difference to grpo")
  assert main.splitlines()[0] == (
      "| run | seeds | test acc. start | test acc. end | vs grpo | change |"
      " validation acc. (last) | test acc. (val.-chosen) | test level 1 |"
      " RL seconds |")
  rows = _rows(main)
  assert rows["grpo"][4] == "(baseline)"
  # dgpo - grpo per seed: [0.05, 0.06, 0.04], mean 0.05, s_d = 0.01,
  # half = 4.30265 * 0.01 / sqrt(3) = 0.024841: +5.0 [+2.5, +7.5], excludes 0.
  assert rows["dgpo"][4] == "+5.0 [+2.5, +7.5]* (paired)"
  # dapo (seeds 3-5) vs grpo (0-2) are not paired: Welch, means 0.4 - 0.6,
  # equal variances 0.01 -> ν = 4, half = 2.77645 * sqrt(2 * 0.01 / 3)
  # = 0.226696: -20.0 [-42.7, +2.7], includes 0, no mark.
  assert rows["dapo"][4] == "-20.0 [-42.7, +2.7] (Welch)"
  assert rows["gspo"][4] == "+2.0 (no CI)"  # 0.62 - mean 0.6, one seed
  # Validation-chosen test accuracy. grpo: steps 2 (tie, earliest), 4, 4
  # -> [0.55, 0.6, 0.7], mean 0.616667, s = 0.076376,
  # half = 4.30265 * 0.076376 / sqrt(3) = 0.189729.
  assert rows["grpo"][7] == "61.7 [42.7, 80.6] @2,4,4"
  # gspo, one seed: step 2's test 0.65 with its own interval [0.45, 0.75].
  assert rows["gspo"][7] == "65.0 [45.0, 75.0] @2"
  assert rows["gspo"][1] == "1 (1 unfinished)"
  second_rows = _rows(second)
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


def test_table_without_baseline_has_no_difference_column(method_workdirs):
  groups = plot.group_runs([plot.load_run(w) for w in method_workdirs])
  text = plot.summary_table(groups)
  assert "vs " not in text.splitlines()[0]
  assert "Difference to" not in text and "excludes 0" not in text


def test_unknown_baseline_lists_the_groups(method_workdirs, tmp_path,
                                           capsys):
  groups = plot.group_runs([plot.load_run(w) for w in method_workdirs])
  with pytest.raises(ValueError, match="'ppo' names no group; the groups"
                     " are: 'grpo', 'dgpo', 'dapo', 'gspo'"):
    plot.summary_table(groups, baseline="ppo")
  with pytest.raises(SystemExit):
    plot.main(method_workdirs + ["--out", str(tmp_path / "c.png"),
                                 "--baseline", "ppo"])
  assert "the groups are: 'grpo', 'dgpo'" in capsys.readouterr().err
  assert not (tmp_path / "c.png").exists()


def test_cli_baseline_flag(method_workdirs, tmp_path):
  table = tmp_path / "t.md"
  assert plot.main(method_workdirs + [
      "--out", str(tmp_path / "c.png"), "--table", str(table),
      "--baseline", "grpo"]) == 0
  main, _, second = table.read_text().partition("Difference to grpo")
  assert _rows(main)["dgpo"][4] == "+5.0 [+2.5, +7.5]* (paired)"
  assert _rows(second)["dgpo"][1] == "+3.3 [-4.3, +10.9] (paired)"
