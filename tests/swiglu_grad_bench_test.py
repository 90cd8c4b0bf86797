"""`benchmarks/swiglu_grad.py`: the hand-written VJPs it times are right.

The benchmark compares autodiff's gradient of the SwiGLU MLP against two
hand-written VJPs (RESULTS.md quotes its timings); these check that both
give autodiff's values, on a golden case and on random inputs, and that
each MLP the benchmark differentiates computes the library's model.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

_BENCH = os.path.join(os.path.dirname(os.path.dirname(__file__)),
                      "benchmarks")
sys.path.insert(0, os.path.join(_BENCH, "peers"))
sys.path.insert(0, _BENCH)

import swiglu_grad  # noqa: E402  pylint: disable=g-import-not-at-top
from mathrl import models  # noqa: E402  pylint: disable=g-import-not-at-top


def _grads(fn, *args):
  return jax.grad(lambda *a: jnp.sum(fn(*a)), argnums=(0, 1, 2, 3))(*args)


@pytest.mark.parametrize("flat", [True, False], ids=["2-D", "3-D"])
def test_hand_written_vjp_golden(flat):
  # D = F = 1, x = 1, W_g = 1, W_u = 2, W_d = 3: y = 3·silu(x·W_g)·2x.
  # σ(1) = 0.7310586 = silu(1); silu'(1) = σ(1)(1 + 1 − σ(1)) = 0.9276705.
  #   ∂y/∂x   = 6·(silu'(1) + silu(1)) = 9.9523746
  #   ∂y/∂W_g = 3·2·silu'(1)           = 5.5660229
  #   ∂y/∂W_u = 3·silu(1)              = 2.1931758
  #   ∂y/∂W_d = 2·silu(1)              = 1.4621172
  x, gate, up, down = (jnp.full(shape, v, jnp.float32) for shape, v in (
      ((1, 1, 1), 1.0), ((1, 1), 1.0), ((1, 1), 2.0), ((1, 1), 3.0)))
  grads = _grads(swiglu_grad.hand_written(flat), x, gate, up, down)
  np.testing.assert_allclose([float(g.ravel()[0]) for g in grads],
                             [9.9523746, 5.5660229, 2.1931758, 1.4621172],
                             rtol=1e-6)


@pytest.mark.parametrize("flat", [True, False], ids=["2-D", "3-D"])
def test_hand_written_vjp_equals_autodiff(flat):
  keys = jax.random.split(jax.random.PRNGKey(0), 5)
  args = (jax.random.normal(keys[0], (3, 5, 16)),
          0.3 * jax.random.normal(keys[1], (16, 24)),
          0.3 * jax.random.normal(keys[2], (16, 24)),
          0.3 * jax.random.normal(keys[3], (24, 16)))
  z_BSD = jax.random.normal(keys[4], (3, 5, 16))
  loss = lambda fn: lambda *a: fn(*a) * z_BSD
  hand = _grads(loss(swiglu_grad.hand_written(flat)), *args)
  auto = _grads(loss(swiglu_grad.swiglu_forward), *args)
  for name, h, a in zip(("x", "gate", "up", "down"), hand, auto):
    np.testing.assert_allclose(h, a, atol=1e-5 * float(jnp.abs(a).max()),
                               err_msg=name)


def test_every_benchmarked_mlp_computes_the_library_model(tiny_checkpoints):
  model = models.from_pretrained(tiny_checkpoints["qwen2"],
                                 dtype=jnp.float32, scan_layers=False)
  graphdef, state = nnx.split(model)
  tokens_BS = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 7)))

  def logits():  # traced afresh, so inside mlp_as it runs that MLP
    return jax.jit(lambda s: nnx.merge(graphdef, s)(tokens_BS))(state)

  expected = logits()
  for swiglu in (swiglu_grad.swiglu_forward, swiglu_grad.hand_written(True),
                 swiglu_grad.hand_written(False)):
    with swiglu_grad.mlp_as(swiglu):
      np.testing.assert_allclose(logits(), expected, atol=1e-5)
  np.testing.assert_array_equal(logits(), expected)  # the library's again
