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
  updates, new_opt_state = optimizer.update(grads, opt_state, params)
  new_params = optax.apply_updates(params, updates)
  keep = lambda new, old: jax.tree.map(
      lambda n, o: jnp.where(keep_new, n, o), new, old
  )
  return (
      keep(new_params, params), keep(new_opt_state, opt_state), finite,
      grad_norm,
  )
