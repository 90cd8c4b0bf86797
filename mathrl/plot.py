"""Training curves and a summary table from run workdirs.

  python -m mathrl.plot WORKDIR [WORKDIR ...] --out FILE.png [--table FILE.md]

Reads each workdir's metrics.jsonl and config.json. Runs whose configs are
equal except for `seed` (and the paths in `IGNORED_FIELDS`) form a group;
each panel draws one line per group: the mean over its seeds at every step
logged by all of them, with the band from the lowest to the highest seed.
Panels: reward, test (held-out evaluation) accuracy, validation accuracy,
entropy, response length, KL and clip fraction against the RL step; a
panel no run logged is left out. Groups are labelled by their workdirs'
name without the seed suffix (`grpo_seed0`, `grpo_seed1` -> `grpo`, as
`mathrl.sweep` names them) when that names every group apart, otherwise by
the config fields in which they differ.

The table (markdown, printed and optionally written) gives per group the
number of seeds, test accuracy at the start and end of RL, their
difference, the last validation accuracy, and wall time: with one seed the
interval is the run's own over problems (Wilson or bootstrap, from its
metrics); with several, the 95% t-interval across seeds.
"""

import argparse
from collections.abc import Mapping, Sequence
import dataclasses
import json
import os
import re
import sys
from typing import Any

import numpy as np

from mathrl import metrics as metrics_lib
from mathrl import stats

# (title, metric key) of each panel, in order.
PANELS = (
    ("reward", "reward_mean"),
    ("test accuracy", "eval_accuracy"),
    ("validation accuracy", "validation_accuracy"),
    ("entropy", "entropy"),
    ("response length (tokens)", "response_length_mean"),
    ("KL to reference", "kl"),
    ("clip fraction", "clip_fraction"),
)
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


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


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
      config = _flatten(json.load(f))
  return RunData(workdir, tuple(metrics_lib.read_jsonl(path)), config)


# A workdir name's seed suffix, as sweeps write it: `_seed3`, `_s3`, `-seed3`.
_SEED_SUFFIX = re.compile(r"[_-](?:seed|s)\d+$")


def _stem(run: RunData) -> str:
  return _SEED_SUFFIX.sub("", os.path.basename(os.path.normpath(run.workdir)))


def _name_labels(groups: Sequence[list[RunData]]) -> list[str] | None:
  """Each group's common workdir stem, or None if stems do not tell apart."""
  stems = [{_stem(run) for run in group} for group in groups]
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


def curve(run: RunData, key: str) -> dict[int, float]:
  """{RL step: value} of `key` in the run's curve stages."""
  return {
      int(row["step"]): float(row[key]) for row in run.rows
      if row["stage"] in CURVE_STAGES and row.get(key) is not None
  }


def group_curve(runs: Sequence[RunData], key: str):
  """(steps, mean, low, high) over the steps every run of the group logged."""
  curves = [curve(run, key) for run in runs]
  steps = sorted(set.intersection(*(set(c) for c in curves)))
  values_RS = np.array([[c[s] for s in steps] for c in curves], np.float64)
  if not steps:
    return steps, values_RS, values_RS, values_RS
  return (np.array(steps), values_RS.mean(axis=0), values_RS.min(axis=0),
          values_RS.max(axis=0))


def plot(groups: Mapping[str, Sequence[RunData]], out: str):
  """Draws the panels to `out` (PNG); returns the matplotlib figure."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  panels = [(title, key) for title, key in PANELS
            if any(curve(run, key) for runs in groups.values()
                   for run in runs)]
  if not panels:
    raise ValueError("no run logged any plotted metric"
                     f" ({', '.join(key for _, key in PANELS)})")
  cols = min(3, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows),
                           squeeze=False)
  for ax, (title, key) in zip(axes.flat, panels):
    for i, (label, runs) in enumerate(groups.items()):
      steps, mean, low, high = group_curve(runs, key)
      if not len(steps):
        continue
      color = f"C{i % 10}"
      ax.plot(steps, mean, color=color, label=f"{label} (n={len(runs)})",
              marker="o" if len(steps) <= 20 else None, markersize=3)
      if len(runs) > 1:
        ax.fill_between(steps, low, high, color=color, alpha=0.2)
    ax.set_title(title)
    ax.set_xlabel("RL step")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(panels):]:
    ax.set_visible(False)
  handles, labels = axes.flat[0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)),
             fontsize="small", bbox_to_anchor=(0.5, 0.0))
  fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 3), 1, 1))
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=100)
  plt.close(fig)
  return fig


def _ends(run: RunData, key: str):
  """(first, last) rows of the run's curve that hold `key`, or Nones."""
  rows = sorted((r for r in run.rows
                 if r["stage"] in CURVE_STAGES and r.get(key) is not None),
                key=lambda r: r["step"])
  return (rows[0], rows[-1]) if rows else (None, None)


def _cell(runs: Sequence[RunData], values: Sequence[float | None],
          rows: Sequence[dict[str, Any] | None], key: str) -> str:
  """One seed: its value with its interval over problems; several: t."""
  if any(v is None for v in values) or not values:
    return "-"
  if len(runs) == 1:
    row, value = rows[0], values[0]
    low = row.get(key.replace("eval_", "eval_ci_low/", 1)) if row else None
    high = row.get(key.replace("eval_", "eval_ci_high/", 1)) if row else None
    if low is None or high is None:
      return f"{100 * value:.1f}"
    return stats.format_interval(value, low, high)
  return stats.format_interval(*stats.seed_interval(values))


def _levels(groups: Mapping[str, Sequence[RunData]]) -> list[str]:
  keys = {k for runs in groups.values() for run in runs for row in run.rows
          for k in row if k.startswith("eval_accuracy/difficulty_")}
  return sorted(keys, key=lambda k: int(k.rpartition("_")[2]))


def _rl_seconds(run: RunData) -> float:
  """Seconds of the run's RL steps; a step logged again after a resume
  (the steps since the last checkpoint are redone) counts once, as redone."""
  last = {r["step"]: r.get("step_seconds") or 0.0 for r in run.rows
          if r["stage"] == "rl"}
  return sum(last.values())


def summary_table(groups: Mapping[str, Sequence[RunData]]) -> str:
  """A markdown table of final numbers per group, with 95% intervals."""
  levels = _levels(groups)
  header = (["run", "seeds", "test acc. start", "test acc. end", "change",
             "validation acc. (last)"]
            + [f"test level {k.rpartition('_')[2]}" for k in levels]
            + ["RL seconds"])
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * len(header)]
  for label, runs in groups.items():
    firsts, lasts = zip(*(_ends(run, "eval_accuracy") for run in runs))
    start = [r and r["eval_accuracy"] for r in firsts]
    end = [r and r["eval_accuracy"] for r in lasts]
    change = [None if a is None or b is None else b - a
              for a, b in zip(start, end)]
    valid = [next((r["validation_accuracy"] for r in reversed(run.rows)
                   if r.get("validation_accuracy") is not None), None)
             for run in runs]
    cells = [label, str(len(runs)),
             _cell(runs, start, firsts, "eval_accuracy"),
             _cell(runs, end, lasts, "eval_accuracy"),
             _cell(runs, change, [None] * len(runs), "change"),
             _cell(runs, valid, [None] * len(runs), "validation")]
    for key in levels:
      ends = [_ends(run, key)[1] for run in runs]
      cells.append(_cell(runs, [r and r[key] for r in ends], ends, key))
    seconds = [_rl_seconds(run) for run in runs]
    cells.append(f"{np.mean(seconds):.0f}")
    lines.append("| " + " | ".join(cells) + " |")
  note = ("Intervals: one seed, 95% over the evaluated problems (Wilson or"
          " bootstrap); several seeds, the 95% t-interval of the seeds'"
          " values. Test = the held-out evaluation set; validation = the"
          " split used for stopping and selection.")
  return "\n".join(lines + ["", note])


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m mathrl.plot",
      description="Curves (PNG) and a final-number table (markdown) from"
      " run workdirs; seeds of one config are averaged.")
  parser.add_argument("workdirs", nargs="+", metavar="WORKDIR")
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--table", default="",
                      help="also write the markdown table to this file")
  args = parser.parse_args(argv)
  groups = group_runs([load_run(w) for w in args.workdirs])
  plot(groups, args.out)
  table = summary_table(groups)
  if args.table:
    with open(args.table, "w", encoding="utf-8") as f:
      f.write(table + "\n")
  print(table)
  print(f"wrote {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
