"""KL-Cov (Cui et al. 2025, arXiv:2505.22617).

  python -m mathrl.main --config=configs/kl_cov.py --workdir=/tmp/kl_cov

Add a KL penalty (|log ratio|) on the tokens with the highest
log-prob/advantage covariance."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' code: the unclipped surrogate -A·r, token-mean (the base
  # aggregation), with the |log ratio| penalty on the top 0.2% covariance
  # tokens, coefficient 1.
  c.rl.loss = "ppo_unclipped"
  c.rl.token_weighting = "kl_cov"
  c.rl.token_weighting_kwargs.kl_cov_ratio = 2e-3
  c.rl.token_weighting_kwargs.ppo_kl_coef = 1.0
  # Authors' recipe: train batch 256, mini-batch 32. Here the 16 prompts of a
  # batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
