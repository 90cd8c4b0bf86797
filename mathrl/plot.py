"""Training curves and a summary table from run workdirs.

  python -m mathrl.plot WORKDIR [WORKDIR ...] --out FILE.png [--table FILE.md]
      [--baseline LABEL] [--x hours]

Reads each workdir's metrics.jsonl and config.json. Runs whose configs are
equal except for `seed` form a group (`mathrl.workdirs`: which fields are
ignored, how groups are labelled); each panel draws one line per group:
the mean over its seeds at every step logged by all of them, with the band
from the lowest to the highest seed. Panels: reward, test (held-out
evaluation) accuracy, validation accuracy, entropy, response length, KL and
clip fraction against the RL step; a panel no run logged is left out.
`--x hours` draws them against wall-clock hours since RL began instead
(`workdirs.elapsed_seconds`: the steps' and evaluations' logged seconds),
each group's point at the mean over its seeds of the hours at that step:
methods that cost different time per step compared at equal time.

The table (`mathrl.tables`, markdown, printed and optionally written) gives
per group the number of seeds (and how many stopped before their config's
`rl.steps`), test accuracy at the start and end of RL, their difference,
the last validation accuracy, the test accuracy at each run's eval step of
highest validation accuracy, per-level test accuracy and wall time, with
95% intervals (one seed: over problems; several: t over seeds).

`--baseline LABEL` (a group label, e.g. `grpo`) adds a "vs LABEL" column:
each group's final test accuracy minus the baseline's, in points, with a
95% interval over seeds (paired t when both groups ran the same seeds,
Welch's t otherwise); `*` marks an interval that excludes 0. A second
table gives the same difference for the validation-chosen test accuracy
and per difficulty level.
"""

import argparse
from collections.abc import Mapping, Sequence
import os
import sys

import numpy as np

from mathrl import tables
from mathrl import workdirs

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


def group_curve(runs: Sequence[workdirs.RunData], key: str):
  """x̄_s = mean_r x_rs with band [min_r x_rs, max_r x_rs] over seeds r.

  The mean curve of a group of seeds and its spread (no interval: with
  few seeds the range says what was seen). Steps s are those every run of
  the group logged `key` at. Returns (steps, mean, low, high).
  """
  curves = [workdirs.curve(run, key) for run in runs]
  steps = sorted(set.intersection(*(set(c) for c in curves)))
  values_RS = np.array([[c[s] for s in steps] for c in curves], np.float64)
  if not steps:
    return steps, values_RS, values_RS, values_RS
  return (np.array(steps), values_RS.mean(axis=0), values_RS.min(axis=0),
          values_RS.max(axis=0))


# The panels' x axes (`plot(x=...)`, `--x`).
X_AXES = ("step", "hours")


def group_x(runs: Sequence[workdirs.RunData], steps, x: str) -> np.ndarray:
  """x_s = s (x "step"), or h̄_s = mean_r τ_rs / 3600 (x "hours").

  τ_rs is run r's elapsed seconds at the end of step s
  (`workdirs.elapsed_seconds`); the group's point for step s is drawn at
  its seeds' mean.
  """
  if x == "step":
    return np.asarray(steps)
  if x != "hours":
    raise ValueError(f"x must be one of {X_AXES}, got {x!r}")
  elapsed = [workdirs.elapsed_seconds(run) for run in runs]
  return np.array([np.mean([e[s] for e in elapsed]) for s in steps]) / 3600


def plot(groups: Mapping[str, Sequence[workdirs.RunData]], out: str,
         x: str = "step"):
  """Draws the panels to `out` (PNG) against `x`; returns the figure."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  panels = [(title, key) for title, key in PANELS
            if any(workdirs.curve(run, key) for runs in groups.values()
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
      xs = group_x(runs, steps, x)
      ax.plot(xs, mean, color=color, label=f"{label} (n={len(runs)})",
              marker="o" if len(steps) <= 20 else None, markersize=3)
      if len(runs) > 1:
        ax.fill_between(xs, low, high, color=color, alpha=0.2)
    ax.set_title(title)
    ax.set_xlabel("RL step" if x == "step" else
                  "hours (RL steps and evaluations)")
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


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m mathrl.plot",
      description="Curves (PNG) and a final-number table (markdown) from"
      " run workdirs; seeds of one config are averaged.")
  parser.add_argument("workdirs", nargs="+", metavar="WORKDIR")
  parser.add_argument("--out", required=True, help="the PNG to write")
  parser.add_argument("--table", default="",
                      help="also write the markdown table to this file")
  parser.add_argument(
      "--baseline", default=None, metavar="LABEL",
      help="a group label (e.g. grpo): add each group's difference to it,"
      " with a paired or Welch 95%% interval")
  parser.add_argument(
      "--x", default="step", choices=X_AXES,
      help="the curves' x axis: the RL step, or wall-clock hours since RL"
      " began (the logged seconds of its steps and evaluations)")
  args = parser.parse_args(argv)
  groups = workdirs.group_runs([workdirs.load_run(w) for w in args.workdirs])
  try:
    tables.check_baseline(groups, args.baseline)
    plot(groups, args.out, x=args.x)
  except ValueError as e:
    parser.error(str(e))
  table = tables.summary_table(groups, baseline=args.baseline)
  if args.table:
    with open(args.table, "w", encoding="utf-8") as f:
      f.write(table + "\n")
  print(table)
  print(f"wrote {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
