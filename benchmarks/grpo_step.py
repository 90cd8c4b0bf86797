"""Wall time of a full GRPO step in mathrl, on the peers' CPU workload.

The workload of `benchmarks/peers/workload.py`, which TRL's GRPOTrainer
(`peers/trl_step.py`) and Tunix's GRPOLearner (`peers/tunix_step.py`) run
too: synthetic addition prompts, reward 1 when the first integer of the
completion is the sum, P prompts × G samples, `max_new` new tokens
(`--stop_ids`: lengths that vary, see workload.py), temperature 1, lr
1e-5, KL β = 0.04 (k3), fp32, CPU. A step is generation + reward +
update (reference and old log-probs included); the median of
the steps after the first (which compiles) is printed as `median_step_s`,
with the medians of its generation and update parts.

`--trim` (default, as the trainer's `rl.trim_completions`): the update
runs over the batch's longest completion rounded up to a bucket
(`mathrl.trim`, buckets b, 2b, ... up to `max_new`, b = `--chunk` or 16),
not over all `max_new` positions; `--no-trim` for the padded update. A
step whose bucket is new compiles the update again; each step's width is
printed.
`benchmarks/peers/compare.py` runs this and the peers in one run.

`--gsm8k FILE`: the workload's GSM8K variant for a real checkpoint
(chat-templated questions, boxed-answer reward, rows that end at the
model's EOS; see workload.py).

  python benchmarks/peers/make_checkpoint.py /tmp/tinyqwen
  python benchmarks/grpo_step.py --model /tmp/tinyqwen --prompts 8 --G 8 \\
      --max_new 32 --steps 6

A real checkpoint at long completions needs the memory settings
(`--chunk 32 --remat`, log-probs over blocks of 32 positions and
rematerialised layers, see `benchmarks/memory.py`): SmolLM2-135M at
P = 4, G = 8, 256 new tokens asks XLA for 27.6 GB with the defaults.
"""

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "peers"))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import transformers
from flax import nnx

from mathrl import advantages
from mathrl import losses
from mathrl import models
from mathrl import optim
from mathrl import rewards
from mathrl import rollout as rollout_lib
from mathrl import sampling
from mathrl import sharding
from mathrl import train_step as train_step_lib
from mathrl import trim
from mathrl.data import pipeline
from mathrl.data import prompts

import workload  # pylint: disable=g-bad-import-order


def first_integer_reward(completions, answers, **extra):
  """1 if the first integer of the completion is the gold sum (the peers' rule)."""
  del extra
  return np.asarray([workload.first_integer_correct(c, a)
                     for c, a in zip(completions, answers)], np.float32)


def _parse_args():
  p = argparse.ArgumentParser()
  p.add_argument("--model", required=True)
  p.add_argument("--steps", type=int, default=6)
  p.add_argument("--prompts", type=int, default=8)
  p.add_argument("--G", type=int, default=8)
  p.add_argument("--max_new", type=int, default=32)
  p.add_argument("--gsm8k", default=None,
                 help="GSM8K jsonl: chat prompts, boxed-answer reward"
                      " (workload.py)")
  p.add_argument("--stop_ids", type=int, default=0,
                 help="stop tokens besides EOS (workload.stop_ids)")
  p.add_argument("--share_prompts", action=argparse.BooleanOptionalAction,
                 default=True, help="run each group's prompt once in the"
                 " update's forward passes (rl.share_prompts)")
  p.add_argument("--chunk", type=int, default=0,
                 help="log-probs over blocks of this many positions"
                 " (model.logits_chunk_size; 0: all at once)")
  p.add_argument("--remat", action=argparse.BooleanOptionalAction,
                 default=False, help="rematerialise each decoder layer in"
                 " the backward pass (model.remat)")
  p.add_argument("--scan_layers", action=argparse.BooleanOptionalAction,
                 default=False, help="loop over the layers in the update's"
                 " forward passes (model.scan_layers, the library default;"
                 " faster to compile); unrolled by default here, the faster"
                 " step on CPU for this small model")
  p.add_argument("--trim", action=argparse.BooleanOptionalAction,
                 default=True, help="cut the update's completion axis to"
                 " the batch's bucket (rl.trim_completions)")
  return p.parse_args()


def boxed_reward(completions, answers, **extra):
  """1 if the last \\boxed{} holds the gold number (`--gsm8k`'s rule)."""
  del extra
  return np.asarray([workload.boxed_correct(c, a)
                     for c, a in zip(completions, answers)], np.float32)


def _prompt_batches(a, tok):
  """The workload's prompts as batches of P prompts x G samples.

  The addition prompts as the peers' plain text (not the tokenizer's
  trivial chat template), or `--gsm8k`'s questions through the
  checkpoint's chat template (the library's default `PromptTemplate` is
  the question, then `workload.BOXED_INSTRUCTION`).
  """
  if a.gsm8k:
    pairs = workload.gsm8k_rows(a.gsm8k)
    template = prompts.PromptTemplate()
  else:
    pairs = workload.addition_rows()
    template = prompts.PromptTemplate(
        plain=workload.prompt_text("{question}"), use_chat_template=False)
  rows = [{"question": q, "answer": ans, "id": str(i)}
          for i, (q, ans) in enumerate(pairs)]
  chat = prompts.uses_chat_template(tok, template)
  longest = max(len(prompts.encode(prompts.render(r["question"], tok,
                                                  template), tok, chat=chat))
                for r in rows)
  return pipeline.PromptIterator(
      rows, tokenizer=tok, template=template, prompts_per_batch=a.prompts,
      group_size=a.G, buckets=(longest,), seed=0, shard_index=0,
      shard_count=1)


def workload_rewards(a):
  """The workload's reward: `--gsm8k`'s boxed answer, else the first integer."""
  return rewards.RewardSet(
      [("correctness", boxed_reward if a.gsm8k else first_integer_reward,
        1.0)])


def workload_train_step(graphdef, optimizer, adv_tx, *, share_prompts=True,
                        chunk=None):
  """The workload's GRPO update (unjitted): PPO-clip with token mean, k3 KL
  at β = 0.04 against the reference, one update per batch."""
  return train_step_lib.make_train_step(
      graphdef, optimizer, adv_tx, policy_loss=losses.ppo_clip(),
      aggregate=losses.token_mean, kl_estimator=losses.kl_k3,
      kl_coef=workload.KL_COEF,
      recompute_old_logp=False,  # one update per batch, as TRL's default
      share_prompts=share_prompts, logits_chunk_size=chunk)


def main():
  a = _parse_args()
  tok = transformers.AutoTokenizer.from_pretrained(a.model)
  batches = _prompt_batches(a, tok)
  model = models.from_pretrained(a.model, dtype=jnp.float32, remat=a.remat,
                                 scan_layers=a.scan_layers)
  graphdef, params = nnx.split(model)
  optimizer = optim.adamw(learning_rate=1e-5, total_steps=a.steps,
                          max_grad_norm=1.0)
  adv_tx = advantages.grpo()
  mesh = sharding.make_mesh(data=-1)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  state_sh = train_step_lib.state_shardings(
      train_step_lib.init_train_state(
          params, optimizer, adv_tx.init(jnp.zeros((a.prompts, a.G))),
          jax.random.key_data(jax.random.PRNGKey(0))),
      optimizer, mesh, sharding.TRAIN_RULES)
  step_fn = jax.jit(workload_train_step(
      graphdef, optimizer, adv_tx, share_prompts=a.share_prompts,
      chunk=a.chunk or None), out_shardings=(state_sh, replicated),
      donate_argnums=0)
  state = train_step_lib.init_train_state(
      params, optimizer, adv_tx.init(jnp.zeros((a.prompts, a.G))),
      jax.random.key_data(jax.random.PRNGKey(0)))
  state = jax.device_put(state, state_sh)
  ref_params = jax.tree.map(jnp.copy, params)
  reward_set = workload_rewards(a)
  sampler = rollout_lib.Sampler(
      method=sampling.Temperature(1.0), max_new_tokens=a.max_new,
      eos_ids=tuple(workload.stop_ids(len(tok), a.stop_ids,
                                      tok.eos_token_id)))

  buckets = (trim.default_buckets(a.max_new, a.chunk or 16) if a.trim
             else ())
  times, generate_s, update_s, lengths = [], [], [], []
  for step in range(a.steps):
    t0 = time.perf_counter()
    batch, _, info = rollout_lib.collect(
        nnx.merge(graphdef, state.params), batches,
        rng=jax.random.fold_in(jax.random.PRNGKey(1), step), sampler=sampler,
        tokenizer=tok, reward_set=reward_set, dynamic_sampling=False,
        max_rounds=1, multi_reward=False, progress=step / a.steps)
    batch, width = trim.to_bucket(batch, buckets)
    t1 = time.perf_counter()
    state, metrics = step_fn(state, batch, ref_params)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    generate_s.append(info["generate_seconds"])
    update_s.append(time.perf_counter() - t1)
    lengths.append(info["generated_length_mean"])
    print(f"step {step}: {times[-1]:.3f}s reward {info['accuracy']:.3f}"
          f" (generate {info['generate_seconds']:.3f}s,"
          f" reward {info['reward_seconds']:.3f}s, update"
          f" {update_s[-1]:.3f}s at width {width},"
          f" mean length {lengths[-1]:.1f})", flush=True)
  print("median_generate_s", round(statistics.median(generate_s[1:]), 4))
  print("median_update_s", round(statistics.median(update_s[1:]), 4))
  workload.report(times, statistics.mean(lengths))


if __name__ == "__main__":
  main()
