"""mathrl.plot: curves and the final-number table from run workdirs."""

import fake_workdirs
import numpy as np
import pytest

from mathrl import metrics
from mathrl import plot
from mathrl import workdirs


@pytest.fixture
def three_runs(tmp_path):
  return fake_workdirs.three_runs(tmp_path)


def test_group_curve_is_the_mean_over_seeds_with_their_range(three_runs):
  groups = workdirs.group_runs([workdirs.load_run(w) for w in three_runs])
  steps, mean, low, high = plot.group_curve(groups["grpo"], "reward_mean")
  # Seed 0: 0.1 s, seed 1: 1 + 0.1 s -> mean 0.5 + 0.1 s, band ±0.5.
  np.testing.assert_array_equal(steps, [1, 2, 3, 4])
  np.testing.assert_allclose(mean, 0.5 + 0.1 * steps)
  np.testing.assert_allclose(high - low, 1.0)


def test_plot_writes_a_png_with_one_line_per_group(three_runs, tmp_path):
  out = tmp_path / "figs" / "curves.png"
  groups = workdirs.group_runs([workdirs.load_run(three_runs[0]),
                                workdirs.load_run(three_runs[2])])
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


def test_plot_against_hours_puts_each_step_at_its_elapsed_time(
    three_runs, tmp_path):
  groups = workdirs.group_runs([workdirs.load_run(w) for w in three_runs])
  fig = plot.plot(groups, str(tmp_path / "hours.png"), x="hours")
  assert fig.axes[0].get_xlabel() == "hours (RL steps and evaluations)"
  # Both grpo seeds: start evaluation 3 s, then 2 s steps, step 4 with a
  # test (3 s) and a validation (1 s): 5, 7, 9, 15 s.
  reward = fig.axes[0].get_lines()[0]
  np.testing.assert_allclose(reward.get_xdata(),
                             np.array([5, 7, 9, 15]) / 3600)
  accuracy = fig.axes[1].get_lines()[0]  # steps 0 and 4
  np.testing.assert_allclose(accuracy.get_xdata(), np.array([3, 15]) / 3600)


def test_cli_writes_png_and_markdown_table(three_runs, tmp_path, capsys):
  out, table = tmp_path / "c.png", tmp_path / "t.md"
  assert plot.main(three_runs + ["--out", str(out), "--table", str(table)]
                   ) == 0
  assert out.stat().st_size > 1000
  text = table.read_text()
  assert text.startswith("| run | seeds | test acc. start |")
  rows = fake_workdirs.table_rows(text)
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


def test_cli_baseline_flag(tmp_path):
  dirs, table = fake_workdirs.four_methods(tmp_path), tmp_path / "t.md"
  assert plot.main(dirs + ["--out", str(tmp_path / "c.png"), "--table",
                           str(table), "--baseline", "grpo"]) == 0
  main, _, second = table.read_text().partition("Difference to grpo")
  # The numbers' arithmetic: tables_test.test_table_against_a_baseline.
  rows = fake_workdirs.table_rows(main)
  assert rows["dgpo"][4] == "+5.0 [+2.5, +7.5]* (paired)"
  assert fake_workdirs.table_rows(second)["dgpo"][1] == (
      "+3.3 [-4.3, +10.9] (paired)")


def test_cli_unknown_baseline_lists_the_groups_and_draws_nothing(
    tmp_path, capsys):
  dirs = fake_workdirs.four_methods(tmp_path)
  with pytest.raises(SystemExit):
    plot.main(dirs + ["--out", str(tmp_path / "c.png"), "--baseline", "ppo"])
  assert "the groups are: 'grpo', 'dgpo'" in capsys.readouterr().err
  assert not (tmp_path / "c.png").exists()


def test_cli_hours_of_a_run_with_unlogged_steps_names_the_run(
    tmp_path, capsys):
  path = tmp_path / "sparse_s0"
  path.mkdir()
  with metrics.MetricWriter(str(path), use_tensorboard=False) as writer:
    writer.write(2, {"reward_mean": 0.5, "step_seconds": 1.0}, stage="rl")
  out = tmp_path / "c.png"
  with pytest.raises(SystemExit):
    plot.main([str(path), "--out", str(out), "--x", "hours"])
  assert "sparse_s0: RL steps [1] have no metrics row" in (
      capsys.readouterr().err)
  assert not out.exists()
