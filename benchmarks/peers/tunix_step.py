"""Seconds per GRPO step of Tunix's GRPOLearner on the common workload.

Runs in its own virtual environment (see benchmarks/RESULTS.md):

  python benchmarks/peers/tunix_step.py /tmp/tinyqwen --steps 6

Policy, reference and rollout share one CPU device ("colocated"), with
Tunix's own JAX sampler (`rollout_engine="vanilla"`: jitted prefill and a
while-loop decode over a KV cache). A step is one pass of the learner:
rollout of P × G completions, reference log-probs, reward and group
advantages, one optimizer update. The learner pulls its next batch only
when the previous step is done, so the time between two pulls of the
batch iterator is one step. Prints `median_step_s` (median of the steps
after the first) and `median_generate_s`, the same median of the time
spent in the cluster's `generate` (Tunix's rollouts) within each step.
"""

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np
import optax
import transformers
import tunix
from flax import nnx
from tunix.models.qwen2 import model as qwen2_model
from tunix.models.qwen2 import params as qwen2_params
from tunix.rl import rl_cluster as rl_cluster_lib
from tunix.rl.grpo import grpo_learner
from tunix.rl.rollout import base_rollout

import workload


def model_config(folder: str):
  """Tunix's Qwen2 ModelConfig from a Hugging Face config.json (fp32)."""
  with open(os.path.join(folder, "config.json")) as f:
    hf = json.load(f)
  rope = hf.get("rope_parameters") or {}
  if hf["model_type"] != "qwen2" or hf.get("use_sliding_window"):
    raise ValueError(f"{folder}: need a Qwen2 checkpoint without sliding"
                     " window attention (write one with make_checkpoint.py)")
  if rope.get("rope_type", "default") != "default":
    raise ValueError(f"{folder}: Tunix's Qwen2 supports plain RoPE only")
  return qwen2_model.ModelConfig(
      num_layers=hf["num_hidden_layers"], vocab_size=hf["vocab_size"],
      embed_dim=hf["hidden_size"], hidden_dim=hf["intermediate_size"],
      num_heads=hf["num_attention_heads"],
      head_dim=hf.get("head_dim") or (
          hf["hidden_size"] // hf["num_attention_heads"]),
      num_kv_heads=hf["num_key_value_heads"],
      rope_theta=hf.get("rope_theta") or rope["rope_theta"],
      norm_eps=hf["rms_norm_eps"],
      use_tied_embedding=hf["tie_word_embeddings"],
      dtype=jnp.float32, param_dtype=jnp.float32,
      remat_config=qwen2_model.RematConfig.NONE)


def reward(prompts, completions, answer, **unused):
  """Tunix's reward-function signature around the workload's rule."""
  del prompts, unused
  return [workload.first_integer_correct(c, a)
          for c, a in zip(completions, answer)]


def build_learner(a, tok, rollout_config):
  """Actor, reference and rollout colocated on a one-device CPU mesh."""
  mesh = jax.make_mesh((1, 1), ("fsdp", "tp"), devices=jax.devices()[:1],
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  reference = qwen2_params.create_model_from_safe_tensors(
      a.model, model_config(a.model), mesh, dtype=jnp.float32)
  graphdef, state = nnx.split(reference)
  actor = nnx.merge(graphdef, jax.tree.map(jnp.copy, state))
  optimizer = optax.chain(
      optax.clip_by_global_norm(workload.MAX_GRAD_NORM),
      optax.adamw(optax.linear_schedule(workload.LEARNING_RATE, 0.0,
                                        a.steps), weight_decay=0.0))
  roles = rl_cluster_lib.Role
  cluster = rl_cluster_lib.RLCluster(
      actor=actor, reference=reference, tokenizer=tok,
      cluster_config=rl_cluster_lib.ClusterConfig(
          role_to_mesh={roles.ACTOR: mesh, roles.REFERENCE: mesh,
                        roles.ROLLOUT: mesh},
          rollout_engine="vanilla", offload_to_cpu=False,
          training_config=rl_cluster_lib.RLTrainingConfig(
              actor_optimizer=optimizer, eval_every_n_steps=10**9,
              max_steps=a.steps, metrics_logging_options=None,
              checkpoint_root_directory=None, pbar_description=None),
          rollout_config=rollout_config))
  learner = grpo_learner.GRPOLearner(
      rl_cluster=cluster, reward_fns=[reward],
      algo_config=grpo_learner.GRPOConfig(
          num_generations=a.G, num_iterations=1, beta=workload.KL_COEF,
          epsilon=workload.CLIP_EPS, loss_agg_mode="token-mean",
          kl_loss_mode="low_var_kl"))  # low_var_kl is the k3 estimator
  return learner, actor


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  workload.add_arguments(p)
  a = p.parse_args()
  rows = [(workload.prompt_text(q), ans) for q, ans in workload.addition_rows()]
  tok = transformers.AutoTokenizer.from_pretrained(a.model)
  max_prompt_len = max(len(tok.encode(q)) for q, _ in rows)
  rollout_config = base_rollout.RolloutConfig(
      max_tokens_to_generate=a.max_new, max_prompt_length=max_prompt_len,
      kv_cache_size=max_prompt_len + a.max_new, temperature=1.0, top_p=1.0,
      top_k=None, eos_tokens=workload.stop_ids(
          len(tok), a.stop_ids, tok.eos_token_id))
  learner, actor = build_learner(a, tok, rollout_config)
  stamps, generate_seconds = [], []
  generate = learner.rl_cluster.generate

  def timed_generate(*args, **kwargs):
    t0 = time.perf_counter()
    out = generate(*args, **kwargs)
    generate_seconds[len(stamps) - 1] += time.perf_counter() - t0
    return out

  learner.rl_cluster.generate = timed_generate

  def batches():
    for i in range(a.steps):
      stamps.append(time.perf_counter())
      generate_seconds.append(0.0)
      rollout_config.seed = i  # fresh sampling noise every step
      chunk = [rows[(i * a.prompts + j) % len(rows)]
               for j in range(a.prompts)]
      yield {"prompts": np.array([q for q, _ in chunk]),
             "answer": np.array([s for _, s in chunk])}

  learner.train(batches())
  jax.block_until_ready(nnx.state(actor))
  stamps.append(time.perf_counter())
  print(f"tunix {getattr(tunix, '__version__', '?')}, jax {jax.__version__}")
  if len(generate_seconds) > 1:
    print("median_generate_s",
          round(statistics.median(generate_seconds[1:]), 4))
  workload.report([t1 - t0 for t0, t1 in zip(stamps, stamps[1:])])


if __name__ == "__main__":
  main()
