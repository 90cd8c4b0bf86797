"""GRPO (Shao et al. 2024, DeepSeekMath, arXiv:2402.03300).

  python -m mathrl.main --config=configs/grpo.py --workdir=/tmp/grpo

Group z-scored advantages, PPO clip 0.2, KL to the reference in the loss
(k3, beta 0.04) and the paper's per-sequence aggregation."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper: group z-score (std ddof=1, eps 1e-6 as verl) and PPO clip
  # epsilon 0.2 on both sides: the base's grpo and ppo_clip.
  # Paper: 1/|o_i| per sequence, then mean over sequences.
  c.rl.aggregation = "seq_mean_token_mean"
  # Paper: KL(pi||pi_ref) with the k3 estimator, beta 0.04, in the loss.
  c.rl.kl = "kl_k3"
  c.rl.kl_coef = 0.04
  return c
