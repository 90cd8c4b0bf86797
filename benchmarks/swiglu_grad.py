"""The SwiGLU MLP's gradient: autodiff (the library's) against hand-written.

An experiment, not adopted (see benchmarks/RESULTS.md, "The SwiGLU MLP's
gradient"): the library's `layers.MLP` is differentiated by JAX. This
times the gradient the GRPO update takes, `value_and_grad` of the summed
completion log-probs (the shared-prompt forward, unrolled layers, fp32),
on the peers' workload batch (`benchmarks/peers/workload.py`: P prompts ×
G samples, `max_new` new tokens), with three versions of the MLP's
gradient, the compiled programs alternating in one process:

- autodiff: the library's MLP as it is;
- 2-D VJP: the same forward with a hand-written VJP whose matmuls run
  over the B·S positions flattened into one axis;
- 3-D VJP: the same hand-written VJP with [B, S, ...] einsums (the batch
  axis, and its sharding, kept).

`--update` times the whole jitted train step (reference forward, loss,
AdamW) instead.

  python benchmarks/peers/make_checkpoint.py /tmp/tinyqwen
  python benchmarks/swiglu_grad.py --model /tmp/tinyqwen --rounds 16
"""

import argparse
import contextlib
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "peers"))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import transformers
from flax import nnx

import grpo_step  # pylint: disable=g-bad-import-order
from mathrl import advantages
from mathrl import logprobs
from mathrl import models
from mathrl import optim
from mathrl import rollout as rollout_lib
from mathrl import sampling
from mathrl import train_step as train_step_lib
from mathrl.models import layers


def swiglu_forward(x_BSD, gate_DF, up_DF, down_FD):
  """y = (silu(x·W_g) ⊙ x·W_u)·W_d (arXiv:2002.05202), as `layers.MLP`."""
  gate_up_BS2F = jnp.einsum("BSD,DEF->BSEF", x_BSD,
                            jnp.stack([gate_DF, up_DF], 1))
  hidden_BSF = jax.nn.silu(gate_up_BS2F[:, :, 0]) * gate_up_BS2F[:, :, 1]
  return jnp.einsum("BSF,FD->BSD", hidden_BSF, down_FD)


def _vjp(gate_up_BSF2, x_BSD, dy_BSD, w_DF2, down_FD, flat):
  """∂L/∂(x, W_g, W_u, W_d) of SwiGLU from its saved gate/up outputs.

  With z = ∂L/∂y, h = silu(g) ⊙ u: ∂L/∂h = z·W_dᵀ, ∂L/∂g = ∂L/∂h ⊙ u ⊙
  σ(g)(1 + g(1 − σ(g))), ∂L/∂u = ∂L/∂h ⊙ silu(g), ∂L/∂W_d = hᵀz,
  ∂L/∂[W_g W_u] = xᵀ[∂L/∂g ∂L/∂u], ∂L/∂x = [∂L/∂g ∂L/∂u]·[W_g W_u]ᵀ;
  gate and up interleaved per feature (`w_DF2` = [W_g W_u] as [D, F, 2]).
  `flat`: the matmuls over B·S positions as 2-D arrays, else [B, S, ...]
  einsums.
  """
  b, s, d = x_BSD.shape
  gate, up = gate_up_BSF2[..., 0], gate_up_BSF2[..., 1]
  sigmoid = jax.nn.sigmoid(gate)
  silu = gate * sigmoid
  dhidden = jnp.einsum("BSD,FD->BSF", dy_BSD, down_FD)
  dgate_up_BSF2 = jnp.stack(
      [dhidden * up * sigmoid * (1 + gate * (1 - sigmoid)), dhidden * silu],
      -1)
  if flat:
    dgu_MK, x_MD = dgate_up_BSF2.reshape(b * s, -1), x_BSD.reshape(b * s, d)
    dx = (dgu_MK @ w_DF2.reshape(d, -1).T).reshape(b, s, d)
    dw_DF2 = (x_MD.T @ dgu_MK).reshape(w_DF2.shape)
    ddown = (silu * up).reshape(b * s, -1).T @ dy_BSD.reshape(b * s, d)
  else:
    dx = jnp.einsum("BSFE,DFE->BSD", dgate_up_BSF2, w_DF2)
    dw_DF2 = jnp.einsum("BSD,BSFE->DFE", x_BSD, dgate_up_BSF2)
    ddown = jnp.einsum("BSF,BSD->FD", silu * up, dy_BSD)
  return dx, dw_DF2[..., 0], dw_DF2[..., 1], ddown


def hand_written(flat: bool):
  """`swiglu_forward` with the hand-written VJP (`_vjp`)."""
  fn = jax.custom_vjp(swiglu_forward)

  def fwd(x_BSD, gate_DF, up_DF, down_FD):
    w_DF2 = jnp.stack([gate_DF, up_DF], -1)
    gate_up_BSF2 = jnp.einsum("BSD,DFE->BSFE", x_BSD, w_DF2)
    hidden_BSF = jax.nn.silu(gate_up_BSF2[..., 0]) * gate_up_BSF2[..., 1]
    return (jnp.einsum("BSF,FD->BSD", hidden_BSF, down_FD),
            (gate_up_BSF2, x_BSD, w_DF2, down_FD))

  def bwd(res, dy_BSD):
    gate_up_BSF2, x_BSD, w_DF2, down_FD = res
    return _vjp(gate_up_BSF2, x_BSD, dy_BSD, w_DF2, down_FD, flat=flat)

  fn.defvjp(fwd, bwd)
  return fn


@contextlib.contextmanager
def mlp_as(swiglu):
  """Inside: `layers.MLP` computes `swiglu(x, W_g, W_u, W_d)` (tracing)."""
  library = layers.MLP.__call__
  layers.MLP.__call__ = lambda self, x: swiglu(
      x, self.gate_kernel[...], self.up_kernel[...], self.down_kernel[...])
  try:
    yield
  finally:
    layers.MLP.__call__ = library


def _rollout(a, model, tok):
  """One rollout of the workload (P prompts × G samples, `max_new`)."""
  args = argparse.Namespace(gsm8k=None, prompts=a.prompts, G=a.G)
  sampler = rollout_lib.Sampler(
      method=sampling.Temperature(1.0), max_new_tokens=a.max_new,
      eos_ids=(tok.eos_token_id,))
  batch, _, _ = rollout_lib.collect(
      model, grpo_step._prompt_batches(args, tok),  # pylint: disable=protected-access
      rng=jax.random.PRNGKey(1), sampler=sampler, tokenizer=tok,
      reward_set=grpo_step.workload_rewards(args),
      dynamic_sampling=False, max_rounds=1, multi_reward=False, progress=0.0)
  return batch


def _program(a, graphdef, params, batch):
  """(compiled, args): the gradient (or, with `--update`, the train step).

  Traced afresh at each call, so a call inside `mlp_as(...)` compiles that
  MLP (jit would reuse the trace of an earlier function).
  """
  if a.update:
    optimizer = optim.adamw(learning_rate=1e-5, total_steps=100,
                            max_grad_norm=1.0)
    adv_tx = advantages.grpo()
    state = train_step_lib.init_train_state(
        params, optimizer, adv_tx.init(jnp.zeros((a.prompts, a.G))),
        jax.random.key_data(jax.random.PRNGKey(0)))
    fn = grpo_step.workload_train_step(graphdef, optimizer, adv_tx)
    args = (state, batch, jax.tree.map(jnp.copy, params))
  else:
    def logp_sum(p):
      logp_BT = logprobs.completion_logprobs(
          graphdef, p, batch.prompt_tokens_BL, batch.prompt_mask_BL,
          batch.completion_tokens_BT, batch.completion_mask_BT,
          group_size=a.G, temperature=1.0)[0]
      return jnp.sum(logp_BT * batch.completion_mask_BT)
    fn = jax.value_and_grad(logp_sum)
    args = (params,)
  return jax.jit(fn).lower(*args).compile(), args


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--model", required=True)
  p.add_argument("--prompts", type=int, default=8)
  p.add_argument("--G", type=int, default=8)
  p.add_argument("--max_new", type=int, default=32)
  p.add_argument("--rounds", type=int, default=16)
  p.add_argument("--update", action="store_true",
                 help="time the whole train step instead of the gradient")
  a = p.parse_args()
  tok = transformers.AutoTokenizer.from_pretrained(a.model)
  model = models.from_pretrained(a.model, dtype=jnp.float32,
                                 scan_layers=False)
  graphdef, params = nnx.split(model)
  batch = _rollout(a, model, tok)
  programs = {"autodiff": _program(a, graphdef, params, batch)}
  for name, flat in (("2-D VJP", True), ("3-D VJP", False)):
    with mlp_as(hand_written(flat)):
      programs[name] = _program(a, graphdef, params, batch)
  times = {name: [] for name in programs}
  for _ in range(a.rounds):
    for name, (compiled, args) in programs.items():
      for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times[name].append(time.perf_counter() - t)
  base = statistics.median(times["autodiff"])
  for name, ts in times.items():
    print(f"{name:10s} median {statistics.median(ts) * 1e3:7.1f} ms"
          f"  autodiff / this {base / statistics.median(ts):.3f}")


if __name__ == "__main__":
  main()
