"""Change points on synthetic run-over-run series: ``python -m bench.run changepoints``.

Compares ``reports.trends.change_points`` (E-divisive means + t-test, Otava/Hunter) with
``ruptures`` (PELT and binary segmentation, least-squares cost, a BIC-style penalty from a
robust noise estimate) on series with known shifts. ``ruptures`` is not a dependency: this
benchmark skips it when it is not installed (``pip install ruptures``).

A detection is a change point within ``TOLERANCE`` points of a true shift; every other change
point is a false alarm. The 60-point flat series run ``--flat-seeds`` seeds (default 1000), the
others ``--seeds`` (default 200).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np

from reports.trends import change_points

TOLERANCE = 2
Detector = Callable[[np.ndarray], list[int]]


def _gauss(rng: np.random.Generator, means: list[tuple[int, float]], sd: float) -> np.ndarray:
    return np.concatenate([rng.normal(m, m * sd, n) for n, m in means])


def _heavy(rng: np.random.Generator, means: list[tuple[int, float]], sd: float) -> np.ndarray:
    """Student-t noise (3 degrees of freedom): the odd bad night, scaled to the same sd."""
    return np.concatenate([m + m * sd * rng.standard_t(3, n) / math.sqrt(3) for n, m in means])


#: name -> (generator, segments [(points, mean)], relative sd)
SCENARIOS: dict[str, tuple[Callable, list[tuple[int, float]], float]] = {
    "flat 60, sd 5%": (_gauss, [(60, 100.0)], 0.05),
    "flat 60, heavy tails, sd 5%": (_heavy, [(60, 100.0)], 0.05),
    "flat 200, sd 5%": (_gauss, [(200, 100.0)], 0.05),
    "+10% after 30 (of 50), sd 5%": (_gauss, [(30, 100.0), (20, 110.0)], 0.05),
    "-10% after 30 (of 35), sd 3%": (_gauss, [(30, 100.0), (5, 90.0)], 0.03),
    "+5% after 30 (of 60), sd 2%": (_gauss, [(30, 100.0), (30, 105.0)], 0.02),
    "+10% at 30, -15% at 60 (of 90), sd 4%": (
        _gauss,
        [(30, 100.0), (30, 110.0), (30, 93.5)],
        0.04,
    ),
}


def _edivisive(p: float) -> Detector:
    return lambda z: [c.index for c in change_points(z, p_value=p)]


def _ruptures(algo: str, factor: float) -> Detector:
    import ruptures as rpt

    def detect(z: np.ndarray) -> list[int]:
        # noise sd from the median absolute difference of neighbours: a shift barely moves it
        sigma = float(np.median(np.abs(np.diff(z)))) / (0.6745 * math.sqrt(2)) or 1e-9
        pen = factor * sigma**2 * math.log(z.size)
        cls = rpt.Pelt if algo == "pelt" else rpt.Binseg
        found = cls(model="l2", min_size=3, jump=1).fit(z).predict(pen=pen)
        return [b for b in found if b < z.size]

    return detect


def _score(detect: Detector, scenario: str, seeds: int) -> dict[str, float]:
    gen, segments, sd = SCENARIOS[scenario]
    truth = list(np.cumsum([n for n, _ in segments])[:-1])
    found = false = clean = 0
    took = 0.0
    for seed in range(seeds):
        z = gen(np.random.default_rng(seed), segments, sd)
        t = time.perf_counter()
        points = detect(z)
        took += time.perf_counter() - t
        hits = {s for s in truth if any(abs(p - s) <= TOLERANCE for p in points)}
        found += len(hits)
        extra = [p for p in points if all(abs(p - s) > TOLERANCE for s in truth)]
        false += len(extra)
        clean += not extra
    return {
        "detected": found / (seeds * len(truth)) if truth else float("nan"),
        "false_per_series": false / seeds,
        "series_without_false": clean / seeds,
        "ms": 1000 * took / seeds,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench changepoints")
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--flat-seeds", type=int, default=1000)
    args = parser.parse_args(argv)
    detectors: dict[str, Detector] = {
        f"e-divisive p={p:g}": _edivisive(p) for p in (1e-3, 1e-4, 1e-5)
    }
    try:
        for factor in (4.0, 8.0, 12.0):
            detectors[f"ruptures binseg l2 pen={factor:g}σ²ln n"] = _ruptures("binseg", factor)
        detectors["ruptures pelt l2 pen=8σ²ln n"] = _ruptures("pelt", 8.0)
    except ImportError:
        print("ruptures not installed: skipped")
    print(
        "| scenario | detector | detected | false alarms / series | series w/o false alarm | ms |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for scenario in SCENARIOS:
        for name, detect in detectors.items():
            seeds = args.flat_seeds if scenario.startswith("flat 60") else args.seeds
            r = _score(detect, scenario, seeds)
            det = "–" if math.isnan(r["detected"]) else f"{r['detected']:.1%}"
            print(
                f"| {scenario} | {name} | {det} | {r['false_per_series']:.3f} | "
                f"{r['series_without_false']:.1%} | {r['ms']:.2f} |",
                flush=True,
            )
    return 0
