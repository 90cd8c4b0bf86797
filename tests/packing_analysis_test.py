"""The packing analysis's layout counts (benchmarks/packing_analysis.py)."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)),
                                "benchmarks"))

import packing_analysis  # noqa: E402  pylint: disable=g-import-not-at-top


def test_first_fit_decreasing():
  # Sorted 6, 5, 4, 2 into bins of 6: [6], [5], [4, 2].
  assert packing_analysis.first_fit_decreasing([5, 2, 6, 4], 6) == [
      [2], [0], [3, 1]]


def test_layout_counts():
  # P = 2 prompts (2 and 3 tokens, L = 3) × G = 2, completions 4, 1, 4, 2
  # of a cap T = 4. Values: (positions, real positions, logit positions,
  # attention pairs).
  out = packing_analysis.layouts(np.array([2, 2, 3, 3]),
                                 np.array([4, 1, 4, 2]), 2, 4)
  # Shared: 2·3 + 4·3 = 18 positions, real 2 + 3 + (3 + 0 + 3 + 1) = 12,
  # logits 2 + 4·3 = 14, pairs 18 × (3 + 4 - 1) = 108.
  assert out["shared"] == (18, 12, 14, 108)
  # Unshared rows of 6: 24 positions, real 5 + 2 + 6 + 4 = 17, logits 16.
  assert out["unshared"] == (24, 17, 16, 144)
  # Sequences 5, 2, 6, 4 in rows of 6: [6], [5], [4, 2] = 3 rows.
  assert out["packed_unshared x1"] == (18, 17, 11, 3 * 36)
  # Inputs c - 1: group 0 [3, 0] fits one row of 3, group 1 [3, 1] two.
  assert out["packed_shared_group"] == (15, 12, 9, 15 * 6)
  # Rows of 6: [3, 3, 0] (both groups: 2 prompts) and [1] (one):
  # 2·3·6 + 6·(2·3 + 6) + 6·(3 + 6) = 36 + 72 + 54.
  assert out["packed_shared x2"] == (18, 12, 9, 162)
  assert out["no_padding"] == (12, 12, 9, 12 * 7)
