"""Training curves and a summary table from run workdirs.

  python -m mathrl.plot WORKDIR [WORKDIR ...] --out FILE.png [--table FILE.md]
      [--baseline LABEL]

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
number of seeds (and how many stopped before their config's `rl.steps`),
test accuracy at the start and end of RL, their difference, the last
validation accuracy, the test accuracy at each run's eval step of highest
validation accuracy (model selection on validation, earliest step on
ties), per-level test accuracy and wall time: with one seed the interval
is the run's own over problems (Wilson or bootstrap, from its metrics);
with several, the 95% t-interval across seeds.

`--baseline LABEL` (a group label, e.g. `grpo`) adds a "vs LABEL" column:
each group's final test accuracy minus the baseline's, in points, with a
95% interval over seeds: paired t over per-seed differences when both
groups ran the same seeds (the config's `seed`: same SFT start and same
evaluation problems), Welch's t otherwise, none when a group has one seed.
`*` marks an interval that excludes 0. A second table gives the same
difference for the validation-chosen test accuracy and per difficulty
level.
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


def _val_chosen(run: RunData):
  """(step, row) of the eval step with the highest validation accuracy.

  Candidates are the curve steps that logged both validation and test
  accuracy (in one row or two); ties go to the earliest step. A step
  logged again after a resume counts with its last value. `row` is the
  last row at that step holding `eval_accuracy` (it carries the test
  interval). (None, None) if no step logged both.
  """
  valid = curve(run, "validation_accuracy")
  steps = sorted(set(valid) & set(curve(run, "eval_accuracy")))
  if not steps:
    return None, None
  step = max(steps, key=lambda s: (valid[s], -s))
  row = [r for r in run.rows if r["stage"] in CURVE_STAGES
         and r["step"] == step and r.get("eval_accuracy") is not None][-1]
  return step, row


def _unfinished(run: RunData) -> str | None:
  """'NAME (step i of n)' if the run stopped before its config's rl.steps."""
  total = run.config.get("rl.steps")
  steps = [r["step"] for r in run.rows if r["stage"] == "rl"]
  last = max(steps, default=0)
  if total is None or last >= total:
    return None
  name = os.path.basename(os.path.normpath(run.workdir))
  return f"{name} (step {last} of {total})"


def _difference(values: Sequence[float | None], runs: Sequence[RunData],
                base_values: Sequence[float | None],
                base_runs: Sequence[RunData]) -> str:
  """'+2.1 [0.4, 3.8]* (paired)': points vs the baseline, 95% interval.

  Paired by seed when both groups ran the same set of distinct seeds (two
  or more), otherwise Welch's interval (both groups need two seeds); a
  group with one seed gives the difference without an interval.
  """
  if not values or not base_values or None in values or None in base_values:
    return "-"
  seeds = [run.config.get("seed") for run in runs]
  base_seeds = [run.config.get("seed") for run in base_runs]
  diff = float(np.mean(values) - np.mean(base_values))
  if (None not in seeds and len(set(seeds)) == len(seeds) > 1
      and sorted(seeds) == sorted(base_seeds)):
    base = dict(zip(base_seeds, base_values))
    diff, low, high = stats.paired_interval(
        values, [base[seed] for seed in seeds])
    kind = "paired"
  elif len(values) > 1 and len(base_values) > 1:
    diff, low, high = stats.welch_interval(values, base_values)
    kind = "Welch"
  else:
    return f"{100 * diff:+.1f} (no CI)"
  mark = "*" if low > 0 or high < 0 else ""
  return (f"{100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]{mark}"
          f" ({kind})")


@dataclasses.dataclass(frozen=True)
class _GroupNumbers:
  """Per seed of one group: the table's numbers (None where not logged)."""

  end_rows: tuple[dict[str, Any] | None, ...]
  end: tuple[float | None, ...]
  chosen_steps: tuple[int | None, ...]
  chosen_rows: tuple[dict[str, Any] | None, ...]
  chosen: tuple[float | None, ...]
  level_rows: dict[str, tuple[dict[str, Any] | None, ...]]
  levels: dict[str, tuple[float | None, ...]]


def _numbers(runs: Sequence[RunData], levels: Sequence[str]) -> _GroupNumbers:
  lasts = tuple(_ends(run, "eval_accuracy")[1] for run in runs)
  steps, chosen = zip(*(_val_chosen(run) for run in runs))
  level_rows = {key: tuple(_ends(run, key)[1] for run in runs)
                for key in levels}
  return _GroupNumbers(
      lasts, tuple(r and r["eval_accuracy"] for r in lasts),
      steps, chosen, tuple(r and r["eval_accuracy"] for r in chosen),
      level_rows, {key: tuple(r and r[key] for r in rows)
                   for key, rows in level_rows.items()})


def _row(label: str, runs: Sequence[RunData], levels: Sequence[str],
         numbers: _GroupNumbers, baseline: str | None,
         base_numbers: _GroupNumbers | None,
         base_runs: Sequence[RunData]) -> list[str]:
  """The main table's cells of one group."""
  firsts = [_ends(run, "eval_accuracy")[0] for run in runs]
  start = [r and r["eval_accuracy"] for r in firsts]
  change = [None if a is None or b is None else b - a
            for a, b in zip(start, numbers.end)]
  valid = [next((r["validation_accuracy"] for r in reversed(run.rows)
                 if r.get("validation_accuracy") is not None), None)
           for run in runs]
  chosen = _cell(runs, numbers.chosen, numbers.chosen_rows, "eval_accuracy")
  if None not in numbers.chosen_steps:
    chosen += " @" + ",".join(str(s) for s in numbers.chosen_steps)
  unfinished = sum(_unfinished(run) is not None for run in runs)
  cells = [label, f"{len(runs)} ({unfinished} unfinished)" if unfinished
           else str(len(runs)),
           _cell(runs, start, firsts, "eval_accuracy"),
           _cell(runs, numbers.end, numbers.end_rows, "eval_accuracy")]
  if baseline is not None:
    cells.append("(baseline)" if label == baseline else _difference(
        numbers.end, runs, base_numbers.end, base_runs))
  cells += [_cell(runs, change, [None] * len(runs), "change"),
            _cell(runs, valid, [None] * len(runs), "validation"), chosen]
  for key in levels:
    cells.append(_cell(runs, numbers.levels[key], numbers.level_rows[key],
                       key))
  cells.append(f"{np.mean([_rl_seconds(run) for run in runs]):.0f}")
  return cells


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list:
  return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
          + ["| " + " | ".join(cells) + " |" for cells in rows])


def _difference_table(groups: Mapping[str, Sequence[RunData]],
                      numbers: Mapping[str, _GroupNumbers],
                      levels: Sequence[str], baseline: str) -> list[str]:
  """Per group: test accuracy minus the baseline's, val.-chosen and levels."""
  header = (["run", "test acc. (val.-chosen)"]
            + [f"test level {k.rpartition('_')[2]}" for k in levels])
  base, base_runs = numbers[baseline], groups[baseline]
  rows = []
  for label, runs in groups.items():
    if label == baseline:
      continue
    cells = [label, _difference(numbers[label].chosen, runs, base.chosen,
                                base_runs)]
    cells += [_difference(numbers[label].levels[k], runs, base.levels[k],
                          base_runs) for k in levels]
    rows.append(cells)
  title = (f"Difference to {baseline} in points (95% interval; levels at"
           " the final step):")
  return ["", title, ""] + _markdown(header, rows)


def summary_table(groups: Mapping[str, Sequence[RunData]],
                  baseline: str | None = None) -> str:
  """A markdown table of final numbers per group, with 95% intervals.

  With `baseline` (a group label) a "vs LABEL" column gives each group's
  final test accuracy minus the baseline's, and a second table the same
  difference at the validation-chosen step and per difficulty level.
  """
  if baseline is not None and baseline not in groups:
    raise ValueError(
        f"--baseline {baseline!r} names no group; the groups are:"
        f" {', '.join(repr(label) for label in groups)}")
  levels = _levels(groups)
  numbers = {label: _numbers(runs, levels) for label, runs in groups.items()}
  header = (["run", "seeds", "test acc. start", "test acc. end"]
            + ([f"vs {baseline}"] if baseline is not None else [])
            + ["change", "validation acc. (last)", "test acc. (val.-chosen)"]
            + [f"test level {k.rpartition('_')[2]}" for k in levels]
            + ["RL seconds"])
  rows = [_row(label, runs, levels, numbers[label], baseline,
               numbers.get(baseline), groups.get(baseline, ()))
          for label, runs in groups.items()]
  lines = _markdown(header, rows)
  if baseline is not None:
    lines += _difference_table(groups, numbers, levels, baseline)
  return "\n".join(lines + ["", _note(groups, baseline)])


def _note(groups: Mapping[str, Sequence[RunData]],
          baseline: str | None) -> str:
  note = ("Intervals: one seed, 95% over the evaluated problems (Wilson or"
          " bootstrap); several seeds, the 95% t-interval of the seeds'"
          " values. Test = the held-out evaluation set; validation = the"
          " split used for stopping and selection. Test acc. (val.-chosen)"
          " = each run's test accuracy at its eval step of highest"
          " validation accuracy (earliest on ties; @ lists the steps).")
  if baseline is not None:
    note += (f" vs {baseline}: final test accuracy minus {baseline}'s, in"
             " points, with the 95% interval of the difference: paired t"
             " over the per-seed differences when both groups ran the same"
             " seeds, Welch's t otherwise; no CI: a group has one seed, so"
             " there is no spread over seeds to judge by. * = the interval"
             " excludes 0 (a difference at the 5% level).")
  unfinished = [u for runs in groups.values() for run in runs
                if (u := _unfinished(run))]
  if unfinished:
    note += (" Unfinished runs (their numbers are from their last eval):"
             f" {', '.join(unfinished)}.")
  return note


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
  args = parser.parse_args(argv)
  groups = group_runs([load_run(w) for w in args.workdirs])
  if args.baseline is not None and args.baseline not in groups:
    parser.error(f"--baseline {args.baseline!r} names no group; the groups"
                 f" are: {', '.join(repr(label) for label in groups)}")
  plot(groups, args.out)
  table = summary_table(groups, baseline=args.baseline)
  if args.table:
    with open(args.table, "w", encoding="utf-8") as f:
      f.write(table + "\n")
  print(table)
  print(f"wrote {args.out}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
