"""mathrl.stats: t-intervals over seeds, paired and Welch differences."""

import numpy as np
import pytest

from mathrl import stats


def test_seed_interval_golden():
  # mean 0.6, s = 0.1, t_{0.975, 2} = 4.30265: 0.6 ± 4.30265 * 0.1 / sqrt(3)
  # = 0.6 ± 0.248414.
  np.testing.assert_allclose(stats.seed_interval([0.5, 0.6, 0.7]),
                             (0.6, 0.351586, 0.848414), atol=1e-6)
  assert stats.seed_interval([0.3]) == (0.3, 0.3, 0.3)


def test_t_quantile_known_values():
  # Student t tables: t_{0.975, 2} = 4.303, t_{0.975, 4} = 2.776,
  # t_{0.975, 30} = 2.042; df -> inf gives the normal 1.960.
  np.testing.assert_allclose(
      [stats.t_quantile(df) for df in (2, 4, 30, 1e9)],
      [4.30265, 2.77645, 2.04227, 1.95996], atol=1e-5)


def test_paired_interval_golden():
  # d = [0.6 - 0.5, 0.7 - 0.6, 0.9 - 0.7] = [0.1, 0.1, 0.2]: mean 0.133333,
  # s_d = sqrt((2 * 0.033333² + 0.066667²) / 2) = 0.057735,
  # half = t_{0.975, 2} s_d / sqrt(3) = 4.30265 * 0.033333 = 0.143422.
  np.testing.assert_allclose(
      stats.paired_interval([0.6, 0.7, 0.9], [0.5, 0.6, 0.7]),
      (0.133333, -0.010088, 0.276755), atol=1e-6)
  with pytest.raises(ValueError, match="one baseline value per seed"):
    stats.paired_interval([0.6, 0.7], [0.5, 0.6, 0.7])


def test_welch_interval_golden():
  # x̄ - ȳ = 0.7 - 0.5 = 0.2; a = b = s²/n = 0.01 / 3;
  # ν = (2a)² / (a²/2 + b²/2) = 4, t_{0.975, 4} = 2.77645,
  # half = 2.77645 * sqrt(2 * 0.01 / 3) = 2.77645 * 0.0816497 = 0.226696.
  np.testing.assert_allclose(
      stats.welch_interval([0.6, 0.7, 0.8], [0.4, 0.5, 0.6]),
      (0.2, -0.026696, 0.426696), atol=1e-6)
  with pytest.raises(ValueError, match=">= 2 values on each side"):
    stats.welch_interval([0.6], [0.4, 0.5])


def test_intervals_match_scipy_t_tests():
  # Equivalence with scipy's t-tests, here at fractional Welch degrees of
  # freedom: ν = (0.01 + 0.01/3)² / (0.01² + (0.01/3)²/2) = 1.68421.
  from scipy import stats as scipy_stats  # pylint: disable=g-import-not-at-top
  a, b = [0.6, 0.7, 0.8], [0.5, 0.7]
  welch = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval()
  np.testing.assert_allclose(stats.welch_interval(a, b)[1:],
                             (welch.low, welch.high), rtol=1e-9)
  a, b = [0.6, 0.7, 0.9, 0.4], [0.5, 0.6, 0.7, 0.45]
  paired = scipy_stats.ttest_rel(a, b).confidence_interval()
  np.testing.assert_allclose(stats.paired_interval(a, b)[1:],
                             (paired.low, paired.high), rtol=1e-9)
