"""Disruption (intervals with no successful answer), its SLO key ``disruption_s``, and status
labels that stay legible when the platform's statuses change within moments."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest

from reports.analysis import analyse
from reports.connections import disruption
from reports.verdict import parse_slo, verdict

OK, BAD = True, False


@pytest.mark.parametrize(
    ("oks", "end_s", "expected"),
    [
        ([], 1.0, (0, None, None, [])),
        ([OK, OK, OK], 1.0, (0, 0.0, 0.0, [])),
        # one failure between successes: from its send time to the next success's
        ([OK, BAD, OK, OK], 1.0, (1, 0.1, 0.1, [(0.1, 0.2, 1)])),
        # a run of failures is one interval
        ([OK, BAD, BAD, BAD, OK], 1.0, (1, 0.3, 0.3, [(0.1, 0.4, 3)])),
        # two intervals; the last one runs to the run's end
        ([BAD, OK, OK, BAD, BAD], 1.0, (2, 0.8, 0.7, [(0.0, 0.1, 1), (0.3, 1.0, 2)])),
        ([BAD, BAD], 0.5, (1, 0.5, 0.5, [(0.0, 0.5, 2)])),
    ],
)
def test_disruption_intervals(oks: list[bool], end_s: float, expected: tuple[Any, ...]) -> None:
    rel = np.arange(len(oks)) * 0.1
    got = disruption(rel, np.array(oks, dtype=bool), end_s)
    count, total, longest, intervals = expected
    assert got["count"] == count
    assert got["total_s"] == (None if total is None else pytest.approx(total))
    assert got["longest_s"] == (None if longest is None else pytest.approx(longest))
    assert [(i["start_s"], i["end_s"], i["failures"]) for i in got["intervals"]] == [
        (pytest.approx(a), pytest.approx(b), n) for a, b, n in intervals
    ]


def _frame() -> pd.DataFrame:
    """2 s of a probe at 20/s on both modes; the reused stream fails from 0.5 s to 1.0 s."""
    n = 40
    ts = 1000.0 + np.arange(n) * 0.05
    mode = np.array(["reused", "new"] * (n // 2))
    bad = (mode == "reused") & (ts >= 1000.5) & (ts < 1001.0)
    return pd.DataFrame(
        {
            "ts": ts, "intended_ts": ts, "latency_ms": 1.0, "source": "probe", "worker": "w",
            "status": np.where(bad, 0, 200), "error": np.where(bad, "reset", None),
            "version": np.where(bad, "unknown", "v1"), "tag_source": "header",
            "conn": [f"c{i}" for i in range(n)], "conn_mode": mode,
        }
    )  # fmt: skip


def _summary(slos: list[str] | None = None) -> dict[str, Any]:
    manifest = {"started_ts": 1000.0, "ended_ts": 1002.0}
    return analyse(_frame(), [], manifest, slos=slos, bucket_s=1.0).summary


def test_summary_disruption_whole_run_and_per_mode() -> None:
    s = _summary()
    d = s["disruption"]
    # Interleaved: the run as a whole never went without a success (new kept answering),
    # but each reused failure is followed by a new success 50 ms later.
    assert d["by_mode"]["new"] == {"count": 0, "total_s": 0.0, "longest_s": 0.0}
    reused = d["by_mode"]["reused"]
    assert reused["count"] == 1 and reused["total_s"] == pytest.approx(0.5)
    assert d["count"] == 5 and d["total_s"] == pytest.approx(5 * 0.05)
    assert s["connections"]["by_mode"]["reused"]["disruption"]["intervals"][0]["failures"] == 5


@pytest.mark.parametrize(
    ("slo", "passed"),
    [
        ("disruption_s<2", True),
        ("disruption_s<0.1", False),
        ("new.disruption_s<0.01", True),
        ("reused.disruption_s<0.4", False),
        ("reused.disruption_s<=0.5", True),
        ("new.error_rate<0.01", True),
        ("reused.error_rate<0.01", False),
        ("error_rate<0.2", True),  # the existing grammar still means what it meant
    ],
)
def test_disruption_slos(slo: str, passed: bool) -> None:
    (check,) = verdict(_summary(), [slo])["checks"]
    assert check["passed"] is passed, check


def test_a_mode_the_run_did_not_use_is_undecided() -> None:
    s = _summary()
    del s["connections"]["by_mode"]["new"], s["disruption"]["by_mode"]["new"]
    assert verdict(s, ["new.disruption_s<1"])["result"] == "inconclusive"


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("nwe.disruption_s<1", "unknown scope 'nwe'"),
        ("reusd.disruption_s<1", "did you mean 'reused'"),
        ("candidate.disruption_s<1", "takes only a connection-mode scope"),
        ("[new].disruption_s<1", "takes only a connection-mode scope"),
        ("disruptions_s<1", "unknown metric"),
        ("new.flips<1", "takes no scope"),
        ("disruption_s<nan", "not a finite number"),
    ],
)
def test_disruption_typos_are_errors(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slo(expr)


def test_brackets_keep_a_version_named_like_a_mode() -> None:
    left = parse_slo("[new].p99_ms<3").left
    assert (left.scope, left.mode, str(left)) == ("new", None, "new.p99_ms")
    assert parse_slo("new.p99_ms<3").left.mode == "new"


# ----------------------------------------------------------------------------- timelines


def test_spread_labels() -> None:
    from reports.figures import spread_labels

    assert spread_labels([], 1.0) == []
    assert spread_labels([0.0, 5.0], 1.0) == [0.0, 5.0]
    assert spread_labels([9.0, 9.2, 9.5, 10.0, 10.4], 1.0) == [9.0, 10.0, 11.0, 12.0, 13.0]


def test_status_labels_that_change_within_a_second_do_not_overlap() -> None:
    """``make demo``'s case: five statuses between 9 and 10.5 s of a 30 s run."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    from reports.figures import LABEL_GAP, _status_labels

    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    ax.set_xlim(0, 30)
    ax.set_ylim(0, 108)
    times = [9.0, 9.4, 9.7, 10.1, 10.5]
    names = ["submitted", "initializing", "staged", "promoting", "completed"]
    _status_labels(ax, [{"status": n, "at_s": t} for n, t in zip(names, times, strict=True)])
    fig.canvas.draw()
    labels = [t for t in ax.texts if t.get_text().strip() in names]
    assert [t.get_text().strip() for t in labels] == names
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    # the text's own box (an Annotation's extent also spans its leader line)
    boxes = [Text.get_window_extent(t, renderer) for t in labels]
    for a, b in itertools.pairwise(boxes):
        assert a.x1 <= b.x0 + 0.5, "two status labels overlap"
    xs = [t.get_position()[0] for t in labels]
    assert all(b - a >= LABEL_GAP * 30 - 1e-9 for a, b in itertools.pairwise(xs))
    plt.close(fig)
