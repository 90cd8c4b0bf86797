"""DRPO (decoupled reward policy optimisation, arXiv:2510.04474).

  python -m mathrl.main --config=configs/drpo.py --workdir=/tmp/drpo

Contrastive objective per question: length-weighted log-likelihood of the
correct responses against a soft-max of the incorrect ones, with an adaptive
KL constraint to the behaviour policy."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' defaults: tau 10, length temperature 0.1, beta 1e3, delta 1e-4
  # (the KL constraint to the behaviour policy). The per-token values are
  # scaled so the base config's token_mean returns the objective.
  c.rl.loss = "drpo"
  c.rl.loss_kwargs.tau = 10.0
  c.rl.loss_kwargs.length_temp = 0.1
  c.rl.loss_kwargs.beta = 1e3
  c.rl.loss_kwargs.delta = 1e-4
  # Authors' scripts: several minibatch updates per rollout batch, which the KL
  # constraint bounds. Here the 16 prompts of a batch make 4 updates.
  configlib.minibatch_updates(c, 4)
  return c
