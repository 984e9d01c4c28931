"""The comparison's two tests without ``import scipy.stats`` (about 1 s of a report's start-up).

Both give scipy's p-values bit for bit (tests/test_ranktest.py checks against scipy itself):
the arithmetic is scipy 1.17's, in the same order and the same dtypes, and the special
functions are the very ufuncs scipy.stats calls, from ``scipy.special`` (~0.25 s to import):

- ``mannwhitneyu_p`` — ``scipy.stats.mannwhitneyu(x, y, alternative="two-sided",
  method="asymptotic")`` (normal approximation, tie and continuity corrections;
  ``_mannwhitneyu.py``). Ranks come from one sort and ``searchsorted`` instead of
  ``rankdata``'s argsort: a tied group's average rank is the same number either way, and
  the sum is taken over the same values in the same (input) order;
- ``fisher_exact_p`` — ``scipy.stats.fisher_exact(table, alternative="two-sided")`` of a
  2x2 table (``_stats_py.py``): the hypergeometric pmf/cdf/sf are Boost's, through the
  ufuncs ``scipy.stats.hypergeom`` wraps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _floating(a: np.ndarray, b: np.ndarray) -> np.dtype:
    """The dtype scipy computes in (``xp_promote(..., force_floating=True)``)."""
    dtype = np.result_type(a.dtype, b.dtype)
    return dtype if np.issubdtype(dtype, np.inexact) else np.dtype(np.float64)


def _ranks_and_ties(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks of ``x``'s values within ``x`` + ``y`` (in ``x``'s order, float64), and
    scipy's tie array: each distinct value's count at its first sorted position, else 0."""
    xy = np.sort(np.concatenate([x, y]))
    n = xy.size
    order = np.argsort(x)  # sorted needles: searchsorted is ~8x faster than on x as it is
    xs = x[order]
    first = np.searchsorted(xy, xs, side="left")
    count = np.searchsorted(xy, xs, side="right") - first
    # rankdata: ordinal rank of the group's first member + (group size - 1) / 2, in float64
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = (first + 1).astype(np.float64) + (count.astype(np.float64) - 1) / 2
    starts = np.flatnonzero(np.concatenate([[True], xy[:-1] != xy[1:]]))
    ties = np.zeros(n, dtype=np.float64)
    ties[starts] = np.diff(starts, append=n)
    return ranks, ties


def mannwhitneyu_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided asymptotic Mann–Whitney U p-value of 1-d ``x`` vs ``y`` (NaN if either
    holds a NaN, as scipy's default ``nan_policy="propagate"``)."""
    from scipy.special import ndtr

    x, y = np.asarray(x), np.asarray(y)
    dtype = _floating(x, y)
    x, y = x.astype(dtype, copy=False), y.astype(dtype, copy=False)
    if x.size == 0 or y.size == 0:
        raise ValueError("`x` and `y` must be of nonzero size.")
    if np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    ranks, t = _ranks_and_ties(x, y)
    ranks, t = ranks.astype(dtype, copy=False), t.astype(dtype, copy=False)
    n1, n2 = x.shape[-1], y.shape[-1]
    R1 = np.sum(ranks, axis=-1)
    U1 = R1 - n1 * (n1 + 1) / 2
    U2 = n1 * n2 - U1
    U = np.maximum(U1, U2)
    # _get_mwu_z, continuity=True
    mu = n1 * n2 / 2
    n = n1 + n2
    tie_term = np.sum(t**3 - t, axis=-1)
    s = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1))))
    numerator = U - mu
    numerator -= 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        z = numerator / s
    p = ndtr(-z)
    p *= 2
    return float(np.clip(p, 0.0, 1.0))


def _binary_search(a: Callable[[int], float], d: float, lo: int, hi: int) -> int:
    """scipy's ``_binary_search_for_binom_tst``: i in [lo, hi] with a(i) <= d < a(i+1),
    ``a`` ascending on [lo, hi]."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        midval = a(mid)
        if midval < d:
            lo = mid + 1
        elif midval > d:
            hi = mid - 1
        else:
            return mid
    return lo if a(lo) <= d else lo - 1


def fisher_exact_p(table: list[list[int]]) -> float:
    """Two-sided p-value of Fisher's exact test on a 2x2 table of non-negative counts."""
    import scipy.special._ufuncs as scu

    c = np.asarray(table, dtype=np.int64)
    if c.shape != (2, 2) or np.any(c < 0):
        raise ValueError("fisher_exact_p takes a 2x2 table of non-negative counts")
    if 0 in c.sum(axis=0) or 0 in c.sum(axis=1):
        return 1.0
    n1 = c[0, 0] + c[0, 1]
    n2 = c[1, 0] + c[1, 1]
    n = c[0, 0] + c[1, 0]
    M = n1 + n2
    low, high = max(n - (M - n1), 0), min(n1, n)  # the hypergeometric support

    def pmf(k: int | np.integer) -> np.float64:
        if not low <= k <= high:
            return np.float64(0.0)
        return np.clip(scu._hypergeom_pmf(k, n1, n, M), 0, 1)

    def cdf(k: int | np.integer) -> np.float64:
        if k >= high:
            return np.float64(1.0)
        if k < low:
            return np.float64(0.0)
        return np.clip(scu._hypergeom_cdf(k, n1, n, M), 0, 1)

    def sf(k: int | np.integer) -> np.float64:
        if k < low:
            return np.float64(1.0)
        if k >= high:
            return np.float64(0.0)
        return np.clip(scu._hypergeom_sf(k, n1, n, M), 0, 1)

    mode = int((n + 1) * (n1 + 1) / (n1 + n2 + 2))
    pexact = pmf(c[0, 0])
    pmode = pmf(mode)
    epsilon = 1e-14
    gamma = 1 + epsilon
    with np.errstate(invalid="ignore"):  # both 0: NaN, not <= epsilon, as in scipy
        same = np.abs(pexact - pmode) / np.maximum(pexact, pmode) <= epsilon
    if same:
        return 1.0
    if c[0, 0] < mode:
        plower = cdf(c[0, 0])
        if pmf(n) > pexact * gamma:
            return float(plower)
        guess = _binary_search(lambda x: -pmf(x), -pexact * gamma, mode, int(n))
        pvalue = plower + sf(guess)
    else:
        pupper = sf(c[0, 0] - 1)
        if pmf(0) > pexact * gamma:
            return float(pupper)
        guess = _binary_search(pmf, pexact * gamma, 0, mode)
        pvalue = pupper + cdf(guess)
    return float(min(pvalue, 1.0))
