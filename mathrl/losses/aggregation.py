"""Loss aggregation: per-token [B, T] values → a scalar.

Aggregation is where GRPO, DAPO and Dr. GRPO differ (verl
`agg_loss`). Every mode is called `(values_BT, mask_BT, **kw)`.

Micro-batching and sharding: pass the GLOBAL counts of the whole
(mini-)batch — `num_tokens` (valid tokens) for `token_mean`,
`num_sequences` (sequences with at least one valid token) for the seq-mean
modes — and the sum of the aggregates of the micro-batches equals the
aggregate of the full batch, so gradient accumulation and data parallelism do
not change the loss (verl does the same with all-reduced counts). `counts`
computes them. Sequences whose mask is all 0 are excluded from seq-means.
"""

import jax
import jax.numpy as jnp


def _masked(values_BT, mask_BT):
  values_BT = jnp.asarray(values_BT, jnp.float32)
  mask_BT = jnp.asarray(mask_BT)
  if values_BT.shape != mask_BT.shape or values_BT.ndim != 2:
    raise ValueError(
        f"aggregation: values {values_BT.shape} and mask {mask_BT.shape}"
        " must both be [B, T]."
    )
  valid_BT = mask_BT > 0
  return jnp.where(valid_BT, values_BT, 0.0), valid_BT.astype(jnp.float32)


def _divide(total, count):
  """total / count, 0 when count is 0 (all-masked batch)."""
  count = jnp.asarray(count, jnp.float32)
  return jnp.where(count > 0, total / jnp.where(count > 0, count, 1.0), 0.0)


def _sequences(mask_BT, num_sequences):
  """The global `num_sequences`, else the local count of non-empty rows."""
  if num_sequences is not None:
    return num_sequences
  return jnp.sum(jnp.sum(mask_BT, axis=-1) > 0)


def counts(mask_BT: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(num_tokens, num_sequences) = (Σ m, #{i: Σ_t m_i,t > 0}).

  Args:
    mask_BT: [B, T] 0/1 validity of the whole batch.

  Returns:
    Two float32 scalars, to pass to every micro-batch's aggregation.
  """
  valid_BT = jnp.asarray(mask_BT) > 0
  return (
      jnp.sum(valid_BT, dtype=jnp.float32),
      jnp.sum(jnp.any(valid_BT, axis=-1), dtype=jnp.float32),
  )


def token_mean(
    values_BT: jax.Array,
    mask_BT: jax.Array,
    num_tokens: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  """L = Σ_{i,t} ℓ·m / N, N = Σ m (or the global `num_tokens`).

  Token-level mean: DAPO (arXiv:2503.14476), verl's default `token-mean`,
  TRL `dapo`/`bnpo`.

  Args:
    values_BT: [B, T] per-token values.
    mask_BT: [B, T] 0/1.
    num_tokens: global valid-token count for micro-batching (None: local).

  Returns:
    Scalar float32 (0 when there are no valid tokens).
  """
  values_BT, mask_BT = _masked(values_BT, mask_BT)
  count = jnp.sum(mask_BT) if num_tokens is None else num_tokens
  return _divide(jnp.sum(values_BT), count)


def seq_mean_token_mean(
    values_BT: jax.Array,
    mask_BT: jax.Array,
    num_sequences: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  """L = (1/B') Σ_i (Σ_t ℓ·m / Σ_t m), B' = #non-empty sequences.

  The GRPO paper's aggregation (arXiv:2402.03300), TRL `grpo`, tunix
  `sequence-mean-token-mean`; forced by verl for GSPO and SAPO. verl adds
  1e-8 to the per-sequence counts; here an empty row is excluded exactly.

  Args:
    values_BT: [B, T].
    mask_BT: [B, T] 0/1.
    num_sequences: global count of non-empty sequences (None: local).

  Returns:
    Scalar float32.
  """
  values_BT, mask_BT = _masked(values_BT, mask_BT)
  len_B = jnp.sum(mask_BT, axis=-1)
  per_seq_B = _divide(jnp.sum(values_BT, axis=-1), len_B)
  return _divide(jnp.sum(per_seq_B), _sequences(mask_BT, num_sequences))


def seq_mean_token_sum(
    values_BT: jax.Array,
    mask_BT: jax.Array,
    num_sequences: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  """L = (1/B') Σ_i Σ_t ℓ·m, B' = #non-empty sequences.

  verl `seq-mean-token-sum` (used by CANON, github.com/biuboomc/CANON, with
  its 1/max_len in the advantage; verl's REINFORCE default).

  Args:
    values_BT: [B, T].
    mask_BT: [B, T] 0/1.
    num_sequences: global count of non-empty sequences (None: local).

  Returns:
    Scalar float32.
  """
  values_BT, mask_BT = _masked(values_BT, mask_BT)
  return _divide(jnp.sum(values_BT), _sequences(mask_BT, num_sequences))


def seq_mean_token_sum_norm(
    values_BT: jax.Array,
    mask_BT: jax.Array,
    loss_scale_factor: float | None = None,
    num_sequences: jax.typing.ArrayLike | None = None,
) -> jax.Array:
  """L = Σ_{i,t} ℓ·m / C (verl), or Σ_{i,t} ℓ·m / (B·C) (TRL `dr_grpo`).

  Dr. GRPO (arXiv:2503.20783): a constant normaliser instead of per-sequence
  lengths. C = `loss_scale_factor`, default T (the padded width, verl's
  default; set it to the max response length so that micro-batches padded
  to different widths agree; the builders pass sampling.max_new_tokens,
  so a batch cut to its longest completion gives the same loss). verl
  divides by C only; passing `num_sequences` (the global batch size) also
  divides by it, which is TRL's `dr_grpo` (Σ/(B·L_max)). Used by SIREN's
  recipe.

  Args:
    values_BT: [B, T].
    mask_BT: [B, T] 0/1.
    loss_scale_factor: C (None: T).
    num_sequences: optional extra divisor B (TRL).

  Returns:
    Scalar float32.
  """
  values_BT, mask_BT = _masked(values_BT, mask_BT)
  scale = mask_BT.shape[-1] if loss_scale_factor is None else loss_scale_factor
  if not scale > 0:
    raise ValueError(
        f"seq_mean_token_sum_norm: loss_scale_factor must be > 0, got {scale}."
    )
  total = jnp.sum(values_BT) / scale
  if num_sequences is not None:
    total = _divide(total, num_sequences)
  return total
