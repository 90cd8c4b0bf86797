"""DGPO on MATH with a Qwen2.5 checkpoint (GPU/TPU; MathForge, arXiv:2601.20614).

  python -m mathrl.main --config=configs/dgpo_math.py --workdir=/tmp/dgpo_math \\
      --config.model.path=/path/to/Qwen2.5-Math-1.5B \\
      --config.data.local_dir=../shared/data

Trains on the 5,000 MATH problems that mathrl's builder provides (the MATH
test split; the builder has no training split yet) and evaluates on
OlympiadBench. MATH-500 is a subset of that split, so it is not used for
evaluation here: a clean MATH-500 number needs a MATH training split.
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  # bf16, no SFT, FSDP, P 32 x G 8, lr 1e-6, 500 steps.
  c = configlib.hf_checkpoint_run(configlib.base_config(),
                                  max_new_tokens=1024)
  c.data.train = "math"
  c.data.train_split = "test"
  # Not MATH-500: it is a subset of the MATH test split trained on here.
  c.data.eval = "olympiadbench"
  c.data.eval_split = "test"
  c.data.buckets = (256, 512)
  # MathForge defaults: DQW on (temperature 2), token-mean, clip 0.2 / 0.28.
  c.rl.advantage = "dgpo"
  c.rl.advantage_kwargs.enable_dqw = True
  c.rl.advantage_kwargs.dqw_temp = 2.0
  c.rl.aggregation = "token_mean"
  c.rl.loss_kwargs.clip_low = 0.2
  c.rl.loss_kwargs.clip_high = 0.28
  return c
