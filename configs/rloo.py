"""RLOO (Ahmadian et al. 2024, arXiv:2402.14740).

  python -m mathrl.main --config=configs/rloo.py --workdir=/tmp/rloo

Leave-one-out baseline: each sample is compared with the mean reward of the
other G - 1 samples of its prompt."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper: A_i = r_i - mean_{j != i} r_j.
  c.rl.advantage = "rloo"
  return c
