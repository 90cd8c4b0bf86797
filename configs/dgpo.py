"""DGPO (Dai et al. 2026, MathForge, arXiv:2601.20614).

  python -m mathrl.main --config=configs/dgpo.py --workdir=/tmp/dgpo

Difficulty-aware GRPO: group advantages scaled by the mean absolute
deviation (DGAE) and weighted per question by difficulty (DQW)."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' defaults: DQW on, temperature 2.
  c.rl.advantage = "dgpo"
  c.rl.advantage_kwargs.enable_dqw = True
  c.rl.advantage_kwargs.dqw_temp = 2.0
  # Paper: token-mean over the valid groups.
  c.rl.aggregation = "token_mean"
  return c
