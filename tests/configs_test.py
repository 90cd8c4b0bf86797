"""Every config in configs/: loads, has exactly the base fields, validates,
builds its pieces, and (for CPU recipes) runs one RL step on a tiny model."""

import importlib.util
import pathlib

import pytest

from mathrl import builders
from mathrl import configlib
from mathrl import metrics
from mathrl import trainer
from mathrl.data import synthetic

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.py"))
# Recipes for real checkpoints: they need --config.model.path.
REAL_MODEL = ("grpo_gsm8k", "dgpo_math", "mathforge_mqr")


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
  """Shrinks a recipe to seconds: one RL step of 2 prompts × 2 samples."""
  tiny = load("tiny")
  for section in ("model", "tokenizer"):
    config[section] = tiny[section]
  config.data.synthetic = tiny.data.synthetic
  config.sft.steps = 0
  config.rl.steps = 1
  config.rl.prompts_per_step = 2
  config.rl.num_generations = 2
  config.rl.num_minibatches = 1
  config.rl.num_microbatches = 1
  config.sampling.max_new_tokens = 8
  if config.rewards.overlong:
    config.rewards.overlong_buffer = 4
  if config.rl.aggregation == "seq_mean_token_sum_norm":
    config.rl.aggregation_kwargs.loss_scale_factor = 8
  config.eval = tiny.eval
  config.log.tensorboard = False
  return config


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in REAL_MODEL])
def test_one_rl_step_of_every_cpu_config(name, tmp_path):
  config = _tiny(load(name))
  trainer.train(config, str(tmp_path))
  rows = metrics.read_jsonl(str(tmp_path / metrics.METRICS_FILE))
  rl = [r for r in rows if r["stage"] == "rl"]
  assert len(rl) == 1 and rl[0]["loss"] is not None


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
