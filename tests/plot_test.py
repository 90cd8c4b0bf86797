"""mathrl.plot: curves and the final-number table from run workdirs."""

import json

import numpy as np
import pytest

from mathrl import metrics
from mathrl import plot
from mathrl import stats


def _workdir(root, name, *, seed, advantage, end_accuracy):
  """A workdir as the trainer writes it: config.json and metrics.jsonl."""
  path = root / name
  config = {"seed": seed, "rl": {"advantage": advantage, "steps": 4},
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
  # mean 0.6, s = 0.1, t_{0.975, 2} = 4.303: 0.6 ± 4.303 * 0.1 / sqrt(3)
  # = 0.6 ± 0.24843.
  np.testing.assert_allclose(stats.seed_interval([0.5, 0.6, 0.7]),
                             (0.6, 0.35157, 0.84843), atol=1e-5)
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
  assert rows["dgpo"][7] == "8 |"  # 4 steps x 2 s
  assert capsys.readouterr().out.startswith("| run |")
