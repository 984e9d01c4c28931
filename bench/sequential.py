"""The polled fixed-horizon judge against the sequential decision: ``bench.run sequential``.

Synthetic rollouts with known truth (the issue-26 set-up): ``--baseline-s`` (300) of the
baseline, then ``--candidate-s`` (1200) of the candidate alone, lognormal latencies (median
40 ms, sigma 0.3) with a 1 % tail five times slower, errors at 0.5 % unless the scenario says
otherwise (two rows without the tail and the errors show what a pass needs; two more, a 2 ms
service whose p99 is scheduling noise, 2 % of answers 5-30 ms late, show the latency
guardrails' floors); at 2 and 20 req/s (``--rates``), ``--seeds`` rollouts (default 40) per row.

- **old**: ``reports.stats.compare`` (Mann–Whitney U + Fisher, the 10 %/5 ms, 25 %/20 ms and
  0.1 pp materiality rule) on the samples so far, polled every 30 s after the switch as the
  shipped AnalysisTemplate polls the verdict; the rollout fails at the first ``worse``;
- **new**: ``reports.sequential.decide`` with looks every 30 s: the first decision kept.

Printed per row: the share of rollouts failed (and, for the new decision, passed) and the median
time from the switch to that decision. Then the verdict endpoint's CPU per poll at 100k samples
(``probes.serve.verdict.verdict_body`` polled as the samples grow, thread CPU time).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from reports import sequential as seq
from reports.stats import Side, compare, latency_block

POLL_S = 30.0
#: name -> (latency factor of the candidate, its error-rate factor, slow tail, base error rate,
#: median ms, scheduling noise: the share of answers 5-30 ms late)
SCENARIOS: dict[str, tuple[float, float, float, float, float, float]] = {
    "A/A": (1.0, 1.0, 0.01, 0.005, 40.0, 0.0),
    "+3 % latency": (1.03, 1.0, 0.01, 0.005, 40.0, 0.0),
    "+5 % latency": (1.05, 1.0, 0.01, 0.005, 40.0, 0.0),
    "+10 % latency": (1.10, 1.0, 0.01, 0.005, 40.0, 0.0),
    "+25 % latency": (1.25, 1.0, 0.01, 0.005, 40.0, 0.0),
    "errors x2": (1.0, 2.0, 0.01, 0.005, 40.0, 0.0),
    "errors x4": (1.0, 4.0, 0.01, 0.005, 40.0, 0.0),
    # what a pass needs: no 1 % tail sitting on the p99, no errors to bound
    "A/A, no slow tail, no errors": (1.0, 1.0, 0.0, 0.0, 40.0, 0.0),
    "+5 %, no slow tail, no errors": (1.05, 1.0, 0.0, 0.0, 40.0, 0.0),
    # a 2 ms service whose p99 is scheduling noise: the latency guardrails' floors at work
    "A/A, 2 ms service, noisy p99, no errors": (1.0, 1.0, 0.0, 0.0, 2.0, 0.02),
    "+50 % (+1 ms), 2 ms service, noisy p99": (1.5, 1.0, 0.0, 0.0, 2.0, 0.02),
}
#: old-judge outcomes that fail a rollout
WORSE = "worse"


def rollout(
    seed: int, rate: float, pre_s: float, post_s: float, scenario: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(send times, version code, latency ms, ok) of one synthetic rollout."""
    shift, err_factor, tail, base_error, median, noise = scenario
    rng = np.random.default_rng(seed)
    n1, n2 = int(pre_s * rate), int(post_s * rate)
    t = np.r_[np.sort(rng.uniform(0, pre_s, n1)), np.sort(rng.uniform(pre_s, pre_s + post_s, n2))]
    code = np.r_[np.zeros(n1, np.int8), np.ones(n2, np.int8)]
    latency = np.exp(rng.normal(np.log(median), 0.3, n1 + n2))
    latency[rng.random(n1 + n2) < tail] *= 5.0
    if noise:  # drawn only here, so the other rows' draws stay what they were
        late = rng.random(n1 + n2) < noise
        latency[late] += rng.uniform(5.0, 30.0, int(late.sum()))
    latency[code == 1] *= shift
    errors = rng.random(n1 + n2) < np.where(code == 1, base_error * err_factor, base_error)
    return t, code, latency, ~errors


def _side(latency: np.ndarray, ok: np.ndarray) -> tuple[Side, np.ndarray]:
    good = latency[ok]
    block = latency_block(good)
    return Side(ok.size, int(ok.size - good.size), block["p50"], block["p99"], good.size), good


def old_judge(t: np.ndarray, code: np.ndarray, latency: np.ndarray, ok: np.ndarray,
              switch: float) -> float | None:  # fmt: skip
    """Seconds from the switch to the first poll judged ``worse``, or None."""
    base = code == 0
    sb, lb = _side(latency[base], ok[base])
    for poll in np.arange(switch + POLL_S, t[-1] + POLL_S, POLL_S):
        rows = (code == 1) & (t <= poll)
        if not rows.any():
            continue
        sc, lc = _side(latency[rows], ok[rows])
        if compare("b", "c", sb, sc, lb, lc)["judgement"] == WORSE:
            return float(poll - switch)
    return None


def new_decision(t: np.ndarray, code: np.ndarray, latency: np.ndarray, ok: np.ndarray,
                 switch: float) -> tuple[str, float | None]:  # fmt: skip
    found = seq.decide(t, code, latency, ok, settings=seq.SeqSettings(look_s=POLL_S))
    at = found["decided_at_s"]
    return found["decision"], None if at is None else at - switch


def _median(values: list[float]) -> str:
    return f"{np.median(values):.0f} s" if values else "-"


def row(name: str, rate: float, args: argparse.Namespace) -> list[str]:
    old_fail: list[float] = []
    new: dict[str, list[float]] = {"fail": [], "pass": []}
    for seed in range(args.seeds):
        t, code, latency, ok = rollout(seed, rate, args.baseline_s, args.candidate_s,
                                       SCENARIOS[name])  # fmt: skip
        found = old_judge(t, code, latency, ok, args.baseline_s)
        if found is not None:
            old_fail.append(found)
        decision, at = new_decision(t, code, latency, ok, args.baseline_s)
        if decision in new and at is not None:
            new[decision].append(at)
    n = args.seeds
    return [
        name, f"{rate:g}",
        f"{100 * len(old_fail) / n:.1f} %", _median(old_fail),
        f"{100 * len(new['fail']) / n:.1f} %", _median(new["fail"]),
        f"{100 * len(new['pass']) / n:.1f} %", _median(new["pass"]),
    ]  # fmt: skip


HEAD = ["scenario", "req/s", "old: failed", "old: median time", "new: failed",
        "new: median time", "new: passed", "new: median time"]  # fmt: skip


def poll_cpu(n: int = 100_000, polls: int = 50) -> tuple[float, float]:
    """(p50, p99) ms of thread CPU per verdict poll at ``n`` samples, new samples each poll."""
    from probes.serve.verdict import verdict_body

    rng = np.random.default_rng(1)
    half = n // 2
    versions = np.array(["v1"] * half + ["v2"] * (n - half + polls), dtype=object)
    latency = rng.lognormal(3.0, 0.3, versions.size)
    ok = rng.random(versions.size) > 0.01
    ts = 1000.0 + np.r_[np.sort(rng.uniform(0, 2500, half)),
                        np.sort(rng.uniform(2500, 5000, versions.size - half))]  # fmt: skip

    def body(k: int) -> None:
        verdict_body(target="t", run_id="r", baseline="v1", candidate="v2",
                     versions=versions[:k], latency_ms=latency[:k], ok=ok[:k], slos=[],
                     updated_at=0.0, ts=ts[:k], started_ts=1000.0)  # fmt: skip

    body(n)
    spent = []
    for k in range(n + 1, n + polls + 1):
        start = time.thread_time()
        body(k)
        spent.append(time.thread_time() - start)
    return float(np.median(spent) * 1000), float(np.percentile(spent, 99) * 1000)


def _table(head: list[str], rows: list[list[str]], out: Callable[[str], None]) -> None:
    out("| " + " | ".join(head) + " |")
    out("|" + "---|" * len(head))
    for r in rows:
        out("| " + " | ".join(r) + " |")


def main(argv: list[str]) -> int:
    """Print the table and the per-poll CPU (Markdown, for BENCHMARKS.md)."""
    parser = argparse.ArgumentParser(prog="bench sequential", description=__doc__)
    parser.add_argument("--seeds", type=int, default=40, help="rollouts per row (default 40)")
    parser.add_argument("--rates", default="2,20", help="req/s, comma-separated (default 2,20)")
    parser.add_argument("--baseline-s", type=float, default=300.0)
    parser.add_argument("--candidate-s", type=float, default=1200.0)
    args, _ = parser.parse_known_args(argv)
    rates = [float(r) for r in str(args.rates).split(",") if r]
    start = time.perf_counter()
    rows = [row(name, rate, args) for name in SCENARIOS for rate in rates]
    print(f"{args.seeds} rollouts per row, polled every {POLL_S:g} s; "
          f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
    _table(HEAD, rows, print)
    p50, p99 = poll_cpu()
    print(f"\nverdict endpoint, 100k samples, CPU per poll: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return 0
