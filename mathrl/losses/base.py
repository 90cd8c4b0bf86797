"""The policy-loss protocol shared by every surrogate in `mathrl.losses`.

A policy loss is built once from its hyperparameters and then called on
keyword arrays:

  loss = mathrl.losses.ppo_clip(clip_low=0.2, clip_high=0.28)
  per_token_BT, metrics = loss(logp=logp_BT, old_logp=old_logp_BT,
                               advantages=adv_B, mask=mask_BT, **extra)

`per_token_BT` is float32 [B, T], zero where `mask` is 0: the quantity that is
minimised (= −objective), before aggregation. `metrics` is a flat dict of
scalar float32 arrays (masked means over valid tokens). Unknown extras are
accepted and ignored, so a train step can pass the same extras to any loss.

Conventions applied here once, for every loss:
  * inputs are cast to float32; positions where `mask` is 0 are replaced by 0
    before any arithmetic, so padding may hold garbage (even NaN or inf)
    without reaching values or gradients ("double where");
  * `old_logp` and `advantages` are constants (stop-gradient): losses are
    differentiated with respect to `logp` only;
  * `advantages` may be [B] (one value per sequence, broadcast over T) or
    [B, T];
  * the log-ratio `logp − old_logp` is clamped to [−20, 20] before `exp`
    (verl does so in its vanilla, CISPO and SAPO losses), which keeps float32
    finite on degenerate inputs.
"""

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from mathrl.types import Needs

Metrics = dict[str, jax.Array]
LOG_RATIO_CLIP = 20.0


class LossInputs(NamedTuple):
  """Validated, float32, padding-zeroed inputs of a policy loss.

  Attributes:
    logp_BT: log π_θ of the sampled tokens (carries the gradient).
    old_logp_BT: log π_old of the sampled tokens (stop-gradient).
    adv_BT: advantages broadcast to [B, T] (stop-gradient).
    mask_BT: float32 0/1 validity mask.
    extra: the keyword extras passed to the loss call, untouched.
    name: the loss's public name, for error messages.
  """

  logp_BT: jax.Array
  old_logp_BT: jax.Array
  adv_BT: jax.Array
  mask_BT: jax.Array
  extra: dict[str, Any]
  name: str


class PerToken(NamedTuple):
  """What a policy loss's function computes on its `LossInputs`.

  Attributes:
    loss_BT: per-token loss (the quantity minimised).
    metrics: scalar metrics.
    clipped_BT: bool, tokens the surrogate clipped (a bound of its ratio or
      weight is active); a token weighting such as Clip-Cov reads it.
  """

  loss_BT: jax.Array
  metrics: Metrics
  clipped_BT: jax.Array


@dataclasses.dataclass(frozen=True)
class PolicyLoss:
  """A configured policy loss, called `(logp=, old_logp=, advantages=, mask=)`.

  Frozen and hashable (equal when name, function and hyperparameters are), so
  it can be closed over or passed as a static argument of `jax.jit`.

  Attributes:
    name: the public factory name (`mathrl.losses.<name>`).
    fn: `fn(inputs: LossInputs, **hparams) -> (per_token_BT, metrics)` or
      `(per_token_BT, metrics, clipped_BT)`.
    hparams: the hyperparameters as sorted (name, value) pairs.
    needs: what the loss needs from the train step (`types.Needs`): the
      current or behaviour policy's entropy, rollout extras, a stateful
      regulariser.
  """

  name: str
  fn: Callable[..., tuple[jax.Array, Metrics]]
  hparams: tuple[tuple[str, Any], ...] = ()
  needs: Needs = Needs()

  def __call__(
      self,
      *,
      logp: jax.typing.ArrayLike,
      old_logp: jax.typing.ArrayLike,
      advantages: jax.typing.ArrayLike,
      mask: jax.typing.ArrayLike,
      **extra: Any,
  ) -> tuple[jax.Array, Metrics]:
    """Per-token loss and metrics.

    Args:
      logp: [B, T] log π_θ of the sampled tokens.
      old_logp: [B, T] log π_old (behaviour policy) of the same tokens.
      advantages: [B] or [B, T] advantages.
      mask: [B, T] 0/1 validity mask (1 on generated tokens incl. EOS).
      **extra: method-specific inputs (`entropy`, `rng`, ...); unknown ones
        are ignored.

    Returns:
      (per_token_BT float32 with zeros where mask is 0, metrics dict of
      scalars).
    """
    inputs = prepare(self.name, logp, old_logp, advantages, mask, extra)
    per_token_BT, metrics, _ = self.evaluate(inputs)
    per_token_BT = jnp.where(
        inputs.mask_BT > 0, per_token_BT.astype(jnp.float32), 0.0
    )
    out = ratio_metrics(inputs)
    out.update(metrics)
    return per_token_BT, {
        k: jax.lax.stop_gradient(jnp.asarray(v, jnp.float32))
        for k, v in out.items()
    }

  def evaluate(self, inputs: LossInputs) -> PerToken:
    """The loss's function on prepared inputs (no clipped mask: none)."""
    out = self.fn(inputs, **dict(self.hparams))
    if len(out) == 3:
      return PerToken(*out)
    return PerToken(out[0], out[1], jnp.zeros(inputs.mask_BT.shape, bool))


def make(name: str, fn: Callable[..., Any], *, needs: Needs = Needs(),
         **hparams: Any) -> PolicyLoss:
  """Builds a `PolicyLoss`; hyperparameters must be Python scalars or None.

  `needs` declares what the train step must supply (`types.Needs`).
  """
  for key, value in hparams.items():
    if isinstance(value, jax.Array):
      raise TypeError(
          f"{name}: hyperparameter {key} must be a Python number, got an"
          " array; pass float(...) (hyperparameters are static)."
      )
  return PolicyLoss(name, fn, tuple(sorted(hparams.items())), needs)


def prepare(
    name: str,
    logp: jax.typing.ArrayLike,
    old_logp: jax.typing.ArrayLike,
    advantages: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike,
    extra: dict[str, Any],
) -> LossInputs:
  """Checks shapes, casts to float32, broadcasts advantages, zeroes padding.

  Args:
    name: the loss's name, for error messages.
    logp: [B, T].
    old_logp: [B, T].
    advantages: [B] or [B, T].
    mask: [B, T].
    extra: keyword extras, passed through.

  Returns:
    LossInputs.
  """
  logp, old_logp = jnp.asarray(logp), jnp.asarray(old_logp)
  advantages, mask = jnp.asarray(advantages), jnp.asarray(mask)
  if logp.ndim != 2:
    raise ValueError(f"{name}: logp must be [B, T], got shape {logp.shape}.")
  shape = logp.shape
  for arg, value in (("old_logp", old_logp), ("mask", mask)):
    if value.shape != shape:
      raise ValueError(
          f"{name}: {arg} has shape {value.shape} but logp has {shape};"
          " both must be [B, T]."
      )
  if advantages.shape == shape[:1]:
    advantages = jnp.broadcast_to(advantages[:, None], shape)
  elif advantages.shape != shape:
    raise ValueError(
        f"{name}: advantages must be [B]={shape[:1]} or [B, T]={shape}, got"
        f" {advantages.shape}."
    )
  valid_BT = mask > 0
  return LossInputs(
      logp_BT=clean(logp, valid_BT),
      old_logp_BT=jax.lax.stop_gradient(clean(old_logp, valid_BT)),
      adv_BT=jax.lax.stop_gradient(clean(advantages, valid_BT)),
      mask_BT=valid_BT.astype(jnp.float32),
      extra=extra,
      name=name,
  )


def clean(x: jax.typing.ArrayLike, valid: jax.Array) -> jax.Array:
  """float32 `x` with 0 where `valid` is False (no NaN reaches gradients)."""
  return jnp.where(valid, jnp.asarray(x, jnp.float32), 0.0)


def extra_BT(inputs: LossInputs, key: str, what: str) -> jax.Array:
  """A required [B, T] extra, float32, zero on padding.

  Args:
    inputs: the loss inputs.
    key: the extra's keyword.
    what: a short description for the error message.

  Returns:
    The extra as float32 [B, T].
  """
  if inputs.extra.get(key) is None:
    raise ValueError(
        f"{inputs.name} needs the extra input `{key}` ({what}); pass"
        f" {key}=... to the loss call."
    )
  value = jnp.asarray(inputs.extra[key])
  if value.shape != inputs.mask_BT.shape:
    raise ValueError(
        f"{inputs.name}: extra `{key}` has shape {value.shape}, expected"
        f" [B, T]={inputs.mask_BT.shape}."
    )
  return clean(value, inputs.mask_BT > 0)


def log_ratio(inputs: LossInputs) -> jax.Array:
  """d = clip(log π_θ − log π_old, −20, 20), [B, T] (0 on padding)."""
  return jnp.clip(
      inputs.logp_BT - inputs.old_logp_BT, -LOG_RATIO_CLIP, LOG_RATIO_CLIP
  )


def masked_mean(x_BT: jax.Array, mask_BT: jax.Array) -> jax.Array:
  """Σ x·m / max(Σ m, 1): a mean over valid entries, 0 when there are none."""
  x_BT = jnp.asarray(x_BT, jnp.float32)
  total = jnp.sum(jnp.where(mask_BT > 0, x_BT, 0.0))
  return total / jnp.maximum(jnp.sum(mask_BT), 1.0)


def ratio_metrics(inputs: LossInputs) -> Metrics:
  """mean r, mean (r − 1) − d, mean(−d) over valid tokens; d = log r clamped.

  The metrics every loss reports: `ratio_mean`; `approx_kl`, the k3
  estimate of KL(π_old ‖ π_θ) on samples of π_old (Schulman,
  http://joschu.net/blog/kl-approx.html); `ppo_kl`, verl's k1 `ppo_kl`.

  Args:
    inputs: the loss inputs.

  Returns:
    Metrics dict.
  """
  d_BT = jax.lax.stop_gradient(log_ratio(inputs))
  mask_BT = inputs.mask_BT
  return {
      "ratio_mean": masked_mean(jnp.exp(d_BT), mask_BT),
      "approx_kl": masked_mean(jnp.expm1(d_BT) - d_BT, mask_BT),
      "ppo_kl": masked_mean(-d_BT, mask_BT),
  }


def seq_mean(x_BT: jax.Array, mask_BT: jax.Array) -> jax.Array:
  """[B]: Σ_t x·m / max(Σ_t m, 1), the per-sequence mean over valid tokens."""
  total_B = jnp.sum(jnp.where(mask_BT > 0, x_BT, 0.0), axis=-1)
  return total_B / jnp.maximum(jnp.sum(mask_BT, axis=-1), 1.0)


def check_positive(name: str, **values: float | None) -> None:
  """Raises ValueError unless every given (non-None) value is > 0."""
  for key, value in values.items():
    if value is not None and not value > 0:
      raise ValueError(f"{name}: {key} must be > 0, got {value}.")
