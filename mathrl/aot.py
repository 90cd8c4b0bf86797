"""Ahead-of-time compilation of a run for a TPU slice that is not attached.

  python -m mathrl.aot --config=configs/NAME.py --topology=v5e:2x4 \\
      [--config.model.preset=qwen2.5-1.5b] [--json=report.json]

With libtpu installed (`pip install -e ".[tpu]"`), JAX describes the chips
of any TPU topology (`jax.experimental.topologies`) and compiles for them on
a CPU machine. This module builds the run's three programs with abstract
inputs (`jax.ShapeDtypeStruct`s carrying the run's shardings; no weights):

  train_step   the RL step at P × G rows, prompt bucket L, T new tokens,
               on the run's mesh under the training rules;
  sampler      prefill + decode loop (`sampling.sampler_program`)
               under the sampling rules, each prompt prefilled once for
               its G rows when the prompts split over the batch shards
               (as `sampling.generate` does; `sampler_prompts`);
  decode_step  one iteration of that loop alone (its cost per token),

compiles them (`.lower(...).compile()`) and reports, per chip: memory
(arguments, outputs, temporaries) against the chip's HBM; FLOPs and bytes
accessed (XLA's cost analysis) next to the analytic FLOP count
(`mathrl.roofline`); the HBM traffic read from the optimized HLO
(`hlo.hbm_traffic`; XLA's bytes accessed also count every read of the
arrays it prefetched into on-chip VMEM), and a decode step's traffic over
the ideal (the weights and KV cache it must read; of an untied input
embedding only the rows it looks up); the roofline lower
bound on the step time (the decode step's from its HBM traffic), the
implied upper bounds on MFU and on decode tokens/s; and the collectives
inside the decode loop, none of which should move an array as large as a
weight.

It exits with status 1 and says what to change when a program does not fit
in HBM. This is MaxText's `train_compile.py` idea applied to an RL run.
"""

import dataclasses
import functools
import json
import math
import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections as mlc
from flax import nnx

from mathrl import builders
from mathrl import hlo as hlo_lib
from mathrl import models
from mathrl import precision
from mathrl import roofline
from mathrl import sampling
from mathrl import sharding
from mathrl import train_step as train_step_lib
from mathrl.models import config as model_config_lib
from mathrl.models import transformer

@dataclasses.dataclass
class ProgramReport:
  """Per-chip memory and cost of one compiled program."""

  name: str
  argument_bytes: int
  output_bytes: int
  alias_bytes: int
  temp_bytes: int
  flops: float
  """XLA's count for one chip's program."""
  bytes_accessed: float
  """XLA's cost analysis: bytes of every operand and result of every
  instruction of one chip's program, whatever memory holds them."""
  analytic_flops: float
  """`mathrl.roofline`'s count for one chip (global count / chips)."""
  compile_seconds: float
  loop_trips: list[int] = dataclasses.field(default_factory=list)
  """Known trip counts of the program's while loops (see hlo.loop_trip_counts)."""
  hbm_bytes: float = 0.0
  """HBM traffic of one chip's program (`hlo.hbm_traffic`): XLA's count
  without the reads of arrays XLA prefetched into on-chip memory."""
  error: str = ""
  """Why XLA refused to compile it (out of HBM); then only the memory XLA
  asked for (as temp_bytes) is known."""

  @property
  def cost_complete(self) -> bool:
    """False when a loop runs more than once: XLA counted its body once."""
    return all(n <= 1 for n in self.loop_trips)

  @property
  def bound_flops(self) -> float:
    """FLOPs for the roofline: the larger of XLA's and the analytic count.

    Both are lower bounds of the work done: the analytic count has only
    the matmuls, and XLA counts a loop's body once.
    """
    return max(self.flops, self.analytic_flops)

  @property
  def peak_bytes(self) -> int:
    """Arguments + outputs − donated (aliased) + temporaries."""
    return (self.argument_bytes + self.output_bytes - self.alias_bytes
            + self.temp_bytes)


@dataclasses.dataclass
class AotReport:
  """What `compile_run` found for a config on a topology."""

  topology: str
  chip: str
  num_chips: int
  hbm_bytes: int
  mesh: dict[str, int]
  model: str
  params: int
  shape: dict[str, int]
  train: ProgramReport
  sampler: ProgramReport
  decode: ProgramReport
  train_state_bytes: int
  """Per chip: parameters + optimizer state, resident while sampling."""
  train_seconds_bound: float
  mfu_bound: float
  decode_seconds_bound: float
  decode_tokens_per_second_bound: float
  decode_ideal_bytes: int
  """Per chip: the weights plus the KV cache one decode step must read
  (the function `decode_ideal_bytes`)."""
  loop_collectives: list[hlo_lib.Collective]
  smallest_weight_bytes: int
  """Per chip, under the sampling rules: the threshold for `weight_sized`."""
  levers: dict[str, Any] = dataclasses.field(default_factory=dict)
  """The run's memory settings (micro-batches, dtype) for the advice."""

  @property
  def sampler_resident_bytes(self) -> int:
    return self.sampler.peak_bytes + self.train_state_bytes

  @property
  def decode_bytes_ratio(self) -> float:
    """One decode step's HBM traffic over the ideal (weights + KV cache)."""
    return self.decode.hbm_bytes / max(self.decode_ideal_bytes, 1)

  @property
  def decode_xla_bytes_ratio(self) -> float:
    """The same with XLA's `bytes accessed` (counts on-chip reads too)."""
    return self.decode.bytes_accessed / max(self.decode_ideal_bytes, 1)

  @property
  def weight_sized(self) -> list[hlo_lib.Collective]:
    """Loop collectives at least as large as the smallest weight matrix."""
    return [c for c in self.loop_collectives
            if c.bytes >= self.smallest_weight_bytes]

  @property
  def fits(self) -> bool:
    if any(p.error for p in (self.train, self.sampler, self.decode)):
      return False
    return (self.train.peak_bytes <= self.hbm_bytes
            and self.sampler_resident_bytes <= self.hbm_bytes)

  def to_json(self) -> dict[str, Any]:
    out = dataclasses.asdict(self)
    out.update(fits=self.fits, decode_bytes_ratio=self.decode_bytes_ratio,
               decode_xla_bytes_ratio=self.decode_xla_bytes_ratio,
               sampler_resident_bytes=self.sampler_resident_bytes,
               train_peak_bytes=self.train.peak_bytes,
               sampler_peak_bytes=self.sampler.peak_bytes)
    return out


def model_config(config: mlc.ConfigDict) -> models.ModelConfig:
  """The policy's shapes: a preset, a checkpoint's config.json, or fields."""
  m = config.model
  if m.path:
    with open(f"{m.path}/config.json") as f:
      return model_config_lib.from_hf_config(json.load(f))
  if m.preset:
    return models.presets.get(m.preset)
  return models.ModelConfig(
      vocab_size=config.tokenizer.vocab_size, hidden_size=m.hidden_size,
      intermediate_size=m.intermediate_size, num_layers=m.num_layers,
      num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
      head_dim=m.head_dim, tie_word_embeddings=m.tie_word_embeddings,
      qkv_bias=m.family == "qwen2", qk_norm=m.family == "qwen3",
      family=m.family)


def abstract_model(config: mlc.ConfigDict, model_cfg: models.ModelConfig):
  """(graphdef, abstract params) of the policy; nothing is allocated.

  Parameters are stored in `model.param_dtype` (the train state's master
  weights), computed in `model.dtype`; layers rematerialised as
  `model.remat` says; decode steps attend with `model.decode_attention`.
  """
  dtype = builders.model_dtype(config)
  param_dtype = builders.model_dtype(config, "param_dtype")
  model = nnx.eval_shape(
      lambda: models.Transformer(model_cfg, dtype=dtype,
                                 param_dtype=param_dtype,
                                 remat=config.model.remat,
                                 scan_layers=config.model.scan_layers,
                                 decode_attention=(
                                     config.model.decode_attention),
                                 rngs=nnx.Rngs(0)))
  return nnx.split(model)


def _with_shardings(tree, shardings):
  """Abstract arrays of `tree` carrying `shardings` (nnx Variables kept)."""
  def one(x, s):
    if isinstance(s, nnx.Variable):
      s = s.get_value()
    if isinstance(x, nnx.Variable):
      v = x.get_value()
      return x.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s))
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)

  return jax.tree.map(one, tree, shardings,
                      is_leaf=lambda x: isinstance(x, nnx.Variable))


def _batch_input(shape, dtype, mesh, rules):
  axes = ("batch",) + (None,) * (len(shape) - 1) if shape else ()
  spec = sharding.logical_to_spec(axes, shape, mesh, rules)
  return jax.ShapeDtypeStruct(
      shape, dtype, sharding=jax.sharding.NamedSharding(mesh, spec))


def _abstract_train_step(config, mesh, graphdef, params):
  """(jitted train step, abstract args, abstract state) for `config`.

  Built from the same builders and `make_train_step` arguments as the
  trainer's RL stage; the one place to adapt when those change.
  """
  c, rl = config, config.rl
  parts = builders.make_rl(c, graphdef)
  optimizer = parts.optimizer
  p, g = rl.prompts_per_step, rl.num_generations
  k = parts.rewards_like.shape[2:]
  state = jax.eval_shape(
      lambda prm: train_step_lib.init_train_state(
          prm, optimizer,
          parts.adv_tx.init(jnp.zeros(parts.rewards_like.shape)),
          jax.random.key_data(jax.random.PRNGKey(0)),
          method_state=parts.method_state), params)
  state_sh = train_step_lib.state_shardings(
      state, optimizer, mesh, sharding.TRAIN_RULES)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  step_fn = parts.train_step
  jitted = jax.jit(step_fn, out_shardings=(state_sh, replicated),
                   donate_argnums=0)
  b, l, t = p * g, max(c.data.buckets), c.sampling.max_new_tokens
  rules = sharding.TRAIN_RULES
  rollout = train_step_lib.Rollout(
      prompt_tokens_BL=_batch_input((b, l), jnp.int32, mesh, rules),
      prompt_mask_BL=_batch_input((b, l), jnp.int32, mesh, rules),
      completion_tokens_BT=_batch_input((b, t), jnp.int32, mesh, rules),
      completion_mask_BT=_batch_input((b, t), jnp.int32, mesh, rules),
      rewards_PG=_batch_input((p, g) + k, jnp.float32, mesh, rules),
      valid_PG=_batch_input((p, g), jnp.float32, mesh, rules),
      progress=jax.ShapeDtypeStruct((), jnp.float32, sharding=replicated))
  abstract_state = _with_shardings(state, state_sh)
  ref = None
  if parts.needs_reference:  # the trainer's copy: compute-dtype floats
    to_ref = functools.partial(train_step_lib.reference_params,
                               compute_dtype=builders.model_dtype(c))
    ref = _with_shardings(jax.eval_shape(to_ref, state.params),
                          state_sh.params)
  return jitted, (abstract_state, rollout, ref), abstract_state


def _sample_params(params, mesh, dtype):
  """The sampler's copy of the weights: SAMPLE_RULES shardings, `dtype`
  floats (what `trainer.Run.sampling_model` gives the sampler)."""
  params = precision.cast_floating(params, dtype)
  return _with_shardings(
      params, sharding.logical_to_sharding(params, mesh,
                                           sharding.SAMPLE_RULES))


def sampler_prompts(config, mesh, rows) -> tuple[int, int]:
  """(P prompts the sampler prefills, copies G of each) for `rows` rows.

  As `sampling.generate` decides: the rows are `rows / rl.num_generations`
  prompts with G samples each, prefilled once per prompt when the prompts
  split evenly over the mesh's batch shards; otherwise `rows` prompts.
  """
  g = config.rl.num_generations
  shards = sampling.batch_shards((rows, max(config.data.buckets)), mesh)
  copies = (sampling.prefill_copies(rows // g, g, shards)
            if rows % g == 0 else 1)
  return rows // copies, copies


def _abstract_sampler(config, mesh, graphdef, params, rows):
  """(lowerable sampler core, its abstract args and static kwargs)."""
  l, t = max(config.data.buckets), config.sampling.max_new_tokens
  prompts, copies = sampler_prompts(config, mesh, rows)
  rules = sharding.SAMPLE_RULES
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
  args = (graphdef, _sample_params(params, mesh,
                                   builders.model_dtype(config)),
          _batch_input((prompts, l), jnp.int32, mesh, rules),
          _batch_input((prompts, l), jnp.int32, mesh, rules),
          jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated))
  kwargs = dict(max_new_tokens=t, eos_ids=(0,),
                method=builders.make_sampling_method(config),
                num_samples=copies, return_entropy=False, pad_id=0)
  # `generate`'s prefill (once per prompt) + decode loop as one program
  # (no compaction).
  return sampling.sampler_program, args, kwargs


def _decode_step_fn(graphdef, method):
  """One iteration of the sampler's decode loop (`sampling._decode_step`).

  The per-layer weights arrive already sliced (as `generate` slices them
  once outside its loop), so the step reads each weight exactly once.
  """
  def step(params, block_states, state, rng):
    model = nnx.merge(graphdef, params)
    block_def = nnx.graphdef(model.split_layers()[0])
    blocks = tuple(nnx.merge(block_def, s) for s in block_states)
    return sampling._decode_step(  # pylint: disable=protected-access
        model, blocks, state, rng, eos_ids=(0,), method=method,
        return_entropy=False, pad_id=0)
  return step


def _abstract_decode_state(config, mesh, model, rows):
  """The decode loop's carry (`sampling.SamplingState`) for `rows` rows."""
  l, t = max(config.data.buckets), config.sampling.max_new_tokens
  rules = sharding.SAMPLE_RULES
  cache = jax.eval_shape(lambda: model.init_cache(rows, l + t))
  cache = _with_shardings(cache, transformer.cache_sharding(cache, mesh,
                                                            rules))
  rows_of = lambda *shape, dtype=jnp.int32: _batch_input(
      (rows,) + shape, dtype, mesh, rules)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  return sampling.SamplingState(
      step=jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated),
      logits_RV=rows_of(model.config.vocab_size, dtype=jnp.float32),
      cache=cache, done_R=rows_of(dtype=jnp.bool_), row_R=rows_of(),
      tokens_RT=rows_of(t), logprobs_RT=rows_of(t, dtype=jnp.float32),
      mask_RT=rows_of(t), entropy_RT=rows_of(0, dtype=jnp.float32))


def smallest_matmul_weight(weights) -> int:
  """Per-chip bytes of the smallest matmul weight (kernels, embedding,
  head; not biases or norm scales) in a tree of sharded abstract arrays."""
  sizes = []
  for path, w in jax.tree_util.tree_leaves_with_path(weights):
    name = jax.tree_util.keystr(path)
    if any(k in name for k in ("kernel", "embed", "lm_head")):
      sizes.append(sharding.per_device_bytes(w))
  return min(sizes)


def _abstract_decode_step(config, mesh, graphdef, params, rows):
  """(jitted decode step, abstract args, ideal bytes per chip)."""
  rules = sharding.SAMPLE_RULES
  sample_params = _sample_params(params, mesh, builders.model_dtype(config))

  def split_blocks(prm):
    return tuple(nnx.state(b) for b in nnx.merge(graphdef, prm).split_layers())

  blocks = jax.eval_shape(split_blocks, params)
  stacked = jax.tree.leaves(sample_params["layers"])
  block_sh = [
      jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(
          *x.sharding.spec[1:])) for x in stacked]
  blocks = tuple(
      jax.tree.unflatten(jax.tree.structure(b), [
          jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s)
          for x, s in zip(jax.tree.leaves(b), block_sh)]) for b in blocks)
  state = _abstract_decode_state(config, mesh, nnx.merge(graphdef, params),
                                 rows)
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  key = jax.eval_shape(lambda: jax.random.PRNGKey(0))
  rng = jax.ShapeDtypeStruct(key.shape, key.dtype, sharding=replicated)
  step = _decode_step_fn(graphdef, builders.make_sampling_method(config))
  jitted = jax.jit(step, donate_argnums=(2,))
  embed = sample_params["embed"]
  rows_D = _batch_input((rows, embed.shape[1]), embed.dtype, mesh, rules)
  ideal = decode_ideal_bytes(sample_params, blocks, state.cache, rows_D)
  return jitted, (sample_params, blocks, state, rng), ideal


def decode_ideal_bytes(sample_params, blocks, cache, rows_D) -> int:
  """Per chip: the bytes one decode step must read from HBM.

  Every weight once (the layers as the per-layer `blocks` the loop
  slices), the KV cache, and the input embedding: whole when it is also
  the output head (tied), else only the looked-up rows `rows_D` (this
  chip's tokens; the gather reads nothing else of the table).
  """
  weights = [v for name, v in sample_params.items()
             if name not in ("layers", "embed")]
  tied = "lm_head" not in sample_params
  embed = sample_params["embed"] if tied else rows_D
  return sharding.per_device_bytes(
      (weights, list(blocks), embed, cache.k, cache.v))


_OOM = re.compile(r"memory required for ([\w ]+?) \(([\d.]+)([KMGT]?)\)"
                  r" exceeds available HBM")


def _out_of_memory(name, error, analytic_flops, seconds):
  """A ProgramReport for a program XLA refused: it does not fit in HBM."""
  m = _OOM.search(str(error))
  if not m:
    raise error
  scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
  need = int(float(m.group(2)) * scale[m.group(3)])
  return ProgramReport(
      name=name, argument_bytes=0, output_bytes=0, alias_bytes=0,
      temp_bytes=need, flops=0.0, bytes_accessed=0.0,
      analytic_flops=analytic_flops, compile_seconds=seconds,
      error=f"XLA: {m.group(1)} need {m.group(2)}{m.group(3)}iB per chip")


def _compile(name, fn, args, kwargs, mesh, rules, analytic_flops):
  start = time.perf_counter()
  try:
    with jax.set_mesh(mesh), sharding.axis_rules(rules):
      compiled = fn.lower(*args, **kwargs).compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    report = _out_of_memory(name, e, analytic_flops,
                            time.perf_counter() - start)
    print(f"mathrl.aot: {name} does not fit: {report.error}",
          file=sys.stderr, flush=True)
    return report, None
  seconds = time.perf_counter() - start
  mem = compiled.memory_analysis()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  text = compiled.as_text()
  report = ProgramReport(
      name=name, argument_bytes=int(mem.argument_size_in_bytes),
      output_bytes=int(mem.output_size_in_bytes),
      alias_bytes=int(mem.alias_size_in_bytes),
      temp_bytes=int(mem.temp_size_in_bytes),
      flops=float(cost.get("flops", 0.0)),
      bytes_accessed=float(cost.get("bytes accessed", 0.0)),
      analytic_flops=analytic_flops, compile_seconds=seconds,
      hbm_bytes=float(hlo_lib.hbm_traffic(text)),
      loop_trips=hlo_lib.loop_trip_counts(text))
  print(f"mathrl.aot: compiled {name} in {seconds:.0f} s: peak"
        f" {_gib(report.peak_bytes)} per chip, {report.flops:.3g} FLOPs,"
        f" {report.bytes_accessed:.3g} bytes", file=sys.stderr, flush=True)
  return report, compiled


def compile_run(config: mlc.ConfigDict, topology: str,
                sampler_rows: int = 0) -> AotReport:
  """Compiles the run's train step, sampler and decode step for `topology`.

  Args:
    config: a run config (`configs/*.py`); its mesh, shapes and method.
    topology: a TPU slice, e.g. 'v5e:2x4' (see `roofline.parse_topology`).
    sampler_rows: rows the sampler decodes at once (0: P·G, the rollout).

  Returns:
    The AotReport (nothing is checked here; see `check_fits`).
  """
  chip, _ = roofline.parse_topology(topology)
  mesh = sharding.topology_mesh(
      topology, data=config.mesh.data, fsdp=config.mesh.fsdp,
      tensor=config.mesh.tensor)
  chips = mesh.devices.size
  model_cfg = model_config(config)
  graphdef, params = abstract_model(config, model_cfg)
  rl = config.rl
  p, g = rl.prompts_per_step, rl.num_generations
  rows = sampler_rows or p * g
  l, t = max(config.data.buckets), config.sampling.max_new_tokens

  step, args, state = _abstract_train_step(config, mesh, graphdef, params)
  step_flops = functools.partial(
      roofline.train_step_flops, model_cfg, num_prompts=p, group_size=g,
      prompt_len=l, completion_len=t, share_prompts=rl.share_prompts,
      ppo_epochs=rl.ppo_epochs, recompute_old_logp=rl.recompute_old_logp,
      reference=bool(builders.make_kl(config)[1]))
  train_flops = step_flops()  # model FLOPs, for MFU
  train, _ = _compile("train_step", step, args, {}, mesh,
                      sharding.TRAIN_RULES,
                      step_flops(remat=config.model.remat) / chips)

  fn, args, kwargs = _abstract_sampler(config, mesh, graphdef, params, rows)
  sampler, compiled = _compile("sampler", fn, args, kwargs, mesh,
                               sharding.SAMPLE_RULES, 0.0)
  collectives = (hlo_lib.loop_collectives(compiled.as_text()) if compiled
                 else [])

  step, args, ideal = _abstract_decode_step(config, mesh, graphdef, params,
                                            rows)
  decode_flops = roofline.decode_step_flops(model_cfg, batch=rows,
                                            cache_len=l + t)
  decode, _ = _compile("decode_step", step, args, {}, mesh,
                       sharding.SAMPLE_RULES, decode_flops / chips)

  # Bytes as XLA counts them (loop bodies once): still a lower bound.
  train_t = roofline.roofline_seconds(train.bound_flops,
                                      train.bytes_accessed, chip)
  decode_t = roofline.roofline_seconds(decode.bound_flops,
                                       decode.hbm_bytes, chip)
  smallest = smallest_matmul_weight(
      (args[1], {k: v for k, v in args[0].items() if k != "layers"}))
  return AotReport(
      topology=topology, chip=chip.name, num_chips=chips,
      hbm_bytes=chip.hbm_bytes,
      mesh=dict(zip(mesh.axis_names, mesh.axis_sizes)),
      model=config.model.preset or config.model.path or "config shapes",
      params=roofline.param_count(model_cfg),
      shape=dict(prompts=p, generations=g, prompt_len=l, new_tokens=t,
                 sampler_rows=rows,
                 sampler_prefills=sampler_prompts(config, mesh, rows)[0]),
      train=train, sampler=sampler, decode=decode,
      train_state_bytes=sharding.per_device_bytes(
          (state.params, state.opt_state)),
      train_seconds_bound=train_t,
      mfu_bound=train_flops / (chips * chip.peak_flops * train_t)
      if train_t else 0.0,
      decode_seconds_bound=decode_t,
      decode_tokens_per_second_bound=rows / decode_t if decode_t else 0.0,
      decode_ideal_bytes=ideal, loop_collectives=collectives,
      smallest_weight_bytes=smallest,
      levers=dict(num_microbatches=rl.num_microbatches, prompts_per_step=p,
                  dtype=config.model.dtype,
                  param_dtype=config.model.param_dtype,
                  remat=config.model.remat,
                  logits_chunk_size=config.model.logits_chunk_size,
                  adam_mu_dtype=rl.adam_mu_dtype))


def _gib(n: float) -> str:
  if n < 2**30:
    return f"{n / 2**20:.1f} MiB"
  return f"{n / 2**30:.2f} GiB"


def check_fits(report: AotReport) -> list[str]:
  """What to change, one line per program that exceeds the chip's HBM."""
  hbm = report.hbm_bytes
  advice = []
  lv = report.levers
  if report.train.peak_bytes > hbm:
    todo = []
    if lv.get("num_microbatches", 1) < lv.get("prompts_per_step", 1):
      todo.append("raise rl.num_microbatches (up to rl.prompts_per_step;"
                  " the activations shrink with the micro-batch)")
    if report.mesh.get("fsdp", 1) < report.num_chips:
      todo.append("shard parameters and optimizer state over every chip"
                  " (mesh.fsdp=-1, mesh.data=1)")
    if lv.get("dtype") != "bfloat16":
      todo.append("use a bf16 model (model.dtype=bfloat16)")
    if not lv.get("logits_chunk_size"):
      todo.append("score log-probs in blocks of positions"
                  " (model.logits_chunk_size=32)")
    if not lv.get("remat"):
      todo.append("rematerialise layers in the backward pass"
                  " (model.remat=True)")
    if lv.get("param_dtype") == "float32" and not lv.get("adam_mu_dtype"):
      todo.append("keep AdamW's first moment in bfloat16"
                  " (rl.adam_mu_dtype=bfloat16)")
    todo.append("or use a slice with more or larger chips")
    advice.append(
        f"train step needs {_gib(report.train.peak_bytes)} per chip, HBM is"
        f" {_gib(hbm)} ({report.chip}): " + "; ".join(todo))
  if report.sampler_resident_bytes > hbm:
    advice.append(
        f"sampler needs {_gib(report.sampler.peak_bytes)} per chip plus the"
        f" resident train state {_gib(report.train_state_bytes)}, HBM is"
        f" {_gib(hbm)}: decode fewer rows at once (--sampler_rows), shorten"
        " sampling.max_new_tokens or the prompt buckets, split the weights"
        " with mesh.tensor > 1, or shard the state over more chips")
  return advice


def format_report(r: AotReport) -> str:
  """The printed table."""
  lines = [
      f"mathrl.aot: {r.model} ({r.params:,} params) on"
      f" {r.topology} = {r.num_chips} x {r.chip} (HBM {_gib(r.hbm_bytes)},"
      f" mesh {r.mesh})",
      f"shape: {r.shape}",
      f"{'program':<12}{'args':>11}{'outputs':>11}{'temps':>11}"
      f"{'peak/chip':>11}{'GFLOP/chip':>12}{'analytic':>12}{'GB acc.':>9}"
      f"{'GB HBM':>9}{'compile s':>10}",
  ]
  for p in (r.train, r.sampler, r.decode):
    note = "" if p.cost_complete else (
        f"  (loops of up to {p.loop_trips} trips: XLA counted each body"
        " once)")
    note = f"  ({p.error})" if p.error else note
    analytic = f"{p.analytic_flops / 1e9:12.2f}" if p.analytic_flops else (
        f"{'-':>12}")
    lines.append(
        f"{p.name:<12}{_gib(p.argument_bytes):>11}{_gib(p.output_bytes):>11}"
        f"{_gib(p.temp_bytes):>11}{_gib(p.peak_bytes):>11}"
        f"{p.flops / 1e9:12.2f}{analytic}{p.bytes_accessed / 1e9:9.2f}"
        f"{p.hbm_bytes / 1e9:9.2f}{p.compile_seconds:10.1f}{note}")
  lines += [
      f"train state resident while sampling: {_gib(r.train_state_bytes)}"
      f" per chip; sampler total {_gib(r.sampler_resident_bytes)}",
      "train step: not compiled (out of HBM)" if r.train.error else
      f"train step: roofline bound {r.train_seconds_bound * 1e3:.3g} ms,"
      f" MFU <= {r.mfu_bound:.1%}",
      "decode step: not compiled (out of HBM)" if r.decode.error else
      f"decode step: roofline bound {r.decode_seconds_bound * 1e6:.3g} us,"
      f" <= {r.decode_tokens_per_second_bound:,.0f} tokens/s; HBM"
      f" traffic {r.decode_bytes_ratio:.2f}x the ideal (weights + KV cache,"
      f" {_gib(r.decode_ideal_bytes)} per chip; XLA's bytes accessed"
      f" {r.decode_xla_bytes_ratio:.2f}x)",
      f"collectives in the decode loop: {len(r.loop_collectives)}"
      f" ({len(r.weight_sized)} weight-sized, threshold"
      f" {r.smallest_weight_bytes:,} bytes)",
  ]
  lines += [f"  {c.op} {c.shape} ({c.bytes:,} bytes)"
            for c in r.loop_collectives[:20]]
  lines.append("fits: yes" if r.fits else "fits: NO")
  return "\n".join(lines)


TABLE_HEADER = (
    "| model | slice | mesh | fits | train GiB/chip | sampler+state GiB/chip"
    " | train bound (s) | MFU bound | decode bound (tok/s) | decode HBM /"
    " ideal | XLA bytes / ideal | weight-sized loop collectives |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(r: AotReport) -> str:
  """One markdown row of benchmarks/RESULTS.md's TPU table."""
  gib = lambda n: f"{n / 2**30:.1f}"
  cells = [r.model, r.topology, "x".join(map(str, r.mesh.values())),
           "yes" if r.fits else "no"]
  cells.append(f"needs {gib(r.train.peak_bytes)}" if r.train.error
               else gib(r.train.peak_bytes))
  cells.append(f"needs {gib(r.sampler.peak_bytes)}" if r.sampler.error
               else gib(r.sampler_resident_bytes))
  if r.train.error:
    cells += ["-", "-"]
  else:
    cells += [f"{r.train_seconds_bound:.2f}", f"{r.mfu_bound:.0%}"]
  if r.decode.error:
    cells += ["-", "-", "-"]
  else:
    cells += [f"{r.decode_tokens_per_second_bound:,.0f}",
              f"{r.decode_bytes_ratio:.2f}",
              f"{r.decode_xla_bytes_ratio:.2f}"]
  cells.append("-" if r.sampler.error else str(len(r.weight_sized)))
  return "| " + " | ".join(cells) + " |"


def main(argv):
  """`python -m mathrl.aot` (flags: --config, --topology, --json, ...)."""
  del argv
  config = _CONFIG.value
  report = compile_run(config, _TOPOLOGY.value,
                       sampler_rows=_SAMPLER_ROWS.value)
  print(format_report(report))
  print(table_row(report))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(report.to_json(), f, indent=2)
  advice = check_fits(report)
  if advice:
    print("\n".join(["does not fit:"] + [f"  - {a}" for a in advice]),
          file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  _CONFIG = config_flags.DEFINE_config_file(
      "config", None, "Run config file (configs/NAME.py).", lock_config=True)
  _TOPOLOGY = flags.DEFINE_string(
      "topology", "v5e:2x4", "TPU slice to compile for: CHIP:AxB[xC] with"
      f" CHIP in {sorted(roofline.CHIPS)}.")
  _SAMPLER_ROWS = flags.DEFINE_integer(
      "sampler_rows", 0, "Rows the sampler decodes at once (0: P x G).")
  _JSON = flags.DEFINE_string("json", "", "Also write the report here.")
  flags.mark_flag_as_required("config")
  app.run(main)
