"""CISPO (MiniMax-M1, arXiv:2506.13585).

  python -m mathrl.main --config=configs/cispo.py --workdir=/tmp/cispo

REINFORCE weighted by a clipped, stop-gradient importance weight, so every
token keeps a gradient; token-level aggregation."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper: only the upper bound of the IS weight is clipped (verl: 1 + 0.2);
  # the base config's token-mean aggregation.
  c.rl.loss = "cispo"
  c.rl.loss_kwargs.clip_high = 0.2
  # Paper: several off-policy updates per rollout batch. Here the 16 prompts of
  # a batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
