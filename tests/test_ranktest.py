"""reports.ranktest gives scipy.stats' p-values bit for bit (scipy is a dependency: the
reference is scipy itself, not stored numbers)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import fisher_exact, mannwhitneyu

from reports.ranktest import fisher_exact_p, mannwhitneyu_p


def _scipy_mwu(x: np.ndarray, y: np.ndarray) -> float:
    return float(mannwhitneyu(x, y, alternative="two-sided", method="asymptotic").pvalue)


def _same(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or a == b


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Latency-like pairs: continuous, rounded (many ties), shifted, tiny, lopsided."""
    rng = np.random.default_rng(seed)
    n1, n2 = (int(v) for v in rng.integers(1, 3000, size=2))
    kind = seed % 6
    shift = rng.choice([0.0, 0.01, 0.2, 1.0])
    x = rng.lognormal(3.0, 0.5, n1)
    y = rng.lognormal(3.0 + shift, 0.5, n2)
    if kind == 1:  # ms to 1 decimal: heavy ties
        x, y = np.round(x, 1), np.round(y, 1)
    elif kind == 2:  # a handful of distinct values
        x, y = rng.integers(0, 5, n1).astype(float), rng.integers(0, 5, n2).astype(float)
    elif kind == 3:  # one side tiny
        x = x[: 1 + seed % 7]
    elif kind == 4:  # identical distributions, integers
        x, y = rng.integers(0, 100, n1), rng.integers(0, 100, n2)
    elif kind == 5:  # float32 latencies are computed in float32, as scipy does
        x, y = x.astype(np.float32), np.round(y, 2).astype(np.float32)
    return x, y


@pytest.mark.parametrize("seed", range(240))
def test_mann_whitney_matches_scipy_bit_for_bit(seed: int) -> None:
    x, y = _samples(seed)
    assert _same(mannwhitneyu_p(x, y), _scipy_mwu(x, y))
    assert _same(mannwhitneyu_p(y, x), _scipy_mwu(y, x))


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1.0] * 40, [1.0] * 40),  # all tied: z is 0/0
        ([1.0] * 40, [2.0] * 40),  # complete separation
        ([0.0, -0.0] * 20, [0.0] * 30),  # signed zeros tie
        ([1.0, np.inf] * 20, [np.inf, 2.0] * 20),
        ([1.0, np.nan] * 20, [1.0, 2.0] * 20),  # NaN propagates
        (list(range(50)), list(range(25, 75))),
    ],
)
def test_mann_whitney_edge_cases_match_scipy(x: list[float], y: list[float]) -> None:
    a, b = np.array(x), np.array(y)
    with np.errstate(all="ignore"):
        assert _same(mannwhitneyu_p(a, b), _scipy_mwu(a, b))


def test_mann_whitney_at_the_comparisons_size_matches_scipy() -> None:
    """200,000 per side, latencies to the microsecond (the subsample latency_p_value tests)."""
    rng = np.random.default_rng(13)
    x = np.round(rng.lognormal(3.0, 0.4, 200_000), 3)
    y = np.round(rng.lognormal(3.001, 0.4, 200_000), 3)
    assert mannwhitneyu_p(x, y) == _scipy_mwu(x, y)


def _tables(seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    n_a, n_b = (int(v) for v in rng.integers(1, [60, 5000][seed % 2], size=2))
    rate_a, rate_b = rng.choice([0.0, 0.001, 0.01, 0.05, 0.5, 1.0], size=2)
    err_a, err_b = int(rng.binomial(n_a, rate_a)), int(rng.binomial(n_b, rate_b))
    return [[err_a, n_a - err_a], [err_b, n_b - err_b]]


@pytest.mark.parametrize("seed", range(300))
def test_fisher_matches_scipy_bit_for_bit(seed: int) -> None:
    table = _tables(seed)
    expected = float(fisher_exact(table, alternative="two-sided").pvalue)
    assert fisher_exact_p(table) == expected
    flipped = [table[1], table[0]]
    assert fisher_exact_p(flipped) == float(fisher_exact(flipped).pvalue)


@pytest.mark.parametrize(
    "table",
    [
        [[8, 2], [1, 5]],
        [[0, 10], [0, 12]],
        [[3, 0], [5, 0]],
        [[1, 0], [0, 1]],
        [[0, 1], [1, 0]],
        [[5, 5], [5, 5]],
        [[120, 99_880], [180, 99_820]],  # the comparison's largest Fisher table
        [[0, 100_000], [7, 99_993]],
    ],
)
def test_fisher_edge_cases_match_scipy(table: list[list[int]]) -> None:
    assert fisher_exact_p(table) == float(fisher_exact(table, alternative="two-sided").pvalue)


def test_the_comparison_does_not_import_scipy_stats() -> None:
    """The point of the module: a report's comparison costs no ``import scipy.stats``."""
    code = (
        "import sys, numpy as np\n"
        "from reports.stats import error_p_value, latency_p_value\n"
        "rng = np.random.default_rng(0)\n"
        "latency_p_value(rng.random(100), rng.random(120))\n"
        "error_p_value(3, 100, 9, 120)\n"
        "print('scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
