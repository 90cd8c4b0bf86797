"""DAPO (Yu et al. 2025, arXiv:2503.14476).

  python -m mathrl.main --config=configs/dapo.py --workdir=/tmp/dapo

Clip-higher (0.2 / 0.28), dynamic sampling (drop groups whose rewards are all
equal, refill), token-level loss, overlong reward shaping, no KL."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Paper: decoupled clip, eps_low 0.2 (the base ppo_clip's), eps_high 0.28;
  # verl recipe dual clip 10.
  c.rl.loss_kwargs.clip_high = 0.28
  c.rl.loss_kwargs.dual_clip = 10.0
  # verl recipe: train batch 512 prompts, mini-batch 32 (16 updates per rollout
  # batch). Here the 16 prompts of a batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  # Paper: dynamic sampling, at most 10 generation rounds in the verl recipe;
  # the base's 3 keeps the CPU run short.
  c.rl.dynamic_sampling = True
  # Paper: overlong penalty, linear over the last L_cache tokens, factor 1
  # (L_cache 4096 of 20480 in the paper; a third of the budget here).
  c.rewards.overlong = 1.0
  c.rewards.overlong_buffer = c.sampling.max_new_tokens // 3
  # Paper: token-level loss, no KL term (the base config's token_mean, no KL).
  return c
