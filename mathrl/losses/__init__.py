"""Policy losses, token weights/masks, KL estimators and aggregations.

  loss = getattr(mathrl.losses, "ppo_clip")(**hparams)
  per_token_BT, metrics = loss(logp=logp_BT, old_logp=old_logp_BT,
                               advantages=adv_B_or_BT, mask=mask_BT, **extra)
  scalar = getattr(mathrl.losses, "token_mean")(per_token_BT, mask_BT)
  kl_BT = mathrl.losses.kl_k3(logp_BT, ref_logp_BT)

Policy losses (factories → `PolicyLoss`): ppo_clip, gppo, gspo, cispo,
geo_mean, sapo, reinforce, gpg (surrogates.py); forking_tokens, clip_cov,
kl_cov (token_selection.py); steer (steer.py); siren (siren.py); drpo
(drpo.py).
Aggregations `(values_BT, mask_BT, **kw) -> scalar`: token_mean,
seq_mean_token_mean, seq_mean_token_sum, seq_mean_token_sum_norm.
KL estimators `(logp_BT, ref_logp_BT) -> [B, T]`: kl_k1, kl_k2, kl_k3,
kl_abs, kl_k1_plus, kl_k3_plus; entropy_bonus. See docs/algorithms.md.
"""

# pylint: disable=g-importing-member
from mathrl.losses.aggregation import counts
from mathrl.losses.aggregation import seq_mean_token_mean
from mathrl.losses.aggregation import seq_mean_token_sum
from mathrl.losses.aggregation import seq_mean_token_sum_norm
from mathrl.losses.aggregation import token_mean
from mathrl.losses.base import LossInputs
from mathrl.losses.base import PolicyLoss
from mathrl.losses.clipping import clipped_surrogate
from mathrl.losses.drpo import drpo
from mathrl.losses.kl import entropy_bonus
from mathrl.losses.kl import kl_abs
from mathrl.losses.kl import kl_k1
from mathrl.losses.kl import kl_k1_plus
from mathrl.losses.kl import kl_k2
from mathrl.losses.kl import kl_k3
from mathrl.losses.kl import kl_k3_plus
from mathrl.losses.siren import peak_entropy_mask
from mathrl.losses.siren import selected_entropy
from mathrl.losses.siren import siren
from mathrl.losses.siren import top_p_entropy
from mathrl.losses.surrogates import cispo
from mathrl.losses.surrogates import geo_mean
from mathrl.losses.surrogates import gppo
from mathrl.losses.surrogates import gpg
from mathrl.losses.surrogates import gspo
from mathrl.losses.surrogates import ppo_clip
from mathrl.losses.surrogates import reinforce
from mathrl.losses.surrogates import sapo
from mathrl.losses.steer import steer
from mathrl.losses.steer import steer_weights
from mathrl.losses.token_selection import clip_cov
from mathrl.losses.token_selection import forking_tokens
from mathrl.losses.token_selection import kl_cov
from mathrl.losses.token_selection import token_covariance

# The names a config may use: `rl.loss`, `rl.aggregation`, `rl.kl`.
POLICY_LOSSES = (
    "cispo", "clip_cov", "drpo", "forking_tokens", "geo_mean", "gpg", "gppo",
    "gspo", "kl_cov", "ppo_clip", "reinforce", "sapo", "siren", "steer",
)
AGGREGATIONS = (
    "token_mean", "seq_mean_token_mean", "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
)
KL_ESTIMATORS = ("kl_k1", "kl_k2", "kl_k3", "kl_abs", "kl_k1_plus",
                 "kl_k3_plus")
