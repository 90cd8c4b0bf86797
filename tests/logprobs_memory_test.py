"""Memory-saving log-probs and decoder forms, equal to the plain ones.

Chunked log-probs (head + softmax over blocks of positions), rematerialised
decoder layers, and parameters stored in another dtype than the compute.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mathrl import logprobs
from mathrl import models

P, G, L, T = 2, 2, 4, 7


def _batch():
  k1, k2 = jax.random.split(jax.random.PRNGKey(3))
  # Rows 2g and 2g + 1 share a prompt (as in a GRPO rollout).
  prompt_PL = jax.random.randint(k1, (P, L), 3, 200)
  prompt_BL = jnp.repeat(prompt_PL, G, axis=0)
  prompt_mask_BL = jnp.ones((P * G, L), jnp.int32).at[:2, :1].set(0)
  completion_BT = jax.random.randint(k2, (P * G, T), 3, 200)
  lengths_B = jnp.array([7, 3, 1, 5])
  mask_BT = (jnp.arange(T)[None] < lengths_B[:, None]).astype(jnp.int32)
  return prompt_BL, prompt_mask_BL, completion_BT, mask_BT


def _model(**kw):
  return models.Transformer(models.presets.TINY, rngs=nnx.Rngs(0), **kw)


def _logp_sum(graphdef, params, group_size, chunk_size, nucleus=None):
  out = logprobs.completion_logprobs(
      graphdef, params, *_batch(), group_size=group_size, temperature=0.7,
      chunk_size=chunk_size, nucleus_top_p=nucleus)
  return sum(jnp.sum(x) for x in out), out


@pytest.mark.parametrize("group_size", [1, G])
def test_chunked_logprobs_and_gradients_equal_plain(group_size):
  graphdef, params = nnx.split(_model())
  fn = jax.jit(jax.value_and_grad(_logp_sum, argnums=1, has_aux=True),
               static_argnums=(0, 2, 3, 4))
  # Chunks of 3 over T - 0 = 7 positions: blocks 3 + 3 + 1 (padded).
  (_, plain), g_plain = fn(graphdef, params, group_size, None, 0.9)
  (_, chunked), g_chunked = fn(graphdef, params, group_size, 3, 0.9)
  for a, b in zip(plain, chunked):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  assert float(jnp.abs(plain[0]).sum()) > 0
  jax.tree.map(lambda a, b: np.testing.assert_allclose(
      a, b, atol=1e-5, rtol=1e-4), g_plain, g_chunked)


def test_chunk_size_must_be_positive():
  graphdef, params = nnx.split(_model())
  with pytest.raises(ValueError, match="chunk_size"):
    logprobs.completion_logprobs(graphdef, params, *_batch(), chunk_size=0)


def test_remat_gives_the_same_gradients():
  plain_def, params = nnx.split(_model())
  remat_def, remat_params = nnx.split(_model(remat=True))
  grad = jax.jit(jax.grad(lambda g, p, n: _logp_sum(g, p, n, None)[0],
                          argnums=1), static_argnums=(0, 2))
  for group_size in (1, G):  # per-row and shared-prompt forwards
    jax.tree.map(lambda a, b: np.testing.assert_allclose(
        a, b, atol=1e-6, rtol=1e-5),
                 grad(plain_def, params, group_size),
                 grad(remat_def, remat_params, group_size))


def test_unrolled_layers_give_the_same_logprobs_and_gradients():
  # scan_layers=False unrolls the layer loop of both cache-free forwards
  # (per row and shared prompt), with and without remat.
  grad = jax.jit(jax.value_and_grad(lambda g, p, n: _logp_sum(g, p, n, None)[0],
                                    argnums=1), static_argnums=(0, 2))
  scanned_def, params = nnx.split(_model())
  for kw in (dict(scan_layers=False), dict(scan_layers=False, remat=True)):
    unrolled_def, _ = nnx.split(_model(**kw))
    for group_size in (1, G):
      want, got = grad(scanned_def, params, group_size), grad(
          unrolled_def, params, group_size)
      jax.tree.map(lambda a, b: np.testing.assert_allclose(
          a, b, atol=1e-6, rtol=1e-5), want, got)
  # ...and the unrolled program has lost both layer loops of the scanned
  # one (the forward's and its transpose; the other loops are the traced
  # random batch's threefry).
  loops = lambda g, n: grad.lower(g, params, n).as_text().count(
      "stablehlo.while")
  for group_size in (1, G):
    assert loops(scanned_def, group_size) - loops(
        unrolled_def, group_size) == 2


def test_param_dtype_stores_float32_and_computes_in_bfloat16():
  model = _model(dtype=jnp.bfloat16, param_dtype=jnp.float32)
  graphdef, params = nnx.split(model)
  assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype("float32")}
  bf16_def, _ = nnx.split(_model(dtype=jnp.bfloat16))
  bf16_params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  grads = jax.jit(jax.grad(lambda p: _logp_sum(graphdef, p, 1, None)[0]))(
      params)
  # Gradients reach the float32 master weights in float32...
  assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype("float32")}
  # ...and the forward is that of a bf16 model holding the bf16-rounded
  # weights: the same log-probs, bit for bit.
  logp = jax.jit(lambda g, p: _logp_sum(g, p, 1, None)[1][0],
                 static_argnums=0)
  mixed, pure = logp(graphdef, params), logp(bf16_def, bf16_params)
  np.testing.assert_array_equal(np.asarray(mixed), np.asarray(pure))


def test_a_remat_model_samples_like_the_plain_one():
  # The sampler slices the layers into blocks outside its decode loop; a
  # rematerialised model must decode them there (the cached path) and give
  # the plain model's tokens.
  from mathrl import sampling  # pylint: disable=g-import-not-at-top
  prompt_BL, prompt_mask_BL, _, _ = _batch()
  kw = dict(rng=jax.random.PRNGKey(0), max_new_tokens=5, eos_ids=(1,),
            method=sampling.Greedy())
  plain = sampling.generate(_model(), prompt_BL, prompt_mask_BL, **kw)
  remat = sampling.generate(_model(remat=True), prompt_BL, prompt_mask_BL,
                            **kw)
  np.testing.assert_array_equal(plain.tokens_BT, remat.tokens_BT)
  np.testing.assert_allclose(plain.logprobs_BT, remat.logprobs_BT, atol=1e-6)
