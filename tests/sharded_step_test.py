"""On 8 fake CPU devices: the sharded train step equals the single-device one,
the train step and the sampler compile once per bucket, and the decode loop
moves no weight between devices under the sampling rules."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mathrl import advantages
from mathrl import hlo
from mathrl import distributed
from mathrl import losses
from mathrl import models
from mathrl import sampling
from mathrl import sharding
from mathrl import train_step as train_step_lib

P, G, L, T = 4, 2, 6, 5
MESHES = {"data2_fsdp2_tensor2": (2, 2, 2), "fsdp8": (1, 8, 1)}


@pytest.fixture(scope="module")
def policy():
  model = models.Transformer(models.presets.TINY, rngs=nnx.Rngs(0))
  return nnx.split(model)


def _rollout(step):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(step), 3)
  # The G rows of a group share their prompt (left-padded in some groups).
  prompt = np.repeat(np.asarray(jax.random.randint(k1, (P, L), 3, 200)), G,
                     axis=0)
  mask = np.ones((P, L), np.int32)
  mask[::2, :2] = 0
  mask = np.repeat(mask, G, axis=0)
  completion = np.asarray(jax.random.randint(k2, (P * G, T), 3, 200))
  lengths = np.asarray(jax.random.randint(k3, (P * G,), 1, T + 1))
  return dict(
      prompt_tokens_BL=prompt, prompt_mask_BL=mask,
      completion_tokens_BT=completion,
      completion_mask_BT=(np.arange(T)[None] < lengths[:, None]).astype(
          np.int32),
      rewards_PG=np.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]],
                            np.float32),
      valid_PG=np.ones((P, G), np.float32))


def _train_two_steps(policy, mesh):
  """Two GRPO steps on `mesh`; returns (params, jitted step)."""
  graphdef, params = policy
  params = jax.tree.map(jnp.copy, params)  # the step donates its state
  # SGD: updates compare as tightly as gradients (Adam's g/√v amplifies
  # float noise in near-zero gradients).
  opt = optax.sgd(0.5)
  adv_tx = advantages.grpo()
  step = train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean, share_prompts=True,
      recompute_old_logp=False)
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((P, G))),
      jax.random.key_data(jax.random.PRNGKey(0)))
  state_sh = train_step_lib.state_shardings(state, opt, mesh,
                                            sharding.TRAIN_RULES)
  state = jax.device_put(state, state_sh)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  jitted = jax.jit(step, out_shardings=(state_sh, replicated),
                   donate_argnums=0)
  with jax.set_mesh(mesh), sharding.axis_rules(sharding.TRAIN_RULES):
    for i in range(2):
      rows = distributed.global_batch(_rollout(i), mesh, sharding.TRAIN_RULES)
      rollout = train_step_lib.Rollout(progress=jnp.float32(i / 2), **rows)
      state, _ = jitted(state, rollout)
  return jax.device_get(state.params), jitted


@pytest.fixture(scope="module")
def single_device(policy):
  return _train_two_steps(
      policy, sharding.make_mesh(devices=jax.devices()[:1]))


@pytest.mark.parametrize("name", sorted(MESHES))
def test_sharded_train_steps_equal_single_device(policy, single_device, name):
  data, fsdp, tensor = MESHES[name]
  mesh = sharding.make_mesh(data=data, fsdp=fsdp, tensor=tensor)
  params, jitted = _train_two_steps(policy, mesh)
  expected, _ = single_device
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
  # Both steps (same shapes, same shardings) used one executable.
  assert jitted._cache_size() == 1  # pylint: disable=protected-access
  # Something moved: the parameters are not the initial ones.
  initial = jax.tree.leaves(policy[1])
  assert max(float(np.max(np.abs(a - b)))
             for a, b in zip(jax.tree.leaves(params), initial)) > 1e-4


def test_sampler_compiles_once_per_bucket_on_a_mesh(policy):
  model = nnx.merge(*policy)
  mesh = sharding.make_mesh(data=2, fsdp=4)
  kw = dict(max_new_tokens=4, eos_ids=(255,), method=sampling.Temperature(1.0),
            buckets=(8,), num_samples=2, mesh=mesh)
  cores = (sampling._prefill, sampling._decode)  # pylint: disable=protected-access
  before = [f._cache_size() for f in cores]  # pylint: disable=protected-access
  for seed in range(2):
    rows = _rollout(seed)
    sampling.generate(model, rows["prompt_tokens_BL"][::G],
                      rows["prompt_mask_BL"][::G], rng=jax.random.key(seed),
                      **kw)
  after = [f._cache_size() for f in cores]  # pylint: disable=protected-access
  # One prefill and one decode program for the bucket (no compaction bucket
  # below 8 rows), reused by the second call.
  assert after == [n + 1 for n in before]


@pytest.mark.parametrize("prompts,copies", [(16, 1), (8, 2)])
def test_the_prefill_moves_no_cache_rows_between_devices(policy, prompts,
                                                          copies):
  # 16 rows on 8 devices, prefilled per row or as 8 prompts whose cache
  # rows are copied twice (row p·2 + g): each prompt's copies land on the
  # device that prefilled it, so the whole sampler program's only
  # collective is the loop's 4-byte "all rows done?" reduction, far
  # below one row of one layer's K cache (M = 8 + 4 slots × K = 2 heads ×
  # H = 16 × 4 bytes = 1,536).
  graphdef, params = policy
  mesh = sharding.make_mesh(fsdp=8)
  rules = sharding.SAMPLE_RULES
  params = jax.device_put(
      params, sharding.logical_to_sharding(params, mesh, rules))
  batch = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(("data", "fsdp")))
  tokens = jax.device_put(jnp.ones((prompts, 8), jnp.int32), batch)
  with jax.set_mesh(mesh), sharding.axis_rules(rules):
    compiled = sampling.sampler_program.lower(
        graphdef, params, tokens, tokens, jax.random.key(0),
        max_new_tokens=4, eos_ids=(255,), method=sampling.Greedy(),
        num_samples=copies, return_entropy=False, pad_id=0).compile()
  found = hlo.collectives(compiled.as_text())
  assert [(c.op, c.bytes) for c in found] == [("all-reduce", 4)]


def _decode_loop_collectives(policy, rules):
  graphdef, params = policy
  mesh = sharding.make_mesh(fsdp=8)
  params = jax.device_put(
      params, sharding.logical_to_sharding(params, mesh, rules))
  batch = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec(("data", "fsdp")))
  tokens = jax.device_put(jnp.ones((8, 8), jnp.int32), batch)
  with jax.set_mesh(mesh), sharding.axis_rules(rules):
    compiled = sampling.sampler_program.lower(
        graphdef, params, tokens, tokens, jax.random.key(0),
        max_new_tokens=4, eos_ids=(255,), method=sampling.Greedy(),
        return_entropy=False, pad_id=0).compile()
  smallest = min(x.nbytes // 8 for x in jax.tree.leaves(params)
                 if x.ndim >= 2)
  found = hlo.loop_collectives(compiled.as_text())
  return [c for c in found if c.bytes >= smallest]


def test_decode_loop_moves_no_weights_under_the_sampling_rules(policy):
  # Under the sampling rules the weights are replicated over fsdp: the
  # decode loop holds no collective as large as even 1/8 of the smallest
  # weight matrix.
  assert _decode_loop_collectives(policy, sharding.SAMPLE_RULES) == []
  # The check can see them: with the training rules (FSDP-sharded weights)
  # every decode step all-gathers weights.
  gathered = _decode_loop_collectives(policy, sharding.TRAIN_RULES)
  assert any(c.op.startswith("all-gather") for c in gathered)
