"""GDPO (group reward-decoupled normalisation, arXiv:2601.05242).

  python -m mathrl.main --config=configs/gdpo.py --workdir=/tmp/gdpo

Each reward component is normalised within its group separately, then the
weighted sum is whitened over the batch. Two components here: correctness
and the boxed-answer format."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Multi-reward: the advantage sees [P, G, K] instead of the weighted sum;
  # correctness (weight 1, the base's) and format, weight 1.
  c.rewards.multi = True
  c.rewards.format = 1.0
  # TRL's GDPO: per-sample batch normalisation, equal reward weights.
  c.rl.advantage = "gdpo"
  c.rl.advantage_kwargs.batch_norm_domain = "sample"
  return c
