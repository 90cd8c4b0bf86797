"""GRPO on GSM8K with a Qwen2.5 checkpoint (GPU/TPU).

  python -m mathrl.main --config=configs/grpo_gsm8k.py --workdir=/tmp/grpo_gsm8k \\
      --config.model.path=/path/to/Qwen2.5-0.5B-Instruct \\
      --config.data.local_dir=../shared/data

The model folder must hold config.json, *.safetensors and the tokenizer.
`data.local_dir` reads the benchmark files from a local copy (offline);
left empty, the TFDS builders download them.
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # A Hugging Face checkpoint (set --config.model.path); bf16 weights and
  # compute, fp32 logits.
  c.model.path = ""
  c.model.dtype = "bfloat16"
  c.data.train = "gsm8k"
  c.data.train_split = "train"
  c.data.eval = "gsm8k"
  c.data.eval_split = "test"
  # Chat-template prompts of GSM8K fit in 256 tokens.
  c.data.buckets = (128, 256)
  # No SFT: start from the instruct checkpoint.
  c.sft.steps = 0
  # DeepSeekMath-style GRPO: P 32 x G 8, lr 1e-6, beta 0.04 (k3), clip 0.2.
  c.rl.steps = 500
  c.rl.prompts_per_step = 32
  c.rl.num_generations = 8
  c.rl.learning_rate = 1e-6
  c.rl.warmup_steps = 10
  c.rl.advantage = "grpo"
  c.rl.aggregation = "seq_mean_token_mean"
  c.rl.kl = "kl_k3"
  c.rl.kl_coef = 0.04
  c.sampling.method = "temperature"
  c.sampling.temperature = 1.0
  c.sampling.max_new_tokens = 512
  c.eval.every_steps = 50
  c.eval.batch_size = 128
  c.eval.max_new_tokens = 512
  c.checkpoint.every_steps = 50
  # Shard parameters over every device (FSDP); data and tensor axes 1.
  c.mesh.data = 1
  c.mesh.fsdp = -1
  c.mesh.tensor = 1
  return c
