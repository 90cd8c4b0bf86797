"""mathrl command line.

  python -m mathrl.main                                   # the default job
  python -m mathrl.main --config=configs/NAME.py[:arg] --workdir=DIR \\
      [--config.a.b=value ...]
  python -m mathrl.main --mode=eval --config=configs/default.py \\
      --config.model.path=DIR [--config.eval.protocol=qwen25_math \\
      --config.eval.num_examples=N --config.eval.benchmarks='("gsm8k",)']
  python -m mathrl.main --mode=augment --config=configs/mathforge_mqr.py \\
      --workdir=DIR                                       # MQR rewriting

Rerunning the same command with the same workdir resumes.
"""

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
    "mode", "train", ["train", "sft", "eval", "generate", "plot", "augment"],
    "train: SFT (if configured) then RL; sft: only the SFT stage; eval: "
    "evaluate the configured model on eval.benchmarks (or data.eval) under "
    "eval.protocol, writing WORKDIR/samples.jsonl and eval_results.json; "
    "generate: the same as eval; plot: WORKDIR/curves.png and "
    "WORKDIR/summary.md from the run's metrics (python -m mathrl.plot "
    "compares several workdirs); augment: MQR question reformulation of the "
    "training data into WORKDIR/mqr.jsonl.",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _MODE.value == "plot":
    from mathrl import plot  # pylint: disable=g-import-not-at-top
    wd = _WORKDIR.value
    plot.main([wd, "--out", os.path.join(wd, "curves.png"),
               "--table", os.path.join(wd, "summary.md")])
    return
  # Imported here so that --help stays fast.
  from mathrl import configlib  # pylint: disable=g-import-not-at-top
  from mathrl import builders  # pylint: disable=g-import-not-at-top
  from mathrl import compile_cache  # pylint: disable=g-import-not-at-top
  from mathrl import trainer  # pylint: disable=g-import-not-at-top

  logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO.
  config = _CONFIG.value
  try:
    compile_cache.enable(config.compile_cache_dir)
  except ValueError as e:
    print(f"mathrl: config error: {e}", file=sys.stderr)
    sys.exit(2)
  if _MODE.value == "augment":
    from mathrl.data import mqr_augment  # pylint: disable=g-import-not-at-top
    mqr_augment.run(config, _WORKDIR.value)
    return
  config = configlib.apply_mqr_scaling(config)
  if _MODE.value in ("eval", "generate"):
    from mathrl import eval_job  # pylint: disable=g-import-not-at-top
    try:
      results = eval_job.run(config, _WORKDIR.value)
    except builders.ConfigError as e:
      print(f"mathrl: config error: {e}", file=sys.stderr)
      sys.exit(2)
    print(eval_job.report(results, config.eval.protocol), flush=True)
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
