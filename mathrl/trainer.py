"""The training loop: plain Python between the compiled steps.

  trainer.train(config, workdir)

SFT warm-start (when `sft.steps` > 0) until validation greedy accuracy reaches
`sft.stop_accuracy`, then RL: prompts → `generate` → rewards (host) →
dynamic sampling → `train_step` → metrics → evaluation → checkpoint.
Rerunning the same command with the same workdir resumes from the last
complete checkpoint of the stage it was in.

Preemption: on SIGTERM (spot/preemptible VMs, SLURM) or JAX's preemption
notice, the stage finishes its current step, checkpoints that step and the
process exits with `preemption.EXIT_CODE` (75); rerunning resumes there.
"""

import contextlib
import functools
import json
import os
import sys
import threading
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
from flax import nnx

from mathrl import builders
from mathrl import checkpoint
from mathrl import distributed
from mathrl import evaluation
from mathrl import metrics as metrics_lib
from mathrl import precision
from mathrl import preemption
from mathrl import rollout as rollout_lib
from mathrl import sharding
from mathrl import sft as sft_lib
from mathrl import train_step as train_step_lib
from mathrl import trim
from mathrl.data import prompts


class TrainingError(RuntimeError):
  """The run cannot continue (e.g. repeated non-finite updates)."""


def validate(config: mlc.ConfigDict) -> None:
  """Fails at start, with the field to fix, on a config that cannot run
  (`builders.validate`: building the RL stage once checks every RL field,
  and P must split over the processes)."""
  builders.validate(config)


def _log(msg: str) -> None:
  if jax.process_index() == 0:
    print(f"[mathrl] {msg}", file=sys.stderr, flush=True)


def _device_batch(tree: Any, mesh) -> Any:
  """Places a global host batch on the mesh, split over the batch axes.

  Every process holds the whole batch (SFT builds it alike everywhere; a
  rollout is assembled from gathered rewards) and places the rows its
  devices hold (`distributed.global_from_host`); with one process this is
  a sharded `device_put`.
  """
  return distributed.global_from_host(tree, mesh, sharding.TRAIN_RULES)


def _data_state(saved: Any) -> Any:
  """This process's iterator state from a checkpoint's per-process list."""
  if isinstance(saved, dict):  # one process, checkpoints before the list
    saved = [saved]
  if len(saved) != jax.process_count():
    raise ValueError(
        f"the checkpoint holds the data positions of {len(saved)}"
        f" processes but this run has {jax.process_count()}: resume with"
        " the process count that wrote it, or start a fresh workdir")
  return saved[jax.process_index()]


class _LeaderOnly:
  """Metric writing on a process other than the leader: nothing to write."""

  def write(self, *args, **kwargs) -> None:
    del args, kwargs

  def close(self) -> None:
    pass


class Run:
  """Everything a run builds once from its config.

  Sharding: training steps run inside `training()` (the mesh and
  `sharding.TRAIN_RULES`, so the model's `shard(...)` constraints act);
  rollouts and evaluations sample with `sampling_model(params)`, whose
  weights are resharded to `sharding.SAMPLE_RULES` (no FSDP on weights) and
  cast to the compute dtype (`model.dtype`) by one jitted call per rollout
  phase (none when the training weights already have that layout and
  dtype), then decode under the sampling rules
  (`sampling.generate(..., mesh=run.mesh)`), so no decode step all-gathers
  weights. Measured cost of that reshard: benchmarks/RESULTS.md
  (benchmarks/reshard.py).
  """

  def __init__(self, config: mlc.ConfigDict, workdir: str,
               mesh: jax.sharding.Mesh | None = None):
    """`mesh` overrides the config's `mesh.*` fields (e.g. a sub-mesh)."""
    # Multi-host start-up comes before any other JAX call.
    distributed.initialize_from_config(config.distributed)
    self.config = config
    self.workdir = workdir
    os.makedirs(workdir, exist_ok=True)
    # Every part, from one builders call (the config is checked first).
    self.parts = builders.make_run(config, workdir, mesh)
    p = self.parts
    self.mesh, self.tokenizer, self.template = p.mesh, p.tokenizer, p.template
    self.train_source, self.rl_source = p.train_source, p.rl_source
    self.eval_source = p.eval_source
    self.validation_source = p.validation_source
    self.eos_ids, self.graphdef = p.eos_ids, p.graphdef
    self.init_params = p.init_params
    # Entered by `train`; outside it, `should_stop` is never true.
    self.guard = preemption.PreemptionGuard()
    self.replicated = jax.sharding.NamedSharding(
        self.mesh, jax.sharding.PartitionSpec())
    self.sample_shardings = sharding.logical_to_sharding(
        self.init_params, self.mesh, sharding.SAMPLE_RULES)
    # One compiled all-gather of the FSDP shards (per parameter tree shape),
    # to the compute dtype: the sampler reads bf16, not float32 master,
    # weights (half the memory and HBM traffic per decode step).
    self.compute_dtype = jnp.dtype(builders.model_dtype(config))
    self._to_sampling = jax.jit(
        functools.partial(precision.cast_floating, dtype=self.compute_dtype),
        out_shardings=self.sample_shardings)
    self.writer = _LeaderOnly()
    if distributed.is_leader():  # metrics and files: process 0 only
      self.writer = metrics_lib.MetricWriter(
          workdir, use_tensorboard=config.log.tensorboard,
          wandb_project=config.log.wandb_project or None,
          wandb_config=config.to_dict(),
      )
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

  def model(self, params) -> nnx.Module:
    return nnx.merge(self.graphdef, params)

  def training(self):
    """Context: the mesh and the training rules (`shard` constraints act)."""
    stack = contextlib.ExitStack()
    stack.enter_context(jax.set_mesh(self.mesh))
    stack.enter_context(sharding.axis_rules(sharding.TRAIN_RULES))
    return stack

  def preemptible(self):
    """Context: SIGTERM stops the run after a step (`self.guard`).

    Signal handlers can only be set from the main thread; a run started in
    another thread (e.g. a notebook's worker) is not preemptible.
    """
    if threading.current_thread() is threading.main_thread():
      return self.guard
    return contextlib.nullcontext()

  def sampling_model(self, params) -> nnx.Module:
    """The policy with `params` resharded once to the sampling shardings.

    Parameters already laid out that way (one device, or a mesh without
    FSDP or tensor sharding of weights) and in the compute dtype are used
    as they are: the jitted reshard would copy every weight (on a
    data-parallel mesh of CPU devices, one more replica per device of host
    memory).
    """
    if _laid_out_as(params, self.sample_shardings, self.compute_dtype):
      return self.model(params)
    return self.model(self._to_sampling(params))

  def evaluate(self, params, samples_path: str | None = None,
               source=None, **kwargs) -> dict[str, float]:
    """Held-out accuracy under `eval.protocol` (overall and per difficulty).

    Args:
      params: the policy parameters to evaluate.
      samples_path: also write every completion there (JSON Lines).
      source: the problems (default: the evaluation set).
      **kwargs: more `evaluation.evaluate_source` arguments (benchmark,
        append_samples).
    """
    c = self.config
    return evaluation.evaluate_source(
        self.sampling_model(params), self.tokenizer,
        self.eval_source if source is None else source,
        protocol=self.parts.eval_protocol, template=self.template,
        buckets=tuple(c.eval.buckets or c.data.buckets),
        batch_size=c.eval.batch_size, max_new_tokens=c.eval.max_new_tokens,
        eos_ids=self.eos_ids, rng=jax.random.PRNGKey(c.seed),
        num_examples=c.eval.num_examples, fit_buckets=c.eval.fit_buckets,
        max_prompt_length=c.eval.max_prompt_length,
        samples_path=samples_path, mesh=self.mesh, **kwargs,
    )

  def evaluate_row(self, params, prefix: str, **kwargs
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """`evaluate` and its metrics row: `{prefix}_{k}` and `{prefix}_seconds`.

    Returns:
      (the evaluation's results, the row: each result under the prefix and
      the evaluation's wall-clock seconds).
    """
    t0 = time.perf_counter()
    results = self.evaluate(params, **kwargs)
    row = {f"{prefix}_{k}": v for k, v in results.items()}
    row[f"{prefix}_seconds"] = time.perf_counter() - t0
    return results, row

  def close(self):
    self.writer.close()


def _laid_out_as(params, shardings, dtype) -> bool:
  """Whether every array of `params` already has its sharding there and
  every floating-point one the dtype `dtype`."""
  arrays, targets = jax.tree.leaves(params), jax.tree.leaves(shardings)
  return len(arrays) == len(targets) and all(
      isinstance(x, jax.Array) and x.sharding.is_equivalent_to(t, x.ndim)
      and (x.dtype == dtype or not precision.is_floating(x))
      for x, t in zip(arrays, targets))


def _preempted(run: Run, ckpt, where: str) -> None:
  """Waits for the checkpoint just saved, then exits with EXIT_CODE."""
  ckpt.close()
  _log(f"{where}: stop requested (signal {run.guard.signal_received});"
       f" checkpoint written, exiting with {preemption.EXIT_CODE}."
       " Rerun the same command to resume.")
  run.guard.exit()  # SystemExit: `train` still closes the run


def _within_training(stage):
  """Runs a stage function inside `run.training()`."""

  @functools.wraps(stage)
  def wrapped(run: Run, *args, **kwargs):
    with run.training():
      return stage(run, *args, **kwargs)

  return wrapped


@_within_training
def run_sft(run: Run) -> tuple[Any, dict[str, float]]:
  """Supervised warm-start; returns (params, last validation result)."""
  c = run.config
  ckpt = checkpoint.Checkpointer(
      os.path.join(run.workdir, "checkpoints", "sft"),
      max_to_keep=c.checkpoint.max_to_keep,
  )
  optimizer = run.parts.sft_optimizer
  state = train_step_lib.init_train_state(
      run.init_params, optimizer, (),
      jax.random.key_data(jax.random.PRNGKey(c.seed)))
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
    row = {k: float(distributed.to_host(v)) for k, v in m.items()}
    done = step == c.sft.steps
    if step % c.sft.eval_every == 0 or done:
      last_eval, evaluated = run.evaluate_row(
          state.params, "validation", source=run.validation_source)
      row.update(evaluated)
      _log(f"SFT step {step}: nll {row['nll']:.3f},"
           f" validation accuracy {last_eval['accuracy']:.3f}")
      done = done or last_eval["accuracy"] >= c.sft.stop_accuracy
    if step % c.log.every_steps == 0 or done:
      run.writer.write(step, row, stage="sft")
    stop = run.guard.should_stop(step)
    if done or stop or step % c.checkpoint.every_steps == 0:
      ckpt.save(step, state, metadata={"step": step, "done": done,
                                       "cursor": cursor, "eval": last_eval},
                force=done or stop)
    if stop:
      _preempted(run, ckpt, f"SFT step {step}")
    if done:
      break
  ckpt.close()
  return state.params, last_eval


class RLSetup:
  """The RL stage's state and step, from the run's RL parts."""

  def __init__(self, run: Run):
    self.run = run
    self.parts = run.parts.rl
    self.optimizer = self.parts.optimizer

  def initial_tree(self, params) -> dict[str, Any]:
    """What an RL checkpoint holds: the TrainState and the reference."""
    parts = self.parts
    state = train_step_lib.init_train_state(
        params, parts.optimizer,
        parts.adv_tx.init(jnp.zeros(parts.rewards_like.shape)),
        jax.random.key_data(jax.random.PRNGKey(self.run.config.seed)),
        method_state=parts.method_state)
    self.state_sh = train_step_lib.state_shardings(
        state, parts.optimizer, self.run.mesh, sharding.TRAIN_RULES)
    state = jax.device_put(state, self.state_sh)
    # The reference gets its own buffers (the step donates the state's),
    # in the compute dtype its forward reads anyway (bit-identical
    # log-probs, half the memory with float32 weights and bfloat16
    # compute). An older checkpoint's float32 reference is cast on restore.
    ref = ({"params": train_step_lib.reference_params(
        params, self.run.compute_dtype)} if parts.needs_reference else {})
    return {"state": state, "ref": ref}

  def step_fn(self):
    return jax.jit(self.parts.train_step,
                   out_shardings=(self.state_sh, self.run.replicated),
                   donate_argnums=0)


def _rl_step(run: Run, setup: RLSetup, step_fn, state, ref, batches, *,
             rng, progress: float) -> tuple[Any, dict[str, float]]:
  """Collects a rollout and updates on it; returns (state, metrics row).

  When dynamic sampling kept no group the update is skipped (an empty one
  would still move Adam's parameters); the row then logs the generated
  lengths and `skipped` = 1. Before the update the rollout's completion
  axis is cut to its bucket (`trim.to_bucket`, `rl.completion_buckets`),
  logged as `update_width`.
  """
  c, parts = run.config, setup.parts
  t0 = time.perf_counter()
  rollout, _, info = rollout_lib.collect(
      run.sampling_model(state.params), batches, rng=rng,
      sampler=parts.sampler, mesh=run.mesh,
      tokenizer=run.tokenizer, reward_set=parts.reward_set,
      dynamic_sampling=parts.group_filter is not None,
      max_rounds=c.rl.dynamic_sampling_max_rounds,
      multi_reward=c.rewards.multi, progress=progress,
      group_filter=parts.group_filter or rollout_lib.informative_groups,
      prompt_feedback=getattr(batches, "observe", None),
      extras=parts.rollout_extras,
      reference_model=(run.sampling_model(ref["params"])
                       if "ref_rewards" in parts.rollout_extras else None),
  )
  rollout, info["update_width"] = trim.to_bucket(
      rollout, parts.completion_buckets)
  t1 = time.perf_counter()
  skipped = info["kept_groups"] == 0
  if skipped:
    # No update ran: the generated samples' lengths and rewards, and no
    # policy entropy (NaN).
    rewards = np.asarray(rollout.rewards_PG)
    m = {"response_length_mean": info["generated_length_mean"],
         "reward_mean": float(rewards.sum(-1).mean() if rewards.ndim == 3
                              else rewards.mean()),
         "entropy": float("nan"),
         "consecutive_skipped": float(state.consecutive_skipped)}
  else:
    state, m = step_fn(state, _device_batch(rollout, run.mesh),
                       ref.get("params"))
    m = {k: float(distributed.to_host(v)) for k, v in m.items()}
  t2 = time.perf_counter()
  row = dict(m, **info)
  row.update(
      skipped=skipped, train_seconds=t2 - t1, step_seconds=t2 - t0,
      tokens_per_second=info["generated_tokens"] / max(t2 - t0, 1e-9),
      clip_fraction=m.get("clip_frac", 0.0))
  row.setdefault("kl", 0.0)
  return state, row


@_within_training
def run_rl(run: Run, params) -> dict[str, float]:
  """GRPO-family RL from `params`; returns the final evaluation."""
  c = run.config
  rl = c.rl
  setup = RLSetup(run)
  parts = setup.parts
  ckpt = checkpoint.Checkpointer(
      os.path.join(run.workdir, "checkpoints", "rl"),
      max_to_keep=c.checkpoint.max_to_keep,
  )
  batches = run.parts.rl_batches
  tree = setup.initial_tree(params)
  meta = {"step": 0, "data": None, "eval": {}, "eval_start": {},
          "skipped_steps": 0}
  if ckpt.latest_step() is not None:
    tree, meta = ckpt.restore(abstract_state=tree)
    batches.set_state(_data_state(meta["data"]))
    _log(f"RL: resumed at step {meta['step']}")
  state, ref = tree["state"], tree["ref"]
  step_fn = setup.step_fn()
  sample_key = jax.random.PRNGKey(c.seed + 1)
  if not meta["eval_start"]:
    meta["eval_start"], evaluated = run.evaluate_row(state.params, "eval")
    run.writer.write(meta["step"], evaluated, stage="eval")
  last_eval = meta["eval"] or meta["eval_start"]
  step = meta["step"]
  skipped_steps = meta.get("skipped_steps", 0)
  while step < rl.steps:
    state, row = _rl_step(run, setup, step_fn, state, ref, batches,
                          rng=jax.random.fold_in(sample_key, step),
                          progress=step / rl.steps)
    step += 1
    skipped_steps += int(row.pop("skipped"))
    row["skipped_steps"] = float(skipped_steps)
    m = row
    done = step == rl.steps
    if (c.eval.every_steps and step % c.eval.every_steps == 0) or done:
      last_eval, evaluated = run.evaluate_row(state.params, "eval")
      row.update(evaluated)
      # Validation is for choosing; test (eval_*) is for the record. Only
      # the synthetic task has a split apart from both training and test.
      if c.eval.validation and c.data.eval == "synthetic":
        row.update(run.evaluate_row(
            state.params, "validation", source=run.validation_source)[1])
      _log(f"RL step {step}: reward {row.get('reward_mean', 0.0):.3f},"
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
    stop = run.guard.should_stop(step)
    if step % c.checkpoint.every_steps == 0 or done or stop:
      # Each process's data position (its own shard of the stream).
      data = distributed.allgather_objects(batches.get_state())
      ckpt.save(step, {"state": state, "ref": ref}, force=done or stop,
                metadata={"step": step, "data": data,
                          "eval": last_eval, "eval_start": meta["eval_start"],
                          "skipped_steps": skipped_steps})
    if stop and not done:
      _preempted(run, ckpt, f"RL step {step}")
  ckpt.close()
  return {"start": meta["eval_start"], "end": last_eval}


def train(config: mlc.ConfigDict, workdir: str) -> dict[str, Any]:
  """Runs SFT (optional) then RL; returns the evaluations of each stage."""
  run = Run(config, workdir)
  try:
    with run.preemptible():
      return _train_stages(run)
  finally:
    run.close()


def _train_stages(run: Run) -> dict[str, Any]:
  """SFT (optional), RL, then the summary; preemptible after any step."""
  config, workdir = run.config, run.workdir
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
  if distributed.is_leader():
    print(table, flush=True)
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump(results, f, indent=2)
  return results
