"""Metric writers: one JSON object per logged step, TensorBoard, optional W&B.

  writer = metrics.MetricWriter(workdir, use_tensorboard=True)
  writer.write(step, {"reward_mean": 0.5, ...}, stage="rl")
  writer.close()

`metrics.jsonl` gets one line per call: `{"stage": ..., "step": ..., **scalars}`.
Values are converted to plain Python floats/ints (arrays are fetched once with
`jax.device_get` by the caller); non-finite values are written as null so the
file stays strict JSON. Rerunning with the same workdir appends; `read_jsonl`
drops rows of a resumed run that a later row with the same (stage, step)
supersedes.
"""

import json
import math
import os
from typing import Any, Mapping, Optional

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _to_python(value: Any) -> Any:
  if isinstance(value, (str, bool)) or value is None:
    return value
  arr = np.asarray(value)
  if arr.size != 1:
    raise ValueError(
        f"metric values must be scalars, got shape {arr.shape}; reduce the"
        " array (mean, sum, ...) before logging it."
    )
  item = arr.item()
  if isinstance(item, float) and not math.isfinite(item):
    return None
  return item


class MetricWriter:
  """Writes scalar metrics to WORKDIR/metrics.jsonl (+ TensorBoard, W&B)."""

  def __init__(
      self,
      workdir: str,
      *,
      use_tensorboard: bool = True,
      wandb_project: Optional[str] = None,
      wandb_config: Optional[Mapping[str, Any]] = None,
  ):
    """Opens the writers.

    Args:
      workdir: run directory; created if missing.
      use_tensorboard: also write TensorBoard events under WORKDIR/tb.
      wandb_project: a Weights & Biases project name, or None for no W&B.
        Needs the `wandb` package (not a dependency of mathrl).
      wandb_config: the run config recorded in W&B.
    """
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, METRICS_FILE)
    self._file = open(self.path, "a", encoding="utf-8")
    self._tb = None
    if use_tensorboard:
      import tensorboardX  # pylint: disable=g-import-not-at-top

      self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tb"))
    self._wandb = None
    if wandb_project:
      try:
        import wandb  # pylint: disable=g-import-not-at-top
      except ImportError as e:
        raise ImportError(
            "wandb_project is set but the wandb package is not installed:"
            " `pip install wandb`, or unset the W&B project in the config."
        ) from e
      self._wandb = wandb.init(
          project=wandb_project, config=dict(wandb_config or {}), dir=workdir
      )

  def write(self, step: int, scalars: Mapping[str, Any], *, stage: str):
    """Appends one row `{"stage", "step", **scalars}` to every writer."""
    row = {"stage": stage, "step": int(step)}
    for k, v in scalars.items():
      if k in row:
        raise ValueError(f"metric name {k!r} is reserved")
      row[k] = _to_python(v)
    self._file.write(json.dumps(row, sort_keys=False) + "\n")
    self._file.flush()
    for k, v in row.items():
      if k in ("stage", "step") or not isinstance(v, (int, float)):
        continue
      if self._tb is not None:
        self._tb.add_scalar(f"{stage}/{k}", v, int(step))
    if self._tb is not None:
      self._tb.flush()
    if self._wandb is not None:
      self._wandb.log(
          {f"{stage}/{k}": v for k, v in row.items() if k != "step"},
          step=int(step),
      )

  def close(self):
    self._file.close()
    if self._tb is not None:
      self._tb.close()
    if self._wandb is not None:
      self._wandb.finish()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def read_jsonl(path: str) -> list[dict[str, Any]]:
  """Reads metrics.jsonl; a later row with the same (stage, step) wins.

  A run killed and resumed re-logs the steps after its last checkpoint; the
  rows of the resumed run replace the earlier ones. A truncated last line
  (killed mid-write) is skipped.
  """
  rows: dict[tuple[str, int], dict[str, Any]] = {}
  with open(path, encoding="utf-8") as f:
    lines = f.read().split("\n")
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      row = json.loads(line)
    except json.JSONDecodeError:
      if i == len(lines) - 1 or all(not l.strip() for l in lines[i + 1 :]):
        continue  # the last line of a run killed mid-write
      raise ValueError(f"{path}:{i + 1}: not a JSON object: {line[:200]!r}")
    rows.pop((row["stage"], row["step"]), None)
    rows[(row["stage"], row["step"])] = row
  return list(rows.values())
