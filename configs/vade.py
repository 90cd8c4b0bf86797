"""VADE: GRPO on prompts chosen by variance-aware dynamic sampling.

  python -m mathrl.main --config=configs/vade.py --workdir=/tmp/vade

Each step's P prompts are the ones whose success rate, drawn from a Beta
posterior kept per prompt (Thompson sampling), gives the largest reward
variance p(1 − p) among 4·P candidates; every scored group updates its
prompt's posterior, old evidence decaying with λ = 0.9 (mathrl.data.vade).
Groups are chosen to be informative before generation, instead of
generating and filtering them (DAPO's dynamic sampling).
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # 4·P candidates and λ = 0.9 (the base's rl.vade settings).
  c.rl.prompt_selection = "vade"
  return c
