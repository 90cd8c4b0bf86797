"""REINFORCE++ (Hu 2025, arXiv:2501.03262).

  python -m mathrl.main --config=configs/reinforce_pp.py --workdir=/tmp/reinforce_pp

Discounted token returns whitened over the whole batch (no critic, no group
normalisation); PPO clip."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # verl reinforce_plus_plus: gamma 1, batch whitening over valid tokens.
  c.rl.advantage = "reinforce_pp"
  c.rl.advantage_kwargs.gamma = 1.0
  return c
