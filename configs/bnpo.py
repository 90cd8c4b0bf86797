"""BNPO (Xiao et al. 2025, arXiv:2506.02864).

  python -m mathrl.main --config=configs/bnpo.py --workdir=/tmp/bnpo

Rewards normalised by a Beta distribution fitted to the batch's success
rates instead of the group std."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' defaults (recipe/bnpo/run.sh): rewards in [0, 1], no
  # advantage decomposition.
  c.rl.advantage = "bnpo"
  c.rl.advantage_kwargs.min_value = 0.0
  c.rl.advantage_kwargs.max_value = 1.0
  # run.sh: clip 0.2 (the base ppo_clip's) / 0.28, dual clip 10,
  # seq-mean-token-sum, no KL.
  c.rl.loss_kwargs.clip_high = 0.28
  c.rl.loss_kwargs.dual_clip = 10.0
  c.rl.aggregation = "seq_mean_token_sum"
  return c
