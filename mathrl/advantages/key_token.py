"""KTAE: key-token advantage estimation (arXiv 2505.16826, NeurIPS 2025).

Model-free token-level credit: inside each prompt group every token *type*
(vocabulary id) gets a key score in (−top, top) measuring how strongly its
presence in a response goes with correctness — Fisher's exact test and the
information gain of a 2×2 presence/correctness table, signed by a
Cohen's-h plus BM25 term-frequency direction — and the score is added to
the GRPO advantage at every occurrence of that token. Authors:
github.com/xiaolizh1/KTAE (`compute_key_tokens.py`).

Static shapes: the scores are computed per position through one sort of the
group's (token, response) pairs and segment sums, so nothing depends on the
vocabulary size and everything jits.
"""

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mathrl.advantages import base
from mathrl.advantages import group
from mathrl.advantages import outcome

# Tolerance (in log space) of the Fisher test's "P(k) <= P(observed)". The
# authors compare exactly in float32; scipy uses a relative 1e-7 in float64.
# Here equal terms differ only by the float32 round-off of a log-binomial
# table (< 8e-6 for G <= 64), while distinct terms differ by more than
# 1.4e-4 for every table with G <= 64 (checked exhaustively), so 2e-5
# decides every such comparison as exact arithmetic would.
_FISHER_LOG_TOL = 2e-5
# A two-sided p-value below 1 is at most 1 − 1/(G + 1) (the mode is then
# excluded), so this tolerance only absorbs round-off: the authors' exact
# `p != 1.0` flips on round-off (as in the authors' code).
_P_ONE_TOL = 1e-4


def _log_binomial_table(size: int) -> np.ndarray:
  """log C(n, k) for 0 <= k <= n <= size, −1e30 elsewhere (float64 → f32)."""
  table = np.full((size + 1, size + 1), -1e30)
  for n in range(size + 1):
    for k in range(n + 1):
      table[n, k] = (
          math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
      )
  return table.astype(np.float32)


def _entropy_bits(p: jax.Array) -> jax.Array:
  """−p·log2(p), 0 at p = 0."""
  safe = jnp.where(p > 0, p, 1.0)
  return jnp.where(p > 0, -safe * jnp.log2(safe), 0.0)


def fisher_pvalue(a, b, c, d, log_binom: jax.Array) -> jax.Array:
  """p = Σ_{k: P(k) <= P(a)} P(k), two-sided Fisher test (KTAE 2505.16826).

  P(k) = C(a+c, k)·C(b+d, a+b−k) / C(n, a+b) over the feasible k.

  Args:
    a, b, c, d: float arrays of table counts (integers), same shape.
    log_binom: [G+1, G+1] table of log C(n, k), n = a+b+c+d <= G.

  Returns:
    Two-sided p-values, same shape as a.
  """
  size = log_binom.shape[0]
  flat = log_binom.reshape(-1)

  def log_c(n, k):
    n_i = jnp.clip(n, 0, size - 1).astype(jnp.int32)
    k_i = jnp.clip(k, 0, size - 1).astype(jnp.int32)
    return flat[n_i * size + k_i]

  row, col = a + b, a + c
  n = a + b + c + d
  lo = jnp.maximum(0.0, row + col - n)
  hi = jnp.minimum(row, col)
  log_norm = log_c(n, row)
  log_obs = log_c(col, a) + log_c(n - col, row - a)
  pvalue = jnp.zeros_like(a)
  for k in range(size):
    log_k = log_c(col, k) + log_c(n - col, row - k)
    keep = (k >= lo) & (k <= hi) & (log_k <= log_obs + _FISHER_LOG_TOL)
    pvalue = pvalue + jnp.where(keep, jnp.exp(log_k - log_norm), 0.0)
  return pvalue


def information_gain(a, b, c, d) -> jax.Array:
  """IG = H(Y) − [(a+b)/n·H(a, b) + (c+d)/n·H(c, d)], bits; arXiv 2505.16826.

  Y is correctness, the split is presence of the token (KTAE).

  Args:
    a, b, c, d: float arrays of table counts, same shape.

  Returns:
    Information gains, same shape as a.
  """
  n = jnp.maximum(a + b + c + d, 1.0)
  h_y = _entropy_bits((a + c) / n) + _entropy_bits((b + d) / n)

  def cond(x1, x2):
    total = jnp.maximum(x1 + x2, 1.0)
    return _entropy_bits(x1 / total) + _entropy_bits(x2 / total)

  h_y_x = (a + b) / n * cond(a, b) + (c + d) / n * cond(c, d)
  return h_y - h_y_x


def _group_key_scores(
    tokens_GT, valid_GT, correct_G, wrong_G, log_binom, hparams
):
  """Key score of each valid position of one group; [G, T] float32."""
  num_g, num_t = tokens_GT.shape
  size = num_g * num_t
  tok_N = tokens_GT.reshape(size)
  resp_N = jnp.repeat(jnp.arange(num_g), num_t)
  valid_N = valid_GT.reshape(size) & (correct_G | wrong_G)[resp_N]
  # Sorted by (valid first, token, response); invalid positions go last.
  order_N = jnp.lexsort((resp_N, tok_N, (~valid_N).astype(jnp.int32)))
  tok_s, resp_s, valid_s = tok_N[order_N], resp_N[order_N], valid_N[order_N]
  first = jnp.arange(size) == 0
  new_tok = valid_s & (first | (tok_s != jnp.roll(tok_s, 1)))
  new_pair = valid_s & (new_tok | (resp_s != jnp.roll(resp_s, 1)))
  seg_s = jnp.where(valid_s, jnp.cumsum(new_tok) - 1, size)
  in_c, in_w = correct_G[resp_s], wrong_G[resp_s]

  def segsum(x):
    return jax.ops.segment_sum(
        x.astype(jnp.float32), seg_s, num_segments=size + 1
    )

  a, b = segsum(new_pair & in_c), segsum(new_pair & in_w)
  count_c, count_w = segsum(valid_s & in_c), segsum(valid_s & in_w)
  n_c = jnp.sum(correct_G.astype(jnp.float32))
  n_w = jnp.sum(wrong_G.astype(jnp.float32))
  c, d = n_c - a, n_w - b

  pvalue = fisher_pvalue(a, b, c, d, log_binom)
  fisher = jnp.where(
      jnp.abs(pvalue - 1.0) < _P_ONE_TOL, 0.0, jnp.exp(-2.0 * pvalue)
  )
  gain = information_gain(a, b, c, d)
  rate_c = jnp.clip(a / (a + c + 1e-10), 0.0, 1.0)
  rate_w = jnp.clip(b / (b + d + 1e-10), 0.0, 1.0)
  cohen_h = jnp.arcsin(jnp.sqrt(rate_c)) - jnp.arcsin(jnp.sqrt(rate_w))

  tokens_c = jnp.sum(jnp.where(valid_s & in_c, 1.0, 0.0))
  tokens_w = jnp.sum(jnp.where(valid_s & in_w, 1.0, 0.0))
  avg_len = jnp.maximum((tokens_c + tokens_w) / 2.0, 1.0)
  k1, bm25_b = hparams["k1"], hparams["b"]

  def term_frequency(count, tokens):
    norm = k1 * (1.0 - bm25_b + bm25_b * tokens / avg_len)
    freq = count / jnp.maximum(tokens, 1.0)
    return freq * (k1 + 1.0) / jnp.maximum(freq + norm, 1e-12)

  tf_c = term_frequency(count_c, tokens_c)
  tf_w = term_frequency(count_w, tokens_w)
  direction = cohen_h + hparams["gamma_tf"] * (
      tf_c / (tf_w + 1e-5) - tf_w / (tf_c + 1e-5)
  )
  alpha, beta_ig = hparams["alpha"], hparams["beta_ig"]
  score = (alpha * fisher + beta_ig * gain) * direction / (alpha + beta_ig)
  key_S = hparams["top"] * jnp.tanh(score / 2.0)
  key_S = jnp.where((n_c > 0) & (n_w > 0), key_S, 0.0)

  key_s = jnp.where(valid_s, key_S[seg_s], 0.0)
  key_N = jnp.zeros((size,), jnp.float32).at[order_N].set(key_s)
  if hparams["ignore_token_id"] is not None:
    key_N = jnp.where(tok_N == hparams["ignore_token_id"], 0.0, key_N)
  return key_N.reshape(num_g, num_t)


def key_token_scores(
    tokens_PGT: jax.Array,
    token_mask_PGT: jax.Array,
    correct_PG: jax.Array,
    mask_PG: jax.Array,
    *,
    alpha: float = 1.0,
    beta_ig: float = 1.0,
    gamma_tf: float = 1.0,
    top: float = 1.0,
    k1: float = 2.0,
    b: float = 0.5,
    ignore_token_id: Optional[int] = 151643,
) -> jax.Array:
  """key(v) = top·tanh((α F + β IG)·x / (2(α + β))), KTAE arXiv 2505.16826.

  Per group, for each token id v at a valid position: the presence table
  (a, b, c, d) = (#correct with v, #wrong with v, #correct without,
  #wrong without); F = exp(−2p) with p the two-sided Fisher p-value (F = 0
  when p = 1); IG the information gain in bits; x = h + γ_tf·(tf_C/(tf_W +
  1e-5) − tf_W/(tf_C + 1e-5)) with Cohen's h = asin√(a/n_C) − asin√(b/n_W)
  and BM25 term frequencies (k1, b) of v among the correct / wrong tokens.
  (sigmoid(s) − 0.5)·2 = tanh(s/2) is the authors' squashing.

  Args:
    tokens_PGT: [P, G, T] int token ids of the completions.
    token_mask_PGT: [P, G, T] float 0/1, 1 on completion tokens.
    correct_PG: [P, G] bool, reward > 0.
    mask_PG: [P, G] float 0/1 sample validity.
    alpha: α, weight of the Fisher score.
    beta_ig: β, weight of the information gain.
    gamma_tf: γ_tf, weight of the term-frequency direction (0 turns it off).
    top: the scores' bound.
    k1: BM25 k1.
    b: BM25 b.
    ignore_token_id: a token whose score is forced to 0 (the authors
      hard-code 151643, Qwen's <|endoftext|>); None for no such token.

  Returns:
    [P, G, T] float32 key scores, 0 at invalid positions.
  """
  if alpha + beta_ig <= 0:
    raise ValueError(
        f"ktae: alpha + beta_ig must be > 0, got {alpha} + {beta_ig}."
    )
  num_g = tokens_PGT.shape[1]
  log_binom = jnp.asarray(_log_binomial_table(num_g))
  hparams = dict(
      alpha=alpha, beta_ig=beta_ig, gamma_tf=gamma_tf, top=top, k1=k1, b=b,
      ignore_token_id=ignore_token_id,
  )
  valid_PG = mask_PG > 0
  valid_PGT = (token_mask_PGT > 0) & valid_PG[..., None]
  correct_PG = correct_PG & valid_PG
  wrong_PG = (~correct_PG) & valid_PG
  return jax.vmap(
      lambda t, v, c, w: _group_key_scores(t, v, c, w, log_binom, hparams)
  )(tokens_PGT, valid_PGT, correct_PG, wrong_PG)


def ktae(
    alpha: float = 1.0,
    beta_ig: float = 1.0,
    gamma_tf: float = 1.0,
    top: float = 1.0,
    k1: float = 2.0,
    b: float = 0.5,
    ignore_token_id: Optional[int] = 151643,
    eps: float = 1e-6,
    reward_weights: Optional[Sequence[float]] = None,
) -> base.AdvantageTransform:
  """A_pit = ((r_pi − μ_p)/(σ_p + eps) + key_p(token_pit))·m_pit, KTAE.

  KTAE (arXiv 2505.16826): the GRPO advantage of each response plus the
  key score (`key_token_scores`) of each of its tokens; correct means
  reward > 0. Needs the extra `tokens` [P, G, T]; uses `token_mask`
  [P, G, T] (all ones if absent).

  Defaults are the estimator's: it hard-codes α = β = γ = top = 1 (the
  recipe scripts' `beta_ig=2.0` is ignored by the authors' code). The
  Fisher comparison has a 2e-5 log tolerance and p = 1 is tested
  with a 1e-4 tolerance instead of the authors' exact float compare, which
  flips F between 0 and e^−2 on round-off (as in the authors' code).

  Example (G = 4, rewards [1, 1, 0, 0]): a token in both correct responses
  and no wrong one scores +1, the mirror case −1, tokens in every response
  0; token advantages are 0.866 ± those scores.

  Args:
    alpha: α, weight of the Fisher score.
    beta_ig: β, weight of the information gain.
    gamma_tf: γ_tf, weight of the term-frequency direction.
    top: the key scores' bound.
    k1: BM25 k1.
    b: BM25 b.
    ignore_token_id: token id whose key is 0 (authors: 151643); or None.
    eps: added to the group std.
    reward_weights: K weights to sum [P, G, K] rewards into one reward.

  Returns:
    A stateless AdvantageTransform: rewards [P, G] or [P, G, K] →
    token-level advantages [P, G, T].
  """

  def fn(rewards, *, mask, **extra):
    rewards_PG = group.combine_rewards(rewards, mask, reward_weights)
    tokens_PGT = jnp.asarray(outcome.require_extra(extra, "tokens", "ktae"))
    if tokens_PGT.ndim != 3 or tokens_PGT.shape[:2] != rewards_PG.shape:
      raise ValueError(
          f"ktae: tokens has shape {tokens_PGT.shape}, expected"
          f" {rewards_PG.shape + ('T',)}."
      )
    token_mask = extra.get("token_mask")
    if token_mask is None:
      token_mask_PGT = jnp.ones(tokens_PGT.shape, jnp.float32)
    else:
      token_mask_PGT = outcome.check_shape(
          token_mask, tokens_PGT.shape, "ktae's `token_mask`"
      ).astype(jnp.float32)
    key_PGT = key_token_scores(
        tokens_PGT, token_mask_PGT, rewards_PG > 0, mask,
        alpha=alpha, beta_ig=beta_ig, gamma_tf=gamma_tf, top=top, k1=k1,
        b=b, ignore_token_id=ignore_token_id,
    )
    adv_PG = outcome.group_zscore(rewards_PG, mask, eps=eps)
    valid_PGT = token_mask_PGT * mask[..., None]
    return jnp.where(valid_PGT > 0, adv_PG[..., None] + key_PGT, 0.0)

  return base.stateless(fn)
