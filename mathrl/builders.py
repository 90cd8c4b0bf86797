"""Config → objects, once, at the edge. Nothing below this reads a ConfigDict.

Every `make_*` takes the relevant config section and returns a plain object
(tokenizer, model, data source, advantage transform, loss, optimizer, ...).
Names are resolved with `getattr` on the library modules; an unknown name is
a `ConfigError` that lists the methods a config may name.

`make_run(config, workdir)` builds every part of a training run at once
(mesh, data, tokenizer, model, and the RL stage's parts from
`make_rl(config, graphdef, eos_ids)`: optimizer, advantage transform, loss,
reward set, sampler and the train step); building the RL parts is also how
a config is validated (`validate`).
"""

import dataclasses
import functools
import inspect
import os
import sys
import tempfile
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax
import transformers
from flax import nnx

from mathrl import advantages
from mathrl import distributed
from mathrl import evaluation
from mathrl import losses
from mathrl import models
from mathrl import optim
from mathrl import rewards
from mathrl import rollout as rollout_lib
from mathrl import sampling
from mathrl import sharding
from mathrl import train_step as train_step_lib
from mathrl import trim
from mathrl import types
from mathrl.data import mqr
from mathrl.data import prompts
from mathrl.data import splits
from mathrl.data import synthetic
from mathrl.data import tfds_builders
from mathrl.data import tokenizer as tokenizer_lib
from mathrl.data import pipeline
from mathrl.data import vade

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Held-out sources of the synthetic task use their own seed stream; that no
# held-out question is a training question comes from the split
# (synthetic.split_of partitions the question texts).
_EVAL_SEED_OFFSET = 1_000_003


class ConfigError(ValueError):
  """A config that cannot run; the message names the field and the fix."""


def resolve(module, name: str, field: str, names: tuple[str, ...],
            also: tuple[str, ...] = ()) -> Callable[..., Any]:
  """`getattr(module, name)` for a name in `names` or `also`, else an error.

  Args:
    module: the library module (`mathrl.advantages`, `mathrl.losses`).
    name: the configured name.
    field: the config field, for the message.
    names: the methods that field may name (building blocks excluded); the
      ConfigError lists them.
    also: further names found (for a clearer error after building).
  """
  if name not in names + also:
    raise ConfigError(
        f"{field}={name!r} is not one of the methods in {module.__name__};"
        f" valid names: {', '.join(sorted(names))}")
  return getattr(module, name)


def kwargs_of(section: mlc.ConfigDict) -> dict[str, Any]:
  """A ConfigDict of hyperparameters as plain Python keyword arguments."""
  return {
      k: tuple(v) if isinstance(v, list) else v
      for k, v in section.to_dict().items()
  }


def make_mesh(config: mlc.ConfigDict) -> jax.sharding.Mesh:
  dist = config.distributed
  sharding.initialize_distributed(
      coordinator_address=dist.coordinator_address or None,
      num_processes=dist.num_processes or None,
      process_id=dist.process_id if dist.num_processes else None,
  )
  return sharding.make_mesh(
      data=config.mesh.data, fsdp=config.mesh.fsdp, tensor=config.mesh.tensor
  )


def make_train_source(config: mlc.ConfigDict, workdir: str):
  """The training problems, minus `data.train_exclude`'s evaluation split."""
  source = _source(config, workdir, config.data.train,
                   config.data.train_split, role="train")
  if not config.data.train_exclude:
    return source
  held_out = _source(config, workdir, config.data.train_exclude,
                     config.data.eval_split, role="test")
  return splits.Excluding(source, held_out)


def check_rl_source(config: mlc.ConfigDict) -> None:
  """Fails, naming the field, on an unusable `data.synthetic.rl_min_ops`."""
  s = config.data.synthetic
  if not s.rl_min_ops:
    return
  if config.data.train != "synthetic":
    raise ConfigError(
        "data.synthetic.rl_min_ops applies to the synthetic task only; set"
        f" it to 0 for data.train={config.data.train!r}"
    )
  if not s.min_ops <= s.rl_min_ops <= s.max_ops:
    raise ConfigError(
        f"data.synthetic.rl_min_ops={s.rl_min_ops} must lie in"
        f" [min_ops, max_ops] = [{s.min_ops}, {s.max_ops}] (or be 0)"
    )


def make_rl_source(config: mlc.ConfigDict, workdir: str, train_source):
  """The RL stage's prompts: `train_source`, or its harder levels.

  With the synthetic task and `data.synthetic.rl_min_ops` > 0, RL draws
  problems with at least that many operations (still from the train split,
  disjoint from validation and evaluation). With `data.mqr.path`, MQR
  rewrites are mixed in at `data.mqr.ratio` (`with_mqr`).
  """
  check_rl_source(config)
  source = train_source
  if config.data.synthetic.rl_min_ops:
    source = _source(config, workdir, "synthetic", "", role="train",
                     min_ops=config.data.synthetic.rl_min_ops)
  return with_mqr(config, source)


def with_mqr(config: mlc.ConfigDict, source):
  """`source` with the MQR rewrites of `data.mqr` mixed in (path "": as is)."""
  m = config.data.mqr
  if not m.path:
    return source
  mixed = pipeline.MixedSource(source, mqr.load(m.path, tuple(m.aspects)),
                               ratio=m.ratio, seed=config.seed)
  if jax.process_index() == 0:
    print(f"[mathrl] RL prompts: {len(mixed) - mixed.num_extra} originals +"
          f" {mixed.num_extra} MQR rewrites ({mixed.repeated} of them"
          f" repeats) from {m.path}", file=sys.stderr, flush=True)
  return mixed


def make_eval_source(config: mlc.ConfigDict, workdir: str):
  return _source(config, workdir, config.data.eval, config.data.eval_split,
                 role="test")


def make_validation_source(config: mlc.ConfigDict, workdir: str):
  """The SFT stop rule's problems: the synthetic task's validation split.

  Benchmarks have no split disjoint from both training and evaluation
  here, so the stop rule then reads the evaluation set (the selection then
  biases the reported SFT accuracy upwards; say so when reporting).
  """
  if config.data.eval != "synthetic":
    return make_eval_source(config, workdir)
  return _source(config, workdir, "synthetic", "", role="validation")


def _source(config, workdir, name, split, *, role, min_ops=None):
  if name == "synthetic":
    s = config.data.synthetic
    size = {"train": s.num_train, "test": s.num_eval,
            "validation": s.num_validation}[role]
    return synthetic.ArithmeticTasks(
        num_examples=size,
        seed=config.seed + (0 if role == "train" else _EVAL_SEED_OFFSET),
        split=role, min_ops=min_ops or s.min_ops, max_ops=s.max_ops,
        min_digits=s.min_digits, max_digits=s.max_digits,
    )
  return tfds_builders.load(
      name, split,
      data_dir=config.data.tfds_dir or os.path.join(workdir, "tfds"),
      local_dir=config.data.local_dir or None,
  )


def make_template(config: mlc.ConfigDict) -> prompts.PromptTemplate:
  return prompts.PromptTemplate(
      system=config.data.system_prompt or None,
      plain=config.data.plain_template,
      use_chat_template=config.data.use_chat_template,
  )


def make_tokenizer(config: mlc.ConfigDict, workdir: str, train_source):
  """The run's tokenizer: a folder, the model's (a folder, a .gguf file or a
  named checkpoint), or a BPE trained once.

  A trained tokenizer is saved to WORKDIR/tokenizer and reloaded from there
  on resume, so a resumed run sees the same ids. With several processes
  each trains the same one (training is deterministic) and only process 0
  writes the workdir's copy; a saved one is used only when every process
  finds it (hosts need not share a disk).
  """
  path = config.tokenizer.path or config.model.path
  if path:
    return tokenizer_lib.load(path)
  saved = os.path.join(workdir, "tokenizer")
  # Gathered before anyone writes: no process reads a half-written file.
  if all(distributed.allgather_objects(
      os.path.isfile(os.path.join(saved, "tokenizer.json")))):
    return transformers.AutoTokenizer.from_pretrained(saved)
  template = make_template(config)
  n = min(config.tokenizer.corpus_records, len(train_source))
  texts = []
  for i in range(n):
    record = train_source[i]
    texts.append(template.plain.replace(prompts.QUESTION, record["question"]))
    texts.append(record.get("solution") or record["answer"])
  with tempfile.TemporaryDirectory(prefix="mathrl_tokenizer_") as scratch:
    path = saved if distributed.is_leader() else scratch
    tokenizer_lib.train_bpe(
        texts, vocab_size=config.tokenizer.vocab_size, path=path
    )
    # Reload from disk so a fresh and a resumed run use the same object.
    return transformers.AutoTokenizer.from_pretrained(path)


def model_dtype(config: mlc.ConfigDict, field: str = "dtype"):
  """The jnp dtype of `model.dtype` (compute) or `model.param_dtype`."""
  name = config.model[field]
  if name not in _DTYPES:
    raise ConfigError(
        f"model.{field}={name!r}; use one of {sorted(_DTYPES)}"
    )
  return _DTYPES[name]


def make_model(config: mlc.ConfigDict, vocab_size: int, mesh) -> nnx.Module:
  """The policy: loaded from model.path, or random from the shape fields."""
  dtype = model_dtype(config)
  param_dtype = model_dtype(config, "param_dtype")
  if config.model.path:
    return models.load(
        config.model.path, dtype=dtype, param_dtype=param_dtype,
        remat=config.model.remat, scan_layers=config.model.scan_layers,
        decode_attention=config.model.decode_attention, mesh=mesh,
        rules=sharding.TRAIN_RULES)
  m = config.model
  if m.preset:
    # A named checkpoint's shapes; the vocabulary is the tokenizer's.
    model_config = dataclasses.replace(models.presets.get(m.preset),
                                       vocab_size=vocab_size)
  else:
    model_config = models.ModelConfig(
        vocab_size=vocab_size, hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size, num_layers=m.num_layers,
        num_heads=m.num_heads, num_kv_heads=m.num_kv_heads,
        head_dim=m.head_dim, tie_word_embeddings=m.tie_word_embeddings,
        qkv_bias=m.family == "qwen2", qk_norm=m.family == "qwen3",
        family=m.family,
    )
  return sharding.init_sharded(
      lambda: models.Transformer(
          model_config, dtype=dtype, param_dtype=param_dtype,
          remat=config.model.remat, scan_layers=config.model.scan_layers,
          decode_attention=config.model.decode_attention,
          rngs=nnx.Rngs(config.seed)
      ),
      mesh, sharding.TRAIN_RULES,
  )


def make_sampling_method(config: mlc.ConfigDict, greedy: bool = False):
  s = config.sampling
  if greedy or s.method == "greedy":
    return sampling.Greedy()
  methods = {
      "temperature": lambda: sampling.Temperature(s.temperature),
      "top_k": lambda: sampling.TopK(s.top_k, s.temperature),
      "top_p": lambda: sampling.TopP(s.top_p, s.temperature),
      "min_p": lambda: sampling.MinP(s.min_p, s.temperature),
  }
  if s.method not in methods:
    raise ConfigError(
        f"sampling.method={s.method!r}; use greedy or one of {sorted(methods)}"
    )
  return methods[s.method]()


def sampler_cache_steps(config: mlc.ConfigDict) -> int | None:
  """`sampling.generate`'s cache_steps from sampling.cache_steps (0: None)."""
  steps = config.sampling.cache_steps
  if steps < 0:
    raise ConfigError(
        f"sampling.cache_steps={steps} must be >= 0 (0 allocates the whole"
        " KV cache up front)")
  return steps or None


def train_temperature(config: mlc.ConfigDict) -> float:
  """τ of the train step's log-probs: the rollout's sampling temperature."""
  if config.sampling.method == "greedy":
    return 1.0
  if config.sampling.temperature <= 0:
    raise ConfigError(
        f"sampling.temperature={config.sampling.temperature} must be > 0"
        " (use sampling.method='greedy' for argmax decoding)"
    )
  return float(config.sampling.temperature)


def _build(factory, kwargs, field, name):
  try:
    return factory(**kwargs)
  except TypeError as e:
    raise ConfigError(f"{field}_kwargs do not fit {name}: {e}") from None
  except ValueError as e:
    raise ConfigError(f"{field}={name!r}: {e}") from None


def make_advantage(config: mlc.ConfigDict) -> advantages.AdvantageTransform:
  """The estimator `rl.advantage`, chained with the shaping `rl.shaping`.

  Reward shaping runs in front of the estimator, an advantage gate after it
  (each shaping transform declares which in `needs.shaping`).
  """
  rl = config.rl
  tx = _build(resolve(advantages, rl.advantage, "rl.advantage",
                      advantages.METHODS, also=advantages.SHAPING),
              kwargs_of(rl.advantage_kwargs), "rl.advantage", rl.advantage)
  if tx.needs.shaping:
    raise ConfigError(
        f"rl.advantage={rl.advantage!r} shapes {tx.needs.shaping}; it is not"
        " an advantage estimator on its own: set rl.shaping="
        f"{rl.advantage!r} (and its arguments in rl.shaping_kwargs) and name"
        f" an estimator in rl.advantage ({', '.join(advantages.METHODS)})")
  if not rl.shaping:
    return tx
  shaping = _build(resolve(advantages, rl.shaping, "rl.shaping",
                           advantages.SHAPING),
                   kwargs_of(rl.shaping_kwargs), "rl.shaping", rl.shaping)
  if shaping.needs.shaping == "rewards":
    return advantages.chain(shaping, tx)
  return advantages.chain(tx, shaping)


def make_policy_loss(config: mlc.ConfigDict):
  """The surrogate `rl.loss` under the token weighting `rl.token_weighting`.

  Losses that read groups get G from rl.num_generations, losses whose
  math has a maximum length (DRPO's T_max) sampling.max_new_tokens, not
  the padded width of the arrays they see (which `rl.trim_completions`
  cuts).
  """
  rl = config.rl
  factory = resolve(losses, rl.loss, "rl.loss", losses.POLICY_LOSSES)
  kwargs = kwargs_of(rl.loss_kwargs)
  params = inspect.signature(factory).parameters
  if "group_size" in params and kwargs.get("group_size") is None:
    kwargs["group_size"] = rl.num_generations
  if "max_length" in params and kwargs.get("max_length") is None:
    kwargs["max_length"] = config.sampling.max_new_tokens
  loss = _build(factory, kwargs, "rl.loss", rl.loss)
  if not rl.token_weighting:
    return loss
  weighting = _build(
      resolve(losses.token_weighting, rl.token_weighting,
              "rl.token_weighting", losses.TOKEN_WEIGHTINGS),
      kwargs_of(rl.token_weighting_kwargs), "rl.token_weighting",
      rl.token_weighting)
  try:
    return losses.weighted(loss, weighting)
  except ValueError as e:
    raise ConfigError(
        f"rl.loss={rl.loss!r} with rl.token_weighting="
        f"{rl.token_weighting!r}: {e}") from None


def make_aggregation(config: mlc.ConfigDict):
  """`rl.aggregation` with its arguments.

  A constant normaliser left unset (`seq_mean_token_sum_norm`'s
  `loss_scale_factor`, whose default is the arrays' width) is
  sampling.max_new_tokens, the sampler's width: the loss is then the same
  whether or not the update's completion axis is cut
  (`rl.trim_completions`).
  """
  name = config.rl.aggregation
  fn = resolve(losses, name, "rl.aggregation", losses.AGGREGATIONS)
  kwargs = kwargs_of(config.rl.aggregation_kwargs)
  if ("loss_scale_factor" in inspect.signature(fn).parameters
      and kwargs.get("loss_scale_factor") is None):
    kwargs["loss_scale_factor"] = config.sampling.max_new_tokens
  return functools.partial(fn, **kwargs)


def make_completion_buckets(config: mlc.ConfigDict) -> tuple[int, ...]:
  """The widths the update's completion axis is cut to (`mathrl.trim`).

  () when rl.trim_completions is off; else rl.completion_buckets, or when
  that is empty b, 2b, 4b, ... up to sampling.max_new_tokens with
  b = model.logits_chunk_size (16 when that is 0).
  """
  rl, max_new = config.rl, config.sampling.max_new_tokens
  if not rl.trim_completions:
    return ()
  buckets = tuple(int(b) for b in rl.completion_buckets)
  if not buckets:
    buckets = trim.default_buckets(
        max_new, config.model.logits_chunk_size or 16)
  try:
    trim.check_buckets(buckets, max_new)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  return buckets


def make_kl(config: mlc.ConfigDict):
  """(estimator or None, coefficient)."""
  name, coef = config.rl.kl, config.rl.kl_coef
  if not name:
    if coef:
      raise ConfigError("rl.kl_coef is set but rl.kl is empty: name an"
                        f" estimator ({', '.join(losses.KL_ESTIMATORS)})")
    return None, 0.0
  fn = resolve(losses, name, "rl.kl", losses.KL_ESTIMATORS)
  if coef <= 0:
    raise ConfigError(f"rl.kl={name!r} needs rl.kl_coef > 0, got {coef}")
  return fn, float(coef)


_GROUP_FILTERS = {
    "informative": rollout_lib.informative_groups,
    "not_all_correct": rollout_lib.not_all_correct_groups,
}


def make_group_filter(config: mlc.ConfigDict):
  """Dynamic sampling's group filter, or None when it is off."""
  rl = config.rl
  if rl.dynamic_sampling_filter not in _GROUP_FILTERS:
    raise ConfigError(
        f"rl.dynamic_sampling_filter={rl.dynamic_sampling_filter!r}; use one"
        f" of {', '.join(_GROUP_FILTERS)}")
  if not rl.dynamic_sampling:
    return None
  if rl.num_generations < 2:
    raise ConfigError("rl.dynamic_sampling needs rl.num_generations >= 2")
  return _GROUP_FILTERS[rl.dynamic_sampling_filter]


def make_optimizer(
    section: mlc.ConfigDict, total_steps: int
) -> optax.GradientTransformation:
  return optim.adamw(
      learning_rate=section.learning_rate,
      total_steps=max(total_steps, 1),
      warmup_steps=min(section.warmup_steps, max(total_steps, 1)),
      end_fraction=section.lr_end_fraction,
      weight_decay=section.weight_decay,
      max_grad_norm=section.max_grad_norm,
      mu_dtype=_mu_dtype(section.adam_mu_dtype),
  )


def _mu_dtype(name: str):
  """`adam_mu_dtype`: "" (the parameters' dtype) or a name in _DTYPES."""
  if name and name not in _DTYPES:
    raise ConfigError(
        f"adam_mu_dtype={name!r}; use '' (the parameter dtype) or one of"
        f" {sorted(_DTYPES)}")
  return _DTYPES[name] if name else None


def make_reward_set(config: mlc.ConfigDict) -> rewards.RewardSet:
  r = config.rewards
  components = [("correctness", rewards.functions.correctness, r.correctness)]
  if r.format:
    components.append(("format", rewards.functions.boxed_format, r.format))
  if r.overlong:
    components.append((
        "overlong",
        functools.partial(
            rewards.functions.dapo_overlong_penalty,
            max_length=config.sampling.max_new_tokens,
            buffer_length=r.overlong_buffer,
        ),
        r.overlong,
    ))
  return rewards.RewardSet(components)


def make_eval_protocol(config: mlc.ConfigDict) -> evaluation.Protocol:
  """The `eval.protocol` preset, with `eval.num_samples` when set."""
  name = config.eval.protocol
  if name not in evaluation.PROTOCOLS:
    raise ValueError(
        f"eval.protocol={name!r}; use one of {sorted(evaluation.PROTOCOLS)}"
    )
  protocol = evaluation.PROTOCOLS[name]()
  if config.eval.num_samples < 0:
    raise ValueError(
        f"eval.num_samples={config.eval.num_samples} must be >= 0 (0: the"
        " protocol's)"
    )
  if config.eval.num_samples:
    protocol = protocol.with_samples(config.eval.num_samples)
  return protocol


def make_benchmark_source(config: mlc.ConfigDict, workdir: str, name: str):
  """An evaluation set by name: `data.eval`'s split, else "test"."""
  split = config.data.eval_split if name == config.data.eval else "test"
  return _source(config, workdir, name, split, role="test")


@dataclasses.dataclass(frozen=True)
class RLParts:
  """Everything the RL stage builds from its config, built once."""

  optimizer: optax.GradientTransformation
  adv_tx: advantages.AdvantageTransform
  policy_loss: losses.PolicyLoss
  reward_set: rewards.RewardSet
  sampler: rollout_lib.Sampler
  group_filter: Optional[Callable[..., Any]]
  """Dynamic sampling's group filter (None: off)."""
  needs_reference: bool
  """The run keeps the reference policy's params (a KL term, or rollouts
  of the reference policy)."""
  rollout_extras: tuple[str, ...]
  """Per-sample extras beyond `correctness` that the rollout must add
  (`rollout.collect(extras=...)`): what the methods declare."""
  rewards_like: jax.ShapeDtypeStruct
  """[P, G] or [P, G, K]: what the advantage state is initialised from."""
  method_state: Any
  """The initial `TrainState.method_state` (the loss's regulariser)."""
  train_step: train_step_lib.StepSpec
  """The un-jitted `train_step(state, rollout, ref_params)`."""
  completion_buckets: tuple[int, ...] = ()
  """Widths the rollout's completion axis is cut to before the update
  (`trim.to_bucket`); () = never cut."""

  def bind(self, graphdef: nnx.GraphDef,
           eos_ids: tuple[int, ...]) -> "RLParts":
    """These parts for a policy graph and a tokenizer's stop ids."""
    return dataclasses.replace(
        self, train_step=dataclasses.replace(self.train_step,
                                             graphdef=graphdef),
        sampler=dataclasses.replace(self.sampler, eos_ids=eos_ids))


def _check_needs(config, adv_tx, policy_loss) -> None:
  """What the methods declare they need, against what the run provides."""
  for field, needs in (("rl.advantage", adv_tx.needs),
                       ("rl.loss", policy_loss.needs)):
    missing = [e for e in needs.extras if e not in types.ROLLOUT_EXTRAS]
    if missing:
      raise ConfigError(
          f"{field}={config.rl[field[3:]]!r} needs the per-sample input(s)"
          f" {', '.join(missing)}, which the rollout does not provide (it"
          f" provides {', '.join(types.ROLLOUT_EXTRAS)}); call the method"
          " from the library with them, or choose another method")
  if config.rewards.multi and not adv_tx.needs.multi_reward:
    raise ConfigError(
        "rewards.multi gives [P, G, K] rewards, which rl.advantage="
        f"{config.rl.advantage!r} sums anyway; use a multi-reward method"
        " (gdpo, bnpo or dgpo), or set rewards.multi=False")


def make_rl(config: mlc.ConfigDict, graphdef: Any = None,
            eos_ids: tuple[int, ...] = (0,)) -> RLParts:
  """Every part of the RL stage, and the train step built from them.

  Building it checks the whole RL config (an unusable one raises a
  ConfigError naming the field), so `trainer.validate` is this call.

  Args:
    config: the run's config.
    graphdef: the policy graph (`nnx.split(model)[0]`); None to validate.
    eos_ids: the tokenizer's stop ids, for the sampler.
  """
  rl = config.rl
  check_rl_source(config)
  check_prompt_selection(config)
  adv_tx, policy_loss = make_advantage(config), make_policy_loss(config)
  _check_needs(config, adv_tx, policy_loss)
  kl_estimator, kl_coef = make_kl(config)
  optimizer = make_optimizer(
      rl, rl.steps * rl.ppo_epochs * rl.num_minibatches)
  reward_set = make_reward_set(config)
  k = (len(reward_set),) if config.rewards.multi else ()
  try:
    step = train_step_lib.make_train_step(
        graphdef, optimizer, adv_tx, policy_loss=policy_loss,
        aggregate=make_aggregation(config), kl_estimator=kl_estimator,
        kl_coef=kl_coef, entropy_coef=rl.entropy_coef,
        ppo_epochs=rl.ppo_epochs, num_minibatches=rl.num_minibatches,
        num_microbatches=rl.num_microbatches,
        recompute_old_logp=rl.recompute_old_logp,
        share_prompts=rl.share_prompts,
        temperature=train_temperature(config),
        num_prompts=rl.prompts_per_step,
        logits_chunk_size=config.model.logits_chunk_size or None)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  extras = tuple(e for e in adv_tx.needs.merge(policy_loss.needs).extras
                 if e != "correctness")
  return RLParts(
      optimizer=optimizer, adv_tx=adv_tx, policy_loss=policy_loss,
      reward_set=reward_set,
      sampler=rollout_lib.Sampler(
          method=make_sampling_method(config),
          max_new_tokens=config.sampling.max_new_tokens, eos_ids=eos_ids,
          compact=config.sampling.compact,
          cache_steps=sampler_cache_steps(config)),
      group_filter=make_group_filter(config),
      needs_reference=kl_coef > 0 or "ref_rewards" in extras,
      rollout_extras=extras,
      rewards_like=jax.ShapeDtypeStruct(
          (rl.prompts_per_step, rl.num_generations) + k, jnp.float32),
      method_state=train_step_lib.init_method_state(policy_loss),
      train_step=step,
      completion_buckets=make_completion_buckets(config),
  )


def validate(config: mlc.ConfigDict) -> RLParts:
  """Fails at start, with the field to fix, on a config that cannot run.

  Building the RL stage's parts and train step once is the check of every
  RL field (`make_rl`); SFT's one combination and the evaluation protocol
  are checked here too. Returns the RL parts (not yet bound to a model).
  """
  if config.sft.steps and not config.sft.eval_every:
    raise ConfigError("sft.eval_every must be > 0 when sft.steps > 0")
  make_eval_protocol(config)
  prompts_per_process(config)  # P splits over the processes
  return make_rl(config)


@dataclasses.dataclass(frozen=True)
class RunParts:
  """Everything a training run builds from its config (`make_run`)."""

  mesh: jax.sharding.Mesh
  train_source: Any
  """SFT's problems (and the tokenizer's corpus)."""
  rl_source: Any
  eval_source: Any
  validation_source: Any
  """The SFT stop rule's problems (`make_validation_source`)."""
  tokenizer: Any
  template: prompts.PromptTemplate
  eos_ids: tuple[int, ...]
  graphdef: nnx.GraphDef
  init_params: Any
  """The policy's initial parameters, sharded by the training rules."""
  sft_optimizer: optax.GradientTransformation
  eval_protocol: evaluation.Protocol
  rl: RLParts
  """The RL stage's parts, the train step bound to `graphdef`."""
  rl_batches: Any
  """The RL prompt batches (`make_rl_batches`); None when rl.steps is 0."""


def make_run(config: mlc.ConfigDict, workdir: str,
             mesh: Optional[jax.sharding.Mesh] = None) -> RunParts:
  """Every part of a training run, from one call; the config is checked
  first (`validate`), before any data or model is built.

  Args:
    config: the run's config.
    workdir: the run's folder (a trained tokenizer and TFDS files go there).
    mesh: overrides the config's `mesh.*` fields (e.g. a sub-mesh).
  """
  rl = validate(config)
  mesh = make_mesh(config) if mesh is None else mesh
  train_source = make_train_source(config, workdir)
  rl_source = make_rl_source(config, workdir, train_source)
  tokenizer = make_tokenizer(config, workdir, train_source)
  if tokenizer.eos_token_id is None:
    raise ConfigError("the tokenizer has no eos token; generation needs one")
  eos_ids = (int(tokenizer.eos_token_id),)
  template = make_template(config)
  graphdef, init_params = nnx.split(make_model(config, len(tokenizer), mesh))
  return RunParts(
      mesh=mesh, train_source=train_source, rl_source=rl_source,
      eval_source=make_eval_source(config, workdir),
      validation_source=make_validation_source(config, workdir),
      tokenizer=tokenizer, template=template, eos_ids=eos_ids,
      graphdef=graphdef, init_params=init_params,
      sft_optimizer=make_optimizer(config.sft, config.sft.steps),
      eval_protocol=make_eval_protocol(config),
      rl=rl.bind(graphdef, eos_ids),
      rl_batches=(make_rl_batches(config, rl_source, tokenizer, template)
                  if config.rl.steps else None),
  )


def make_rl_batches(config: mlc.ConfigDict, source, tokenizer, template):
  """The RL stage's prompt batches: the shuffled stream, or VADE's pick.

  With `rl.prompt_selection="vade"` each batch is the P prompts that VADE
  selects from `rl.vade.candidates_factor` × P candidates; call its
  `observe(ids_P, correct_PG)` with every scored group.

  With n processes each reads its own shard: P = rl.prompts_per_step / n
  prompts per batch (`prompts_per_process`); VADE then selects within each
  process's candidates.
  """
  rl = config.rl
  check_prompt_selection(config)
  factor = rl.vade.candidates_factor if rl.prompt_selection else 1
  per_process = prompts_per_process(config)
  stream = pipeline.PromptIterator(
      source, tokenizer=tokenizer, template=template,
      prompts_per_batch=per_process * factor,
      group_size=rl.num_generations, buckets=tuple(config.data.buckets),
      seed=config.seed)
  if not rl.prompt_selection:
    return stream
  return vade.VadeSelector(
      stream, prompts_per_batch=per_process, seed=config.seed,
      decay=rl.vade.decay,
      prior=(rl.vade.prior_alpha, rl.vade.prior_beta))


def prompts_per_process(config: mlc.ConfigDict) -> int:
  """rl.prompts_per_step / process count: the prompts each process reads."""
  count = jax.process_count()
  if config.rl.prompts_per_step % count:
    raise ConfigError(
        f"rl.prompts_per_step={config.rl.prompts_per_step} must be a"
        f" multiple of the {count} processes (each reads an equal share)")
  return config.rl.prompts_per_step // count


def check_prompt_selection(config: mlc.ConfigDict) -> None:
  """Fails with the field's name on an unusable `rl.prompt_selection`."""
  rl = config.rl
  if rl.prompt_selection not in ("", "vade"):
    raise ConfigError(f"rl.prompt_selection={rl.prompt_selection!r}; use"
                      " '' (off) or 'vade'")
  if rl.prompt_selection and rl.vade.candidates_factor < 1:
    raise ConfigError("rl.vade.candidates_factor must be >= 1")
  if rl.prompt_selection and not 0.0 <= rl.vade.decay <= 1.0:
    raise ConfigError(f"rl.vade.decay={rl.vade.decay} must be in [0, 1]")
