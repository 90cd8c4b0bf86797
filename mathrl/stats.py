"""Confidence intervals for accuracies: Wilson binomial and bootstrap.

  lo, hi = stats.wilson_interval(successes=41, n=64)
  lo, hi = stats.bootstrap_interval(scores_N)          # per-problem scores
  lo, hi = stats.accuracy_interval(scores_N)           # picks one of the two

Every accuracy mathrl prints carries a 95% interval: Wilson's score
interval when each problem scores 0 or 1 (greedy accuracy, maj@k), a
percentile bootstrap over problems when a problem's score is a fraction
(avg@k, pass@k with k < n). Both treat the problems as the random draw,
as benchmark reports do; they do not include the decoding's own noise
beyond what the samples carry.
"""

from collections.abc import Sequence
import math

import numpy as np

# Two-sided 95%: the 0.975 quantile of the standard normal.
Z_95 = 1.959963984540054


def wilson_interval(successes: float, n: int,
                    z: float = Z_95) -> tuple[float, float]:
  """p̃ ± z/(1+z²/n) sqrt(p̂(1-p̂)/n + z²/4n²), p̃ = (p̂ + z²/2n)/(1+z²/n).

  Wilson 1927, "Probable inference, the law of succession, and statistical
  inference", JASA 22(158). Unlike the normal (Wald) interval it stays in
  [0, 1] and is not empty at p̂ = 0 or 1.

  Args:
    successes: correct problems (0 <= successes <= n).
    n: problems (>= 1).
    z: the normal quantile (1.96 for 95%).

  Returns:
    (low, high).
  """
  if n < 1 or not 0 <= successes <= n:
    raise ValueError(
        f"wilson_interval needs n >= 1 and 0 <= successes <= n, got "
        f"successes={successes}, n={n}"
    )
  p = successes / n
  z2n = z * z / n
  center = (p + z2n / 2) / (1 + z2n)
  half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
  return max(0.0, center - half), min(1.0, center + half)


def bootstrap_interval(
    scores_N: Sequence[float],
    *,
    num_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
  """Percentile bootstrap of mean(scores): [q_{α/2}, q_{1-α/2}] of resamples.

  Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13:
  draw N problems with replacement `num_resamples` times, take each
  draw's mean, and report the (1-level)/2 and (1+level)/2 quantiles
  (numpy's linear interpolation). Deterministic for a given seed.

  Args:
    scores_N: [N] per-problem scores in [0, 1].
    num_resamples: bootstrap draws.
    level: coverage (0.95).
    seed: the resampling seed.

  Returns:
    (low, high).
  """
  scores_N = np.asarray(scores_N, dtype=np.float64)
  if scores_N.ndim != 1 or not scores_N.size:
    raise ValueError(
        f"bootstrap_interval needs a non-empty 1-D list of scores, got shape"
        f" {scores_N.shape}"
    )
  rng = np.random.default_rng(seed)
  draws_RN = rng.integers(0, scores_N.size,
                          size=(num_resamples, scores_N.size))
  means_R = scores_N[draws_RN].mean(axis=1)
  alpha = 1.0 - level
  low, high = np.quantile(means_R, [alpha / 2, 1 - alpha / 2])
  return float(low), float(high)


def accuracy_interval(scores_N: Sequence[float]) -> tuple[float, float]:
  """95% interval of mean(scores): Wilson if every score is 0/1, else bootstrap.

  Args:
    scores_N: [N] per-problem scores in [0, 1].

  Returns:
    (low, high).
  """
  scores_N = np.asarray(scores_N, dtype=np.float64)
  if scores_N.size and np.all((scores_N == 0) | (scores_N == 1)):
    return wilson_interval(float(scores_N.sum()), int(scores_N.size))
  return bootstrap_interval(scores_N)


def format_interval(value: float, low: float, high: float,
                    percent: bool = True) -> str:
  """'55.9 [49.8, 61.9]' (percent) or '0.559 [0.498, 0.619]'."""
  if percent:
    return f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"
  return f"{value:.3f} [{low:.3f}, {high:.3f}]"


# Student's t 0.975 quantiles for 1..30 degrees of freedom (two-sided 95%).
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262,
          2.228, 2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101,
          2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052,
          2.048, 2.045, 2.042)


def seed_interval(values_S: Sequence[float]) -> tuple[float, float, float]:
  """mean ± t_{0.975, S-1} s / sqrt(S): the 95% t-interval over seeds.

  Student 1908, "The probable error of a mean", Biometrika 6(1). s is the
  sample standard deviation (ddof=1) of the S seeds' values; above 30
  degrees of freedom the normal quantile 1.96 is used. One seed has no
  spread: its interval is (mean, mean, mean) and must not be read as
  certainty.

  Args:
    values_S: [S] one number per seed (e.g. final test accuracy).

  Returns:
    (mean, low, high).
  """
  values_S = np.asarray(values_S, dtype=np.float64)
  if values_S.ndim != 1 or not values_S.size:
    raise ValueError(f"seed_interval needs a non-empty 1-D list, got shape"
                     f" {values_S.shape}")
  mean = float(values_S.mean())
  if values_S.size == 1:
    return mean, mean, mean
  df = values_S.size - 1
  t = _T_975[df - 1] if df <= len(_T_975) else Z_95
  half = t * float(values_S.std(ddof=1)) / math.sqrt(values_S.size)
  return mean, mean - half, mean + half
