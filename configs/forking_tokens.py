"""80/20 forking tokens (Wang et al. 2025, arXiv:2506.01939).

  python -m mathrl.main --config=configs/forking_tokens.py --workdir=/tmp/forking_tokens

Policy gradient only on the 20% highest-entropy tokens of the batch; DAPO's
clip-higher and token-level loss otherwise."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper: DAPO's surrogate, clip 0.2 / 0.28 with dual clip 10, token-mean
  # (the base aggregation).
  c.rl.loss_kwargs.clip_high = 0.28
  c.rl.loss_kwargs.dual_clip = 10.0
  # Paper: gradient only on the top 20% tokens by the current policy's
  # entropy, the kept losses averaged over the kept tokens (authors' verl).
  c.rl.token_weighting = "forking_tokens"
  c.rl.token_weighting_kwargs.top_fraction = 0.2
  # Paper (DAPO recipe): train batch 512, mini-batch 32. Here the 16 prompts of
  # a batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
