"""The policy optimizer: AdamW with warm-up + cosine decay and global-norm clipping."""

import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(
    *,
    peak_value: float,
    total_steps: int,
    warmup_steps: int = 0,
    end_fraction: float = 0.0,
) -> optax.Schedule:
  """η(s) = η·s/w for s < w, then η·(f + (1−f)·½(1 + cos(π(s−w)/(N−w)))).

  Linear warm-up to `peak_value` over `warmup_steps`, then cosine decay to
  `end_fraction * peak_value` at `total_steps` (Loshchilov & Hutter 2017,
  arXiv:1608.03983). `total_steps` counts optimizer updates. When the
  warm-up fills the whole run (`warmup_steps == total_steps`, e.g. a short
  run of a recipe with a long warm-up) there is no decay phase: the rate
  rises linearly and reaches the peak at `total_steps`.

  Args:
    peak_value: learning rate after warm-up.
    total_steps: optimizer updates in the whole run.
    warmup_steps: linear warm-up length.
    end_fraction: final learning rate as a fraction of the peak.

  Returns:
    An optax schedule.
  """
  if total_steps <= 0:
    raise ValueError(f"total_steps must be positive, got {total_steps}")
  if not 0 <= warmup_steps <= total_steps:
    raise ValueError(
        f"warmup_steps={warmup_steps} must lie in [0, total_steps="
        f"{total_steps}]"
    )
  if warmup_steps == total_steps:
    # optax's cosine part needs decay_steps > warmup_steps.
    return optax.linear_schedule(0.0, peak_value, warmup_steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup_steps else peak_value,
      peak_value=peak_value,
      warmup_steps=warmup_steps,
      decay_steps=total_steps,
      end_value=peak_value * end_fraction,
  )


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
  """g ← g · min(1, c/‖g‖₂), ‖g‖₂ the norm of all leaves together.

  Global-norm clipping (Pascanu et al. 2013, arXiv:1211.5063), as
  `optax.clip_by_global_norm` but scaling every leaf by one scalar factor
  instead of selecting between g and g/‖g‖·c: XLA then fuses the scaling
  into the optimizer's element-wise update, where optax's division is
  computed once into a full-size temporary per leaf (up to one more
  float32 copy of the gradient at the update: 0.5 GiB for SmolLM2-135M,
  benchmarks/RESULTS.md).
  Below the threshold the factor is exactly 1; above it the result equals
  optax's up to float32 rounding.

  Args:
    max_norm: c, the largest global norm let through.

  Returns:
    A stateless optax GradientTransformation.
  """
  def update_fn(updates, state, params=None):
    del params
    g_norm = optax.tree.norm(updates)
    factor = jnp.where(g_norm < max_norm, 1.0,
                       max_norm / jnp.maximum(g_norm, max_norm))
    return jax.tree.map(lambda g: g * factor.astype(g.dtype), updates), state

  return optax.GradientTransformation(optax.init_empty_state, update_fn)


def adamw(
    *,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    end_fraction: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    mu_dtype=None,
) -> optax.GradientTransformation:
  """θ ← θ − η_s·(m̂/(√v̂ + ε) + λθ), after clipping ‖g‖₂ to `max_grad_norm`.

  AdamW (Loshchilov & Hutter 2019, arXiv:1711.05101) with the schedule of
  `learning_rate_schedule`.

  Args:
    learning_rate: peak learning rate.
    total_steps: optimizer updates in the run (for the schedule).
    warmup_steps: linear warm-up updates.
    end_fraction: final learning rate as a fraction of the peak.
    b1: Adam first-moment decay.
    b2: Adam second-moment decay.
    eps: Adam epsilon.
    weight_decay: decoupled weight decay λ.
    max_grad_norm: clip the global gradient norm to this; None disables.
    mu_dtype: storage dtype of the first moment m (None: the parameters');
      the second moment v always keeps the parameters' dtype (see
      `configlib`'s rl.adam_mu_dtype for why).

  Returns:
    An optax GradientTransformation.
  """
  schedule = learning_rate_schedule(
      peak_value=learning_rate,
      total_steps=total_steps,
      warmup_steps=warmup_steps,
      end_fraction=end_fraction,
  )
  parts = []
  if max_grad_norm is not None:
    parts.append(clip_by_global_norm(max_grad_norm))
  parts.append(
      optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                  mu_dtype=mu_dtype)
  )
  return optax.chain(*parts)
