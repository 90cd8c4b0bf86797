"""MathForge: DGPO trained on MATH (GPU/TPU; arXiv:2601.20614).

  python -m mathrl.main --config=configs/mathforge.py --workdir=/tmp/mathforge \\
      --config.model.path=/path/to/Qwen2.5-Math-1.5B \\
      --config.data.local_dir=/path/to/benchmark_data

MathForge is DGPO plus MQR, training data augmented with harder
reformulations of each question (`--mode=augment`). This recipe is
`configs/dgpo_math.py`'s DGPO run on the original MATH questions, with
MathForge's settings (AMAP-ML/MathForge `scripts_mathforge/*/
run_mathforge.sh`); with the MQR-augmented questions the scripts raise the
learning rate to 1e-6 with four times the prompts per update:
`configs/mathforge_mqr.py`.
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  # DGPO with DQW (T 2), clip 0.2, no KL, temperature 1, G 8, 1024 new
  # tokens, the boxed system prompt, MATH minus MATH-500 → MATH-500.
  c = configlib.sibling(__file__, "dgpo_math")
  # Scripts without MQR data: constant lr 5e-7.
  c.rl.learning_rate = 5e-7
  return c
