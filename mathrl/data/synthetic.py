"""Synthetic arithmetic word problems: verifiable, graded, deterministic.

The default CPU job trains on these. Each problem is a short story about one
person and one kind of object, changed by `num_ops` operations (add, take
away, multiply, share out), with an integer gold answer and a worked solution
(one equation per step, then `The answer is \\boxed{n}.`) for SFT warm-start.

Splits are disjoint by construction: a question's split is fixed by the
SHA-256 of its text (1/16 of all questions are "test", 1/16 "validation",
the rest "train"), and item `i` of a split is the first problem drawn from
`(seed, i, attempt)`, attempt = 0, 1, ..., whose text hashes into it. So no
evaluation question appears verbatim in training, whatever the seeds (with
one-digit amounts the whole question space has only ~10^5 members, and
independent draws overlap heavily: 121 of 256 did).

Item `i` is computed from `(seed, split, i)` alone, so the source has random access
(grain indexes it) and is identical on every host and Python run. Difficulty
grows with the number of operations and the number of digits of the starting
and added amounts; both are drawn per item from the configured ranges and
stored in the record. The vocabulary is small and regular on purpose: a tiny
tokenizer trained on these texts covers everything it will see.

  tasks = synthetic.ArithmeticTasks(num_examples=10_000, seed=0, max_ops=3)
  tasks[7] -> {"question": "Mia has 41 apples. She buys 7 more apples. ...",
               "answer": "48", "solution": "41 + 7 = 48 ...", "difficulty": 2,
               ...}
"""

import dataclasses
import hashlib
import random

NAMES = (
    ("Ann", "She", "her"),
    ("Ben", "He", "his"),
    ("Mia", "She", "her"),
    ("Tom", "He", "his"),
    ("Eva", "She", "her"),
    ("Sam", "He", "his"),
)
ITEMS = ("apples", "books", "coins", "pens", "cards", "stones")
FRIENDS = ("Lily", "Max", "Zoe", "Leo")
SOURCE = "synthetic_arithmetic"

# Multipliers stay in one digit so answers stay readable at every level.
_MAX_FACTOR = 5

# A question belongs to split SPLITS[b] for hash bucket b < 2, else "train".
SPLITS = ("test", "validation", "train")
_NUM_BUCKETS = 16


def split_of(question: str) -> str:
  """The split a question text belongs to (stable across runs and hosts)."""
  bucket = hashlib.sha256(question.encode()).digest()[0] % _NUM_BUCKETS
  return SPLITS[min(bucket, 2)]


@dataclasses.dataclass(frozen=True)
class ArithmeticTasks:
  """A random-access source of synthetic word problems (grain-compatible).

  Attributes:
    num_examples: number of items (`len`); any index below it is valid.
    seed: base seed; item i depends only on (seed, split, i).
    split: "train", "validation" or "test" (disjoint question sets).
    min_ops: fewest operations per problem (>= 1).
    max_ops: most operations per problem.
    min_digits: fewest digits of the starting and added amounts (>= 1).
    max_digits: most digits of those amounts.
  """

  num_examples: int
  seed: int = 0
  split: str = "train"
  min_ops: int = 1
  max_ops: int = 3
  min_digits: int = 1
  max_digits: int = 2

  def __post_init__(self):
    if self.num_examples < 1:
      raise ValueError(f"num_examples must be >= 1, got {self.num_examples}")
    if self.split not in SPLITS:
      raise ValueError(
          f"split must be one of {', '.join(SPLITS)}, got {self.split!r}"
      )
    if not 1 <= self.min_ops <= self.max_ops:
      raise ValueError(
          f"need 1 <= min_ops <= max_ops, got {self.min_ops}, {self.max_ops}"
      )
    if not 1 <= self.min_digits <= self.max_digits:
      raise ValueError(
          "need 1 <= min_digits <= max_digits, got "
          f"{self.min_digits}, {self.max_digits}"
      )

  def __len__(self) -> int:
    return self.num_examples

  def __getitem__(self, index: int) -> dict[str, str | int]:
    index = int(index)
    if index < 0:
      index += self.num_examples
    if not 0 <= index < self.num_examples:
      raise IndexError(
          f"index {index} out of range for {self.num_examples} examples"
      )
    # A string seed is hashed with sha512 by `random`: stable across runs,
    # platforms and Python versions (unlike `hash()`). Each attempt keeps
    # the item's number of operations and digits; about 1 in 16 attempts
    # lands in a held-out split, and every split is reachable at every
    # difficulty (a few hundred questions each even at one op, one digit).
    rng = random.Random(f"mathrl-arithmetic/{self.seed}/{self.split}/{index}")
    num_ops = rng.randint(self.min_ops, self.max_ops)
    digits = rng.randint(self.min_digits, self.max_digits)
    for attempt in range(100_000):
      draw = random.Random(
          f"mathrl-arithmetic/{self.seed}/{self.split}/{index}/{attempt}")
      question, solution, answer = make_problem(draw, num_ops, digits)
      if split_of(question) == self.split:
        break
    else:
      raise RuntimeError(f"no {self.split} question found for item {index}")
    return {
        "question": question,
        "answer": str(answer),
        "solution": solution,
        "source": SOURCE,
        "id": f"arith-{self.seed}-{self.split}-{index}",
        "difficulty": num_ops,
        "digits": digits,
    }


def _amount(rng: random.Random, digits: int) -> int:
  low = 1 if digits == 1 else 10 ** (digits - 1)
  return rng.randint(max(low, 2), 10**digits - 1)


def make_problem(
    rng: random.Random, num_ops: int, digits: int
) -> tuple[str, str, int]:
  """One word problem with `num_ops` operations on `digits`-digit amounts.

  Every intermediate value is a non-negative integer: take-aways never exceed
  what is there, and sharing out only uses divisors of the current amount.

  Args:
    rng: the item's random generator.
    num_ops: number of operations (>= 1).
    digits: digits of the starting and added amounts (>= 1).

  Returns:
    (question, worked solution, integer answer).
  """
  name, pronoun, possessive = rng.choice(NAMES)
  item = rng.choice(ITEMS)
  value = _amount(rng, digits)
  story = [f"{name} has {value} {item}."]
  steps = []
  for _ in range(num_ops):
    kinds = ["add", "mul"]
    if value >= 2:
      kinds.append("sub")
    divisors = [k for k in range(2, _MAX_FACTOR + 1) if value % k == 0]
    if divisors:
      kinds.append("div")
    kind = rng.choice(kinds)
    if kind == "add":
      n = _amount(rng, digits)
      story.append(f"{pronoun} buys {n} more {item}.")
      steps.append(f"{value} + {n} = {value + n}.")
      value += n
    elif kind == "sub":
      n = rng.randint(1, value - 1)
      friend = rng.choice(FRIENDS)
      story.append(f"{pronoun} gives {n} {item} to {friend}.")
      steps.append(f"{value} - {n} = {value - n}.")
      value -= n
    elif kind == "mul":
      k = rng.randint(2, _MAX_FACTOR)
      story.append(f"{pronoun} now has {k} times as many {item} as before.")
      steps.append(f"{value} * {k} = {value * k}.")
      value *= k
    else:
      k = rng.choice(divisors)
      story.append(
          f"{pronoun} splits {possessive} {item} into {k} equal groups and "
          "keeps one group."
      )
      steps.append(f"{value} / {k} = {value // k}.")
      value //= k
  story.append(f"How many {item} does {name} have now?")
  steps.append(f"The answer is \\boxed{{{value}}}.")
  return " ".join(story), "\n".join(steps), value
