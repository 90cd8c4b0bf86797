"""The optimizer's schedule and clipping."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mathrl import optim


def test_warmup_then_cosine_to_end_fraction():
  sched = optim.learning_rate_schedule(
      peak_value=1.0, total_steps=10, warmup_steps=2, end_fraction=0.5)
  # Linear warm-up: 0, 0.5, then the peak at step 2.
  np.testing.assert_allclose([sched(0), sched(1), sched(2)], [0.0, 0.5, 1.0])
  # Cosine over the 8 remaining steps: at step 6 (halfway) the factor is
  # 0.5 + 0.5·½(1 + cos(π/2)) = 0.75; at step 10 it is the end value 0.5.
  np.testing.assert_allclose(sched(6), 0.5 + 0.5 * 0.5 * (1 + math.cos(
      math.pi / 2)), atol=1e-6)
  np.testing.assert_allclose(sched(10), 0.5, atol=1e-6)
  constant = optim.learning_rate_schedule(
      peak_value=3e-4, total_steps=5, end_fraction=1.0)
  np.testing.assert_allclose([constant(0), constant(5)], [3e-4, 3e-4])


def test_adamw_clips_the_global_norm_before_the_update():
  tx = optim.adamw(learning_rate=0.1, total_steps=10, max_grad_norm=1.0)
  params = {"w": jnp.zeros(3)}
  state = tx.init(params)
  # ‖g‖ = 10 is clipped to 1; Adam's first step moves each coordinate by
  # lr·sign(g) = 0.1 whatever the scale, so check the clipped moments.
  grads = {"w": jnp.array([6.0, 8.0, 0.0])}
  updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates["w"], [-0.1, -0.1, 0.0], atol=1e-6)
  adam_state = state[1][0]
  np.testing.assert_allclose(adam_state.mu["w"], 0.1 * np.array(
      [0.6, 0.8, 0.0]), atol=1e-6)
  assert isinstance(tx, optax.GradientTransformation)


def test_bad_schedules_are_rejected():
  with pytest.raises(ValueError, match="total_steps"):
    optim.learning_rate_schedule(peak_value=1.0, total_steps=0)
  with pytest.raises(ValueError, match="warmup_steps"):
    optim.learning_rate_schedule(peak_value=1.0, total_steps=3,
                                 warmup_steps=4)


def test_warmup_as_long_as_the_run_is_linear_and_does_not_crash():
  # warmup == total: no cosine phase (optax rejects decay_steps = 0);
  # η(s) = s/4 reaches the peak 1.0 at step 4.
  sched = optim.learning_rate_schedule(
      peak_value=1.0, total_steps=4, warmup_steps=4)
  np.testing.assert_allclose([sched(s) for s in range(5)],
                             [0.0, 0.25, 0.5, 0.75, 1.0])


def test_builders_optimizer_with_fewer_steps_than_warmup_updates():
  from mathrl import builders, configlib  # pylint: disable=g-import-not-at-top
  c = configlib.base_config()
  c.rl.steps, c.rl.warmup_steps, c.rl.learning_rate = 2, 10, 0.1
  tx = builders.make_optimizer(c.rl, total_steps=c.rl.steps)
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)
  grads = {"w": jnp.array([1.0, -1.0])}
  # Warm-up clamped to the run's 2 updates: η = 0 at update 0, then
  # η = 0.1·1/2 = 0.05 at update 1; Adam's first steps move by η·sign(g).
  updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates["w"], [0.0, 0.0], atol=1e-7)
  updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates["w"], [-0.05, 0.05], atol=1e-6)


def test_bfloat16_first_moment_only_and_the_same_first_steps():
  from mathrl import builders, configlib  # pylint: disable=g-import-not-at-top
  c = configlib.base_config()
  c.rl.learning_rate, c.rl.warmup_steps = 0.1, 0
  c.rl.adam_mu_dtype = "bfloat16"
  params = {"w": jnp.zeros(2)}
  grads = {"w": jnp.array([0.3, -0.7])}
  low = builders.make_optimizer(c.rl, total_steps=10)
  c.rl.adam_mu_dtype = ""
  full = builders.make_optimizer(c.rl, total_steps=10)
  s_low, s_full = low.init(params), full.init(params)
  adam = lambda s: next(x for x in s[1] if hasattr(x, "mu"))
  assert adam(s_low).mu["w"].dtype == jnp.bfloat16
  assert adam(s_low).nu["w"].dtype == jnp.float32  # v stays float32
  assert adam(s_full).mu["w"].dtype == jnp.float32
  # Equivalence: with m stored in bfloat16 the updates match the float32
  # optimizer's to bfloat16 precision (Adam's first steps are ≈ -η·sign(g)).
  for _ in range(2):
    u_low, s_low = low.update(grads, s_low, params)
    u_full, s_full = full.update(grads, s_full, params)
  np.testing.assert_allclose(u_low["w"], u_full["w"], rtol=1e-2)
  c.rl.adam_mu_dtype = "float16"
  with pytest.raises(builders.ConfigError, match="adam_mu_dtype"):
    builders.make_optimizer(c.rl, total_steps=10)


@pytest.mark.parametrize("scale", [0.01, 100.0])
def test_global_norm_clip_equals_optax(scale):
  # Leaves of norms 3·s and 4·s: ‖g‖ = 5·s. At s = 0.01 (‖g‖ = 0.05 < 1)
  # nothing changes, bit for bit; at s = 100 every leaf is scaled by
  # 1/500, as optax's division gives up to float32 rounding.
  grads = {"a": jnp.array([3.0, 0.0]) * scale,
           "b": jnp.array([[4.0]]) * scale}
  got, _ = optim.clip_by_global_norm(1.0).update(grads, ())
  want, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    if scale < 1:
      np.testing.assert_array_equal(g, w)
    else:
      np.testing.assert_allclose(g, w, rtol=1e-6)
  np.testing.assert_allclose(optax.tree.norm(got), min(1.0, 5 * scale),
                             rtol=1e-6)
