"""Advantage transforms (optax-style `init`/`update` pairs) and reward shaping.

Every algorithm is a module attribute, chosen by name with `getattr`:

  tx = getattr(mathrl.advantages, "dgpo")(**hparams)
  state = tx.init(rewards)
  adv, state = tx.update(rewards, state, mask=mask_PG, **extra)

See docs/algorithms.md for the table of methods, stages and defaults.
"""

# pylint: disable=g-importing-member
from mathrl.advantages.base import AdvantageTransform
from mathrl.advantages.base import chain
from mathrl.advantages.base import EmptyState
from mathrl.advantages.base import init_empty_state
from mathrl.advantages.base import named_chain
from mathrl.advantages.base import stateless

# --- block A (building blocks, baselines, seed-spec methods) ---
from mathrl.advantages.baselines import dr_grpo
from mathrl.advantages.baselines import gpg
from mathrl.advantages.baselines import grpo
from mathrl.advantages.baselines import opo
from mathrl.advantages.baselines import reinforce_pp
from mathrl.advantages.baselines import reinforce_pp_baseline
from mathrl.advantages.baselines import rloo
from mathrl.advantages.difficulty import dgpo
from mathrl.advantages.difficulty import mc_grpo
from mathrl.advantages.difficulty import mc_grpo_keep_mask
from mathrl.advantages.difficulty import ngrpo
from mathrl.advantages.difficulty import valid_group_mask
from mathrl.advantages.group import broadcast_to_tokens
from mathrl.advantages.group import center_by_group_mean
from mathrl.advantages.group import center_by_group_median
from mathrl.advantages.group import leave_one_out_baseline
from mathrl.advantages.group import scale_by_group_mad
from mathrl.advantages.group import scale_by_group_std
from mathrl.advantages.group import sum_rewards
from mathrl.advantages.group import whiten_over_batch
from mathrl.advantages.multi_reward import bnpo
from mathrl.advantages.multi_reward import gdpo
from mathrl.advantages.shaping import dapo_overlong
from mathrl.advantages.shaping import overlong_penalty
from mathrl.advantages.token_level import fspo
# --- end block A ---

# --- block B (2025/26 variants) ---
from mathrl.advantages.asymmetric import a_grae
from mathrl.advantages.asymmetric import mapo
from mathrl.advantages.conditional import canon
from mathrl.advantages.curriculum import capo
from mathrl.advantages.curriculum import CAPOState
from mathrl.advantages.curriculum import keep_positive_until
from mathrl.advantages.history import ha_dw
from mathrl.advantages.history import HADWState
from mathrl.advantages.key_token import ktae
from mathrl.advantages.length_shaping import grpo_lambda
from mathrl.advantages.momentum import aapo
from mathrl.advantages.quantile import qae
# --- end block B ---

# The names a config's `rl.advantage` may use: advantage estimators.
METHODS = (
    "a_grae", "aapo", "bnpo", "canon", "capo", "dgpo", "dr_grpo", "fspo",
    "gdpo", "gpg", "grpo", "ha_dw", "ktae", "mapo", "mc_grpo", "ngrpo",
    "opo", "qae", "reinforce_pp", "reinforce_pp_baseline", "rloo",
)
# The names `rl.shaping` may use: reward shaping in front of an estimator
# and advantage gates after one (their `needs.shaping` says which).
SHAPING = ("dapo_overlong", "grpo_lambda", "keep_positive_until")
