"""mathrl.precision: one cast of a parameter tree's floats, real or abstract.

The sampler's copy (`trainer.Run.sampling_model`), the reference
policy's copy (`train_step.reference_params`) and their abstract twins in
`mathrl.aot` all go through `precision.cast_floating`; on arrays and on
ShapeDtypeStructs it must give the same dtypes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathrl import precision

F32, BF16, F16 = (jnp.dtype(d) for d in ("float32", "bfloat16", "float16"))
I32 = jnp.dtype("int32")


def _tree():
  """float32, bfloat16, float16 and int32 leaves, none bf16-exact."""
  x = jnp.asarray([1.0 + 2.0 ** -10, -3.0 - 2.0 ** -12], F32)
  return {"w": x, "b": x.astype(BF16), "h": x.astype(F16),
          "ids": jnp.arange(2, dtype=I32)}


def _dtypes(tree):
  return {k: jnp.dtype(v.dtype) for k, v in tree.items()}


@pytest.mark.parametrize("narrow_only,expected", [
    # Every float to bfloat16; ints kept.
    (False, {"w": BF16, "b": BF16, "h": BF16, "ids": I32}),
    # Only the 4-byte float narrows; float16 is as wide as bfloat16 (2
    # bytes) and keeps its dtype.
    (True, {"w": BF16, "b": BF16, "h": F16, "ids": I32}),
])
def test_arrays_and_shape_dtype_structs_get_the_same_dtypes(narrow_only,
                                                            expected):
  tree = _tree()
  cast = precision.cast_floating(tree, jnp.bfloat16, narrow_only=narrow_only)
  assert _dtypes(cast) == expected
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  cast_abstract = precision.cast_floating(abstract, jnp.bfloat16,
                                          narrow_only=narrow_only)
  assert _dtypes(cast_abstract) == expected
  assert all(isinstance(x, jax.ShapeDtypeStruct)
             for x in cast_abstract.values())
  # And the same as tracing the array cast.
  assert cast_abstract == jax.eval_shape(
      lambda t: precision.cast_floating(t, jnp.bfloat16,
                                        narrow_only=narrow_only), tree)
  # Values: one rounding of each float; 1 + 2^-10 is not bf16-exact
  # (8 significand bits), so the cast changed it.
  np.testing.assert_array_equal(cast["w"], tree["w"].astype(BF16))
  assert float(cast["w"][0]) != float(tree["w"][0])


def test_never_widens_and_never_touches_ints():
  tree = _tree()
  wide = precision.cast_floating(tree, jnp.float32, narrow_only=True)
  assert _dtypes(wide) == _dtypes(tree)
  assert all(wide[k] is tree[k] for k in tree)  # no copy asked for
  # Without narrow_only a float32 target widens every float.
  assert _dtypes(precision.cast_floating(tree, jnp.float32)) == {
      "w": F32, "b": F32, "h": F32, "ids": I32}


def test_copy_gives_new_buffers_for_the_leaves_it_keeps():
  tree = _tree()
  kept = precision.cast_floating(tree, jnp.float32, narrow_only=True,
                                 copy=True)
  for k, x in tree.items():
    assert kept[k].dtype == x.dtype
    assert kept[k].unsafe_buffer_pointer() != x.unsafe_buffer_pointer(), k
    np.testing.assert_array_equal(kept[k], x)
  # The float32 leaf under a float32 target is kept, so copied, also
  # without narrow_only; without copy it is the very same array.
  w = tree["w"]
  copied = precision.cast_floating(tree, jnp.float32, copy=True)["w"]
  assert copied.unsafe_buffer_pointer() != w.unsafe_buffer_pointer()
  assert precision.cast_floating(tree, jnp.float32)["w"] is w


def test_shape_dtype_struct_keeps_its_sharding():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("data",))
  sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
      "data"))
  x = jax.ShapeDtypeStruct((4, 3), F32, sharding=sharded)
  y = precision.cast_floating({"x": x}, BF16, copy=True)["x"]
  assert (y.shape, y.dtype, y.sharding) == ((4, 3), BF16, sharded)


def test_a_models_float32_master_weights_cast_once_to_bfloat16():
  # The sampler's copy of a model's state (`trainer.Run` jits this cast):
  # float32 master weights, bfloat16 compute -> bfloat16 leaves, each the
  # float32 value rounded once.
  from flax import nnx  # pylint: disable=g-import-not-at-top
  from mathrl import models  # pylint: disable=g-import-not-at-top
  model = models.Transformer(models.presets.TINY, dtype=BF16,
                             param_dtype=F32, rngs=nnx.Rngs(0))
  params = nnx.state(model)
  copy = precision.cast_floating(params, BF16)
  leaves, copies = jax.tree.leaves(params), jax.tree.leaves(copy)
  assert {x.dtype for x in leaves} == {F32}
  assert {x.dtype for x in copies} == {BF16}
  for x, y in zip(leaves, copies):
    np.testing.assert_array_equal(np.asarray(y), np.asarray(x.astype(BF16)))
