"""Run workdirs read back: their metric rows and config, grouped by config.

  runs = [workdirs.load_run(w) for w in ("grpo_seed0", "grpo_seed1")]
  groups = workdirs.group_runs(runs)        # {"grpo": [run, run]}
  workdirs.curve(runs[0], "eval_accuracy")  # {RL step: value}

Reads each workdir's metrics.jsonl and config.json (as `python -m
mathrl.main` writes them). Runs whose configs are equal except for `seed`
(and the paths in `IGNORED_FIELDS`) form a group. Groups are labelled by
their workdirs' name without the seed suffix (`grpo_seed0`, `grpo_seed1`
-> `grpo`, as `mathrl.sweep` names them) when that names every group
apart, otherwise by the config fields in which they differ. `mathrl.plot`
draws the groups' curves and `mathrl.tables` their final numbers.
"""

from collections.abc import Sequence
import dataclasses
import json
import os
import re
from typing import Any

import numpy as np

from mathrl import configlib
from mathrl import metrics as metrics_lib

# Stages whose rows are RL-step curves (the "eval" row is step 0).
CURVE_STAGES = ("rl", "eval")
# Config fields that differ between runs without making them different
# experiments.
IGNORED_FIELDS = ("seed", "data.tfds_dir", "log.wandb_project")


@dataclasses.dataclass(frozen=True)
class RunData:
  """One workdir's rows and flattened config."""

  workdir: str
  rows: tuple[dict[str, Any], ...]
  config: dict[str, Any]


def load_run(workdir: str) -> RunData:
  """Reads WORKDIR/metrics.jsonl and WORKDIR/config.json (if present)."""
  path = os.path.join(workdir, metrics_lib.METRICS_FILE)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"{workdir} has no {metrics_lib.METRICS_FILE}; pass run workdirs"
        " (folders written by `python -m mathrl.main`)")
  config_path = os.path.join(workdir, "config.json")
  config = {}
  if os.path.isfile(config_path):
    with open(config_path, encoding="utf-8") as f:
      config = configlib.flatten(json.load(f))
  return RunData(workdir, tuple(metrics_lib.read_jsonl(path)), config)


# A workdir name's seed suffix, as sweeps write it: `_seed3`, `_s3`, `-seed3`.
_SEED_SUFFIX = re.compile(r"[_-](?:seed|s)\d+$")


def run_name(run: RunData) -> str:
  """The workdir's folder name (`grpo_seed0`)."""
  return os.path.basename(os.path.normpath(run.workdir))


def _name_labels(groups: Sequence[list[RunData]]) -> list[str] | None:
  """Each group's common workdir stem, or None if stems do not tell apart."""
  stems = [{_SEED_SUFFIX.sub("", run_name(run)) for run in group}
           for group in groups]
  if any(len(s) != 1 for s in stems):
    return None
  labels = [next(iter(s)) for s in stems]
  return labels if len(set(labels)) == len(labels) else None


def group_runs(runs: Sequence[RunData]) -> dict[str, list[RunData]]:
  """{label: runs} for runs whose configs differ only in IGNORED_FIELDS."""
  keyed: dict[str, list[RunData]] = {}
  keys: dict[str, dict[str, Any]] = {}
  for run in runs:
    key = {k: v for k, v in run.config.items() if k not in IGNORED_FIELDS}
    text = json.dumps(key, sort_keys=True, default=str)
    keyed.setdefault(text, []).append(run)
    keys[text] = key
  named = _name_labels(list(keyed.values()))
  if named is not None:
    return dict(zip(named, keyed.values()))
  fields = sorted({f for key in keys.values() for f in key
                   if len({json.dumps(k.get(f), default=str)
                           for k in keys.values()}) > 1})
  return {
      ", ".join(f"{f}={keys[text].get(f)}" for f in fields): group
      for text, group in keyed.items()
  }


def curve_rows(run: RunData, key: str) -> list[dict[str, Any]]:
  """The rows of the run's curve stages that hold `key`, in logged order."""
  return [row for row in run.rows
          if row["stage"] in CURVE_STAGES and row.get(key) is not None]


def curve(run: RunData, key: str) -> dict[int, float]:
  """{RL step: value} of `key` in the run's curve stages.

  A step logged again (after a resume) has its last value.
  """
  return {int(row["step"]): float(row[key]) for row in curve_rows(run, key)}


# The logged wall-clock of a run: each RL step and each evaluation.
SECONDS_KEYS = ("step_seconds", "eval_seconds", "validation_seconds")


def elapsed_seconds(run: RunData) -> dict[int, float]:
  """τ_s = e_0 + Σ_{s'=1..s} (t_s' + e_s' + v_s'): seconds since RL began.

  At the end of each RL step s: t is a step's `step_seconds`, e and v the
  seconds of its test and validation evaluations (`eval_seconds`,
  `validation_seconds`; e_0 the evaluation before step 1), from the rows
  of its curve stages (`load_run` keeps one row per stage and step, so a
  step redone after a resume counts once, as redone). Compile time is
  inside the steps' seconds; model loading and checkpoint writes are not
  counted. Runs logged before evaluations were timed count their
  evaluations as 0 s.

  Raises:
    ValueError: when an RL step between 1 and the last has no row (a run
      logged with log.every_steps > 1): the sum would leave steps out.
  """
  rows = [row for row in run.rows if row["stage"] in CURVE_STAGES]
  steps = sorted(int(row["step"]) for row in rows if row["stage"] == "rl")
  missing = sorted(set(range(1, steps[-1] + 1)) - set(steps)) if steps else []
  if missing:
    more = " ..." if len(missing) > 5 else ""
    raise ValueError(
        f"{run.workdir}: RL steps {missing[:5]}{more} have no metrics row,"
        " so its elapsed time cannot be summed; plot it against the RL"
        " step, or rerun with log.every_steps=1")
  spent = {0: 0.0}
  for row in rows:
    s = int(row["step"])
    spent[s] = spent.get(s, 0.0) + sum(float(row.get(k) or 0.0)
                                       for k in SECONDS_KEYS)
  order = sorted(spent)
  return dict(zip(order, np.cumsum([spent[s] for s in order]).tolist()))
