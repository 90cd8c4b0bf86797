"""CISPO (MiniMax-M1, arXiv:2506.13585).

  python -m mathrl.main --config=configs/cispo.py --workdir=/tmp/cispo

REINFORCE weighted by a clipped, stop-gradient importance weight, so every
token keeps a gradient; token-level aggregation."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper: only the upper bound of the IS weight is clipped (verl: 1 + 0.2).
  c.rl.loss = "cispo"
  c.rl.loss_kwargs.clip_high = 0.2
  c.rl.aggregation = "token_mean"
  return c
