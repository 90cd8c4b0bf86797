"""Policy losses, token weights/masks, KL estimators and aggregations.

  loss = getattr(mathrl.losses, "ppo_clip")(**hparams)
  per_token_BT, metrics = loss(logp=logp_BT, old_logp=old_logp_BT,
                               advantages=adv_B_or_BT, mask=mask_BT, **extra)
  scalar = getattr(mathrl.losses, "token_mean")(per_token_BT, mask_BT)
  kl_BT = mathrl.losses.kl_k3(logp_BT, ref_logp_BT)

  loss = losses.weighted(losses.cispo(),
                         losses.token_weighting.forking_tokens())

Four layers, each its own module:
  * policy-loss surrogates (factories → `PolicyLoss`): ppo_clip,
    ppo_unclipped, gppo, gspo, cispo, geo_mean, sapo, reinforce, gpg
    (surrogates.py); siren (siren.py, PPO-clip with a stateful entropy
    regulariser); drpo (drpo.py);
  * token weighting (token_weighting.py, `TokenWeighting`): steer,
    forking_tokens, clip_cov, kl_cov, composed with any surrogate by
    `weighted(surrogate, weighting)`; their papers' compositions are the
    policy losses steer, forking_tokens, clip_cov, kl_cov (presets.py);
  * aggregations `(values_BT, mask_BT, **kw) -> scalar` (aggregation.py):
    token_mean, seq_mean_token_mean, seq_mean_token_sum,
    seq_mean_token_sum_norm;
  * KL estimators `(logp_BT, ref_logp_BT) -> [B, T]` (kl.py): kl_k1,
    kl_k2, kl_k3, kl_abs, kl_k1_plus, kl_k3_plus; entropy_bonus.
See docs/algorithms.md.
"""

# pylint: disable=g-importing-member
from mathrl.losses.aggregation import counts
from mathrl.losses.aggregation import seq_mean_token_mean
from mathrl.losses.aggregation import seq_mean_token_sum
from mathrl.losses.aggregation import seq_mean_token_sum_norm
from mathrl.losses.aggregation import token_mean
from mathrl.losses.base import LossInputs
from mathrl.losses.base import PerToken
from mathrl.losses.base import PolicyLoss
from mathrl.losses import token_weighting
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
from mathrl.losses.surrogates import cispo
from mathrl.losses.surrogates import geo_mean
from mathrl.losses.surrogates import gppo
from mathrl.losses.surrogates import gpg
from mathrl.losses.surrogates import gspo
from mathrl.losses.surrogates import ppo_clip
from mathrl.losses.surrogates import ppo_unclipped
from mathrl.losses.surrogates import reinforce
from mathrl.losses.surrogates import sapo
from mathrl.losses.presets import clip_cov
from mathrl.losses.presets import forking_tokens
from mathrl.losses.presets import kl_cov
from mathrl.losses.presets import steer
from mathrl.losses.token_weighting import steer_weights
from mathrl.losses.token_weighting import token_covariance
from mathrl.losses.token_weighting import TokenWeighting
from mathrl.losses.token_weighting import weighted

# The names a config may use: `rl.loss`, `rl.token_weighting`,
# `rl.aggregation`, `rl.kl`. clip_cov, forking_tokens, kl_cov and steer as
# `rl.loss` are their papers' presets (a weighting on the paper's surrogate).
POLICY_LOSSES = (
    "cispo", "clip_cov", "drpo", "forking_tokens", "geo_mean", "gpg", "gppo",
    "gspo", "kl_cov", "ppo_clip", "ppo_unclipped", "reinforce", "sapo",
    "siren", "steer",
)
TOKEN_WEIGHTINGS = ("clip_cov", "forking_tokens", "kl_cov", "steer")
AGGREGATIONS = (
    "token_mean", "seq_mean_token_mean", "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
)
KL_ESTIMATORS = ("kl_k1", "kl_k2", "kl_k3", "kl_abs", "kl_k1_plus",
                 "kl_k3_plus")
