"""FSPO (Li & Ng 2025, arXiv:2505.24630).

  python -m mathrl.main --config=configs/fspo.py --workdir=/tmp/fspo

GRPO whose advantage is flipped token by token by the verdict of each
reasoning step: the tokens of a step that checks out get +|A|, those of a
step that does not get −|A|, whatever the final answer. The rollout checks
every sentence's arithmetic (`mathrl.rewards.steps`) to give the
`step_verdicts` the fspo transform declares; sentences without an equation
keep the sequence advantage."""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # Authors' code (turboLJY/FSPO, ray_trainer.py compute_advantage): verl's
  # GRPO z-score (eps 1e-6) of the answer reward, flipped by the step
  # verdicts; tokens outside every checked step keep A (the paper's intent;
  # outside_span_value=1.0 is the code's +1 default).
  c.rl.advantage = "fspo"
  c.rl.advantage_kwargs.outside_span_value = 0.0
  # main_grpo_qwen_instruct.sh: KL loss low_var_kl (k3) with coefficient
  # 0.001, PPO clip 0.2 (the base surrogate), token-mean (the base
  # aggregation), one epoch, rollout n 8 and temperature 1 (the base's).
  c.rl.kl = "kl_k3"
  c.rl.kl_coef = 0.001
  return c
