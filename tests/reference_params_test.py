"""The reference policy's copy in the compute dtype: same log-probs, resumes.

`train_step.reference_params` stores the reference's floats in the
narrower of their dtype and `model.dtype`. Every forward casts a
parameter to the compute dtype where a layer reads it, so with float32
master weights and bfloat16 compute the bfloat16 copy must give the very
same log-probs as a float32 one: equality, not a tolerance.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mathrl import advantages
from mathrl import checkpoint
from mathrl import logprobs
from mathrl import losses
from mathrl import models
from mathrl import train_step as train_step_lib
from mathrl import trainer

from tests.trainer_test import tiny_config

P, G, L, T = 2, 2, 4, 6
F32, BF16 = jnp.dtype("float32"), jnp.dtype("bfloat16")


@pytest.fixture(scope="module")
def mixed_policy():
  """TINY in bfloat16 compute with float32 weights, none bf16-exact.

  The init's unit norm scales and zero biases are exact in bfloat16;
  noise makes every weight need the rounding the test is about.
  """
  model = models.Transformer(models.presets.TINY, dtype=jnp.bfloat16,
                             param_dtype=jnp.float32, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
  leaves = [x + 0.01 * jax.random.normal(k, x.shape, x.dtype)
            for x, k in zip(leaves, keys)]
  return graphdef, jax.tree.unflatten(tree, leaves)


def _rollout():
  k1, k2 = jax.random.split(jax.random.PRNGKey(1))
  prompt_BL = jnp.repeat(jax.random.randint(k1, (P, L), 3, 200), G, axis=0)
  lengths_B = jnp.array([6, 3, 1, 5])
  return train_step_lib.Rollout(
      prompt_tokens_BL=prompt_BL,
      prompt_mask_BL=jnp.ones((P * G, L), jnp.int32).at[:2, :1].set(0),
      completion_tokens_BT=jax.random.randint(k2, (P * G, T), 3, 200),
      completion_mask_BT=(jnp.arange(T)[None] < lengths_B[:, None]).astype(
          jnp.int32),
      rewards_PG=jnp.array([[1.0, 0.0], [0.0, 1.0]]),
      valid_PG=jnp.ones((P, G)), progress=jnp.float32(0.0))


def test_stored_dtype_is_the_narrower_one_in_new_buffers(mixed_policy):
  _, params = mixed_policy
  ref = train_step_lib.reference_params(params, jnp.bfloat16)
  assert {x.dtype for x in jax.tree.leaves(ref)} == {BF16}
  # The copy is rounded (none of the noisy weights is bf16-exact) ...
  assert all(bool(jnp.any(r.astype(F32) != p)) for r, p in zip(
      jax.tree.leaves(ref), jax.tree.leaves(params)))
  # ... and a float32 compute keeps float32, in buffers of its own (the
  # train step donates the state's).
  same = train_step_lib.reference_params(params, jnp.float32)
  for r, p in zip(jax.tree.leaves(same), jax.tree.leaves(params)):
    assert r.dtype == F32 and r is not p
    assert r.unsafe_buffer_pointer() != p.unsafe_buffer_pointer()
    np.testing.assert_array_equal(r, p)
  # bfloat16 weights computed in float32 are not widened.
  bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  assert {x.dtype for x in jax.tree.leaves(
      train_step_lib.reference_params(bf16, jnp.float32))} == {BF16}


@pytest.mark.parametrize("group_size,chunk_size", [(1, None), (G, 4)])
def test_bf16_copy_gives_identical_logprobs(mixed_policy, group_size,
                                             chunk_size):
  graphdef, params = mixed_policy
  ref = train_step_lib.reference_params(params, jnp.bfloat16)
  r = _rollout()
  fn = jax.jit(lambda p: logprobs.completion_logprobs(
      graphdef, p, r.prompt_tokens_BL, r.prompt_mask_BL,
      r.completion_tokens_BT, r.completion_mask_BT, group_size=group_size,
      chunk_size=chunk_size))
  from_f32, from_bf16 = fn(params), fn(ref)
  for a, b in zip(from_f32, from_bf16):  # log-probs and entropies
    assert a.dtype == F32
    np.testing.assert_array_equal(a, b)
  assert float(jnp.sum(jnp.abs(from_f32[0]))) > 0


def test_kl_is_zero_at_step_one_with_the_bf16_copy(mixed_policy):
  graphdef, params = mixed_policy
  opt = optax.adamw(1e-3)
  adv_tx = advantages.grpo()
  step = jax.jit(train_step_lib.make_train_step(
      graphdef, opt, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean, kl_estimator=losses.kl_k3, kl_coef=0.04,
      recompute_old_logp=False, logits_chunk_size=4))
  state = train_step_lib.init_train_state(
      params, opt, adv_tx.init(jnp.zeros((P, G))), jax.random.PRNGKey(0))
  ref = train_step_lib.reference_params(params, jnp.bfloat16)
  new_a, m_a = step(state, _rollout(), ref)
  new_b, m_b = step(state, _rollout(), params)  # a float32 reference
  # Policy = reference: the same bf16 log-probs, so k3 = e^0 - 0 - 1 = 0.
  assert float(m_a["kl"]) == 0.0 and float(m_a["grad_norm"]) > 0
  # The whole step is the same with either copy.
  assert m_a.keys() == m_b.keys()
  for k in m_a:
    np.testing.assert_array_equal(m_a[k], m_b[k], err_msg=k)
  jax.tree.map(np.testing.assert_array_equal, new_a.params, new_b.params)


def test_float32_reference_of_an_older_checkpoint_resumes_cast(tmp_path):
  """A checkpoint whose reference is float32 restores into the bf16 copy."""
  config = tiny_config(**{"sft.steps": 0, "rl.kl": "kl_k3",
                          "rl.kl_coef": 0.04, "model.dtype": "bfloat16"})
  run = trainer.Run(config, str(tmp_path / "run"))
  try:
    setup = trainer.RLSetup(run)
    assert setup.parts.needs_reference
    tree = setup.initial_tree(run.init_params)
    ref = tree["ref"]["params"]
    assert {x.dtype for x in jax.tree.leaves(ref)} == {BF16}
    assert {x.dtype for x in jax.tree.leaves(tree["state"].params)} == {F32}
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), async_save=False)
    old_ref = jax.tree.map(jnp.copy, run.init_params)  # the former layout
    ckpt.save(1, {"state": tree["state"], "ref": {"params": old_ref}},
              force=True)
    ckpt.save(2, tree, force=True)
    for step in (1, 2):
      restored, _ = ckpt.restore(
          step, abstract_state=setup.initial_tree(run.init_params))
      assert {x.dtype for x in jax.tree.leaves(
          restored["ref"]["params"])} == {BF16}
      jax.tree.map(np.testing.assert_array_equal, restored, tree)
    ckpt.close()
  finally:
    run.close()
