"""Sweeps: many runs of one base config, one workdir each, from one file.

  python -m mathrl.sweep SWEEP.py --root DIR [--processes N] [--dry_run]
  python -m mathrl.sweep SWEEP.py --root DIR --tpu NAME --zone ZONE

A sweep file is Python that defines

  BASE = "configs/default.py"        # the config every point starts from
  POINTS = sweep.seeds(sweep.grid({"rl.learning_rate": [1e-4, 3e-4]}),
                       [0, 1, 2])    # a list of {field: value} dicts

Paths in it are relative to the repository root (the folder holding
`mathrl/`). A point is a dict of `--config.FIELD=VALUE` overrides plus two
optional keys: "config", another config file for this point (a recipe),
and "name", its workdir's name (otherwise built from the overrides).
`grid`, `union`, `product`, `seeds` and `recipe_on_base` build the list.

The local runner executes the points one after another, or N at a time,
each as `python -m mathrl.main --config=... --workdir=ROOT/NAME
--config.a.b=v ...` with its output in ROOT/NAME/log.txt. A point whose
workdir holds summary.json is finished and skipped; any other is started
with the same command, so an interrupted point resumes from its last
checkpoint (the trainer's resume). With --tpu, the same points are printed
as Cloud TPU VM commands (one `gcloud compute tpus tpu-vm ssh` per point,
run on every worker of the slice) instead of being run.
"""

import argparse
from collections.abc import Iterable, Mapping, Sequence
import dataclasses
import importlib.util
import itertools
import os
import re
import shlex
import subprocess
import sys
import time
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUMMARY_FILE = "summary.json"
LOG_FILE = "log.txt"
_RESERVED = ("config", "name")

Overrides = dict[str, Any]


# --- building the list of points ----------------------------------------------


def grid(axes: Mapping[str, Sequence[Any]]) -> list[Overrides]:
  """Every combination of the axes' values (the last axis varies fastest).

  grid({"a": [1, 2], "b": [3]}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
  """
  fields = list(axes)
  return [dict(zip(fields, values))
          for values in itertools.product(*(axes[f] for f in fields))]


def union(*point_lists: Iterable[Overrides]) -> list[Overrides]:
  """The points of every list, in order (a list sweep)."""
  return [dict(p) for points in point_lists for p in points]


def product(*point_lists: Iterable[Overrides]) -> list[Overrides]:
  """Each point of the first list merged with each of the next, and so on.

  Names ("name" keys) are joined with "_".
  """
  out: list[Overrides] = [{}]
  for points in point_lists:
    merged = []
    for a in out:
      for b in points:
        point = {**a, **b}
        names = [p["name"] for p in (a, b) if "name" in p]
        if names:
          point["name"] = "_".join(names)
        merged.append(point)
    out = merged
  return out


def seeds(points: Iterable[Overrides],
          values: Sequence[int]) -> list[Overrides]:
  """Every point once per seed (seed varies fastest); names get "_seedS"."""
  out = []
  for point in points:
    for s in values:
      seeded = {**point, "seed": s}
      if "name" in point:
        seeded["name"] = f"{point['name']}_seed{s}"
      out.append(seeded)
  return out


def load_config(path: str):
  """`get_config(arg)` of a config file ("configs/x.py[:arg]")."""
  path, _, arg = path.partition(":")
  full = path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)
  from mathrl import configlib  # pylint: disable=g-import-not-at-top
  return configlib.load_file(full, arg or None)


def recipe_on_base(recipe: str, base: str) -> Overrides:
  """A method's recipe run on a base job: the recipe file plus base fields.

  The point uses `recipe` as its config and overrides every field in which
  `base` differs from `configlib.base_config()` and `recipe` does not (the
  base job's data, SFT, budget and evaluation), so the method's own
  hyperparameters stay the recipe's. Fields inside *_kwargs sections come
  only from the recipe (they cannot be added on the command line).

  Args:
    recipe: a config file, e.g. "configs/dgpo.py".
    base: the job's config file, e.g. "configs/default.py".

  Returns:
    A point: {"config": recipe, "name": the recipe's file name, **fields}.
  """
  from mathrl import configlib  # pylint: disable=g-import-not-at-top
  default = configlib.flatten(configlib.base_config())
  base_flat = configlib.flatten(load_config(base))
  recipe_flat = configlib.flatten(load_config(recipe))
  point: Overrides = {
      "config": recipe,
      "name": os.path.splitext(os.path.basename(recipe.partition(":")[0]))[0],
  }
  for field, value in base_flat.items():
    if "_kwargs." in field or field not in default:
      continue
    if value != default[field] and recipe_flat.get(field) == default[field]:
      point[field] = value
  return point


# --- a loaded sweep -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
  """One run: its workdir name, config file and command-line overrides."""

  name: str
  config: str
  overrides: tuple[tuple[str, Any], ...]


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A sweep file's base config and points."""

  path: str
  base: str
  points: tuple[Point, ...]


def _auto_name(overrides: Mapping[str, Any]) -> str:
  parts = [f"{field.rpartition('.')[2]}={value}"
           for field, value in overrides.items()]
  return "_".join(parts) or "base"


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", name).strip("-") or "point"


def load(path: str) -> Sweep:
  """Reads a sweep file (BASE and POINTS); checks names are unique."""
  spec = importlib.util.spec_from_file_location("_sweep_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  for attr in ("BASE", "POINTS"):
    if not hasattr(module, attr):
      raise ValueError(
          f"sweep file {path} defines no {attr}; it needs BASE (a config"
          " file) and POINTS (a list of {field: value} dicts)")
  points = []
  for raw in module.POINTS:
    overrides = {k: v for k, v in raw.items() if k not in _RESERVED}
    points.append(Point(
        name=_safe(raw.get("name") or _auto_name(overrides)),
        config=raw.get("config", module.BASE),
        overrides=tuple(overrides.items()),
    ))
  names = [p.name for p in points]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise ValueError(
        f"sweep file {path}: points share workdir names {repeated}; give"
        " them distinct overrides or a 'name' key")
  return Sweep(path=path, base=module.BASE, points=tuple(points))


def point_config(point: Point):
  """The point's ConfigDict: its config file with its overrides applied."""
  config = load_config(point.config)
  for field, value in point.overrides:
    *sections, leaf = field.split(".")
    node = config
    for section in sections:
      node = node[section]
    if leaf not in node:
      raise KeyError(f"point {point.name}: {field} is not a config field")
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


# --- commands -----------------------------------------------------------------


def flag_value(value: Any) -> str:
  """A config value as config_flags parses it (tuples as Python literals)."""
  if isinstance(value, (tuple, list)):
    return repr(tuple(value))
  return str(value)


def command(point: Point, workdir: str, python: str = sys.executable,
            mode: str = "train") -> list[str]:
  """The `python -m mathrl.main` argv of one point."""
  argv = [python, "-m", "mathrl.main", f"--config={point.config}",
          f"--workdir={workdir}"]
  if mode != "train":
    argv.append(f"--mode={mode}")
  argv += [f"--config.{k}={flag_value(v)}" for k, v in point.overrides]
  return argv


def is_finished(workdir: str) -> bool:
  return os.path.isfile(os.path.join(workdir, SUMMARY_FILE))


def tpu_commands(sweep: Sweep, root: str, *, tpu: str, zone: str,
                 repo_dir: str = "~/mathrl",
                 project: str = "") -> list[str]:
  """One `gcloud compute tpus tpu-vm ssh` line per point (every worker).

  Each line runs the point's `python -m mathrl.main` command in `repo_dir`
  on all workers of the TPU slice (multi-host JAX starts from there); the
  workdir is ROOT/NAME on the VMs (a gs:// root keeps it across VMs).
  Rerunning a line resumes that point.
  """
  lines = []
  for point in sweep.points:
    inner = " ".join(shlex.quote(a) for a in command(
        point, f"{root.rstrip('/')}/{point.name}", python="python3"))
    remote = f"cd {repo_dir} && {inner}"
    extra = f" --project={project}" if project else ""
    lines.append(
        f"gcloud compute tpus tpu-vm ssh {tpu} --zone={zone}{extra}"
        f" --worker=all --command={shlex.quote(remote)}")
  return lines


# --- the local runner ---------------------------------------------------------


def run_local(sweep: Sweep, root: str, *, processes: int = 1,
              python: str = sys.executable, poll_seconds: float = 0.5,
              log=print) -> dict[str, int | None]:
  """Runs the unfinished points, `processes` at a time; returns exit codes.

  Finished points (summary.json present) are skipped and reported as
  None; the others run in ROOT/NAME (resuming whatever is there) with
  their output in ROOT/NAME/log.txt. Returns {name: exit code or None}.
  """
  if processes < 1:
    raise ValueError(f"processes={processes} must be >= 1")
  codes: dict[str, int | None] = {}
  todo = []
  for point in sweep.points:
    workdir = os.path.abspath(os.path.join(root, point.name))
    if is_finished(workdir):
      codes[point.name] = None
      log(f"[sweep] {point.name}: finished, skipped")
    else:
      todo.append((point, workdir))
  running: list[tuple[Point, subprocess.Popen, Any]] = []
  while todo or running:
    while todo and len(running) < processes:
      point, workdir = todo.pop(0)
      os.makedirs(workdir, exist_ok=True)
      argv = command(point, workdir, python=python)
      out = open(os.path.join(workdir, LOG_FILE), "a", encoding="utf-8")
      out.write("$ " + " ".join(shlex.quote(a) for a in argv) + "\n")
      out.flush()
      log(f"[sweep] {point.name}: started")
      running.append((point, subprocess.Popen(
          argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT), out))
    for item in list(running):
      point, proc, out = item
      if proc.poll() is None:
        continue
      out.close()
      running.remove(item)
      codes[point.name] = proc.returncode
      log(f"[sweep] {point.name}: exit {proc.returncode}")
    if running:
      time.sleep(poll_seconds)
  return {p.name: codes[p.name] for p in sweep.points}


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m mathrl.sweep",
      description="Run a sweep file's points locally (skipping finished"
      " ones, resuming interrupted ones), or print Cloud TPU commands.")
  parser.add_argument("sweep_file")
  parser.add_argument("--root", required=True,
                      help="parent folder of the points' workdirs")
  parser.add_argument("--processes", type=int, default=1)
  parser.add_argument("--dry_run", action="store_true",
                      help="print each point's command instead of running")
  parser.add_argument("--tpu", default="", help="TPU VM name: print gcloud"
                      " commands for it instead of running")
  parser.add_argument("--zone", default="")
  parser.add_argument("--project", default="")
  parser.add_argument("--repo_dir", default="~/mathrl",
                      help="the repository's folder on the TPU VMs")
  args = parser.parse_args(argv)
  sweep = load(args.sweep_file)
  if args.tpu:
    if not args.zone:
      parser.error("--tpu needs --zone")
    print("\n".join(tpu_commands(sweep, args.root, tpu=args.tpu,
                                 zone=args.zone, repo_dir=args.repo_dir,
                                 project=args.project)))
    return 0
  if args.dry_run:
    for point in sweep.points:
      workdir = os.path.abspath(os.path.join(args.root, point.name))
      state = "finished" if is_finished(workdir) else "to run"
      print(f"# {point.name} ({state})")
      print(" ".join(shlex.quote(a) for a in command(point, workdir)))
    return 0
  codes = run_local(sweep, args.root, processes=args.processes)
  failed = {n: c for n, c in codes.items() if c not in (None, 0)}
  if failed:
    print(f"[sweep] failed points (exit codes): {failed}; rerun the same"
          " command to resume them", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
