"""A seconds-long run of the whole pipeline, for tests and smoke checks.

The default job's pipeline (trained BPE tokenizer, SFT, GRPO, evaluation,
checkpoints) with a one-layer model, tiny batches and short completions.

  python -m mathrl.main --config=configs/tiny.py --workdir=/tmp/tiny
"""

from mathrl import configlib


def get_config(arg=None):
  del arg
  c = configlib.base_config()
  # A one-layer 64-wide model: every compile is quick on CPU.
  c.model.hidden_size = 64
  c.model.intermediate_size = 128
  c.model.num_layers = 1
  c.model.num_heads = 2
  c.model.num_kv_heads = 1
  # A tokenizer trained on fewer records.
  c.tokenizer.corpus_records = 400
  c.data.synthetic.num_train = 1000
  c.data.synthetic.num_eval = 8
  c.data.synthetic.num_validation = 8
  c.data.synthetic.max_ops = 1
  # Two SFT steps (no early stop), two RL steps of 2 prompts × 2 samples.
  c.sft.steps = 2
  c.sft.batch_size = 4
  c.sft.eval_every = 2
  c.sft.stop_accuracy = 2.0
  c.sft.warmup_steps = 0
  c.rl.steps = 2
  c.rl.prompts_per_step = 2
  c.rl.num_generations = 2
  # Each row's prompt run in the update (the shared-prompt forward runs a
  # group's prompt once; at these sizes that saves nothing, and its train
  # step takes longer to trace and compile: a whole tiny run 27-29 s
  # against 25 s with the suite's compile settings).
  c.rl.share_prompts = False
  c.sampling.max_new_tokens = 8
  c.eval.batch_size = 4
  c.eval.max_new_tokens = 8
  c.eval.every_steps = 0
  c.checkpoint.every_steps = 1
  c.log.tensorboard = False
  return c
