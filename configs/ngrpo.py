"""NGRPO (negative-enhanced GRPO, arXiv:2509.18851).

  python -m mathrl.main --config=configs/ngrpo.py --workdir=/tmp/ngrpo

A virtual maximum-reward sample joins every group's statistics, so all-wrong
groups still get a learning signal; asymmetric clip."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' defaults: one virtual sample of reward 1.
  c.rl.advantage = "ngrpo"
  c.rl.advantage_kwargs.max_reward = 1.0
  c.rl.advantage_kwargs.add_max_reward_num = 1
  # Paper: asymmetric clip 0.16 / 0.24.
  c.rl.loss_kwargs.clip_low = 0.16
  c.rl.loss_kwargs.clip_high = 0.24
  # Authors' script: train batch 1024, mini-batch 256 (4 updates per batch).
  # Here the 16 prompts of a batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  # Authors' script: filter_groups strategy all_correct, drop only groups
  # whose answers are all correct (all-wrong groups carry NGRPO's signal).
  c.rl.dynamic_sampling = True
  c.rl.dynamic_sampling_filter = "not_all_correct"
  # Authors' script: verl's entropy_coeff 0.001 is left on.
  c.rl.entropy_coef = 0.001
  return c
