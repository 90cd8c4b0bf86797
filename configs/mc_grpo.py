"""MC-GRPO (median-centred GRPO, arXiv:2601.22582).

  python -m mathrl.main --config=configs/mc_grpo.py --workdir=/tmp/mc_grpo

G + 1 rollouts per prompt; the group median is the baseline and the median
absolute deviation (+ 1e-3) the scale; the pivot (the median sample, whose
advantage is 0) is dropped from the loss and its normalisers, so backprop
sees G rollouts per prompt."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' scripts: G = 8, plus the pivot rollout.
  c.rl.num_generations = 8 + 1
  # Authors' code: MAD scale with eps 1e-3. With 0/1 rewards the raw MAD is
  # 0, so minority samples get ±1/1e-3 and the step size is set by the PPO
  # clip and gradient clipping (as in their code); `scale="none"` is the
  # robust alternative. The pivot leaves the loss and its normalisers (the
  # mc_grpo transform declares it).
  c.rl.advantage = "mc_grpo"
  c.rl.advantage_kwargs.mad_eps = 1e-3
  c.rl.advantage_kwargs.scale = "mad"
  # TRL (loss_type "grpo"): seq-mean-token-mean, clip 0.2 symmetric (the
  # base ppo_clip's default).
  c.rl.aggregation = "seq_mean_token_mean"
  # Authors' scripts: KL β = 0.04 (k3), two updates per batch
  # (num_iterations = 2), accuracy reward × 2.
  c.rl.kl = "kl_k3"
  c.rl.kl_coef = 0.04
  c.rl.ppo_epochs = 2
  c.rl.recompute_old_logp = True
  c.rewards.correctness = 2.0
  return c
