"""Which dtype the floating-point leaves of a parameter tree are kept in.

Mixed precision as large-model trainers do it (Micikevicius et al. 2018,
https://arxiv.org/abs/1710.03740): the master weights stay in
`model.param_dtype` (float32 by default), every forward pass reads them
cast to the compute dtype `model.dtype`. Copies of the weights that only
ever feed forward passes (the sampler's, the reference policy's) can
therefore be stored in the compute dtype without changing any result:

  sampler_params = cast_floating(params, jnp.bfloat16)
  ref_params = cast_floating(params, jnp.bfloat16, narrow_only=True,
                             copy=True)

Integer and other non-floating leaves are never cast. The same call works
on concrete or traced arrays and on `jax.ShapeDtypeStruct`s (the abstract
trees of ahead-of-time compilation, `mathrl.aot`), so the abstract and the
real copies cannot drift apart.
"""

from typing import Any

import jax
import jax.numpy as jnp


def is_floating(x: Any) -> bool:
  """Whether a leaf (array or ShapeDtypeStruct) holds floating-point values."""
  return jnp.issubdtype(x.dtype, jnp.floating)


def cast_floating(tree: Any, dtype: Any, *, narrow_only: bool = False,
                  copy: bool = False) -> Any:
  """θ_c = cast_c(θ) for every floating leaf θ; arXiv:1710.03740.

  Mixed-precision training (Micikevicius et al. 2018): every
  floating-point leaf of `tree` is cast to the dtype c; other leaves are
  kept.

  Args:
    tree: a pytree of arrays (concrete or traced) or of
      `jax.ShapeDtypeStruct`s (which keep their shape, sharding and weak
      type; only the dtype changes).
    dtype: the target dtype of the floating-point leaves.
    narrow_only: cast a floating leaf only where `dtype` takes fewer bytes
      than the leaf's own dtype, i.e. store it in the narrower of the two
      (never widen: bfloat16 weights stay bfloat16 under float32 compute).
    copy: every array leaf that keeps its dtype is copied into a new
      buffer (`jnp.copy`), so the result shares no buffer with `tree`
      (arrays that will be donated elsewhere); a cast makes one anyway.
      Without it, such leaves are returned as they are.

  Returns:
    `tree`'s structure with the leaves cast (or kept, or copied).
  """
  dtype = jnp.dtype(dtype)

  def one(x):
    own = jnp.dtype(x.dtype)
    cast = is_floating(x) and own != dtype and (
        not narrow_only or dtype.itemsize < own.itemsize)
    if isinstance(x, jax.ShapeDtypeStruct):
      return x.update(dtype=dtype) if cast else x
    if cast:
      return x.astype(dtype)
    return jnp.copy(x) if copy else x

  return jax.tree.map(one, tree)
