"""GRPO on GSM8K with a Qwen2.5 checkpoint (GPU/TPU).

  python -m mathrl.main --config=configs/grpo_gsm8k.py --workdir=/tmp/grpo_gsm8k \\
      --config.model.path=/path/to/Qwen2.5-0.5B-Instruct \\
      --config.data.local_dir=/path/to/benchmark_data

The model folder must hold config.json, *.safetensors and the tokenizer.
`data.local_dir` reads the benchmark files from a local copy (offline);
left empty, the TFDS builders download them.
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  # bf16, no SFT, FSDP, P 32 x G 8, lr 1e-6 (DeepSeekMath), 500 steps.
  c = configlib.hf_checkpoint_run(configlib.base_config(), max_new_tokens=512)
  # GSM8K train split for training, its test split for evaluation.
  c.data.train = "gsm8k"
  c.data.eval = "gsm8k"
  # Chat-template prompts of GSM8K fit in 256 tokens.
  c.data.buckets = (128, 256)
  # DeepSeekMath GRPO: group z-score and clip 0.2 (the base's grpo and
  # ppo_clip), per-sequence mean, k3 KL beta 0.04.
  c.rl.aggregation = "seq_mean_token_mean"
  c.rl.kl = "kl_k3"
  c.rl.kl_coef = 0.04
  return c
