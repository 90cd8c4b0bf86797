"""Run workdirs as the trainer writes them, for the plot and table tests.

  import fake_workdirs
  dirs = fake_workdirs.three_runs(tmp_path)    # grpo x 2 seeds, dgpo x 1
  dirs = fake_workdirs.four_methods(tmp_path)  # grpo, dgpo, dapo, gspo
"""

import json

from mathrl import metrics


def write(root, name, *, seed, advantage, end_accuracy, evals=None,
          config_steps=4):
  """A workdir as the trainer writes it: config.json and metrics.jsonl.

  Four RL steps (2 s each, reward 0.1 step + seed), test accuracy 0.5 at
  step 0 and `end_accuracy` at step 4 (its interval [end - 0.2,
  end + 0.1]; level 1 the same); each test evaluation takes 3 s and each
  validation 1 s. `evals` {step: (validation, test)} adds
  evaluations before the last step, validation and test in separate rows
  (an "eval"-stage row and the step's "rl" row; metrics.jsonl keeps one
  row per stage and step); the last step has both in one row, validation
  0.45.
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
                     "eval_accuracy/difficulty_1": 0.6,
                     "eval_seconds": 3.0}, stage="eval")
    for step in range(1, 5):
      row = {"reward_mean": 0.1 * step + seed, "entropy": 1.0 / step,
             "response_length_mean": 10.0 + step, "kl": 0.01 * step,
             "clip_fraction": 0.0, "step_seconds": 2.0}
      if step in (evals or {}):
        validation, test = evals[step]
        writer.write(step, {"validation_accuracy": validation,
                            "validation_seconds": 1.0}, stage="eval")
        row.update({"eval_accuracy": test, "eval_ci_low/accuracy": test - 0.2,
                    "eval_ci_high/accuracy": test + 0.1, "eval_seconds": 3.0})
      if step == 4:
        row.update({"eval_accuracy": end_accuracy,
                    "eval_ci_low/accuracy": end_accuracy - 0.2,
                    "eval_ci_high/accuracy": end_accuracy + 0.1,
                    "eval_accuracy/difficulty_1": end_accuracy,
                    "validation_accuracy": 0.45, "eval_seconds": 3.0,
                    "validation_seconds": 1.0})
      writer.write(step, row, stage="rl")
  return str(path)


def three_runs(root):
  """grpo on seeds 0 and 1 (end 0.5, 0.7), dgpo on seed 0 (end 0.6)."""
  return [
      write(root, "grpo_s0", seed=0, advantage="grpo", end_accuracy=0.5),
      write(root, "grpo_s1", seed=1, advantage="grpo", end_accuracy=0.7),
      write(root, "dgpo_s0", seed=0, advantage="dgpo", end_accuracy=0.6),
  ]


def four_methods(root):
  """grpo and dgpo on seeds 0-2, dapo on seeds 3-5, gspo on seed 0."""
  dirs = []
  # grpo seed 0 also evaluates at step 2: validation 0.45 ties step 4's, so
  # the earliest, step 2, is chosen (test 0.55).
  for seed, end in zip((0, 1, 2), (0.5, 0.6, 0.7)):
    dirs.append(write(root, f"grpo_s{seed}", seed=seed, advantage="grpo",
                      end_accuracy=end,
                      evals={2: (0.45, 0.55)} if seed == 0 else None))
  for seed, end in zip((0, 1, 2), (0.55, 0.66, 0.74)):
    dirs.append(write(root, f"dgpo_s{seed}", seed=seed, advantage="dgpo",
                      end_accuracy=end))
  for seed, end in zip((3, 4, 5), (0.3, 0.4, 0.5)):
    dirs.append(write(root, f"dapo_s{seed}", seed=seed, advantage="dapo",
                      end_accuracy=end))
  # gspo's validation peaks at step 2 (0.5 > 0.45); its config asks for 6
  # steps, so the run is unfinished.
  dirs.append(write(root, "gspo_s0", seed=0, advantage="gspo",
                    end_accuracy=0.62, evals={2: (0.5, 0.65)},
                    config_steps=6))
  return dirs


def table_rows(text):
  """{label: cells} of a markdown table's rows (cells split on ' | ')."""
  return {line.split(" | ")[0][2:]: line.split(" | ")
          for line in text.splitlines() if line.startswith("| ")}
