"""Small statistics used by the findings: paired bootstrap CI, sign-flip test, Kendall's W, Pareto mask."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

EXACT_SIGN_FLIP_MAX = 12  # enumerate all 2**k sign patterns up to this many non-zero differences
_TOL = 1e-12


def bootstrap_mean_ci(
    diffs: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired differences, resampling samples with replacement.

    Resampling n values with replacement is the same as drawing multinomial counts over the distinct values,
    so the cost grows with the number of distinct differences (few: scores are 0/1 or seed means), not with n.

    Returns
    -------
    (low, high) : tuple of float
        NaN for an empty input.
    """
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return float("nan"), float("nan")
    values, counts = np.unique(d, return_counts=True)
    draws = rng.multinomial(d.size, counts / d.size, size=n_boot)
    means = draws @ values / d.size
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def sign_flip_pvalue(diffs: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """One-sided paired sign-flip (permutation) p-value for H1: mean difference > 0.

    Under H0 the two methods are exchangeable on each sample, so each difference is equally likely to carry
    either sign. Zero differences do not change the statistic and are dropped; all-ties gives p = 1. With at
    most ``EXACT_SIGN_FLIP_MAX`` non-zero differences every sign pattern is enumerated (exact p); otherwise
    ``n_perm`` random patterns are drawn and p = (1 + hits) / (1 + n_perm), which is never 0.
    """
    d = np.asarray(diffs, dtype=float)
    nonzero = d[np.abs(d) > _TOL]
    k = nonzero.size
    if k == 0:
        return 1.0
    observed = nonzero.sum()
    tol = _TOL * max(1.0, abs(observed))
    if k <= EXACT_SIGN_FLIP_MAX:
        signs = 1 - 2 * ((np.arange(2**k)[:, None] >> np.arange(k)) & 1)
        return float(np.mean(signs @ np.abs(nonzero) >= observed - tol))
    # The statistic only depends on how many of each distinct |d| get a + sign: binomial counts per value.
    values, counts = np.unique(np.abs(nonzero), return_counts=True)
    positives = rng.binomial(counts, 0.5, size=(n_perm, values.size))
    stats = (2 * positives - counts) @ values
    return float((1 + np.sum(stats >= observed - tol)) / (1 + n_perm))


def kendall_w(scores: np.ndarray) -> float:
    """Kendall's coefficient of concordance W with the tie correction.

    Parameters
    ----------
    scores : array, shape (m raters, n objects)
        Higher is better; each row is ranked separately (average ranks for ties).

    Returns
    -------
    float
        W in [0, 1]: 1 when all raters rank the objects identically, 0 when rank sums are all equal.
        NaN with fewer than 2 raters or objects, or when every rater ties every object.

    Notes
    -----
    W = 12 S / (m^2 (n^3 - n) - m sum_j T_j), S = sum of squared deviations of the rank sums,
    T_j = sum over tie groups of rater j of (t^3 - t).
    """
    x = np.asarray(scores, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        return float("nan")
    m, n = x.shape
    ranks = rankdata(x, axis=1)
    rank_sums = ranks.sum(axis=0)
    s = float(((rank_sums - rank_sums.mean()) ** 2).sum())
    ties = 0.0
    for row in ranks:
        _, t = np.unique(row, return_counts=True)
        ties += float((t**3 - t).sum())
    denominator = m**2 * (n**3 - n) - m * ties
    return float("nan") if denominator <= 0 else 12 * s / denominator


def pareto_mask(accuracy: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """True for points no other point beats (higher-or-equal accuracy and lower-or-equal latency, one strictly).

    Points with a NaN coordinate cannot be placed and are never on the front; identical points are both kept.
    """
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency, dtype=float)
    valid = ~(np.isnan(acc) | np.isnan(lat))
    a, t = acc[:, None], lat[:, None]
    # dominated[i, j]: point j dominates point i
    dominated = (acc[None, :] >= a) & (lat[None, :] <= t) & ((acc[None, :] > a) | (lat[None, :] < t))
    dominated &= valid[None, :]
    return valid & ~dominated.any(axis=1)
