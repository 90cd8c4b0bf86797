"""AAPO (Xiong et al. 2025, arXiv:2505.14264).

  python -m mathrl.main --config=configs/aapo.py --workdir=/tmp/aapo

The group z-score plus a clipped "advantage momentum": the reward gain of
each response over a paired response that the frozen reference (initial)
policy samples for the same prompt. The rollout samples those G reference
responses per prompt (the `ref_rewards` the aapo transform declares)."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' AAPOTrainer.py (JianxXiong/AAPO, advantage_constrain): momentum
  # clipped to [-0.2, 0.28], group std + 1e-4 (TRL).
  c.rl.advantage = "aapo"
  c.rl.advantage_kwargs.clip_low = 0.2
  c.rl.advantage_kwargs.clip_high = 0.28
  c.rl.advantage_kwargs.eps = 1e-4
  # Authors' compute_loss: plain cross-entropy policy gradient -A·log π,
  # token-mean (the base aggregation), no ratio, no clip and no KL term
  # (the base's; AAPO.yaml's beta 0.1 is never used by the loss).
  c.rl.loss = "reinforce"
  # AAPO.yaml: 6 generations per prompt.
  c.rl.num_generations = 6
  return c
