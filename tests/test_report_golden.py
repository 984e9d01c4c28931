"""Golden summaries: ``make_report`` on deterministic synthetic runs, number for number.

The runs come from ``bench.report.make_run`` (fixed seeds): a probe and four Locust workers,
a gradual (or atomic) ``app:1`` -> ``app:2`` replacement with its control-plane events,
errors, untagged answers, and, in the ``extras`` runs, connection identities, both
connection modes, connect errors, ``client_saturated`` and ``interrupted`` rows; one run of
a million samples, one capacity run, one run that never finished. ``tests/data/golden-*.json``
hold the summaries the report made before its engine was reworked; every number must stay
the same to the last digit. Only ``tools``-like fields that depend on the machine would be
excluded, and the summary has none (``started_at`` comes from the manifest).

Regenerate (only when a change of the numbers is intended, and say so in the commit):
``python -m tests.test_report_golden DIR``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import Shape, make_run
from reports import make_report

DATA = Path(__file__).parent / "data"

SLOS = (
    "error_rate<0.01",
    "p99_ms<200",
    "candidate.p99_ms<1.1*baseline.p99_ms",
    "new.error_rate<0.02",
)

#: name -> (samples, seed, shape).
RUNS: dict[str, tuple[int, int, Shape]] = {
    "gradual": (20_000, 1, Shape(per_worker=True, extras=True, shard_rows=1_500, slos=SLOS)),
    "atomic": (12_000, 2, Shape(per_worker=True, switch=(0.5, 0.5), shard_rows=4_000)),
    "sorted": (30_000, 3, Shape(shard_rows=7_000, duration_s=120.0)),
    "no-events-slower": (
        15_000,
        4,
        Shape(events=False, slower_candidate=True, extras=True, shard_rows=3_000, slos=SLOS),
    ),
    "capacity": (16_000, 5, Shape(kind="capacity", switch=(2.0, 2.0), per_worker=True)),
    "unfinished": (6_000, 6, Shape(finished=False, extras=True, per_worker=True)),
}
BIG = ("million", (1_000_000, 7, Shape(per_worker=True, extras=True, shard_rows=100_000)))


def golden_path(name: str) -> Path:
    return DATA / f"golden-{name}.json"


def report(root: Path, name: str, total: int, seed: int, shape: Shape) -> dict[str, Any]:
    """The summary of a fresh synthetic run, as it lands in summary.json (JSON round trip)."""
    run_dir = make_run(root, total, seed=seed, shape=shape, name=name)
    make_report(run_dir, figures=False)
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text("utf-8"))
    return data


def _check(tmp_path: Path, name: str, spec: tuple[int, int, Shape]) -> None:
    got = report(tmp_path, name, *spec)
    want = json.loads(golden_path(name).read_text("utf-8"))
    assert got == want  # dict equality: every key, every float to the last digit
    # == treats 1 and 1.0 as equal: compare the text too, which does not.
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_summary_matches_golden(tmp_path: Path, name: str) -> None:
    _check(tmp_path, name, RUNS[name])


@pytest.mark.slow
def test_million_samples_match_golden(tmp_path: Path) -> None:
    _check(tmp_path, BIG[0], BIG[1])


def test_runs_cover_what_they_claim(tmp_path: Path) -> None:
    """The goldens exercise what they are for (a golden of an empty report proves nothing)."""
    gradual = json.loads(golden_path("gradual").read_text("utf-8"))
    assert gradual["rollout"]["flips"] > 0
    assert gradual["not_sent"] > 0 and gradual["interrupted"] > 0
    assert set(gradual["connections"]["by_mode"]) == {"reused", "new"}
    assert gradual["comparison"] is not None
    assert len(gradual["verdict"]["checks"]) == len(SLOS)
    assert json.loads(golden_path("capacity").read_text("utf-8"))["capacity"] is not None
    assert json.loads(golden_path("unfinished").read_text("utf-8"))["complete"] is False
    slower = json.loads(golden_path("no-events-slower").read_text("utf-8"))
    assert slower["rollout"]["platform"] is None


def main(argv: list[str]) -> int:
    """Write the golden files from the current code (runs made under ``argv[0]``)."""
    root = Path(argv[0])
    for name, spec in [*RUNS.items(), BIG]:
        summary = report(root, name, *spec)
        golden_path(name).write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        print(name, summary["requests"], summary["verdict"]["result"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
