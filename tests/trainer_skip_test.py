"""An RL step whose dynamic sampling kept no group makes no update."""

import importlib.util
import pathlib

import numpy as np

from mathrl import metrics
from mathrl import rollout as rollout_lib
from mathrl import trainer

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


def test_step_without_groups_is_skipped_counted_and_logged(tmp_path,
                                                           monkeypatch):
  spec = importlib.util.spec_from_file_location("tiny", CONFIGS / "tiny.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.sft.steps = 0
  config.rl.steps = 1
  collect = rollout_lib.collect

  def keeps_no_group(*args, **kwargs):
    rollout, scored, info = collect(*args, **kwargs)
    info["kept_groups"] = 0.0
    return rollout.replace(valid_PG=np.zeros_like(rollout.valid_PG)), (
        scored), info

  monkeypatch.setattr(rollout_lib, "collect", keeps_no_group)
  trainer.train(config, str(tmp_path))
  rows = [r for r in metrics.read_jsonl(str(tmp_path / metrics.METRICS_FILE))
          if r["stage"] == "rl"]
  assert len(rows) == 1 and rows[0]["skipped_steps"] == 1
  # The generated lengths, not 0.0 for "no valid sample".
  assert rows[0]["response_length_mean"] == rows[0]["generated_length_mean"]
  assert rows[0]["response_length_mean"] > 0
