"""Tests for mathrl.sharding: meshes, rules, sharded load equals one device."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mathrl import models
from mathrl import sharding
from mathrl.models import presets

P = jax.sharding.PartitionSpec

TOKENS_BS = np.random.default_rng(1).integers(0, 256, (4, 6))
MASK_BS = np.array([[0, 0, 1, 1, 1, 1]] * 2 + [[1] * 6] * 2)
REAL_BS = MASK_BS.astype(bool)

MESHES = (
    dict(data=2, fsdp=2, tensor=2),
    dict(fsdp=8),
    dict(data=2, tensor=4),
)

# What TRAIN_RULES give the Qwen3 tiny model (D=64, F=128, V=256, N=4,
# K=2, H=32, 2 layers) on each mesh. kv_heads (2) cannot split over
# tensor=4, so it is replicated there; size-1 axes are left out.
EXPECTED_TRAIN_SPECS = {
    "data=2,fsdp=2,tensor=2": {
        ("embed",): P("tensor", "fsdp"),
        ("lm_head",): P("fsdp", "tensor"),
        ("layers", "attn", "q_kernel"): P(None, "fsdp", "tensor", None),
        ("layers", "attn", "k_kernel"): P(None, "fsdp", "tensor", None),
        ("layers", "attn", "o_kernel"): P(None, "tensor", None, "fsdp"),
        ("layers", "mlp", "down_kernel"): P(None, "tensor", "fsdp"),
        ("layers", "attn", "q_norm", "scale"): P(None, None),
    },
    "fsdp=8": {
        ("embed",): P(None, "fsdp"),
        ("layers", "attn", "q_kernel"): P(None, "fsdp", None, None),
        ("layers", "mlp", "gate_kernel"): P(None, "fsdp", None),
        ("final_norm", "scale"): P("fsdp"),
    },
    "data=2,tensor=4": {
        ("embed",): P("tensor", None),
        ("layers", "attn", "q_kernel"): P(None, None, "tensor", None),
        ("layers", "attn", "k_kernel"): P(None, None, None, None),
        ("layers", "mlp", "up_kernel"): P(None, None, "tensor"),
    },
}


def _mesh_id(sizes):
  return ",".join(f"{k}={v}" for k, v in sizes.items())


def _forward(model, mesh):
  graphdef, state = nnx.split(model)

  @jax.jit
  def run(state, tokens_BS, mask_BS):
    return nnx.merge(graphdef, state)(tokens_BS, attention_mask_BS=mask_BS)

  with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
    return np.asarray(run(state, TOKENS_BS, MASK_BS))


@pytest.fixture(scope="module")
def single_device_logits(tiny_checkpoints):
  model = models.from_pretrained(tiny_checkpoints["qwen3"])
  return _forward(model, None)


@pytest.mark.parametrize("sizes", MESHES, ids=_mesh_id)
def test_sharded_forward_equals_single_device(sizes, tiny_checkpoints,
                                              single_device_logits):
  mesh = sharding.make_mesh(**sizes)
  model = models.from_pretrained(tiny_checkpoints["qwen3"], mesh=mesh,
                                 rules=sharding.TRAIN_RULES)
  params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
  # Every parameter sits exactly where the rules put it...
  for path, variable in params.items():
    value = variable.get_value()
    expected = sharding.logical_to_spec(
        variable.get_metadata()["out_sharding"], value.shape, mesh,
        sharding.TRAIN_RULES)
    assert value.sharding.spec == expected, path
    assert value.sharding.mesh.shape == mesh.shape, path
  # ...and the rules say what the table above says.
  for path, spec in EXPECTED_TRAIN_SPECS[_mesh_id(sizes)].items():
    assert params[path].get_value().sharding.spec == spec, path
  logits_BSV = _forward(model, mesh)
  np.testing.assert_allclose(logits_BSV[REAL_BS],
                             single_device_logits[REAL_BS], atol=1e-5)


def test_sample_rules_replicate_weights_over_fsdp(tiny_checkpoints):
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  model = models.from_pretrained(tiny_checkpoints["qwen3"], mesh=mesh,
                                 rules=sharding.SAMPLE_RULES)
  for path, variable in nnx.to_flat_state(nnx.state(model, nnx.Param)):
    assert "fsdp" not in jax.tree.leaves(
        tuple(variable.get_value().sharding.spec)), path
  assert model.embed.get_value().sharding.spec == P("tensor", None)
  # No parameter is ever fully replicated on every device by accident:
  # each device holds 1/2 of q_kernel (tensor-sharded heads).
  q = model.layers.attn.q_kernel.get_value()
  assert q.addressable_shards[0].data.shape == (2, 64, 2, 32)


def test_init_sharded_places_random_params():
  mesh = sharding.make_mesh(fsdp=4, tensor=2)
  model = sharding.init_sharded(
      lambda: models.Transformer(presets.TINY, rngs=nnx.Rngs(0)), mesh,
      sharding.TRAIN_RULES)
  kernel = model.layers.mlp.gate_kernel.get_value()
  assert kernel.sharding.spec == P(None, "fsdp", "tensor")
  # [2, 64, 128] over fsdp=4 x tensor=2: each shard is [2, 16, 64].
  assert kernel.addressable_shards[0].data.shape == (2, 16, 64)


def test_make_mesh_shapes_and_errors():
  mesh = sharding.make_mesh(data=2, fsdp=-1, tensor=2)
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert mesh.axis_names == sharding.MESH_AXES
  four = sharding.make_mesh(tensor=4, devices=jax.devices()[:4])
  assert dict(four.shape) == {"data": 1, "fsdp": 1, "tensor": 4}
  with pytest.raises(ValueError, match="needs 1 devices but 8"):
    sharding.make_mesh()
  with pytest.raises(ValueError, match="needs 6 devices but 8"):
    sharding.make_mesh(data=3, tensor=2)
  with pytest.raises(ValueError, match="At most one mesh axis may be -1"):
    sharding.make_mesh(data=-1, fsdp=-1)
  with pytest.raises(ValueError, match="not divisible"):
    sharding.make_mesh(data=3, fsdp=-1)


def test_logical_to_spec_rules():
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  rules = sharding.TRAIN_RULES
  # batch takes (data, fsdp); embed then finds fsdp taken: replicated.
  spec = sharding.logical_to_spec(("batch", "length", "embed"), (8, 5, 64),
                                  mesh, rules)
  assert spec == P(("data", "fsdp"), None, None)
  # A batch of 2 only divides by data=2: the longest dividing prefix.
  assert sharding.logical_to_spec(("batch", "length"), (2, 5), mesh,
                                  rules) == P("data", None)
  # 3 kv heads do not divide tensor=2: replicated instead of an error.
  assert sharding.logical_to_spec(("embed", "kv_heads"), (64, 3), mesh,
                                  rules) == P("fsdp", None)
  with pytest.raises(ValueError, match="'nope' has no rule"):
    sharding.logical_to_spec(("nope",), (4,), mesh, rules)


def test_shard_is_noop_without_mesh_and_constrains_with_one():
  x_BD = jnp.ones((8, 64))
  assert sharding.shard(x_BD, "batch", "embed") is x_BD
  mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
  with jax.set_mesh(mesh), sharding.axis_rules(sharding.SAMPLE_RULES):
    y_BD = jax.jit(lambda x: sharding.shard(x * 2, "batch", "embed"))(x_BD)
  assert y_BD.sharding.is_equivalent_to(
      jax.sharding.NamedSharding(mesh, P(("data", "fsdp"), None)), 2)


def test_initialize_distributed_is_noop_for_one_process():
  sharding.initialize_distributed()
  sharding.initialize_distributed(num_processes=1)
  assert jax.process_count() == 1
