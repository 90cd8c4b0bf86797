"""Final-number tables of run groups: 95% intervals, differences to a baseline.

  groups = workdirs.group_runs([workdirs.load_run(w) for w in WORKDIRS])
  print(tables.summary_table(groups, baseline="grpo"))

The table (markdown; `python -m mathrl.plot ... --table FILE.md` writes it)
gives per group the number of seeds (and how many stopped before their
config's `rl.steps`), test accuracy at the start and end of RL, their
difference, the last validation accuracy, the test accuracy at each run's
eval step of highest validation accuracy (model selection on validation,
earliest step on ties), per-level test accuracy and wall time: with one
seed the interval is the run's own over problems (Wilson or bootstrap, from
its metrics); with several, the 95% t-interval across seeds.

With a baseline (a group label, e.g. `grpo`) a "vs LABEL" column gives
each group's final test accuracy minus the baseline's, in points, with a
95% interval over seeds: paired t over per-seed differences when both
groups ran the same seeds (the config's `seed`: same SFT start and same
evaluation problems), Welch's t otherwise, none when a group has one seed.
`*` marks an interval that excludes 0. A second table gives the same
difference for the validation-chosen test accuracy and per difficulty
level.
"""

from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any

import numpy as np

from mathrl import stats
from mathrl import workdirs

RunData = workdirs.RunData
# A row of metrics.jsonl, or None where a run logged no such row.
Row = dict[str, Any] | None


def _ends(run: RunData, key: str) -> tuple[Row, Row]:
  """(first, last) rows of the run's curve that hold `key`, or Nones."""
  rows = sorted(workdirs.curve_rows(run, key), key=lambda r: r["step"])
  return (rows[0], rows[-1]) if rows else (None, None)


def _column(rows: Sequence[Row], key: str) -> tuple[float | None, ...]:
  """Each row's `key`, None for a missing row."""
  return tuple(None if r is None else r[key] for r in rows)


def _cell(runs: Sequence[RunData], values: Sequence[float | None],
          rows: Sequence[Row], key: str) -> str:
  """x [lo, hi]: one seed, its logged interval; several, x̄ ± t s/sqrt(S).

  One seed: the run's value with the interval over problems its row logged
  (`eval_ci_low/...`, `eval_ci_high/...`; none if not logged). Several:
  Student's t-interval over the S seeds (`stats.seed_interval`; Student
  1908, Biometrika 6(1)). "-" when a seed has no value.
  """
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


def _level(key: str) -> str:
  """The difficulty level of an `eval_accuracy/difficulty_N` key: 'N'."""
  return key.rpartition("_")[2]


def _levels(groups: Mapping[str, Sequence[RunData]]) -> list[str]:
  """Every per-level test accuracy key any run logged, by level."""
  keys = {k for runs in groups.values() for run in runs for row in run.rows
          for k in row if k.startswith("eval_accuracy/difficulty_")}
  return sorted(keys, key=lambda k: int(_level(k)))


def _rl_seconds(run: RunData) -> float:
  """Σ_s t_s over the run's RL steps s, t_s its last logged `step_seconds`.

  A step logged again after a resume (the steps since the last checkpoint
  are redone) counts once, as redone.
  """
  last = {r["step"]: r.get("step_seconds") or 0.0 for r in run.rows
          if r["stage"] == "rl"}
  return sum(last.values())


def _val_chosen(run: RunData) -> tuple[int | None, Row]:
  """s* = argmax_s (validation_s, -s): the step of best validation accuracy.

  Model selection on a validation split (Hastie et al. 2009, "The Elements
  of Statistical Learning", §7.2). Candidates are the curve steps that
  logged both validation and test accuracy (in one row or two); ties go to
  the earliest step. A step logged again after a resume counts with its
  last value. Returns (s*, row), `row` the last row at s* holding
  `eval_accuracy` (it carries the test interval); (None, None) if no step
  logged both.
  """
  valid = workdirs.curve(run, "validation_accuracy")
  steps = sorted(set(valid) & set(workdirs.curve(run, "eval_accuracy")))
  if not steps:
    return None, None
  step = max(steps, key=lambda s: (valid[s], -s))
  row = [r for r in workdirs.curve_rows(run, "eval_accuracy")
         if r["step"] == step][-1]
  return step, row


def _unfinished(run: RunData) -> str | None:
  """'NAME (step i of n)' if the run stopped before its config's rl.steps."""
  total = run.config.get("rl.steps")
  steps = [r["step"] for r in run.rows if r["stage"] == "rl"]
  last = max(steps, default=0)
  if total is None or last >= total:
    return None
  return f"{workdirs.run_name(run)} (step {last} of {total})"


def _difference(values: Sequence[float | None], runs: Sequence[RunData],
                base_values: Sequence[float | None],
                base_runs: Sequence[RunData]) -> str:
  """x̄ - ȳ [lo, hi] in points, paired t or Welch's: '+2.1 [+0.4, +3.8]*'.

  Paired t over d_s = x_s - y_s (Student 1908, Biometrika 6(1);
  `stats.paired_interval`) when both groups ran the same set of distinct
  seeds (two or more); otherwise Welch's t (Welch 1947, Biometrika 34;
  `stats.welch_interval`), which needs two seeds in each group; a group
  with one seed gives the difference without an interval. `*` marks an
  interval that excludes 0.
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
  """Per seed of one group: the rows the table reads (None: not logged)."""

  start_rows: tuple[Row, ...]
  end_rows: tuple[Row, ...]
  chosen_steps: tuple[int | None, ...]
  chosen_rows: tuple[Row, ...]
  level_rows: dict[str, tuple[Row, ...]]

  @property
  def start(self) -> tuple[float | None, ...]:
    return _column(self.start_rows, "eval_accuracy")

  @property
  def end(self) -> tuple[float | None, ...]:
    return _column(self.end_rows, "eval_accuracy")

  @property
  def change(self) -> tuple[float | None, ...]:
    """Δ_s = end_s - start_s: seed s's test accuracy gained by RL."""
    return tuple(None if a is None or b is None else b - a
                 for a, b in zip(self.start, self.end))

  @property
  def chosen(self) -> tuple[float | None, ...]:
    return _column(self.chosen_rows, "eval_accuracy")

  def level(self, key: str) -> tuple[float | None, ...]:
    return _column(self.level_rows[key], key)


def _numbers(runs: Sequence[RunData], levels: Sequence[str]) -> _GroupNumbers:
  """The rows each seed of the group gives the table."""
  starts, ends = zip(*(_ends(run, "eval_accuracy") for run in runs))
  steps, chosen = zip(*(_val_chosen(run) for run in runs))
  return _GroupNumbers(
      starts, ends, steps, chosen,
      {key: tuple(_ends(run, key)[1] for run in runs) for key in levels})


def _row(label: str, runs: Sequence[RunData], levels: Sequence[str],
         numbers: _GroupNumbers, baseline: str | None,
         base_numbers: _GroupNumbers | None,
         base_runs: Sequence[RunData]) -> list[str]:
  """The main table's cells of one group."""
  valid = [next((r["validation_accuracy"] for r in reversed(run.rows)
                 if r.get("validation_accuracy") is not None), None)
           for run in runs]
  chosen = _cell(runs, numbers.chosen, numbers.chosen_rows, "eval_accuracy")
  if None not in numbers.chosen_steps:
    chosen += " @" + ",".join(str(s) for s in numbers.chosen_steps)
  unfinished = sum(_unfinished(run) is not None for run in runs)
  cells = [label, f"{len(runs)} ({unfinished} unfinished)" if unfinished
           else str(len(runs)),
           _cell(runs, numbers.start, numbers.start_rows, "eval_accuracy"),
           _cell(runs, numbers.end, numbers.end_rows, "eval_accuracy")]
  if baseline is not None:
    cells.append("(baseline)" if label == baseline else _difference(
        numbers.end, runs, base_numbers.end, base_runs))
  cells += [_cell(runs, numbers.change, [None] * len(runs), "change"),
            _cell(runs, valid, [None] * len(runs), "validation"), chosen]
  for key in levels:
    cells.append(_cell(runs, numbers.level(key), numbers.level_rows[key],
                       key))
  cells.append(f"{np.mean([_rl_seconds(run) for run in runs]):.0f}")
  return cells


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list:
  """The lines of a markdown table."""
  return (["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
          + ["| " + " | ".join(cells) + " |" for cells in rows])


def _difference_table(groups: Mapping[str, Sequence[RunData]],
                      numbers: Mapping[str, _GroupNumbers],
                      levels: Sequence[str], baseline: str) -> list[str]:
  """Per group: test accuracy minus the baseline's, val.-chosen and levels."""
  header = (["run", "test acc. (val.-chosen)"]
            + [f"test level {_level(k)}" for k in levels])
  base, base_runs = numbers[baseline], groups[baseline]
  rows = []
  for label, runs in groups.items():
    if label == baseline:
      continue
    cells = [label, _difference(numbers[label].chosen, runs, base.chosen,
                                base_runs)]
    cells += [_difference(numbers[label].level(k), runs, base.level(k),
                          base_runs) for k in levels]
    rows.append(cells)
  title = (f"Difference to {baseline} in points (95% interval; levels at"
           " the final step):")
  return ["", title, ""] + _markdown(header, rows)


def check_baseline(groups: Mapping[str, Sequence[RunData]],
                   baseline: str | None) -> None:
  """Raises ValueError naming the groups if `baseline` is not one of them."""
  if baseline is not None and baseline not in groups:
    raise ValueError(
        f"--baseline {baseline!r} names no group; the groups are:"
        f" {', '.join(repr(label) for label in groups)}")


def summary_table(groups: Mapping[str, Sequence[RunData]],
                  baseline: str | None = None) -> str:
  """A markdown table of final numbers per group, with 95% intervals.

  With `baseline` (a group label) a "vs LABEL" column gives each group's
  final test accuracy minus the baseline's, and a second table the same
  difference at the validation-chosen step and per difficulty level.
  """
  check_baseline(groups, baseline)
  levels = _levels(groups)
  numbers = {label: _numbers(runs, levels) for label, runs in groups.items()}
  header = (["run", "seeds", "test acc. start", "test acc. end"]
            + ([f"vs {baseline}"] if baseline is not None else [])
            + ["change", "validation acc. (last)", "test acc. (val.-chosen)"]
            + [f"test level {_level(k)}" for k in levels]
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
  """The paragraph under the tables: what the intervals and columns mean."""
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
