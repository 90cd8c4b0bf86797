"""SIREN (selective entropy regularisation, arXiv:2509.25133).

  python -m mathrl.main --config=configs/siren.py --workdir=/tmp/siren

PPO-clip plus c·(H_sel − H0)²: H_sel is the nucleus (top-p) entropy of the
current policy averaged over each response's peak-entropy tokens, H0 the
same quantity on the first step's rollout batch, then held in the
TrainState. The train step adds the penalty to the aggregated loss."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  c.rl.loss = "siren"
  # Authors' defaults: nucleus p 0.8, top 20% entropy tokens per response,
  # coefficient 0.005.
  c.rl.loss_kwargs.top_p = 0.8
  c.rl.loss_kwargs.entropy_top_fraction = 0.2
  c.rl.loss_kwargs.coef = 0.005
  # Authors' effective clip: [0.8, 1.2] (their yaml's 0.2/0.2 shadows the
  # script's 0.28) with dual clip 3.
  c.rl.loss_kwargs.clip_low = 0.2
  c.rl.loss_kwargs.clip_high = 0.2
  c.rl.loss_kwargs.dual_clip = 3.0
  # Authors' recipe: Dr. GRPO's PG aggregation Σ/C with C the response
  # budget, no KL term.
  c.rl.aggregation = "seq_mean_token_sum_norm"
  c.rl.aggregation_kwargs.loss_scale_factor = c.sampling.max_new_tokens
  # Authors' script: train batch 128, mini-batch 8. Here the 16 prompts of a
  # batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
