"""Every config in configs/: loads, has exactly the base fields, validates,
builds its pieces, and (for CPU recipes) runs one RL step on a tiny model."""

import importlib.util
import pathlib

import numpy as np
import pytest

from mathrl import advantages
from mathrl import builders
from mathrl import configlib
from mathrl import losses
from mathrl import metrics
from mathrl import rollout
from mathrl import trainer
from mathrl.data import synthetic

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))
# Recipes for real checkpoints: they need --config.model.path.
REAL_MODEL = ("grpo_gsm8k", "dgpo_math", "mathforge", "mathforge_mqr")


def load(name):
  spec = importlib.util.spec_from_file_location(name, CONFIG_DIR / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.lock()
  return config


def _keys(d, prefix=""):
  out = set()
  for k, v in d.items():
    out.add(prefix + k)
    if isinstance(v, dict) and not k.endswith("_kwargs"):
      out |= _keys(v, prefix + k + ".")
  return out


def test_there_are_at_least_ten_algorithm_recipes():
  recipes = set(CONFIGS) - {"default", "tiny"} - set(REAL_MODEL)
  assert len(recipes) >= 10, recipes
  assert set(REAL_MODEL) <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_has_the_base_fields_validates_and_builds(name):
  config = load(name)
  assert _keys(config.to_dict()) == _keys(configlib.base_config().to_dict())
  trainer.validate(config)
  builders.make_advantage(config)
  builders.make_policy_loss(config)
  builders.make_aggregation(config)
  builders.make_kl(config)
  builders.make_reward_set(config)
  builders.make_sampling_method(config)


def _tiny(config):
  """Shrinks a recipe to seconds: one RL step of 2 prompts × its G samples."""
  tiny = load("tiny")
  for section in ("model", "tokenizer"):
    config[section] = tiny[section]
  config.data.synthetic = tiny.data.synthetic
  config.sft.steps = 0
  config.rl.steps = 1
  config.rl.prompts_per_step = 2
  config.rl.num_minibatches = 1
  config.rl.num_microbatches = 1
  config.sampling.max_new_tokens = 8
  config.rl.share_prompts = tiny.rl.share_prompts
  if config.rewards.overlong:
    config.rewards.overlong_buffer = 4
  if config.rl.aggregation == "seq_mean_token_sum_norm":
    config.rl.aggregation_kwargs.loss_scale_factor = 8
  config.eval = tiny.eval
  config.log.tensorboard = False
  return config


# The whole pipeline (tokenizer, sampling, rewards, dynamic sampling,
# checkpoints) once per kind of run; every recipe's own train step is run
# for two steps in recipes_test.py.
PIPELINE_CONFIGS = ("tiny", "dapo", "ngrpo", "gdpo", "mc_grpo", "siren",
                    "vade")


@pytest.mark.parametrize("name", PIPELINE_CONFIGS)
def test_one_rl_step_of_every_cpu_config(name, tmp_path):
  config = _tiny(load(name))
  trainer.train(config, str(tmp_path))
  rows = metrics.read_jsonl(str(tmp_path / metrics.METRICS_FILE))
  rl = [r for r in rows if r["stage"] == "rl"]
  assert len(rl) == 1
  row = rl[0]
  if "loss" not in row:
    # Dynamic sampling kept no informative group (an untrained model's
    # samples are all wrong): no update ran, and the row logs what was
    # generated.
    assert config.rl.dynamic_sampling and row["kept_groups"] == 0
    assert row["response_length_mean"] > 0
  else:
    assert row["loss"] is not None
    assert np.isfinite(row["loss"]) and row["num_skipped"] == 0


def test_unknown_names_and_bad_combinations_fail_at_start():
  config = load("grpo")
  config.rl.advantage = "grpoo"
  with pytest.raises(ValueError, match="valid names: .*dgpo"):
    trainer.validate(config)
  config = load("grpo")
  config.rl.kl = ""
  with pytest.raises(ValueError, match="rl.kl_coef"):
    trainer.validate(config)
  config = load("grpo")
  config.rl.prompts_per_step = 5
  config.rl.num_minibatches = 2
  with pytest.raises(ValueError, match="rl.num_minibatches"):
    trainer.validate(config)
  config = load("grpo")
  config.rl.ppo_epochs = 2
  with pytest.raises(ValueError, match="rl.recompute_old_logp"):
    trainer.validate(config)
  config = load("default")
  config.data.synthetic.rl_min_ops = 4
  with pytest.raises(ValueError, match="rl_min_ops=4 must lie in"):
    trainer.validate(config)
  config = load("grpo_gsm8k")
  config.data.synthetic.rl_min_ops = 2
  with pytest.raises(ValueError, match="rl_min_ops applies to the synthetic"):
    trainer.validate(config)


def test_rl_source_keeps_the_harder_training_levels(tmp_path):
  config = load("default")
  config.data.synthetic.rl_min_ops = 2
  train = builders.make_train_source(config, str(tmp_path))
  source = builders.make_rl_source(config, str(tmp_path), train)
  records = [source[i] for i in range(200)]
  assert {r["difficulty"] for r in records} == {2, 3}
  assert all(synthetic.split_of(r["question"]) == "train" for r in records)
  config.data.synthetic.rl_min_ops = 0  # off: the SFT training source
  assert builders.make_rl_source(config, str(tmp_path), train) is train


def test_train_step_scores_the_sampling_temperature():
  config = load("default")
  config.sampling.temperature = 0.7
  assert builders.train_temperature(config) == 0.7
  config.sampling.method = "greedy"
  assert builders.train_temperature(config) == 1.0
  config.sampling.method = "top_p"
  config.sampling.temperature = 0.0
  with pytest.raises(ValueError, match="sampling.temperature=0.0"):
    trainer.validate(config)


def test_sampler_cache_steps_reach_the_sampler():
  config = load("default")
  assert builders.make_rl(config).sampler.cache_steps == 128  # the base's
  config.sampling.cache_steps = 0  # the whole cache up front
  assert builders.make_rl(config).sampler.cache_steps is None
  config.sampling.cache_steps = -1
  with pytest.raises(ValueError, match="sampling.cache_steps=-1"):
    trainer.validate(config)


def test_unknown_method_lists_methods_not_building_blocks():
  config = load("grpo")
  config.rl.advantage = "grpoo"
  with pytest.raises(builders.ConfigError) as e:
    trainer.validate(config)
  message = str(e.value)
  assert "dgpo" in message and "rloo" in message
  for block in ("chain", "broadcast_to_tokens", "init_empty_state",
                "center_by_group_mean", "valid_group_mask"):
    assert block not in message
  config = load("grpo")
  config.rl.loss = "token_mean"
  with pytest.raises(builders.ConfigError, match="valid names: cispo"):
    trainer.validate(config)


def test_every_listed_method_builds_and_shaping_is_not_an_estimator():
  import mathrl.advantages as adv  # pylint: disable=g-import-not-at-top
  for name in adv.METHODS:
    assert not getattr(adv, name)().needs.shaping, name
  for name in adv.SHAPING:
    assert getattr(adv, name)().needs.shaping, name
  for name in losses.POLICY_LOSSES:
    assert isinstance(getattr(losses, name)(), losses.PolicyLoss)


@pytest.mark.parametrize("shaping", ["grpo_lambda", "dapo_overlong",
                                     "keep_positive_until"])
def test_shaping_alone_is_an_error_and_chains_with_an_estimator(shaping):
  config = load("grpo")
  config.rl.advantage = shaping
  with pytest.raises(builders.ConfigError, match="rl.shaping="):
    trainer.validate(config)
  config = load("grpo")
  config.rl.shaping = shaping
  tx = builders.make_advantage(config)
  # Rewards [[1, 0], [0, 0]]: GRPO gives the mixed group ±0.7071 whether
  # or not the shaping ran before (lengths equal) or after (a gate that
  # keeps positives at progress 0 zeroes the −0.7071).
  rewards = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
  adv, _ = tx.update(rewards, tx.init(rewards), mask=np.ones((2, 2)),
                     lengths=np.full((2, 2), 4), progress=0.0,
                     token_mask=np.ones((2, 2, 4)))
  assert abs(float(adv[0, 0]) - 0.70710677) < 1e-3
  assert float(adv[1].sum()) == 0.0


def test_methods_needing_inputs_the_rollout_lacks_fail_at_start(
    monkeypatch):
  # FSPO's step verdicts are what the rollout provides; an extra it does
  # not provide (here a made-up `evidence`) fails at start.
  config = load("grpo")
  config.rl.advantage = "fspo"
  trainer.validate(config)
  monkeypatch.setattr(advantages, "fspo", lambda: advantages.base.declare(
      advantages.grpo(), extras=("evidence",)))
  with pytest.raises(builders.ConfigError, match="evidence"):
    trainer.validate(config)
  config = load("grpo")
  config.rewards.multi = True
  with pytest.raises(builders.ConfigError, match="rewards.multi"):
    trainer.validate(config)
  config = load("grpo")
  config.rl.advantage = "canon"
  with pytest.raises(builders.ConfigError, match="rl.recompute_old_logp"):
    trainer.validate(config)


def test_dynamic_sampling_filters():
  # DAPO: groups [[1,1,1,1],[0,0,0,0],[1,0,0,0]] → keep [F, F, T];
  # NGRPO keeps the all-wrong group too: [F, T, T].
  correct = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0], np.float32)
  np.testing.assert_array_equal(
      rollout.informative_groups(correct, 4), [False, False, True])
  np.testing.assert_array_equal(
      rollout.not_all_correct_groups(correct, 4, correct > 0),
      [False, True, True])
  assert builders.make_group_filter(load("ngrpo")) is (
      rollout.not_all_correct_groups)
  assert builders.make_group_filter(load("dapo")) is (
      rollout.informative_groups)
  assert builders.make_group_filter(load("grpo")) is None


def test_train_exclude_drops_the_eval_problems():
  from mathrl.data import splits  # pylint: disable=g-import-not-at-top
  train = [{"question": q} for q in ("a  b", "c", "d\n", "e")]
  held_out = [{"question": q} for q in ("a b", "d")]
  source = splits.Excluding(train, held_out)
  assert [r["question"] for r in source] == ["c", "e"]
  assert source.num_excluded == 2
