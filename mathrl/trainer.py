"""The training loop: plain Python between the compiled steps.

  trainer.train(config, workdir)

SFT warm-start (when `sft.steps` > 0) until validation greedy accuracy reaches
`sft.stop_accuracy`, then RL: prompts → `generate` → rewards (host) →
dynamic sampling → `train_step` → metrics → evaluation → checkpoint.
Rerunning the same command with the same workdir resumes from the last
complete checkpoint of the stage it was in.
"""

import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from mathrl import builders
from mathrl import checkpoint
from mathrl import evaluation
from mathrl import metrics as metrics_lib
from mathrl import rollout as rollout_lib
from mathrl import sharding
from mathrl import sft as sft_lib
from mathrl import train_step as train_step_lib
from mathrl.data import pipeline
from mathrl.data import prompts


class TrainingError(RuntimeError):
  """The run cannot continue (e.g. repeated non-finite updates)."""


def validate(config: mlc.ConfigDict) -> None:
  """Checks combinations that no single field can (clear errors at start)."""
  rl = config.rl
  if rl.prompts_per_step % rl.num_minibatches:
    raise ValueError(
        f"rl.num_minibatches={rl.num_minibatches} must divide"
        f" rl.prompts_per_step={rl.prompts_per_step}"
    )
  per_minibatch = rl.prompts_per_step // rl.num_minibatches
  if per_minibatch % rl.num_microbatches:
    raise ValueError(
        f"rl.num_microbatches={rl.num_microbatches} must divide the"
        f" {per_minibatch} prompts of a minibatch"
    )
  if not rl.recompute_old_logp and (rl.ppo_epochs > 1
                                    or rl.num_minibatches > 1):
    raise ValueError(
        "rl.recompute_old_logp=False needs one update per batch; set it to"
        " True for ppo_epochs > 1 or num_minibatches > 1"
    )
  if not rl.recompute_old_logp and rl.advantage == "canon":
    raise ValueError("rl.advantage='canon' reads the policy's entropy: set"
                     " rl.recompute_old_logp=True")
  if rl.dynamic_sampling and rl.num_generations < 2:
    raise ValueError("rl.dynamic_sampling needs rl.num_generations >= 2")
  if config.rewards.multi and rl.advantage not in ("gdpo", "bnpo", "dgpo"):
    raise ValueError(
        f"rewards.multi gives [P, G, K] rewards, which rl.advantage="
        f"{rl.advantage!r} sums anyway; use gdpo, bnpo or dgpo, or set"
        " rewards.multi=False"
    )
  if config.sft.steps and not config.sft.eval_every:
    raise ValueError("sft.eval_every must be > 0 when sft.steps > 0")
  builders.check_rl_source(config)
  builders.train_temperature(config)
  builders.make_kl(config)
  builders.make_aggregation(config)
  builders.make_advantage(config)
  builders.make_policy_loss(config)


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(f"[mathrl] {msg}", file=sys.stderr, flush=True)


def _device_batch(tree: Any, mesh) -> Any:
  """Places host arrays on the mesh, split over the batch axes."""

  def put(x):
    x = np.asarray(x)
    axes = ("batch",) + (None,) * (x.ndim - 1) if x.ndim else ()
    spec = sharding.logical_to_spec(axes, x.shape, mesh, sharding.TRAIN_RULES)
    return jax.device_put(x, jax.sharding.NamedSharding(mesh, spec))

  return jax.tree.map(put, tree)


class Run:
  """Everything a run builds once from its config."""

  def __init__(self, config: mlc.ConfigDict, workdir: str):
    validate(config)
    self.config = config
    self.workdir = workdir
    os.makedirs(workdir, exist_ok=True)
    self.mesh = builders.make_mesh(config)
    self.train_source = builders.make_train_source(config, workdir)
    self.rl_source = builders.make_rl_source(
        config, workdir, self.train_source)
    self.eval_source = builders.make_eval_source(config, workdir)
    self.validation_source = builders.make_validation_source(config, workdir)
    self.tokenizer = builders.make_tokenizer(config, workdir, self.train_source)
    self.template = builders.make_template(config)
    if self.tokenizer.eos_token_id is None:
      raise ValueError("the tokenizer has no eos token; generation needs one")
    self.eos_ids = (int(self.tokenizer.eos_token_id),)
    model = builders.make_model(config, len(self.tokenizer), self.mesh)
    self.graphdef, self.init_params = nnx.split(model)
    self.replicated = jax.sharding.NamedSharding(
        self.mesh, jax.sharding.PartitionSpec())
    self.writer = metrics_lib.MetricWriter(
        workdir, use_tensorboard=config.log.tensorboard,
        wandb_project=config.log.wandb_project or None,
        wandb_config=config.to_dict(),
    )
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  def model(self, params) -> nnx.Module:
    return nnx.merge(self.graphdef, params)

  def evaluate(self, params, samples_path: str | None = None,
               source=None) -> dict[str, float]:
    """Held-out greedy accuracy (overall and per difficulty).

    Args:
      params: the policy parameters to evaluate.
      samples_path: also write every completion there (JSON Lines).
      source: the problems (default: the evaluation set).
    """
    c = self.config
    batches = pipeline.PromptIterator(
        self.eval_source if source is None else source, tokenizer=self.tokenizer, template=self.template,
        prompts_per_batch=c.eval.batch_size, group_size=1,
        buckets=tuple(c.data.buckets), seed=c.seed, shuffle=False,
        num_epochs=1, drop_remainder=False, shard_index=0, shard_count=1,
    )
    result = evaluation.evaluate(
        self.model(params), self.tokenizer, batches,
        method=builders.make_sampling_method(c, greedy=True),
        max_new_tokens=c.eval.max_new_tokens, eos_ids=self.eos_ids,
        rng=jax.random.PRNGKey(c.seed), batch_size=c.eval.batch_size,
        samples_path=samples_path,
    )
    return result

  def close(self):
    self.writer.close()


def _fresh_state(run: Run, params, optimizer, adv_state):
  return train_step_lib.init_train_state(
      params, optimizer, adv_state,
      jax.random.key_data(jax.random.PRNGKey(run.config.seed)),
  )


def run_sft(run: Run) -> tuple[Any, dict[str, float]]:
  """Supervised warm-start; returns (params, last validation result)."""
  c = run.config
  ckpt = checkpoint.Checkpointer(
      os.path.join(run.workdir, "checkpoints", "sft"),
      max_to_keep=c.checkpoint.max_to_keep,
  )
  optimizer = builders.make_optimizer(c.sft, c.sft.steps)
  state = _fresh_state(run, run.init_params, optimizer, ())
  state_sh = train_step_lib.state_shardings(
      state, optimizer, run.mesh, sharding.TRAIN_RULES)
  state = jax.device_put(state, state_sh)
  meta = {"step": 0, "done": False, "cursor": 0, "eval": {}}
  if ckpt.latest_step() is not None:
    state, meta = ckpt.restore(abstract_state=state)
    _log(f"SFT: resumed at step {meta['step']}")
  if meta["done"]:
    ckpt.close()
    return state.params, meta["eval"]
  step_fn = jax.jit(sft_lib.make_sft_step(run.graphdef, optimizer),
                    out_shardings=(state_sh, run.replicated),
                    donate_argnums=0)
  order = np.random.default_rng([c.seed, 7]).permutation(
      len(run.train_source))
  pad_id = prompts.pad_id_of(run.tokenizer)
  last_eval = meta["eval"]
  step = meta["step"]
  cursor = meta["cursor"]
  while step < c.sft.steps:
    examples = []
    while len(examples) < c.sft.batch_size:
      example = sft_lib.encode(
          run.train_source[int(order[cursor % len(order)])], run.tokenizer,
          template=run.template, max_prompt_length=max(c.data.buckets),
          max_completion_length=c.sft.max_completion_length,
      )
      cursor += 1
      if example is not None:
        examples.append(example)
      elif cursor > 10 * len(order):
        raise ValueError(
            "no training record fits data.buckets and"
            " sft.max_completion_length; raise them"
        )
    batch = sft_lib.collate(
        examples, buckets=tuple(c.data.buckets),
        max_completion_length=c.sft.max_completion_length, pad_id=pad_id,
    )
    state, m = step_fn(state, _device_batch(batch, run.mesh))
    step += 1
    if int(state.consecutive_skipped) > c.rl.max_consecutive_skipped:
      raise TrainingError(f"SFT: {int(state.consecutive_skipped)} non-finite"
                          " updates in a row; lower sft.learning_rate")
    row = {k: float(v) for k, v in jax.device_get(m).items()}
    done = step == c.sft.steps
    if step % c.sft.eval_every == 0 or done:
      last_eval = run.evaluate(state.params, source=run.validation_source)
      row.update({f"validation_{k}": v for k, v in last_eval.items()})
      _log(f"SFT step {step}: nll {row['nll']:.3f},"
           f" validation accuracy {last_eval['accuracy']:.3f}")
      done = done or last_eval["accuracy"] >= c.sft.stop_accuracy
    if step % c.log.every_steps == 0 or done:
      run.writer.write(step, row, stage="sft")
    if done or step % c.checkpoint.every_steps == 0:
      ckpt.save(step, state, metadata={"step": step, "done": done,
                                       "cursor": cursor, "eval": last_eval},
                force=done)
    if done:
      break
  ckpt.close()
  return state.params, last_eval


class RLSetup:
  """The RL stage's objects, built once from the config."""

  def __init__(self, run: Run):
    c = run.config
    rl = c.rl
    self.run = run
    total_updates = rl.steps * rl.ppo_epochs * rl.num_minibatches
    self.optimizer = builders.make_optimizer(rl, total_updates)
    self.adv_tx = builders.make_advantage(c)
    self.reward_set = builders.make_reward_set(c)
    self.kl_estimator, self.kl_coef = builders.make_kl(c)
    p, g = rl.prompts_per_step, rl.num_generations
    k = (len(self.reward_set),) if c.rewards.multi else ()
    self.rewards_like = jnp.zeros((p, g) + k)
    self.sampler = rollout_lib.Sampler(
        method=builders.make_sampling_method(c),
        max_new_tokens=c.sampling.max_new_tokens, eos_ids=run.eos_ids,
    )

  def initial_tree(self, params) -> dict[str, Any]:
    """What an RL checkpoint holds: the TrainState and the reference."""
    state = _fresh_state(self.run, params, self.optimizer,
                         self.adv_tx.init(self.rewards_like))
    self.state_sh = train_step_lib.state_shardings(
        state, self.optimizer, self.run.mesh, sharding.TRAIN_RULES)
    state = jax.device_put(state, self.state_sh)
    # The reference gets its own buffers: the step donates the state's.
    ref = {"params": jax.tree.map(jnp.copy, params)} if self.kl_coef else {}
    return {"state": state, "ref": ref}

  def step_fn(self):
    c = self.run.config
    return jax.jit(train_step_lib.make_train_step(
        self.run.graphdef, self.optimizer, self.adv_tx,
        policy_loss=builders.make_policy_loss(c),
        aggregate=builders.make_aggregation(c),
        kl_estimator=self.kl_estimator, kl_coef=self.kl_coef,
        entropy_coef=c.rl.entropy_coef, ppo_epochs=c.rl.ppo_epochs,
        num_minibatches=c.rl.num_minibatches,
        num_microbatches=c.rl.num_microbatches,
        recompute_old_logp=c.rl.recompute_old_logp,
        loss_sample_mask=builders.make_loss_sample_mask(c),
        share_prompts=c.rl.share_prompts,
        temperature=builders.train_temperature(c),
        logits_chunk_size=c.model.logits_chunk_size or None,
    ), out_shardings=(self.state_sh, self.run.replicated), donate_argnums=0)


def run_rl(run: Run, params) -> dict[str, float]:
  """GRPO-family RL from `params`; returns the final evaluation."""
  c = run.config
  rl = c.rl
  setup = RLSetup(run)
  ckpt = checkpoint.Checkpointer(
      os.path.join(run.workdir, "checkpoints", "rl"),
      max_to_keep=c.checkpoint.max_to_keep,
  )
  batches = pipeline.PromptIterator(
      run.rl_source, tokenizer=run.tokenizer, template=run.template,
      prompts_per_batch=rl.prompts_per_step, group_size=rl.num_generations,
      buckets=tuple(c.data.buckets), seed=c.seed,
  )
  tree = setup.initial_tree(params)
  meta = {"step": 0, "data": None, "eval": {}, "eval_start": {}}
  if ckpt.latest_step() is not None:
    tree, meta = ckpt.restore(abstract_state=tree)
    batches.set_state(meta["data"])
    _log(f"RL: resumed at step {meta['step']}")
  state, ref = tree["state"], tree["ref"]
  step_fn = setup.step_fn()
  sample_key = jax.random.PRNGKey(c.seed + 1)
  if not meta["eval_start"]:
    meta["eval_start"] = run.evaluate(state.params)
    run.writer.write(meta["step"], {f"eval_{k}": v for k, v in
                                    meta["eval_start"].items()}, stage="eval")
  last_eval = meta["eval"] or meta["eval_start"]
  step = meta["step"]
  while step < rl.steps:
    t0 = time.perf_counter()
    rollout, _, info = rollout_lib.collect(
        run.model(state.params), batches,
        rng=jax.random.fold_in(sample_key, step), sampler=setup.sampler,
        tokenizer=run.tokenizer, reward_set=setup.reward_set,
        dynamic_sampling=rl.dynamic_sampling,
        max_rounds=rl.dynamic_sampling_max_rounds,
        multi_reward=c.rewards.multi, progress=step / rl.steps,
    )
    t1 = time.perf_counter()
    state, m = step_fn(state, _device_batch(rollout, run.mesh),
                       ref.get("params"))
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    t2 = time.perf_counter()
    step += 1
    row = dict(m, **info)
    row["train_seconds"] = t2 - t1
    row["step_seconds"] = t2 - t0
    row["tokens_per_second"] = info["generated_tokens"] / max(t2 - t0, 1e-9)
    row["clip_fraction"] = m.get("clip_frac", 0.0)
    row.setdefault("kl", 0.0)
    done = step == rl.steps
    if (c.eval.every_steps and step % c.eval.every_steps == 0) or done:
      last_eval = run.evaluate(state.params)
      row.update({f"eval_{k}": v for k, v in last_eval.items()})
      _log(f"RL step {step}: reward {row['reward_mean']:.3f},"
           f" eval accuracy {last_eval['accuracy']:.3f}")
    if step % c.log.every_steps == 0 or done:
      run.writer.write(step, row, stage="rl")
    if m["consecutive_skipped"] > rl.max_consecutive_skipped:
      ckpt.close()
      raise TrainingError(
          f"RL step {step}: {int(m['consecutive_skipped'])} non-finite updates"
          " in a row; the last checkpoint is intact. Lower rl.learning_rate"
          " or check the rewards."
      )
    if step % c.checkpoint.every_steps == 0 or done:
      ckpt.save(step, {"state": state, "ref": ref}, force=done, metadata={
          "step": step, "data": batches.get_state(), "eval": last_eval,
          "eval_start": meta["eval_start"]})
  ckpt.close()
  return {"start": meta["eval_start"], "end": last_eval}


def train(config: mlc.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs SFT (optional) then RL; returns the evaluations of each stage."""
  run = Run(config, workdir)
  try:
    params = run.init_params
    results: dict[str, Any] = {}
    if config.sft.steps:
      params, _ = run_sft(run)
    if config.rl.steps:
      rl = run_rl(run, params)
      if config.sft.steps:
        results["sft"] = rl["start"]  # the SFT policy on the eval set
      results["rl"] = rl["end"]
    elif config.sft.steps:
      results["sft"] = run.evaluate(params)
    table = evaluation.summary_table(
        {name: r for name, r in results.items() if r}
    )
    print(table, flush=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(results, f, indent=2)
    return results
  finally:
    run.close()
