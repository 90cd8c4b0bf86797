"""Masked group and batch statistics shared by the advantage transforms.

Conventions (verl, TRL and tunix all agree; see docs/algorithms.md):
the standard deviation is the unbiased (Bessel, ddof=1) estimator; invalid
entries (mask 0) never influence any statistic; a group with fewer valid
members than `ddof + 1` gets std 0 rather than NaN.
"""

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, mask: jax.Array, axis=-1, keepdims=True):
  """mean = Σ m·x / Σ m over `axis`; 0 where Σ m = 0.

  Args:
    x: values, e.g. [P, G].
    mask: float 0/1 of x's shape.
    axis: axis (or axes) to reduce.
    keepdims: keep reduced axes as size 1.

  Returns:
    The masked mean.
  """
  total = jnp.sum(jnp.where(mask > 0, x, 0.0), axis=axis, keepdims=keepdims)
  count = jnp.sum(mask, axis=axis, keepdims=keepdims)
  return total / jnp.maximum(count, 1.0)


def masked_std(x, mask, axis=-1, keepdims=True, ddof: int = 1):
  """std = sqrt(Σ m·(x − mean)² / (Σ m − ddof)); 0 when Σ m ≤ ddof.

  Bessel-corrected by default, as torch.std in verl/TRL (ddof=1).

  Args:
    x: values, e.g. [P, G].
    mask: float 0/1 of x's shape.
    axis: axis (or axes) to reduce.
    keepdims: keep reduced axes as size 1.
    ddof: delta degrees of freedom.

  Returns:
    The masked standard deviation.
  """
  mean = masked_mean(x, mask, axis=axis, keepdims=True)
  sq = jnp.where(mask > 0, (x - mean) ** 2, 0.0)
  count = jnp.sum(mask, axis=axis, keepdims=True)
  var = jnp.sum(sq, axis=axis, keepdims=True) / jnp.maximum(count - ddof, 1.0)
  var = jnp.where(count > ddof, var, 0.0)
  std = jnp.sqrt(var)
  if not keepdims:
    std = jnp.squeeze(std, axis=axis)
  return std
