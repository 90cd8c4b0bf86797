"""DGPO on MATH with a Qwen2.5 checkpoint (GPU/TPU; MathForge, arXiv:2601.20614).

  python -m mathrl.main --config=configs/dgpo_math.py --workdir=/tmp/dgpo_math \\
      --config.model.path=/path/to/Qwen2.5-Math-1.5B \\
      --config.data.local_dir=../shared/data

Trains on the MATH problems and evaluates on MATH-500. The local MATH copy in
../shared/data is the 5,000-problem test split, of which MATH-500 is a
subset: for a clean MATH-500 number, train on a MATH training split (the
TFDS builder downloads it when online).
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  c.model.path = ""
  c.model.dtype = "bfloat16"
  c.data.train = "math"
  c.data.train_split = "test"
  c.data.eval = "math500"
  c.data.eval_split = "test"
  c.data.buckets = (256, 512)
  c.sft.steps = 0
  # MathForge defaults: DQW on (temperature 2), G 8, lr 1e-6, token-mean.
  c.rl.steps = 500
  c.rl.prompts_per_step = 32
  c.rl.num_generations = 8
  c.rl.learning_rate = 1e-6
  c.rl.warmup_steps = 10
  c.rl.advantage = "dgpo"
  c.rl.advantage_kwargs.enable_dqw = True
  c.rl.advantage_kwargs.dqw_temp = 2.0
  c.rl.aggregation = "token_mean"
  c.rl.loss_kwargs.clip_low = 0.2
  c.rl.loss_kwargs.clip_high = 0.28
  c.sampling.max_new_tokens = 1024
  c.eval.every_steps = 50
  c.eval.batch_size = 128
  c.eval.max_new_tokens = 1024
  c.checkpoint.every_steps = 50
  c.mesh.data = 1
  c.mesh.fsdp = -1
  c.mesh.tensor = 1
  return c
