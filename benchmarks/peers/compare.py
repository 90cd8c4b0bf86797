"""mathrl's GRPO step against TRL's and Tunix's, measured in one run.

  python benchmarks/peers/compare.py --model /tmp/tinyqwen \\
      --trl_python /tmp/trl/bin/python --tunix_python /tmp/tunix/bin/python \\
      --rounds 3 --steps 6
  # completion lengths that vary as in real RL:
  python benchmarks/peers/compare.py --model /tmp/tinyqwen ... \\
      --max_new 128 --stop_ids 1

Each round runs every system once, each in its own process (mathrl with
this interpreter, each peer with the Python of its virtual environment),
in an order that rotates from round to round, so slow phases of a shared
machine fall on all systems alike. Every process prints its own
`median_step_s` (the median of its steps after the first, which compiles).
Printed at the end: per system the median over rounds of those medians
(and of its generation's share, where the system reports it), and per
peer the median over rounds of the same-round ratio peer / mathrl, of the
whole step and, where the peer reports it, of its generation. Writes the checkpoint first if `--model` does not exist.
"""

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def commands(a):
  """{system: argv} of the systems to run (a peer without a Python is off)."""
  shape = ["--steps", str(a.steps), "--prompts", str(a.prompts), "--G",
           str(a.G), "--max_new", str(a.max_new), "--stop_ids",
           str(a.stop_ids)]
  if a.gsm8k:
    shape += ["--gsm8k", os.path.abspath(a.gsm8k)]
  out = {"mathrl": [sys.executable, os.path.join(ROOT, "benchmarks",
                                                 "grpo_step.py"),
                    "--model", a.model] + shape + mathrl_flags(a)}
  if a.trl_python:
    out["trl"] = [a.trl_python, os.path.join(HERE, "trl_step.py"), a.model,
                  "--torch_threads", str(a.torch_threads)] + shape
  if a.tunix_python:
    if a.gsm8k:
      raise SystemExit("--gsm8k runs mathrl and TRL only (tunix_step.py has"
                       " no chat-template prompts): drop --tunix_python")
    out["tunix"] = [a.tunix_python, os.path.join(HERE, "tunix_step.py"),
                    a.model] + shape
  return out


def mathrl_flags(a) -> list[str]:
  """--mathrl_args split like a shell would ("--chunk 32 --remat" is two)."""
  return [flag for arg in a.mathrl_args for flag in shlex.split(arg)]


def run_one(name, argv, log):
  """Runs one system; returns {key: value} of its `*_s` result lines."""
  env = dict(os.environ, PYTHONPATH=ROOT)
  t0 = time.perf_counter()
  proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True,
                        text=True, check=False)
  log.write(f"=== {name}: {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}\n")
  log.flush()
  if proc.returncode:
    raise RuntimeError(f"{name} failed (exit {proc.returncode}); the last"
                       f" lines of its output:\n{proc.stderr[-2000:]}")
  found = dict(re.findall(r"^(\w+_s|mean_completion_tokens) ([\d.]+)$",
                         proc.stdout, re.M))
  if "median_step_s" not in found:
    raise RuntimeError(f"{name} printed no median_step_s:\n{proc.stdout}")
  result = {k: float(v) for k, v in found.items()}
  print(f"  {name}: {result} ({time.perf_counter() - t0:.0f} s wall)",
        flush=True)
  return result


def machine():
  """The CPU model and count, from lscpu where available."""
  try:
    text = subprocess.run(["lscpu"], capture_output=True, text=True,
                          check=False).stdout
    model = re.search(r"Model name:\s*(.+)", text).group(1).strip()
  except (OSError, AttributeError):
    model = platform.processor()
  return f"{model}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", required=True)
  p.add_argument("--trl_python", help="python of the TRL environment")
  p.add_argument("--tunix_python", help="python of the Tunix environment")
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=6)
  p.add_argument("--prompts", type=int, default=8)
  p.add_argument("--G", type=int, default=8)
  p.add_argument("--max_new", type=int, default=32)
  p.add_argument("--gsm8k", default=None,
                 help="GSM8K jsonl: chat prompts and boxed-answer reward"
                      " (workload.py), for a real checkpoint")
  p.add_argument("--stop_ids", type=int, default=0,
                 help="stop tokens besides EOS: lengths that vary"
                 " (workload.stop_ids)")
  p.add_argument("--torch_threads", type=int, default=1,
                 help="TRL's torch threads (1 avoids OpenMP spin-waiting"
                 " on an oversubscribed machine; 0: torch's default)")
  p.add_argument("--mathrl_args", nargs="*", default=[],
                 help="extra flags for benchmarks/grpo_step.py, e.g."
                 " --mathrl_args='--chunk 32 --remat'")
  p.add_argument("--log", default="compare.log",
                 help="every process's full output goes here")
  p.add_argument("--json", help="also write the results here")
  a = p.parse_args()
  if not os.path.exists(a.model):
    subprocess.run([sys.executable, os.path.join(HERE, "make_checkpoint.py"),
                    a.model], check=True)
  systems = commands(a)
  names = list(systems)
  results = {n: [] for n in names}
  print("machine:", machine(), flush=True)
  with open(a.log, "w") as log:
    for r in range(a.rounds):
      order = names[r % len(names):] + names[:r % len(names)]
      print(f"round {r + 1}/{a.rounds}: {' -> '.join(order)}", flush=True)
      for n in order:
        results[n].append(run_one(n, systems[n], log))
  summary = summarise(results)
  print("machine after:", machine())
  print(json.dumps(summary, indent=1))
  if a.json:
    with open(a.json, "w") as f:
      json.dump({"machine": machine(), "runs": results, "summary": summary},
                f, indent=1)


def summarise(results):
  """Median over rounds per system, and same-round ratios to mathrl."""
  step = {n: [r["median_step_s"] for r in rs] for n, rs in results.items()}
  out = {n: {"median_step_s": round(statistics.median(v), 4),
             "rounds": v} for n, v in step.items()}
  for n, rs in results.items():
    for key in ("median_generate_s", "median_update_s"):
      vals = [r[key] for r in rs if key in r]
      if vals:
        out[n][key] = round(statistics.median(vals), 4)
  for n, rs in results.items():
    vals = [r["mean_completion_tokens"] for r in rs
            if "mean_completion_tokens" in r]
    if vals:
      out[n]["mean_completion_tokens"] = round(statistics.mean(vals), 2)
  for n in step:
    if n != "mathrl":
      ratios = [t / m for t, m in zip(step[n], step["mathrl"])]
      out[n]["ratio_to_mathrl"] = round(statistics.median(ratios), 3)
      out[n]["ratio_rounds"] = [round(x, 3) for x in ratios]
      gen = [(r["median_generate_s"], m["median_generate_s"])
             for r, m in zip(results[n], results["mathrl"])
             if "median_generate_s" in r and "median_generate_s" in m]
      if gen:  # the peer reports its rollouts' time too (TRL does)
        out[n]["generate_ratio_to_mathrl"] = round(
            statistics.median(t / m for t, m in gen), 3)
  return out


if __name__ == "__main__":
  main()
