"""mathrl command line.

  python -m mathrl.main                                   # the default job
  python -m mathrl.main --config=configs/NAME.py[:arg] --workdir=DIR \\
      [--config.a.b=value ...]
  python -m mathrl.main --mode=eval --config=configs/eval.py \\
      --config.model.path=DIR

Rerunning the same command with the same workdir resumes.
"""

import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "configs", "default.py",
)

_CONFIG = config_flags.DEFINE_config_file(
    "config", _DEFAULT_CONFIG, "Run config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", "workdir", "Run directory.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "sft", "eval", "generate"],
    "train: SFT (if configured) then RL; sft: only the SFT stage; eval: "
    "evaluate the configured model on the eval data; generate: like eval, "
    "and write every completion to WORKDIR/samples.jsonl.",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  # Imported here so that --help stays fast.
  from mathrl import builders  # pylint: disable=g-import-not-at-top
  from mathrl import trainer  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = _CONFIG.value
  if _MODE.value in ("eval", "generate"):
    try:
      run = trainer.Run(config, _WORKDIR.value)
    except builders.ConfigError as e:
      print(f"mathrl: config error: {e}", file=sys.stderr)
      sys.exit(2)
    samples = (os.path.join(_WORKDIR.value, "samples.jsonl")
               if _MODE.value == "generate" else None)
    try:
      result = run.evaluate(run.init_params, samples_path=samples)
    finally:
      run.close()
    print(json.dumps(result, indent=2))
    return
  if _MODE.value == "sft":
    with config.unlocked():
      config.rl.steps = 0
  try:
    trainer.train(config, _WORKDIR.value)
  except builders.ConfigError as e:
    print(f"mathrl: config error: {e}", file=sys.stderr)
    sys.exit(2)
  except trainer.TrainingError as e:
    print(f"mathrl: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
