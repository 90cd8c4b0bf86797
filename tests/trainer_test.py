"""End-to-end runs of the trainer on the tiny config: train, resume, faults."""

import importlib.util
import os
import pathlib

import jax
import numpy as np
import pytest

from mathrl import checkpoint
from mathrl import metrics
from mathrl import rewards
from mathrl import rollout as rollout_lib
from mathrl import trainer
from mathrl import types

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
# Timings differ between any two runs; everything else must not.
_TIMING_KEYS = ("seconds", "tokens_per_second")


def tiny_config(**overrides):
  spec = importlib.util.spec_from_file_location("tiny", CONFIGS / "tiny.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.lock()  # as config_flags does: a misspelled override is an error
  for key, value in overrides.items():
    section, field = key.split(".")
    config[section][field] = value
  return config


def _rows(workdir):
  return metrics.read_jsonl(os.path.join(workdir, metrics.METRICS_FILE))


def _strip_timings(row):
  return {k: v for k, v in row.items()
          if not any(t in k for t in _TIMING_KEYS)}


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("two_steps"))
  results = trainer.train(tiny_config(), workdir)
  return workdir, results


def test_two_step_run_logs_every_required_metric(two_step_run):
  workdir, results = two_step_run
  rows = _rows(workdir)
  rl_rows = [r for r in rows if r["stage"] == "rl"]
  assert [r["step"] for r in rl_rows] == [1, 2]
  required = ("step", "reward_mean", "accuracy", "response_length_mean",
              "entropy", "kl", "clip_fraction", "tokens_per_second",
              "grad_norm", "generate_seconds", "reward_seconds",
              "train_seconds", "dynamic_sampling_pass_rate")
  for row in rl_rows:
    missing = [k for k in required if k not in row]
    assert not missing, missing
  assert [r["step"] for r in rows if r["stage"] == "sft"] == [1, 2]
  assert any("eval_accuracy" in r for r in rows if r["stage"] == "rl")
  # Every evaluation during RL logs its wall-clock seconds beside it.
  for row in rl_rows:
    assert ("eval_accuracy" in row) == ("eval_seconds" in row)
    assert row.get("eval_seconds", 1.0) > 0
    assert ("validation_accuracy" in row) == ("validation_seconds" in row)
  start, = [r for r in rows if r["stage"] == "eval" and r["step"] == 0]
  assert start["eval_seconds"] > 0
  # The SFT stop rule reads the validation split, not the eval set.
  assert any("validation_accuracy" in r for r in rows if r["stage"] == "sft")
  assert not any("eval_accuracy" in r for r in rows if r["stage"] == "sft")
  assert {"sft", "rl"} <= set(results)
  assert os.path.isfile(os.path.join(workdir, "config.json"))
  assert os.path.isfile(os.path.join(workdir, "summary.json"))


class _Crash(Exception):
  pass


def test_resume_equals_uninterrupted_run(two_step_run, tmp_path, monkeypatch):
  """Crash during RL step 2, rerun: equal to the 2-step run, bitwise."""
  workdir, _ = two_step_run
  resumed = str(tmp_path / "resumed")
  collect = rollout_lib.collect
  calls = []

  def crash_on_second_call(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise _Crash()
    return collect(*args, **kwargs)

  monkeypatch.setattr(rollout_lib, "collect", crash_on_second_call)
  with pytest.raises(_Crash):
    trainer.train(tiny_config(), resumed)
  monkeypatch.setattr(rollout_lib, "collect", collect)
  trainer.train(tiny_config(), resumed)

  def final(wd):
    ckpt = checkpoint.Checkpointer(os.path.join(wd, "checkpoints", "rl"))
    step = ckpt.latest_step()
    run = trainer.Run(tiny_config(), wd)
    try:
      tree, _ = ckpt.restore(
          step, abstract_state=trainer.RLSetup(run).initial_tree(
              run.init_params))
    finally:
      run.close()
      ckpt.close()
    return step, tree

  step_a, tree_a = final(workdir)
  step_b, tree_b = final(resumed)
  assert step_a == step_b == 2
  jax.tree.map(np.testing.assert_array_equal, tree_a, tree_b)
  rl_a = [_strip_timings(r) for r in _rows(workdir) if r["stage"] == "rl"]
  rl_b = [_strip_timings(r) for r in _rows(resumed) if r["stage"] == "rl"]
  assert rl_a == rl_b


def test_repeated_nonfinite_updates_stop_with_checkpoint_intact(
    tmp_path, monkeypatch):
  # A reward of NaN makes every update non-finite: each is skipped (the
  # parameters stay as SFT left them) until the run stops.
  monkeypatch.setattr(
      rewards.functions, "correctness",
      lambda completions, answers, **kw: np.full(len(completions), np.nan))
  config = tiny_config(**{"rl.steps": 6, "rl.max_consecutive_skipped": 2})
  with pytest.raises(trainer.TrainingError, match="non-finite"):
    trainer.train(config, str(tmp_path))
  rows = [r for r in _rows(str(tmp_path)) if r["stage"] == "rl"]
  assert [r["num_skipped"] for r in rows] == [1, 2, 3]
  ckpt = checkpoint.Checkpointer(str(tmp_path / "checkpoints" / "rl"))
  assert ckpt.latest_step() == 2
  run = trainer.Run(config, str(tmp_path))
  try:
    setup = trainer.RLSetup(run)
    sft_params = trainer.run_sft(run)[0]
    tree, _ = ckpt.restore(2, abstract_state=setup.initial_tree(sft_params))
  finally:
    run.close()
    ckpt.close()
  jax.tree.map(np.testing.assert_array_equal, tree["state"].params,
               sft_params)


def test_bad_config_errors_name_the_field(tmp_path):
  with pytest.raises(ValueError, match="rl.num_minibatches"):
    trainer.validate(tiny_config(**{"rl.num_minibatches": 3}))
  with pytest.raises(ValueError, match="rl.advantage.*valid names"):
    trainer.Run(tiny_config(**{"rl.advantage": "grpoo"}), str(tmp_path))
  with pytest.raises(KeyError, match="lerning_rate"):
    tiny_config(**{"rl.lerning_rate": 1e-4})


@pytest.mark.parametrize("advantage, extra", [("fspo", "step_verdicts"),
                                              ("aapo", "ref_rewards")])
def test_the_rollout_provides_what_the_method_declares(
    advantage, extra, tmp_path, monkeypatch):
  # FSPO's step verdicts and AAPO's reference rollouts come from the
  # trainer's own rollout: two RL steps run and every rollout carries them.
  # Completions are stopped after 3 tokens (as a stop token would), so the
  # update runs cut to the bucket 4 of (4, 8) (rl.completion_buckets).
  collect = rollout_lib.collect
  seen = []

  def recording(*args, **kwargs):
    rollout, scored, info = collect(*args, **kwargs)
    seen.append(sorted(rollout.extras))
    stop = lambda x: np.where(np.arange(x.shape[-1]) < 3, x, 0)
    extras = {k: stop(v) if k in types.TOKEN_EXTRAS else v
              for k, v in rollout.extras.items()}
    return rollout.replace(completion_mask_BT=stop(
        rollout.completion_mask_BT), extras=extras), scored, info

  monkeypatch.setattr(rollout_lib, "collect", recording)
  config = tiny_config(**{"rl.advantage": advantage, "sft.steps": 0,
                          "rl.completion_buckets": (4, 8)})
  trainer.train(config, str(tmp_path))
  assert seen == [sorted(["correctness", extra])] * 2
  rows = [r for r in _rows(str(tmp_path)) if r["stage"] == "rl"]
  assert [r["step"] for r in rows] == [1, 2]
  assert all(np.isfinite(r["loss"]) and r["num_skipped"] == 0 for r in rows)
  assert [r["update_width"] for r in rows] == [4, 4]
  assert all(0 < r["response_length_mean"] <= 3 for r in rows)
