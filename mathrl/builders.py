"""Config → objects, once, at the edge. Nothing below this reads a ConfigDict.

Every `make_*` takes the relevant config section and returns a plain object
(tokenizer, model, data source, advantage transform, loss, optimizer, ...).
Names are resolved with `getattr` on the library modules; an unknown name is
an error that lists the valid ones.
"""

import functools
import inspect
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax
import transformers
from flax import nnx

from mathrl import advantages
from mathrl import losses
from mathrl import models
from mathrl import optim
from mathrl import rewards
from mathrl import sampling
from mathrl import sharding
from mathrl.data import prompts
from mathrl.data import synthetic
from mathrl.data import tfds_builders
from mathrl.data import tokenizer as tokenizer_lib

AGGREGATIONS = (
    "token_mean",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
)
KL_ESTIMATORS = ("kl_k1", "kl_k2", "kl_k3", "kl_abs", "kl_k1_plus", "kl_k3_plus")
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Held-out sources of the synthetic task use their own seed stream; that no
# held-out question is a training question comes from the split
# (synthetic.split_of partitions the question texts).
_EVAL_SEED_OFFSET = 1_000_003


def public_factories(module) -> list[str]:
  """Lower-case public callables of a module: the names configs may use."""
  return sorted(
      n for n in dir(module)
      if not n.startswith("_") and n.islower() and callable(getattr(module, n))
  )


def resolve(module, name: str, field: str) -> Callable[..., Any]:
  """`getattr(module, name)` with an error listing the valid names."""
  fn = getattr(module, name, None) if name.islower() else None
  if fn is None or not callable(fn):
    raise ValueError(
        f"{field}={name!r} is not a name in {module.__name__}; valid names:"
        f" {', '.join(public_factories(module))}"
    )
  return fn


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
  return _source(config, workdir, config.data.train, config.data.train_split,
                 role="train")


def check_rl_source(config: mlc.ConfigDict) -> None:
  """Fails with the field's name when `data.synthetic.rl_min_ops` is unusable."""
  s = config.data.synthetic
  if not s.rl_min_ops:
    return
  if config.data.train != "synthetic":
    raise ValueError(
        "data.synthetic.rl_min_ops applies to the synthetic task only; set"
        f" it to 0 for data.train={config.data.train!r}"
    )
  if not s.min_ops <= s.rl_min_ops <= s.max_ops:
    raise ValueError(
        f"data.synthetic.rl_min_ops={s.rl_min_ops} must lie in"
        f" [min_ops, max_ops] = [{s.min_ops}, {s.max_ops}] (or be 0)"
    )


def make_rl_source(config: mlc.ConfigDict, workdir: str, train_source):
  """The RL stage's prompts: `train_source`, or its harder levels.

  With the synthetic task and `data.synthetic.rl_min_ops` > 0, RL draws
  problems with at least that many operations (still from the train split,
  disjoint from validation and evaluation).
  """
  check_rl_source(config)
  if not config.data.synthetic.rl_min_ops:
    return train_source
  return _source(config, workdir, "synthetic", "", role="train",
                 min_ops=config.data.synthetic.rl_min_ops)


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
      plain=config.data.plain_template,
      use_chat_template=config.data.use_chat_template,
  )


def make_tokenizer(config: mlc.ConfigDict, workdir: str, train_source):
  """The run's tokenizer: a folder, the model's (a folder, a .gguf file or a
  named checkpoint), or a BPE trained once.

  A trained tokenizer is saved to WORKDIR/tokenizer and reloaded from there
  on resume, so a resumed run sees the same ids.
  """
  path = config.tokenizer.path or config.model.path
  if path:
    return tokenizer_lib.load(path)
  saved = os.path.join(workdir, "tokenizer")
  if os.path.isfile(os.path.join(saved, "tokenizer.json")):
    return transformers.AutoTokenizer.from_pretrained(saved)
  template = make_template(config)
  n = min(config.tokenizer.corpus_records, len(train_source))
  texts = []
  for i in range(n):
    record = train_source[i]
    texts.append(template.plain.replace(prompts.QUESTION, record["question"]))
    texts.append(record.get("solution") or record["answer"])
  tokenizer_lib.train_bpe(
      texts, vocab_size=config.tokenizer.vocab_size, path=saved
  )
  # Reload from disk so a fresh and a resumed run use the same object.
  return transformers.AutoTokenizer.from_pretrained(saved)


def model_dtype(config: mlc.ConfigDict, field: str = "dtype"):
  """The jnp dtype of `model.dtype` (compute) or `model.param_dtype`."""
  name = config.model[field]
  if name not in _DTYPES:
    raise ValueError(
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
        remat=config.model.remat, mesh=mesh, rules=sharding.TRAIN_RULES)
  m = config.model
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
          remat=config.model.remat, rngs=nnx.Rngs(config.seed)
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
    raise ValueError(
        f"sampling.method={s.method!r}; use greedy or one of {sorted(methods)}"
    )
  return methods[s.method]()


def train_temperature(config: mlc.ConfigDict) -> float:
  """τ of the train step's log-probs: the rollout's sampling temperature."""
  if config.sampling.method == "greedy":
    return 1.0
  if config.sampling.temperature <= 0:
    raise ValueError(
        f"sampling.temperature={config.sampling.temperature} must be > 0"
        " (use sampling.method='greedy' for argmax decoding)"
    )
  return float(config.sampling.temperature)


def make_advantage(config: mlc.ConfigDict) -> advantages.AdvantageTransform:
  factory = resolve(advantages, config.rl.advantage, "rl.advantage")
  try:
    return factory(**kwargs_of(config.rl.advantage_kwargs))
  except TypeError as e:
    raise ValueError(
        f"rl.advantage_kwargs do not fit {config.rl.advantage}: {e}"
    ) from e


def make_loss_sample_mask(config: mlc.ConfigDict):
  """MC-GRPO drops each group's pivot from the loss; others drop nothing."""
  if config.rl.advantage != "mc_grpo":
    return None
  weights = kwargs_of(config.rl.advantage_kwargs).get("reward_weights")
  return functools.partial(advantages.mc_grpo_keep_mask,
                           reward_weights=weights)


def make_policy_loss(config: mlc.ConfigDict):
  """The policy loss; losses that read groups get G from rl.num_generations."""
  factory = resolve(losses, config.rl.loss, "rl.loss")
  kwargs = kwargs_of(config.rl.loss_kwargs)
  if ("group_size" in inspect.signature(factory).parameters
      and kwargs.get("group_size") is None):
    kwargs["group_size"] = config.rl.num_generations
  try:
    return factory(**kwargs)
  except TypeError as e:
    raise ValueError(f"rl.loss_kwargs do not fit {config.rl.loss}: {e}") from e


def make_aggregation(config: mlc.ConfigDict):
  name = config.rl.aggregation
  if name not in AGGREGATIONS:
    raise ValueError(
        f"rl.aggregation={name!r}; use one of {', '.join(AGGREGATIONS)}"
    )
  return functools.partial(
      getattr(losses, name), **kwargs_of(config.rl.aggregation_kwargs)
  )


def make_kl(config: mlc.ConfigDict):
  """(estimator or None, coefficient)."""
  name, coef = config.rl.kl, config.rl.kl_coef
  if not name:
    if coef:
      raise ValueError("rl.kl_coef is set but rl.kl is empty: name an"
                       f" estimator ({', '.join(KL_ESTIMATORS)})")
    return None, 0.0
  if name not in KL_ESTIMATORS:
    raise ValueError(f"rl.kl={name!r}; use one of {', '.join(KL_ESTIMATORS)}")
  if coef <= 0:
    raise ValueError(f"rl.kl={name!r} needs rl.kl_coef > 0, got {coef}")
  return getattr(losses, name), float(coef)


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
  )


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
