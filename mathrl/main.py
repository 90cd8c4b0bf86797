"""mathrl command line: `python -m mathrl.main [--config=...] [--workdir=...]`.

The RL trainer (issue: "The RL trainer") is not built yet. Until it is, this
entry point says so plainly and exits non-zero rather than pretending to train.
"""

import sys

from absl import app
from absl import flags

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval", "sft", "generate"], "What to run."
)


def main(argv):
  del argv
  print(
      "mathrl: the training loop (mathrl/trainer.py) is not built yet, so"
      f" --mode={_MODE.value} cannot run. What exists today: the Flax policy"
      " with Hugging Face import/export (mathrl.models), sharding"
      " (mathrl.sharding), the rollout sampler (mathrl.sampling), the"
      " advantage and loss library (mathrl.advantages, mathrl.losses),"
      " rewards (mathrl.rewards) and datasets (mathrl.data). See README.md.",
      file=sys.stderr,
  )
  sys.exit(2)


if __name__ == "__main__":
  app.run(main)
