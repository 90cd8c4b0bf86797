"""DGPO (Dai et al. 2026, MathForge, arXiv:2601.20614).

  python -m mathrl.main --config=configs/dgpo.py --workdir=/tmp/dgpo

Difficulty-aware GRPO: group advantages scaled by the mean absolute
deviation (DGAE) and weighted per question by difficulty (DQW)."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' defaults: DQW on, temperature 2. The token mean over the valid
  # groups only (paper eq. 3) is declared by the dgpo transform; TRL 0.20's
  # clip 0.2 symmetric is the base ppo_clip's default.
  c.rl.advantage = "dgpo"
  c.rl.advantage_kwargs.dqw_temp = 2.0
  return c
