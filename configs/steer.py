"""STEER (token entropy-change reweighting).

  python -m mathrl.main --config=configs/steer.py --workdir=/tmp/steer

Each token's clipped PPO loss is weighted in [lambda_min, lambda_max] by how
much it is expected to change the policy's entropy (weights from the old
policy's entropy, constants in the gradient)."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' run_exp.sh: exponential map, lambda_min 0.8, clip 0.2 / 0.28,
  # dual clip 10.
  c.rl.loss = "steer"
  c.rl.loss_kwargs.clip_low = 0.2
  c.rl.loss_kwargs.clip_high = 0.28
  c.rl.loss_kwargs.lambda_min = 0.8
  c.rl.aggregation = "token_mean"
  return c
