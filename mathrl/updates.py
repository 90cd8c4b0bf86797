"""The optimizer update shared by the RL and SFT steps: skip if not finite."""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import optax


def guarded_update(
    optimizer: optax.GradientTransformation, grads: Any, loss: jax.Array,
    params: Any, opt_state: Any, apply: Optional[jax.Array] = None,
) -> tuple[Any, Any, jax.Array, jax.Array]:
  """θ', s' = optimizer step if loss and ‖g‖₂ are finite, else θ, s unchanged.

  The same guard as `optax.apply_if_finite` (for a step rather than a
  chained transformation), taken with `jax.lax.cond` instead of an
  element-wise select between the new and the old trees: with the select,
  every new moment is computed twice (once for the parameter update, once
  for the stored moment), both from the old moments, and since nothing
  orders the two reads before the in-place write of a donated buffer XLA
  keeps a full copy of the old moments for the whole step (for AdamW in
  float32, 4 bytes per parameter of temporary memory: 0.21 GiB of the
  SmolLM2-135M step's 1.22 GiB, benchmarks/RESULTS.md). In a branch the
  parameters are updated from the new moments, which are written in place.

  Args:
    optimizer: the optax transformation.
    grads: gradients, like `params`.
    loss: the scalar loss they are the gradient of.
    params: current parameters.
    opt_state: current optimizer state.
    apply: optional bool scalar; False also keeps θ, s (e.g. an update with
      no token, where Adam's momentum would still move θ).

  Returns:
    (params, opt_state, finite, grad_norm).
  """
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  keep_new = finite if apply is None else finite & apply

  def step(args):
    grads, params, opt_state = args
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_opt_state

  def keep(args):
    return args[1], args[2]

  new_params, new_opt_state = jax.lax.cond(
      keep_new, step, keep, (grads, params, opt_state))
  return new_params, new_opt_state, finite, grad_norm
