"""The GRPO-step workload every system in the comparison runs (pure Python).

Synthetic addition prompts ("Question: What is x + y? Answer:"), reward 1
when the first integer of the completion is x + y, P prompts × G samples,
`max_new` new tokens at temperature 1, lr 1e-5 with linear decay to 0
over the run, gradient norm clipped to 1, KL β = 0.04 with the k3
estimator, token-mean loss, one update per batch, fp32 on CPU.

`--stop_ids N` adds N stop tokens besides EOS (ids spread evenly over the
vocabulary, `stop_ids`). The random checkpoint's next-token distribution
is nearly uniform, so each decoding step then ends a row with probability
about (N + 1) / V: completion lengths vary as in real RL, some rows stop
early and many run to `max_new`. Every system samples from the same
checkpoint with the same stop set, so their lengths have the same
distribution (not the same per-row values: each system has its own random
numbers); each prints the mean completion length it trained on.

`--gsm8k FILE` (a GSM8K jsonl with `question` and `answer` fields):
a real-checkpoint workload instead. Its first 512 questions, each as
one user message (the question, then the instruction to reason and box
the answer, `chat_user_text`) through the checkpoint's own chat template,
and reward 1 when the last \\boxed{} of the completion holds the gold
number (`boxed_correct`). With a pretrained checkpoint, such as
SmolLM2-135M-Instruct converted by `python -m mathrl.models.convert`, the
rows end at the model's EOS, so lengths vary as the model's answers do.

Imported by mathrl's `benchmarks/grpo_step.py` and by the peer scripts in
this folder, which run in their own virtual environments (no mathrl, no
numpy needed here).
"""

import random
import re
import statistics

NUM_ROWS = 512
LEARNING_RATE = 1e-5
KL_COEF = 0.04
CLIP_EPS = 0.2
MAX_GRAD_NORM = 1.0


def addition_rows(num: int = NUM_ROWS, seed: int = 0):
  """[(question, answer)]: `num` sums of two integers in [0, 999]."""
  rnd = random.Random(seed)
  out = []
  for _ in range(num):
    x, y = rnd.randint(0, 999), rnd.randint(0, 999)
    out.append((f"What is {x} + {y}?", str(x + y)))
  return out


BOXED_INSTRUCTION = (
    "Please reason step by step, and put your final answer within \\boxed{}.")


def gsm8k_rows(path: str, num: int = NUM_ROWS):
  """[(question, answer)]: the first `num` rows of a GSM8K jsonl file.

  The answer is the number after GSM8K's `####` marker, without commas.
  """
  import json  # pylint: disable=g-import-not-at-top
  out = []
  with open(path) as f:
    for i, line in enumerate(f):
      if len(out) == num:
        break
      row = json.loads(line)
      if "####" not in row.get("answer", ""):
        raise ValueError(
            f"{path}, line {i + 1}: no '####' final answer in its 'answer'"
            " field; --gsm8k wants GSM8K's jsonl (question, answer)")
      gold = row["answer"].split("####")[-1].strip().replace(",", "")
      out.append((row["question"], gold))
  if not out:
    raise ValueError(f"{path} has no rows")
  return out


def chat_user_text(question: str) -> str:
  """The user message of a GSM8K prompt (the chat template wraps it)."""
  return question + "\n" + BOXED_INSTRUCTION


def boxed_correct(completion: str, answer: str) -> float:
  """1.0 if the last \\boxed{...} of `completion` is the number `answer`.

  Commas, spaces and a trailing `.0` are ignored: `\\boxed{1,200}` and
  `\\boxed{1200.0}` both match 1200.
  """
  found = re.findall(r"\\boxed\{([^{}]*)\}", completion)
  if not found:
    return 0.0
  got = found[-1].replace(",", "").replace(" ", "").removesuffix(".0")
  want = str(answer).replace(",", "").removesuffix(".0")
  return 1.0 if got == want else 0.0


def prompt_text(question: str) -> str:
  """The prompt the model sees (no chat template)."""
  return f"Question: {question} Answer:"


def first_integer_correct(completion: str, answer: str) -> float:
  """1.0 if the first integer in `completion` equals `answer`, else 0.0."""
  found = re.findall(r"-?\d+", completion)
  return 1.0 if found and found[0] == str(answer) else 0.0


def add_arguments(parser) -> None:
  """The command-line flags every system's script shares."""
  parser.add_argument("model", help="checkpoint folder (make_checkpoint.py)")
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--prompts", type=int, default=8)
  parser.add_argument("--G", type=int, default=8)
  parser.add_argument("--max_new", type=int, default=32)
  parser.add_argument("--stop_ids", type=int, default=0,
                      help="stop tokens besides EOS (see stop_ids)")
  parser.add_argument("--gsm8k", default=None,
                      help="GSM8K jsonl: chat prompts, boxed-answer reward")


def stop_ids(vocab_size: int, num: int, eos_id: int) -> list[int]:
  """[eos_id] and `num` more ids spread evenly over the vocabulary.

  Ids below 3 (the checkpoint's special tokens) are not used. Example:
  stop_ids(512, 2, 1) = [1, 171, 340].
  """
  if num < 0 or num > vocab_size - 3:
    raise ValueError(f"--stop_ids must be in [0, {vocab_size - 3}], got {num}")
  step = (vocab_size - 3) // (num + 1) if num else 0
  return [eos_id] + [3 + step * (i + 1) - 1 for i in range(num)]


def report(step_seconds, mean_completion_tokens=None) -> None:
  """Prints the per-step times and their median after the first step.

  `mean_completion_tokens`: the mean completion length (stop token
  included) over the steps' samples, printed when known.
  """
  if len(step_seconds) < 2:
    raise ValueError("need at least 2 steps (--steps): the first compiles")
  if mean_completion_tokens is not None:
    print("mean_completion_tokens", round(mean_completion_tokens, 2))
  print("step_seconds", [round(t, 3) for t in step_seconds])
  print("median_step_s", round(statistics.median(step_seconds[1:]), 4),
        flush=True)
