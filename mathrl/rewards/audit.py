"""Audit a run's rewards from the command line.

  python -m mathrl.rewards.audit FILE [--disagreements 20] [--no_plain]
                                      [--json OUT]

FILE is JSON Lines of (completion, gold) pairs, e.g. the samples file of
`--mode=eval`; see `mathrl.rewards.report` for the fields and the report.
Example output lines:

  pairs: 500  skipped lines: 0  accuracy: 0.6120
  gold answers not extractable: 0  timeouts: 1  grader errors: 0
  decided by:
    fast_path                0.7020
    ...
"""

import argparse
import json
import os
import sys
from typing import Sequence

from mathrl.rewards import report as report_lib


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m mathrl.rewards.audit",
      description="Audit the grading of (completion, gold) JSON Lines.")
  parser.add_argument("file", help="JSON Lines of completion/gold pairs")
  parser.add_argument("--disagreements", type=int, default=20,
                      help="how many disagreements with math-verify to show")
  parser.add_argument("--no_plain", action="store_true",
                      help="skip the comparison with plain math-verify")
  parser.add_argument("--json", default=None,
                      help="also write the full report to this JSON file")
  flags = parser.parse_args(argv)
  if not os.path.isfile(flags.file):
    parser.error(f"{flags.file!r} is not a file; pass a JSON Lines file of "
                 "completion/gold pairs (e.g. the samples of --mode=eval)")
  report = report_lib.grading_report(
      flags.file, max_disagreements=flags.disagreements,
      compare_plain=not flags.no_plain)
  print(report_lib.format_report(report))
  if flags.json:
    with open(flags.json, "w", encoding="utf-8") as f:
      json.dump(report, f, indent=1, ensure_ascii=False)
  return 0


if __name__ == "__main__":
  sys.exit(main())
