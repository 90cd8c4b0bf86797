"""MathForge: DGPO trained on MATH (GPU/TPU; arXiv:2601.20614).

  python -m mathrl.main --config=configs/mathforge.py --workdir=/tmp/mathforge \\
      --config.model.path=/path/to/Qwen2.5-Math-1.5B \\
      --config.data.local_dir=../shared/data

MathForge is DGPO plus MQR, training data augmented with harder
reformulations of each question (`--mode=augment`). This recipe is
`configs/dgpo_math.py`'s DGPO run on the original MATH questions, with
MathForge's settings (AMAP-ML/MathForge `scripts_mathforge/*/
run_mathforge.sh`); with the MQR-augmented questions the scripts raise the
learning rate to 1e-6 with four times the prompts per update:
`configs/mathforge_mqr.py`.
"""

import importlib.util
import pathlib


def _dgpo_math():
  path = pathlib.Path(__file__).with_name("dgpo_math.py")
  spec = importlib.util.spec_from_file_location("dgpo_math", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg=None):
  del arg
  # DGPO with DQW (T 2), clip 0.2, no KL, temperature 1, G 8, 1024 new
  # tokens, the boxed system prompt, MATH minus MATH-500 → MATH-500.
  c = _dgpo_math().get_config()
  # Scripts without MQR data: constant lr 5e-7.
  c.rl.learning_rate = 5e-7
  return c
