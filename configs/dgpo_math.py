"""DGPO on MATH with a Qwen2.5 checkpoint, as MathForge ran it (GPU/TPU).

  python -m mathrl.main --config=configs/dgpo_math.py --workdir=/tmp/dgpo_math \\
      --config.model.path=/path/to/Qwen2.5-Math-1.5B \\
      --config.data.local_dir=/path/to/benchmark_data

Dai et al. 2026, MathForge (arXiv:2601.20614; code AMAP-ML/MathForge,
`scripts_mathforge/*/run_dgpo.sh` on TRL 0.20 `GRPOTrainer`). Trains on
the 4,500 MATH test problems outside MATH-500 (the PRM800K split) and
evaluates on MATH-500, as the paper does.
"""

from mathrl import configlib

# MathForge's prompt: the system message of every script.
BOXED_SYSTEM_PROMPT = (
    "Please reason step by step, and put your final answer within \\boxed{}."
)


def get_config(arg=None):
  del arg
  # bf16, no SFT, FSDP, P 32 x G 8 (scripts: 8 generations per prompt),
  # sampling temperature 1 (TRL default), 1024 new tokens (scripts).
  c = configlib.hf_checkpoint_run(configlib.base_config(),
                                  max_new_tokens=1024)
  # Data: MATH test minus MATH-500 for training, MATH-500 for evaluation.
  c.data.train = "math"
  c.data.train_split = "test"
  c.data.train_exclude = "math500"
  c.data.eval = "math500"
  c.data.buckets = (256, 512)
  c.data.system_prompt = BOXED_SYSTEM_PROMPT
  # Scripts: --enable_dgpo --enable_dgpo_dqw --dgpo_dqw_temp 2.0. The loss's
  # token mean over the valid groups only (paper eq. 3) is declared by the
  # dgpo transform itself.
  c.rl.advantage = "dgpo"
  c.rl.advantage_kwargs.dqw_temp = 2.0
  # TRL 0.20 defaults the scripts keep: clip 0.2 symmetric, β = 0 (no KL),
  # one update per batch (num_iterations 1).
  c.rl.loss_kwargs.clip_low = 0.2
  c.rl.loss_kwargs.clip_high = 0.2
  # Scripts: constant learning rate 5e-7 on MATH (1e-6 with MQR data).
  c.rl.learning_rate = 5e-7
  c.rl.warmup_steps = 0
  c.rl.lr_end_fraction = 1.0
  return c
