"""Device mesh, logical-axis rules for training and sampling, shard helpers.

Parameters and activations are annotated with a small vocabulary of logical
axis names; the rules below map them onto the three mesh axes. Changing the
parallelism of a run means changing the mesh shape or the rules, never the
model code.

Logical axes:

  batch     sequences in a batch (B)
  length    sequence positions (S) or KV-cache slots (M)
  embed     model dimension (D)
  mlp       MLP hidden dimension (F)
  heads     query heads (N)
  kv_heads  key/value heads (K)
  head_dim  per-head dimension (H)
  vocab     vocabulary (V)
  layers    the stacked-layer axis of scanned decoder blocks

A rule is `(logical_name, mesh_axes)` with `mesh_axes` a mesh axis name, a
tuple of them, or None (replicated). Resolution (`logical_to_spec`) follows
the rules in order with two safety nets that make any mesh shape work with
any model: a mesh axis is used at most once per array (later dimensions that
ask for an axis already taken are replicated), and a dimension whose size is
not divisible by the mesh axes' total size keeps only the longest prefix of
those axes that divides it (replicated when none does).

Multi-host: every process calls `distributed.initialize(...)` first, then
builds the same mesh with `make_mesh(...)` over all global devices.
"""

import contextlib
import math
from typing import Any, Callable, Sequence

import jax
import numpy as np
from flax import nnx

# Kept here for callers of the earlier name; see mathrl.distributed.
from mathrl.distributed import initialize as initialize_distributed  # noqa: F401,E501

MESH_AXES = ("data", "fsdp", "tensor")

Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Training: weights FSDP-sharded over 'fsdp' on their model dimension and
# tensor-parallel over 'tensor' on heads/mlp/vocab; the batch is split over
# both data-parallel axes.
TRAIN_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("vocab", "tensor"),
    ("layers", None),
)

# Sampling: TRAIN_RULES without FSDP on weights ("embed" replicated; weights
# are only tensor-sharded and replicated over data+fsdp), so a decode step
# never all-gathers weights per token.
SAMPLE_RULES: Rules = tuple(
    (axis, None if axis == "embed" else mesh_axes)
    for axis, mesh_axes in TRAIN_RULES)

_active_rules: list[Rules] = []


def mesh_shape(
    num_devices: int, *, data: int = 1, fsdp: int = 1, tensor: int = 1
) -> tuple[int, int, int]:
  """The (data, fsdp, tensor) sizes a mesh request gives `num_devices`.

  Args:
    num_devices: devices the mesh spans.
    data: size of the data-parallel axis; -1 means "all remaining devices".
    fsdp: size of the fully-sharded data-parallel axis; -1 as above.
    tensor: size of the tensor-parallel axis; -1 as above.

  Returns:
    The three axis sizes, whose product is `num_devices`.
  """
  sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
  free = [name for name, size in sizes.items() if size == -1]
  if len(free) > 1:
    raise ValueError(
        f"At most one mesh axis may be -1 (use the rest); got {sizes}."
    )
  for name, size in sizes.items():
    if size != -1 and (not isinstance(size, int) or size < 1):
      raise ValueError(
          f"Mesh axis {name!r} must be a positive int or -1, got {size!r}."
      )
  known = math.prod(s for s in sizes.values() if s != -1)
  if free:
    if num_devices % known:
      raise ValueError(
          f"Cannot fill mesh axis {free[0]!r}: {num_devices} devices are "
          f"not divisible by the product of the other axes ({known}); "
          f"mesh request {sizes}."
      )
    sizes[free[0]] = num_devices // known
  shape = tuple(sizes[name] for name in MESH_AXES)
  if math.prod(shape) != num_devices:
    raise ValueError(
        f"Mesh {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} "
        f"devices but {num_devices} are available; make data*fsdp*tensor "
        f"equal the device count (or set one axis to -1)."
    )
  return shape


def make_mesh(
    data: int = 1,
    fsdp: int = 1,
    tensor: int = 1,
    devices: Sequence[jax.Device] | None = None,
) -> jax.sharding.Mesh:
  """A mesh with axes ('data', 'fsdp', 'tensor') over `devices`.

  Args:
    data: size of the data-parallel axis; -1 means "all remaining devices".
    fsdp: size of the fully-sharded data-parallel axis; -1 as above.
    tensor: size of the tensor-parallel axis; -1 as above.
    devices: devices to use (default: all global devices, `jax.devices()`).

  Returns:
    A `jax.sharding.Mesh` of shape (data, fsdp, tensor) with Auto axis
    types, devices ordered by `jax.make_mesh` when all global devices are
    used.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(len(devices), data=data, fsdp=fsdp, tensor=tensor)
  # Auto axes: XLA propagates shardings from the parameters and the
  # `shard(...)` constraints (no sharding-in-types bookkeeping in the model).
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  if len(devices) == len(jax.devices()):
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types,
                         devices=devices)
  return jax.sharding.Mesh(np.asarray(devices).reshape(shape), MESH_AXES,
                           axis_types=axis_types)


def topology_mesh(
    topology: str, *, data: int = 1, fsdp: int = 1, tensor: int = 1
) -> jax.sharding.Mesh:
  """A mesh over the devices of a TPU topology that need not be attached.

  Used to compile ahead of time for a TPU slice from any machine with
  libtpu installed (`mathrl.aot`); the devices come from
  `jax.experimental.topologies.get_topology_desc`, ordered for the slice's
  interconnect by `jax.make_mesh` as on the slice itself.

  Args:
    topology: 'CHIP:AxB[xC]', e.g. 'v5e:2x4' or 'v5p:2x2x1'.
    data: size of the data-parallel axis; -1 means "all remaining devices".
    fsdp: size of the fully-sharded data-parallel axis; -1 as above.
    tensor: size of the tensor-parallel axis; -1 as above.

  Returns:
    A `jax.sharding.Mesh` of shape (data, fsdp, tensor) with Auto axes.
  """
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    devices = topologies.get_topology_desc(
        platform="tpu", topology_name=topology).devices
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(
        f"cannot describe TPU topology {topology!r} ({e}); install libtpu"
        " (pip install 'jax[tpu]', the mathrl[tpu] extra) and name a"
        " slice shape the chip supports, e.g. v5e:2x4, v6e:4x4, v5p:2x2x1"
    ) from e
  shape = mesh_shape(len(devices), data=data, fsdp=fsdp, tensor=tensor)
  return jax.make_mesh(
      shape, MESH_AXES,
      axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
      devices=devices)


def per_device_bytes(tree: Any) -> int:
  """Bytes one device holds of a tree of sharded arrays or abstract arrays.

  Every leaf needs a `.sharding` (a `jax.Array`, or a `ShapeDtypeStruct`
  built with `sharding=`); its per-device shard shape times its itemsize.
  """
  total = 0
  for leaf in jax.tree.leaves(tree):
    shard = leaf.sharding.shard_shape(leaf.shape)
    total += math.prod(shard) * np.dtype(leaf.dtype).itemsize
  return total


@contextlib.contextmanager
def axis_rules(rules: Rules):
  """Context in which `shard(...)` resolves logical names with `rules`."""
  _active_rules.append(rules)
  try:
    yield rules
  finally:
    _active_rules.pop()


def current_rules() -> Rules:
  """The rules of the innermost `axis_rules` context (TRAIN_RULES if none)."""
  return _active_rules[-1] if _active_rules else TRAIN_RULES


def _axis_size(mesh: Any, axis: str) -> int:
  return dict(zip(mesh.axis_names, mesh.axis_sizes))[axis]


def logical_to_spec(
    logical_axes: Sequence[str | None],
    shape: Sequence[int],
    mesh: Any,
    rules: Rules,
) -> jax.sharding.PartitionSpec:
  """The PartitionSpec that `rules` give an array of `shape` on `mesh`.

  Args:
    logical_axes: one logical name (or None) per dimension.
    shape: the array's shape (for the divisibility safety net).
    mesh: a `jax.sharding.Mesh` or `AbstractMesh`.
    rules: `(logical_name, mesh_axes)` pairs, e.g. TRAIN_RULES.

  Returns:
    A PartitionSpec with one entry per dimension.
  """
  if len(logical_axes) != len(shape):
    raise ValueError(
        f"Logical axes {tuple(logical_axes)} do not match shape "
        f"{tuple(shape)}: one name per dimension is needed."
    )
  table = dict(rules)
  used: set[str] = set()
  spec = []
  for name, size in zip(logical_axes, shape):
    if name is not None and name not in table:
      raise ValueError(
          f"Logical axis {name!r} has no rule; rules cover {sorted(table)}."
      )
    wanted = table.get(name) if name is not None else None
    if wanted is None:
      spec.append(None)
      continue
    wanted = (wanted,) if isinstance(wanted, str) else tuple(wanted)
    chosen: list[str] = []
    for axis in wanted:
      if axis in used or axis not in mesh.axis_names:
        break
      total = math.prod(_axis_size(mesh, a) for a in chosen + [axis])
      if size % total:
        break
      chosen.append(axis)
    used.update(chosen)
    # Size-1 axes shard nothing; leaving them out keeps specs canonical.
    chosen = [a for a in chosen if _axis_size(mesh, a) > 1]
    if not chosen:
      spec.append(None)
    elif len(chosen) == 1:
      spec.append(chosen[0])
    else:
      spec.append(tuple(chosen))
  return jax.sharding.PartitionSpec(*spec)


def logical_to_sharding(
    tree: Any, mesh: jax.sharding.Mesh, rules: Rules
) -> Any:
  """NamedShardings for every parameter of an NNX module or state.

  Args:
    tree: an `nnx.Module`, `nnx.State` or abstract state whose `nnx.Variable`s
      carry logical names in their `out_sharding` metadata (unannotated
      variables are replicated).
    mesh: the device mesh.
    rules: TRAIN_RULES, SAMPLE_RULES or your own.

  Returns:
    The same structure (an `nnx.State` for a module) with a
    `jax.sharding.NamedSharding` in place of every array.
  """
  if isinstance(tree, nnx.Module):
    tree = nnx.state(tree)

  def one(variable):
    value = variable.get_value() if isinstance(variable, nnx.Variable) else (
        variable)
    axes = None
    if isinstance(variable, nnx.Variable):
      axes = variable.get_metadata().get("out_sharding")
    if not axes:
      axes = (None,) * len(value.shape)
    spec = logical_to_spec(axes, value.shape, mesh, rules)
    return jax.sharding.NamedSharding(mesh, spec)

  return jax.tree.map(
      one, tree, is_leaf=lambda x: isinstance(x, nnx.Variable)
  )


def shard(x: jax.Array, *logical_axes: str | None) -> jax.Array:
  """`with_sharding_constraint` by logical names; a no-op without a mesh.

  The mesh is the one set with `jax.set_mesh(mesh)`, the rules those of the
  innermost `axis_rules(...)` context (TRAIN_RULES by default).

  Args:
    x: the array to constrain.
    *logical_axes: one logical name (or None) per dimension of `x`.

  Returns:
    `x`, constrained to the sharding the rules give it.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or math.prod(mesh.axis_sizes) == 1:
    return x
  spec = logical_to_spec(logical_axes, x.shape, mesh, current_rules())
  return jax.lax.with_sharding_constraint(x, spec)


def init_sharded(
    init_fn: Callable[[], nnx.Module],
    mesh: jax.sharding.Mesh,
    rules: Rules,
) -> nnx.Module:
  """Builds an NNX module with every parameter born in its sharding.

  `nnx.eval_shape` gives the abstract module, the rules its shardings, and a
  jitted init with `out_shardings` creates each shard on its own device (no
  device ever holds a full replicated copy unless the rules say so).

  Args:
    init_fn: () -> module, e.g. `lambda: Transformer(cfg, rngs=nnx.Rngs(0))`.
    mesh: the device mesh.
    rules: logical-to-mesh rules.

  Returns:
    The module, with sharded parameters.
  """
  abstract = nnx.eval_shape(init_fn)
  graphdef, abstract_state = nnx.split(abstract)
  shardings = logical_to_sharding(abstract_state, mesh, rules)

  state = jax.jit(
      lambda: nnx.split(init_fn())[1], out_shardings=shardings
  )()
  return nnx.merge(graphdef, state)

