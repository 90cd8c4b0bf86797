"""STEER (token entropy-change reweighting).

  python -m mathrl.main --config=configs/steer.py --workdir=/tmp/steer

Each token's clipped PPO loss is weighted in [lambda_min, lambda_max] by how
much it is expected to change the policy's entropy (weights from the old
policy's entropy, constants in the gradient)."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' run_exp.sh: PPO clip 0.2 / 0.28, dual clip 10, token-mean (the
  # base aggregation).
  c.rl.loss_kwargs.clip_high = 0.28
  c.rl.loss_kwargs.dual_clip = 10.0
  # Authors' run_exp.sh: STEER weights with the exponential map,
  # lambda_min 0.8.
  c.rl.token_weighting = "steer"
  c.rl.token_weighting_kwargs.lambda_min = 0.8
  # Authors' scripts: train batch 512, mini-batch 32. Here the 16 prompts of a
  # batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
