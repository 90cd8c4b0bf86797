"""Dr. GRPO (Liu et al. 2025, arXiv:2503.20783).

  python -m mathrl.main --config=configs/dr_grpo.py --workdir=/tmp/dr_grpo

GRPO without the two length/difficulty biases: advantages are only
mean-centred (no std), and the loss is summed over tokens and divided by a
constant (the maximum completion length) instead of each length."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper: A = r - mean(r), no division by the group std.
  c.rl.advantage = "dr_grpo"
  # Paper: sum over tokens / constant; the constant is the max response length.
  c.rl.aggregation = "seq_mean_token_sum_norm"
  c.rl.aggregation_kwargs.loss_scale_factor = c.sampling.max_new_tokens
  # Paper: PPO clip 0.2 kept (the base ppo_clip's), no KL term (the base's).
  return c
