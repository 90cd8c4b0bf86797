"""Confidence intervals: accuracies over problems, numbers over seeds.

  lo, hi = stats.wilson_interval(successes=41, n=64)
  lo, hi = stats.bootstrap_interval(scores_N)          # per-problem scores
  lo, hi = stats.accuracy_interval(scores_N)           # picks one of the two
  mean, lo, hi = stats.seed_interval(values_S)         # t over seeds
  d, lo, hi = stats.paired_interval(values_S, base_S)  # same seeds
  d, lo, hi = stats.welch_interval(values_A, base_B)   # independent seeds

Every accuracy mathrl prints carries a 95% interval: Wilson's score
interval when each problem scores 0 or 1 (greedy accuracy, maj@k), a
percentile bootstrap over problems when a problem's score is a fraction
(avg@k, pass@k with k < n). Both treat the problems as the random draw,
as benchmark reports do; they do not include the decoding's own noise
beyond what the samples carry.

Across training seeds (the spread that decides whether one method beats
another) the t-intervals treat each seed's number as one draw; the
difference to a baseline is paired when both ran the same seeds, Welch's
otherwise.
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
  """[q_{α/2}, q_{1-α/2}] of x̄*_r, the means of R resamples of the scores.

  The percentile bootstrap of mean(scores), α = 1 - level; Efron &
  Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13: draw N
  problems with replacement `num_resamples` times, take each
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
  """[lo, hi] ∋ mean_n x_n at 95%: Wilson if all x_n are 0 or 1, else bootstrap.

  Wilson's score interval (Wilson 1927, JASA 22(158); `wilson_interval`)
  for 0/1 scores, the percentile bootstrap over problems (Efron &
  Tibshirani 1993; `bootstrap_interval`) for fractional ones.

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


def t_quantile(df: float, level: float = 0.95) -> float:
  """t_{(1+level)/2, df}: the two-sided Student t quantile, any real df > 0.

  Student 1908, "The probable error of a mean", Biometrika 6(1); computed
  by scipy's inverse t distribution (`scipy.special.stdtrit`), so that
  Welch's fractional degrees of freedom need no table (t_{0.975, 2} =
  4.3027, t_{0.975, 4} = 2.7764, t_{0.975, ∞} = 1.9600).

  Args:
    df: degrees of freedom (> 0, need not be an integer).
    level: two-sided coverage (0.95).

  Returns:
    The quantile.
  """
  from scipy import special  # pylint: disable=g-import-not-at-top
  if not df > 0:
    raise ValueError(f"t_quantile needs df > 0, got {df}")
  return float(special.stdtrit(df, (1.0 + level) / 2))


def _values(values_S: Sequence[float], name: str) -> np.ndarray:
  """`values_S` as a float64 array; `name` says who needed it in errors."""
  values_S = np.asarray(values_S, dtype=np.float64)
  if values_S.ndim != 1 or not values_S.size:
    raise ValueError(f"{name} needs a non-empty 1-D list, got shape"
                     f" {values_S.shape}")
  return values_S


def seed_interval(values_S: Sequence[float]) -> tuple[float, float, float]:
  """mean ± t_{0.975, S-1} s / sqrt(S): the 95% t-interval over seeds.

  Student 1908, "The probable error of a mean", Biometrika 6(1). s is the
  sample standard deviation (ddof=1) of the S seeds' values. One seed has
  no spread: its interval is (mean, mean, mean) and must not be read as
  certainty.

  Args:
    values_S: [S] one number per seed (e.g. final test accuracy).

  Returns:
    (mean, low, high).
  """
  values_S = _values(values_S, "seed_interval")
  mean = float(values_S.mean())
  if values_S.size == 1:
    return mean, mean, mean
  half = (t_quantile(values_S.size - 1) * float(values_S.std(ddof=1))
          / math.sqrt(values_S.size))
  return mean, mean - half, mean + half


def paired_interval(values_S: Sequence[float],
                    baseline_S: Sequence[float]) -> tuple[float, float, float]:
  """d̄ ± t_{0.975, S-1} s_d / sqrt(S), d_s = x_s - y_s: paired t-interval.

  Student 1908, "The probable error of a mean", Biometrika 6(1), applied
  to the per-seed differences: seed s of the method and seed s of the
  baseline share what the seed fixes (start checkpoint, data order,
  evaluation problems), so the differences cancel that shared noise and
  the interval is narrower than the unpaired one when it matters.

  Args:
    values_S: [S] the method's value per seed.
    baseline_S: [S] the baseline's value for the same seeds, same order.

  Returns:
    (mean difference, low, high); S = 1 gives a zero-width interval.
  """
  values_S = _values(values_S, "paired_interval")
  baseline_S = _values(baseline_S, "paired_interval")
  if values_S.shape != baseline_S.shape:
    raise ValueError(
        f"paired_interval needs one baseline value per seed, got"
        f" {values_S.size} values and {baseline_S.size} baseline values")
  return seed_interval(values_S - baseline_S)


def welch_interval(values_A: Sequence[float],
                   values_B: Sequence[float]) -> tuple[float, float, float]:
  """x̄ - ȳ ± t_{0.975, ν} sqrt(a + b), a = s_x²/n_x, b = s_y²/n_y.

  Welch 1947, "The generalization of 'Student's' problem when several
  different population variances are involved", Biometrika 34(1-2);
  ν = (a + b)² / (a²/(n_x - 1) + b²/(n_y - 1)) is the Welch-Satterthwaite
  degrees of freedom (Satterthwaite 1946, Biometrics Bulletin 2(6)). For
  two independent sets of seeds; paired seeds use `paired_interval`.
  Zero spread in both gives a zero-width interval.

  Args:
    values_A: [A] one value per seed of the method, A >= 2.
    values_B: [B] one value per seed of the baseline, B >= 2.

  Returns:
    (mean difference x̄ - ȳ, low, high).
  """
  values_A = _values(values_A, "welch_interval")
  values_B = _values(values_B, "welch_interval")
  if values_A.size < 2 or values_B.size < 2:
    raise ValueError(
        f"welch_interval needs >= 2 values on each side to estimate both"
        f" variances, got {values_A.size} and {values_B.size}")
  diff = float(values_A.mean() - values_B.mean())
  a = float(values_A.var(ddof=1)) / values_A.size
  b = float(values_B.var(ddof=1)) / values_B.size
  if a + b == 0:
    return diff, diff, diff
  df = (a + b) ** 2 / (a * a / (values_A.size - 1)
                       + b * b / (values_B.size - 1))
  half = t_quantile(df) * math.sqrt(a + b)
  return diff, diff - half, diff + half
