"""Seconds per GRPO step of TRL's GRPOTrainer on the common workload.

Runs in its own virtual environment (see benchmarks/RESULTS.md):

  python benchmarks/peers/trl_step.py /tmp/tinyqwen --steps 6

A step is what TRL's trainer does between `on_step_begin` and
`on_step_end`: generation of P × G completions with `generate`, reward,
reference log-probs, the policy's forward and backward pass and the AdamW
update. Prints `median_step_s` (median of the steps after the first)
and `median_generate_s`, the same median of the time spent in the
model's `generate` (TRL's rollouts) within each step.
Gradient checkpointing (TRL's default) is off unless
`--gradient_checkpointing`: mathrl does not recompute activations here.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import datasets  # pylint: disable=g-import-not-at-top
import torch
import transformers
import trl

import workload


class StepTimer(transformers.TrainerCallback):
  """Wall time of every optimizer step, and of its calls to `generate`."""

  def __init__(self):
    self.seconds = []
    self.generate_seconds = []
    self._start = None

  def wrap_generate(self, model):
    """Times `model.generate` (TRL's rollouts) into the current step."""
    generate = model.generate

    def timed(*args, **kwargs):
      t0 = time.perf_counter()
      out = generate(*args, **kwargs)
      self.generate_seconds[-1] += time.perf_counter() - t0
      return out

    model.generate = timed

  def on_step_begin(self, args, state, control, **kwargs):
    self._start = time.perf_counter()
    self.generate_seconds.append(0.0)

  def on_step_end(self, args, state, control, **kwargs):
    self.seconds.append(time.perf_counter() - self._start)


def reward(completions, answer, **unused):
  """TRL's reward-function signature around the workload's rule."""
  del unused
  return [workload.first_integer_correct(c, a)
          for c, a in zip(completions, answer)]


def boxed_reward(completions, answer, **unused):
  """`--gsm8k`'s rule; conversational completions are [{"content": ...}]."""
  del unused
  text = lambda c: c[-1]["content"] if isinstance(c, list) else c  # noqa: E731
  return [workload.boxed_correct(text(c), a)
          for c, a in zip(completions, answer)]


def dataset(a):
  """The workload's prompts: plain addition text, or GSM8K chat messages
  that TRL renders with the checkpoint's chat template."""
  if a.gsm8k:
    return datasets.Dataset.from_list([
        {"prompt": [{"role": "user", "content": workload.chat_user_text(q)}],
         "answer": ans} for q, ans in workload.gsm8k_rows(a.gsm8k)])
  return datasets.Dataset.from_list([
      {"prompt": workload.prompt_text(q), "answer": ans}
      for q, ans in workload.addition_rows()])


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  workload.add_arguments(p)
  p.add_argument("--gradient_checkpointing", action="store_true")
  p.add_argument("--torch_threads", type=int, default=0,
                 help="torch.set_num_threads (0: torch's default)")
  a = p.parse_args()
  if a.torch_threads:
    torch.set_num_threads(a.torch_threads)
  data = dataset(a)
  config = trl.GRPOConfig(
      output_dir=tempfile.mkdtemp(), use_cpu=True, bf16=False, seed=0,
      per_device_train_batch_size=a.prompts * a.G, num_generations=a.G,
      max_completion_length=a.max_new, max_steps=a.steps,
      learning_rate=workload.LEARNING_RATE, lr_scheduler_type="linear",
      max_grad_norm=workload.MAX_GRAD_NORM, beta=workload.KL_COEF,
      epsilon=workload.CLIP_EPS, temperature=1.0, loss_type="dapo",
      gradient_checkpointing=a.gradient_checkpointing,
      logging_steps=1, report_to=[], save_strategy="no",
      dataloader_num_workers=0)
  timer = StepTimer()
  model = transformers.AutoModelForCausalLM.from_pretrained(
      a.model, dtype=torch.float32)
  # TRL stops a row, and ends its completion mask, at any of the
  # generation config's EOS ids.
  model.generation_config.eos_token_id = workload.stop_ids(
      model.config.vocab_size, a.stop_ids, model.config.eos_token_id)
  timer.wrap_generate(model)
  trainer = trl.GRPOTrainer(model=model,
                            reward_funcs=boxed_reward if a.gsm8k else reward,
                            args=config,
                            train_dataset=data, callbacks=[timer])
  trainer.train()
  print(f"trl {trl.__version__}, torch {torch.__version__},"
        f" {torch.get_num_threads()} threads")
  lengths = [h["completions/mean_length"] for h in trainer.state.log_history
             if "completions/mean_length" in h]
  if len(timer.generate_seconds) > 1:
    print("median_generate_s",
          round(statistics.median(timer.generate_seconds[1:]), 4))
  workload.report(timer.seconds,
                  sum(lengths) / len(lengths) if lengths else None)


if __name__ == "__main__":
  main()
