"""Contract and property tests over every exported name of mathrl.losses.

Contract: jit-able, [B, T] float32 out with zeros on padding, scalar finite
metrics, unknown extras ignored, padding garbage (NaN/inf) never reaches
values or gradients, finite on degenerate inputs. Property: aggregations
over micro-batches with global counts sum to the full-batch value.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mathrl import logprobs
from mathrl import losses
from mathrl.losses import base

B, T = 4, 6  # one shape for the whole file: one compile per loss

# The names configs may use; the first test checks them against the exports.
POLICY_LOSSES = losses.POLICY_LOSSES
AGGREGATIONS = losses.AGGREGATIONS
KL_ESTIMATORS = losses.KL_ESTIMATORS


def test_every_exported_factory_is_covered():
  exported = {
      name
      for name, obj in vars(losses).items()
      if inspect.isfunction(obj)
      and inspect.signature(obj).return_annotation is base.PolicyLoss
  }
  # `weighted` composes two parts into a loss; it is not a method.
  assert exported - {"weighted"} == set(POLICY_LOSSES)
  for name in AGGREGATIONS + KL_ESTIMATORS:
    assert callable(getattr(losses, name))


def _batch(seed=0, log_ratio_scale=0.3):
  rng = np.random.default_rng(seed)
  logp = np.log(rng.uniform(0.05, 0.95, (B, T))).astype(np.float32)
  old = (logp - log_ratio_scale * rng.standard_normal((B, T))).astype(
      np.float32
  )
  adv = rng.standard_normal(B).astype(np.float32)
  lengths = np.array([6, 4, 0, 2])  # row 2 is an all-padding sample
  mask = (np.arange(T)[None] < lengths[:, None]).astype(np.float32)
  return logp, old, adv, mask


def _extras(mask, seed=0):
  rng = np.random.default_rng(seed + 100)
  return {
      "entropy": rng.uniform(0.0, 3.0, (B, T)).astype(np.float32),
      "entropy_nucleus": rng.uniform(0.0, 2.0, (B, T)).astype(np.float32),
      "entropy_anchor": np.float32(0.7),
      "rng": jax.random.key(seed),
      "correctness": np.array([[1, 0], [0, 1]], np.float32),
      "lengths": mask.sum(-1).reshape(2, 2),
      "some_unknown_extra": np.ones(3, np.float32),
  }


@pytest.fixture(scope="module")
def compiled():
  """name → jitted value_and_grad of token_mean(per_token) and metrics."""
  out = {}
  for name in POLICY_LOSSES:
    loss = getattr(losses, name)()

    def run(logp, old, adv, mask, extra, loss=loss):
      def f(lp):
        per_token, metrics = loss(
            logp=lp, old_logp=old, advantages=adv, mask=mask, **extra
        )
        return losses.token_mean(per_token, mask), (per_token, metrics)

      return jax.value_and_grad(f, has_aux=True)(logp)

    out[name] = jax.jit(run)
  return out


def _check_outputs(name, result, mask):
  (value, (per_token, metrics)), grad = result
  assert per_token.shape == (B, T) and per_token.dtype == jnp.float32, name
  assert np.all(np.asarray(per_token)[mask == 0] == 0), name
  assert np.all(np.asarray(grad)[mask == 0] == 0), name
  assert np.isfinite(value) and np.isfinite(per_token).all(), name
  assert np.isfinite(grad).all(), name
  for key, metric in metrics.items():
    assert metric.shape == () and metric.dtype == jnp.float32, (name, key)
    assert np.isfinite(metric), (name, key)
  for key in ("ratio_mean", "approx_kl", "ppo_kl"):
    assert key in metrics, (name, key)


@pytest.mark.parametrize("name", POLICY_LOSSES)
def test_loss_contract(name, compiled):
  logp, old, adv, mask = _batch()
  extra = _extras(mask)
  result = compiled[name](logp, old, adv, mask, extra)
  _check_outputs(name, result, mask)
  # [B] advantages equal their [B, T] broadcast.
  adv_bt = np.repeat(adv[:, None], T, axis=1)
  result_bt = compiled[name](logp, old, adv_bt, mask, extra)
  np.testing.assert_allclose(
      result_bt[0][1][0], result[0][1][0], rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize("name", POLICY_LOSSES)
def test_padding_garbage_is_ignored(name, compiled):
  logp, old, adv, mask = _batch(seed=1)
  extra = _extras(mask, seed=1)
  clean = compiled[name](logp, old, adv, mask, extra)
  pad = mask == 0
  dirty_extra = dict(extra)
  for key in ("entropy", "entropy_nucleus"):
    dirty_extra[key] = np.where(pad, np.nan, extra[key]).astype(np.float32)
  dirty = compiled[name](
      np.where(pad, np.nan, logp).astype(np.float32),
      np.where(pad, np.inf, old).astype(np.float32),
      adv, mask, dirty_extra,
  )
  _check_outputs(name, dirty, mask)
  np.testing.assert_allclose(dirty[0][0], clean[0][0], rtol=1e-6)
  np.testing.assert_allclose(dirty[1], clean[1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", POLICY_LOSSES)
@pytest.mark.parametrize("case", ["extreme_ratio", "zero_adv", "all_masked"])
def test_degenerate_inputs_stay_finite(name, case, compiled):
  logp, old, adv, mask = _batch(seed=2)
  extra = _extras(mask, seed=2)
  if case == "extreme_ratio":  # log-ratios of ±50
    signs = np.where(np.arange(B * T).reshape(B, T) % 2, 50.0, -50.0)
    old = (logp - signs).astype(np.float32)
  elif case == "zero_adv":
    adv = np.zeros_like(adv)
  else:
    mask = np.zeros_like(mask)
  result = compiled[name](logp, old, adv, mask, extra)
  _check_outputs(name, result, mask)
  if case == "all_masked":
    assert result[0][0] == 0.0


def test_missing_required_extras_raise_clear_errors():
  logp, old, adv, mask = _batch()
  args = dict(logp=logp, old_logp=old, advantages=adv, mask=mask)
  for name, extra in [
      ("forking_tokens", "entropy"), ("steer", "entropy"),
      ("clip_cov", "rng"), ("siren", "entropy_nucleus"),
      ("drpo", "correctness"),
  ]:
    with pytest.raises(ValueError, match=extra):
      getattr(losses, name)()(**args)
  with pytest.raises(ValueError, match="entropy_anchor"):
    losses.siren()(**args, entropy_nucleus=logp)


def test_bad_shapes_and_hparams_raise():
  logp, old, adv, mask = _batch()
  with pytest.raises(ValueError, match="advantages"):
    losses.ppo_clip()(logp=logp, old_logp=old, advantages=adv[:2], mask=mask)
  with pytest.raises(ValueError, match="mask"):
    losses.ppo_clip()(logp=logp, old_logp=old, advantages=adv, mask=mask[:2])
  with pytest.raises(ValueError, match="dual_clip"):
    losses.ppo_clip(dual_clip=0.5)
  with pytest.raises(ValueError, match="top_fraction"):
    losses.forking_tokens(top_fraction=0.0)
  with pytest.raises(ValueError, match="lambda_min"):
    losses.steer(lambda_min=1.5, lambda_max=1.2)
  with pytest.raises(TypeError, match="static"):
    losses.ppo_clip(clip_low=jnp.float32(0.2))


def test_policy_loss_is_hashable_and_static():
  assert losses.ppo_clip(clip_high=0.28) == losses.ppo_clip(clip_high=0.28)
  assert hash(losses.gspo()) == hash(losses.gspo())
  assert losses.ppo_clip() != losses.ppo_clip(clip_high=0.28)


@pytest.mark.parametrize("name", KL_ESTIMATORS)
def test_kl_contract(name):
  logp, ref, _, _ = _batch(seed=3)
  fn = getattr(losses, name)
  out = jax.jit(fn)(logp, ref)
  assert out.shape == (B, T) and out.dtype == jnp.float32
  extreme = jax.jit(jax.grad(lambda x: jnp.sum(fn(x, ref))))(ref + 50.0)
  assert np.isfinite(fn(ref - 50.0, ref)).all() and np.isfinite(extreme).all()


@pytest.mark.parametrize("name", AGGREGATIONS)
def test_aggregation_contract(name):
  values, _, _, mask = _batch(seed=4)
  fn = getattr(losses, name)
  out = jax.jit(fn)(values, mask)
  assert out.shape == () and out.dtype == jnp.float32
  assert fn(values, np.zeros_like(mask)) == 0.0
  # Padding garbage does not leak.
  dirty = np.where(mask > 0, values, np.nan).astype(np.float32)
  np.testing.assert_allclose(fn(dirty, mask), out, rtol=1e-6)


@pytest.mark.parametrize("name", AGGREGATIONS)
def test_microbatch_sum_equals_full_batch(name):
  # Accumulation / sharding invariance: with the GLOBAL counts passed to
  # each micro-batch, Σ_micro agg(micro) == agg(full batch).
  values, _, _, mask = _batch(seed=5)
  fn = getattr(losses, name)
  num_tokens, num_sequences = losses.counts(mask)
  kwargs = {
      "token_mean": {"num_tokens": num_tokens},
      "seq_mean_token_mean": {"num_sequences": num_sequences},
      "seq_mean_token_sum": {"num_sequences": num_sequences},
      "seq_mean_token_sum_norm": {"loss_scale_factor": 16.0},
  }[name]
  full = fn(values, mask, **kwargs)
  # On the whole batch the global counts are the local ones.
  local = {k: v for k, v in kwargs.items() if k == "loss_scale_factor"}
  np.testing.assert_allclose(full, fn(values, mask, **local), rtol=1e-6)
  for split in ([1, 3], [2, 2], [1, 1, 1, 1]):
    bounds = np.cumsum([0] + split)
    parts = [
        fn(values[lo:hi], mask[lo:hi], **kwargs)
        for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    np.testing.assert_allclose(sum(parts), full, rtol=1e-5, atol=1e-7)


def test_token_selection_ignores_padding(compiled):
  # The top-k / quantile / min-max statistics use valid tokens only:
  # changing padded entries (even to huge entropies) changes nothing.
  logp, old, adv, mask = _batch(seed=6)
  extra = _extras(mask, seed=6)
  loud = dict(extra)
  for key in ("entropy", "entropy_nucleus"):
    loud[key] = np.where(mask > 0, extra[key], 1e6).astype(np.float32)
  for name in ("forking_tokens", "steer", "siren"):
    quiet_out = compiled[name](logp, old, adv, mask, extra)[0][1][0]
    loud_out = compiled[name](logp, old, adv, mask, loud)[0][1][0]
    np.testing.assert_allclose(quiet_out, loud_out, rtol=1e-6, err_msg=name)


def test_per_token_loss_accumulates_over_microbatches():
  # A per-token surrogate aggregated with the global token count gives the
  # same loss and gradient whether computed on the batch or on two halves.
  logp, old, adv, mask = _batch(seed=7)
  loss = losses.ppo_clip(clip_high=0.28, dual_clip=10.0)
  num_tokens, _ = losses.counts(mask)

  def total(lp, rows):
    per_token, _ = loss(
        logp=lp[rows], old_logp=old[rows], advantages=adv[rows],
        mask=mask[rows],
    )
    return losses.token_mean(per_token, mask[rows], num_tokens=num_tokens)

  grad_fn = jax.value_and_grad(total)
  full_value, full_grad = grad_fn(logp, slice(0, B))
  parts = [grad_fn(logp, slice(0, 2)), grad_fn(logp, slice(2, B))]
  np.testing.assert_allclose(parts[0][0] + parts[1][0], full_value,
                             rtol=1e-5)
  np.testing.assert_allclose(parts[0][1] + parts[1][1], full_grad,
                             rtol=1e-5, atol=1e-7)


def test_batch_wide_selection_is_global_under_sharding(compiled):
  # With the batch sharded over devices inside jit, the top-k of 80/20 is
  # taken over the global batch: the result equals the unsharded one.
  logp, old, adv, mask = _batch(seed=8)
  extra = _extras(mask, seed=8)
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:B]), ("data",))
  rows = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec("data")
  )
  put = lambda x: jax.device_put(x, rows)
  sharded_extra = dict(extra, entropy=put(extra["entropy"]))
  want = compiled["forking_tokens"](logp, old, adv, mask, extra)
  got = compiled["forking_tokens"](
      put(logp), put(old), put(adv), put(mask), sharded_extra
  )
  np.testing.assert_allclose(got[0][1][0], want[0][1][0], rtol=1e-6)
  np.testing.assert_allclose(got[1], want[1], rtol=1e-6, atol=1e-8)


def test_exported_helpers_jit():
  logp, old, adv, mask = _batch(seed=9)
  extra = _extras(mask, seed=9)
  adv_bt = np.repeat(adv[:, None], T, axis=1)
  logits = np.random.default_rng(9).standard_normal((B, T, 5))
  outputs = {
      "entropy_bonus": jax.jit(
          lambda h, m: losses.entropy_bonus(h, m, coef=0.01)
      )(extra["entropy"], mask),
      "top_p_entropy": jax.jit(logprobs.top_p_entropy)(logits),
      "peak_entropy_mask": jax.jit(losses.peak_entropy_mask)(
          extra["entropy"], mask
      ),
      "token_covariance": jax.jit(losses.token_covariance)(
          adv_bt, logp, mask
      ),
      "steer_weights": jax.jit(
          lambda *a: losses.steer_weights(
              *a, lambda_min=0.8, lambda_max=1.2, linear=True
          )
      )(logp, old, adv_bt, extra["entropy"], mask),
      "clipped_surrogate": jax.jit(
          lambda r, a: losses.clipped_surrogate(
              r, a, clip_low=0.2, clip_high=0.28, dual_clip=3.0
          ).loss_BT
      )(np.exp(logp - old), adv_bt),
  }
  for name, out in outputs.items():
    assert out.shape == (B, T), name
  assert jax.jit(losses.selected_entropy)(extra["entropy"], mask).shape == ()
  num_tokens, num_sequences = jax.jit(losses.counts)(mask)
  assert (num_tokens, num_sequences) == (12.0, 3.0)


def test_low_precision_inputs_give_float32():
  logp, old, adv, mask = _batch(seed=10)
  bf16 = lambda x: jnp.asarray(x, jnp.bfloat16)
  per_token, metrics = losses.ppo_clip()(
      logp=bf16(logp), old_logp=bf16(old), advantages=bf16(adv), mask=mask
  )
  assert per_token.dtype == jnp.float32
  assert all(m.dtype == jnp.float32 for m in metrics.values())
