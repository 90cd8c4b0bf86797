"""Clip-Cov (Cui et al. 2025, arXiv:2505.22617).

  python -m mathrl.main --config=configs/clip_cov.py --workdir=/tmp/clip_cov

Detach the gradient of a small random subset of the tokens whose
log-prob/advantage covariance is highest, to keep entropy from collapsing."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' recipe: PPO clip 1 / 1 (ratio range [0, 2]), no dual clip,
  # token-mean (the base aggregation).
  c.rl.loss_kwargs.clip_low = 1.0
  c.rl.loss_kwargs.clip_high = 1.0
  # Authors' recipe: detach ratio 2e-4, covariance bounds 1 and 5.
  c.rl.token_weighting = "clip_cov"
  c.rl.token_weighting_kwargs.clip_cov_ratio = 2e-4
  c.rl.token_weighting_kwargs.clip_cov_lb = 1.0
  c.rl.token_weighting_kwargs.clip_cov_ub = 5.0
  # Authors' recipe: train batch 256, mini-batch 32. Here the 16 prompts of a
  # batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
