"""The `--mode=eval` job: each configured set under the configured protocol.

  python -m mathrl.main --mode=eval --config=configs/default.py \\
      --config.model.path=DIR --config.data.local_dir=DATA \\
      --config.eval.benchmarks='("gsm8k", "math500", "synthetic")' \\
      --config.eval.protocol=qwen25_math --config.eval.num_examples=8

For each set in `eval.benchmarks` (empty: `data.eval`) it evaluates the
configured model under `eval.protocol` and writes WORKDIR/samples.jsonl
(every completion with its extracted answer, gold and verdict, tagged with
its benchmark) and WORKDIR/eval_results.json ({benchmark: metrics}, with
95% intervals and the counts of requested and skipped problems), then
prints a table per benchmark and per difficulty level.
"""

import json
import os
from typing import Any

import ml_collections as mlc

from mathrl import builders
from mathrl import distributed
from mathrl import evaluation
from mathrl import trainer

RESULTS_FILE = "eval_results.json"
SAMPLES_FILE = "samples.jsonl"


def run(config: mlc.ConfigDict, workdir: str,
        params: Any = None) -> dict[str, dict[str, float]]:
  """Evaluates every configured set; returns {benchmark: metrics}.

  Args:
    config: the run config (model, data, eval sections).
    workdir: where the samples and results are written.
    params: parameters to evaluate; None evaluates the configured model.
  """
  names = tuple(config.eval.benchmarks) or (config.data.eval,)
  protocol = builders.make_eval_protocol(config)
  samples_path = os.path.join(workdir, SAMPLES_FILE)
  job = trainer.Run(config, workdir)
  results: dict[str, dict[str, float]] = {}
  try:
    params = job.init_params if params is None else params
    for i, name in enumerate(names):
      source = builders.make_benchmark_source(config, workdir, name)
      results[name] = job.evaluate(
          params, samples_path=samples_path, source=source,
          benchmark=name, append_samples=i > 0)
  finally:
    job.close()
  if distributed.is_leader():  # every process holds the same results
    with open(os.path.join(workdir, RESULTS_FILE), "w") as f:
      json.dump({"protocol": protocol.name, "results": results}, f,
                indent=2)
  return results


def report(results: dict[str, dict[str, float]], protocol: str) -> str:
  """The printed report: the benchmark table, then the level table."""
  parts = [f"protocol {protocol}: accuracy with 95% intervals",
           evaluation.benchmark_table(results)]
  levels = evaluation.level_table(results)
  if levels:
    parts += ["", "accuracy per difficulty level", levels]
  return "\n".join(parts)
