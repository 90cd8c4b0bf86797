"""The default job: SFT warm-start, then GRPO, on synthetic arithmetic (CPU).

A tiny Qwen2-architecture policy with a byte-level BPE tokenizer the job
trains itself learns arithmetic word problems: supervised on worked
solutions until held-out greedy accuracy passes `sft.stop_accuracy`, then
GRPO with a 0/1 correctness reward. Runs on a 2-core CPU in minutes.

  python -m mathrl.main                          # this config, WORKDIR=./workdir
  python -m mathrl.main --config=configs/default.py --workdir=/tmp/run \\
      --config.rl.steps=10 --config.seed=1
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  return configlib.base_config()
