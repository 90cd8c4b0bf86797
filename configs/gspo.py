"""GSPO (Zheng et al. 2025, arXiv:2507.18071).

  python -m mathrl.main --config=configs/gspo.py --workdir=/tmp/gspo

Sequence-level importance ratio (length-normalised) with a very small clip
range; per-sequence aggregation."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper section 5.1: clip range 3e-4 / 4e-4 on the sequence ratio.
  c.rl.loss = "gspo"
  c.rl.loss_kwargs.clip_low = 3e-4
  c.rl.loss_kwargs.clip_high = 4e-4
  # verl forces seq-mean-token-mean for GSPO.
  c.rl.aggregation = "seq_mean_token_mean"
  # Paper section 5.1: each rollout batch is split into 4 minibatches. Here the
  # 16 prompts of a batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
