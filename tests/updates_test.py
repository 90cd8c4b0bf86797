"""The guarded optimizer update: same step, skips, and no copy of the state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mathrl import optim
from mathrl import updates

# 1 MiB + 256 KiB of float32 parameters: large enough that a copy of the
# optimizer's moments stands out in XLA's temporary memory.
SHAPES = {"a": (512, 512), "b": (128, 512)}
TREE_BYTES = 4 * sum(r * c for r, c in SHAPES.values())


def _tree(seed):
  keys = jax.random.split(jax.random.key(seed), len(SHAPES))
  return {name: jax.random.normal(k, shape)
          for k, (name, shape) in zip(keys, sorted(SHAPES.items()))}


@pytest.fixture(scope="module")
def adamw():
  return optim.adamw(learning_rate=1e-2, total_steps=10)


def _step(optimizer, donate):
  return jax.jit(
      lambda params, state, grads, loss, apply: updates.guarded_update(
          optimizer, grads, loss, params, state, apply=apply),
      donate_argnums=(0, 1) if donate else ())


def test_finite_update_is_the_optimizer_step(adamw):
  params, grads = _tree(0), _tree(1)
  state = adamw.init(params)
  new_params, new_state, finite, grad_norm = _step(adamw, False)(
      params, state, grads, jnp.float32(0.5), None)
  want_updates, want_state = jax.jit(adamw.update)(grads, state, params)
  want_params = optax.apply_updates(params, want_updates)
  assert bool(finite)
  np.testing.assert_allclose(grad_norm, optax.tree.norm(grads), rtol=1e-6)
  for got, want in zip(jax.tree.leaves((new_params, new_state)),
                       jax.tree.leaves((want_params, want_state))):
    # Equal up to float32 rounding (XLA fuses the two programs apart).
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss, grad_scale, apply", [
    (jnp.nan, 1.0, None),        # non-finite loss
    (0.5, jnp.inf, None),        # non-finite gradient norm
    (0.5, 1.0, False),           # finite, but the caller says not to apply
])
def test_skipped_update_keeps_params_and_state(adamw, loss, grad_scale, apply):
  params = _tree(0)
  grads = jax.tree.map(lambda g: g * grad_scale, _tree(1))
  state = adamw.init(params)
  state = adamw.update(_tree(2), state, params)[1]  # non-zero moments
  new_params, new_state, finite, _ = _step(adamw, False)(
      params, state, grads, jnp.float32(loss),
      None if apply is None else jnp.bool_(apply))
  assert bool(finite) == (apply is not None)
  for got, want in zip(jax.tree.leaves((new_params, new_state)),
                       jax.tree.leaves((params, state))):
    np.testing.assert_array_equal(got, want)


def test_donated_update_needs_no_full_size_temporary(adamw):
  # Donated parameters and moments are updated in place, and the clipping
  # factor is fused into the update. A guard that selects between the new
  # and the old trees makes XLA keep copies of the old moments (1.2 ×
  # TREE_BYTES of temporaries with optax.adamw, measured), and optax's
  # clip_by_global_norm a clipped gradient (1 × TREE_BYTES).
  params, grads = _tree(0), _tree(1)
  compiled = _step(adamw, True).lower(
      params, adamw.init(params), grads, jnp.float32(0.5), None).compile()
  assert compiled.memory_analysis().temp_size_in_bytes <= TREE_BYTES // 8
