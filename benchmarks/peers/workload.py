"""The GRPO-step workload every system in the comparison runs (pure Python).

Synthetic addition prompts ("Question: What is x + y? Answer:"), reward 1
when the first integer of the completion is x + y, P prompts × G samples,
`max_new` new tokens at temperature 1, lr 1e-5 with linear decay to 0
over the run, gradient norm clipped to 1, KL β = 0.04 with the k3
estimator, token-mean loss, one update per batch, fp32 on CPU.

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


def report(step_seconds) -> None:
  """Prints the per-step times and their median after the first step."""
  if len(step_seconds) < 2:
    raise ValueError("need at least 2 steps (--steps): the first compiles")
  print("step_seconds", [round(t, 3) for t in step_seconds])
  print("median_step_s", round(statistics.median(step_seconds[1:]), 4),
        flush=True)
